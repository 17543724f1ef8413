//! Operations: Prometheus metrics and the HTTP endpoint that serves them.

mod metrics_server;
mod node_metrics;

pub use metrics_server::{MetricsSources, serve_metrics};
pub use node_metrics::NodeMetrics;
