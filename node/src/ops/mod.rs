//! Operations: Prometheus metrics and the HTTP endpoint that serves them,
//! and the state-digest audit that quarantines a diverged node.

mod digest_audit;
pub mod heap;
mod metrics_server;
mod node_metrics;
pub mod thread_priority;

pub use digest_audit::{AuditResult, AuditedState, Quarantine, audit_once, run_digest_audit};
pub use metrics_server::{MetricsSources, serve_metrics};
pub use node_metrics::NodeMetrics;
