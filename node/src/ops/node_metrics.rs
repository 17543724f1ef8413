//! The node's Prometheus metrics.
//!
//! Each node owns its recorder (not the process-global one), so several
//! nodes in one process (the in-process cluster tests) keep separate
//! figures, and every series carries a `node_id` label.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use spentledger_protocol::pb;

use crate::state_machine::{CommandOutcome, PaymentOutcome};

/// Latency buckets in seconds: 100 µs to 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
/// Payments per entry.
const COUNT_BUCKETS: [f64; 10] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
/// Entry sizes in bytes: 256 B to 16 MiB.
const BYTES_BUCKETS: [f64; 9] = [
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Where a verdict was reached: at the receiving node before proposing, or
/// in the replicated state machine (counted on every node alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictStage {
    Ingress,
    Apply,
}

impl VerdictStage {
    fn label(self) -> &'static str {
        match self {
            VerdictStage::Ingress => "ingress",
            VerdictStage::Apply => "apply",
        }
    }
}

/// Cheap to clone; all clones record into the same registry.
#[derive(Clone)]
pub struct NodeMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeMetrics")
    }
}

impl NodeMetrics {
    pub fn new(node_id: u64) -> Self {
        let builder = PrometheusBuilder::new()
            .add_global_label("node_id", node_id.to_string())
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &SECONDS_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_payments".into()),
                    &COUNT_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("spentledger_entry_batches".into()),
                    &COUNT_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_bytes".into()),
                    &BYTES_BUCKETS,
                )
            })
            .expect("bucket lists are constant and non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        NodeMetrics {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; call periodically so
    /// unscraped samples do not pile up.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// A SubmitBatch (or stream item) handled on this node.
    pub fn batch_received(&self, payments: usize) {
        self.with(|| {
            counter!("spentledger_submit_batches_total").increment(1);
            counter!("spentledger_submit_payments_total").increment(payments as u64);
        });
    }

    pub fn ingress_validated(&self, elapsed: Duration) {
        self.with(|| {
            histogram!("spentledger_ingress_validation_seconds").record(elapsed.as_secs_f64())
        });
    }

    /// A queued batch waited `waited` before its group's ingress check
    /// started, any apply-lag hold included (recorded once per queued part:
    /// a gateway batch, or each part of one larger than an entry).
    pub fn submit_queued(&self, waited: Duration) {
        self.with(|| histogram!("spentledger_submit_queue_seconds").record(waited.as_secs_f64()));
    }

    /// An entry handed to Raft got its outcome `elapsed` later:
    /// replication, the log fsyncs, commit and this node's apply up to the
    /// answer.
    pub fn entry_outcome(&self, elapsed: Duration) {
        self.with(|| histogram!("spentledger_entry_outcome_seconds").record(elapsed.as_secs_f64()));
    }

    /// A batch submitted to this node (as leader) got its verdicts
    /// `elapsed` after it was admitted: queue, ingress, Raft and apply
    /// together. A submit that fails (no leader, shutdown) is not recorded.
    pub fn submit_answered(&self, elapsed: Duration) {
        self.with(|| histogram!("spentledger_submit_seconds").record(elapsed.as_secs_f64()));
    }

    /// A payment answered at ingress without being proposed.
    pub fn ingress_verdict(&self, result: &pb::PaymentResult) {
        let verdict = pb::Verdict::try_from(result.verdict).unwrap_or(pb::Verdict::Unspecified);
        let reason = pb::RejectReason::try_from(result.reject_reason)
            .unwrap_or(pb::RejectReason::Unspecified);
        self.verdicts(VerdictStage::Ingress, verdict, reason, 1);
    }

    fn verdicts(
        &self,
        stage: VerdictStage,
        verdict: pb::Verdict,
        reason: pb::RejectReason,
        count: u64,
    ) {
        self.with(|| {
            counter!(
                "spentledger_verdicts_total",
                "stage" => stage.label(),
                "verdict" => verdict.as_str_name(),
                "reason" => reason.as_str_name()
            )
            .increment(count)
        });
    }

    /// Outcomes of one apply call.
    /// One apply call of `entries`, its state write included, took `elapsed`.
    pub fn applied(&self, entries: usize, elapsed: Duration) {
        self.with(|| {
            histogram!("spentledger_apply_seconds").record(elapsed.as_secs_f64());
            counter!("spentledger_applied_entries_total").increment(entries as u64);
        });
    }

    /// The outcomes of one apply call, counted by verdict.
    pub fn applied_outcomes(&self, outcomes: &[CommandOutcome]) {
        // Counted per kind first: one registry update per kind, not per
        // payment (this runs on the apply path).
        let mut counts: std::collections::BTreeMap<
            (i32, i32),
            (pb::Verdict, pb::RejectReason, u64),
        > = std::collections::BTreeMap::new();
        for outcome in outcomes {
            if let CommandOutcome::Submitted(payments) = outcome {
                for p in payments {
                    let (verdict, reason) = PaymentOutcome::verdict(p).to_wire();
                    counts
                        .entry((verdict as i32, reason as i32))
                        .or_insert((verdict, reason, 0))
                        .2 += 1;
                }
            }
        }
        for (verdict, reason, count) in counts.into_values() {
            self.verdicts(VerdictStage::Apply, verdict, reason, count);
        }
    }

    /// One coalesced entry proposed by this node as leader.
    /// Payments applied with the stateless verdicts this node computed when
    /// it proposed them (the leader's own entries), not validated twice.
    pub fn apply_prechecked(&self, payments: u64) {
        self.with(|| {
            counter!("spentledger_apply_prechecked_payments_total").increment(payments);
        });
    }

    /// Payments a replica decoded straight from its entry's bytes to
    /// domain types (`spentledger_protocol::direct`); the rest of the
    /// replicas' payments took the general decoder.
    pub fn apply_direct_decoded(&self, payments: u64) {
        self.with(|| {
            counter!("spentledger_apply_direct_decoded_payments_total").increment(payments);
        });
    }

    pub fn entry_proposed(&self, batches: usize, payments: usize, bytes: usize) {
        self.with(|| {
            histogram!("spentledger_entry_batches").record(batches as f64);
            histogram!("spentledger_entry_payments").record(payments as f64);
            histogram!("spentledger_entry_bytes").record(bytes as f64);
        });
    }

    /// The leader's view of its followers' apply (`consensus::apply_lag`):
    /// the deciding majority's lag (0 when none is known or this node does
    /// not lead).
    pub fn apply_lag_quorum(&self, lag_ms: u64) {
        self.with(|| gauge!("spentledger_apply_lag_quorum_ms").set(lag_ms as f64));
    }

    /// One follower's apply lag behind the leader's; `None`: unknown (-1).
    pub fn apply_lag_follower(&self, peer: u64, lag: Option<Duration>) {
        let ms = lag.map_or(-1.0, |d| d.as_secs_f64() * 1_000.0);
        self.with(|| {
            gauge!("spentledger_apply_lag_follower_ms", "peer" => peer.to_string()).set(ms)
        });
    }

    /// New entries held by the apply-lag flow control for `held`.
    pub fn apply_lag_hold(&self, held: Duration) {
        self.with(|| {
            counter!("spentledger_apply_lag_holds_total").increment(1);
            histogram!("spentledger_apply_lag_hold_seconds").record(held.as_secs_f64());
        });
    }

    /// A submission refused with RESOURCE_EXHAUSTED.
    pub fn overload_refusal(&self) {
        self.with(|| counter!("spentledger_overload_refusals_total").increment(1));
    }

    pub fn snapshot_built(&self, elapsed: Duration) {
        self.with(|| {
            counter!("spentledger_snapshots_built_total").increment(1);
            histogram!("spentledger_snapshot_build_seconds").record(elapsed.as_secs_f64());
        });
    }

    pub fn snapshot_installed(&self) {
        self.with(|| counter!("spentledger_snapshots_installed_total").increment(1));
    }

    /// Sets a gauge sampled at scrape time.
    pub fn set_gauge(&self, name: &'static str, value: f64) {
        self.with(|| gauge!(name).set(value));
    }

    /// Sets a gauge with one label, sampled at scrape time.
    pub fn set_labeled_gauge(
        &self,
        name: &'static str,
        label: &'static str,
        label_value: String,
        value: f64,
    ) {
        self.with(|| gauge!(name, label => label_value).set(value));
    }
}
