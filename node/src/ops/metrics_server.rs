//! `GET /metrics` over plain HTTP for Prometheus.
//!
//! Gauges that mirror other state (Raft progress, queue depth, RocksDB
//! sizes) are sampled when scraped, so they cost nothing between scrapes.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use openraft::type_config::async_runtime::WatchReceiver;
use tokio::net::TcpListener;

use super::NodeMetrics;
use crate::api::Coalescer;
use crate::consensus::StateHandle;
use crate::ledger_node::LedgerRaft;
use crate::storage::LogStore;

/// How often histogram samples are folded into buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What a scrape samples.
#[derive(Clone)]
pub struct MetricsSources {
    pub metrics: NodeMetrics,
    pub raft: LedgerRaft,
    pub state: StateHandle,
    pub log: LogStore,
    pub coalescer: Coalescer,
}

impl MetricsSources {
    /// Samples Raft progress, the submission queue and database sizes.
    async fn sample(&self) {
        let m = self.metrics.clone();
        {
            let r = self.raft.metrics().borrow_watched().clone();
            let leader = r.current_leader.unwrap_or(0);
            m.set_gauge("spentledger_raft_term", r.current_term as f64);
            m.set_gauge("spentledger_raft_leader_id", leader as f64);
            m.set_gauge(
                "spentledger_raft_is_leader",
                f64::from(u8::from(r.current_leader == Some(r.id))),
            );
            m.set_gauge(
                "spentledger_raft_last_log_index",
                r.last_log_index.unwrap_or(0) as f64,
            );
            m.set_gauge(
                "spentledger_raft_committed_index",
                r.local_committed.map_or(0, |l| l.index) as f64,
            );
            m.set_gauge(
                "spentledger_raft_applied_index",
                r.last_applied.map_or(0, |l| l.index) as f64,
            );
            m.set_gauge(
                "spentledger_raft_snapshot_index",
                r.snapshot.map_or(0, |l| l.index) as f64,
            );
            m.set_gauge(
                "spentledger_raft_purged_index",
                r.purged.map_or(0, |l| l.index) as f64,
            );
            // On the leader: how many entries each follower is behind.
            if let Some(replication) = &r.replication {
                let last = r.last_log_index.unwrap_or(0);
                for (peer, matched) in replication.iter() {
                    let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                    m.set_labeled_gauge(
                        "spentledger_raft_replication_lag_entries",
                        "peer",
                        peer.to_string(),
                        lag as f64,
                    );
                }
            }
        }
        m.set_gauge(
            "spentledger_submit_queue_payments",
            self.coalescer.queued() as f64,
        );
        if let Some(heap) = super::heap::heap_bytes() {
            m.set_gauge("spentledger_heap_allocated_bytes", heap.allocated as f64);
            m.set_gauge("spentledger_heap_resident_bytes", heap.resident as f64);
        }
        let state = self.state.current();
        let log = self.log.clone();
        if let Ok((state_bytes, log_bytes)) =
            tokio::task::spawn_blocking(move || (state.disk_bytes(), log.disk_bytes())).await
        {
            for (db, bytes) in [("state", state_bytes), ("raft_log", log_bytes)] {
                for (name, value) in [
                    ("spentledger_rocksdb_sst_bytes", bytes.sst),
                    ("spentledger_rocksdb_memtable_bytes", bytes.memtable),
                    (
                        "spentledger_rocksdb_table_readers_bytes",
                        bytes.table_readers,
                    ),
                    ("spentledger_rocksdb_block_cache_bytes", bytes.block_cache),
                ] {
                    m.set_labeled_gauge(name, "db", db.into(), value as f64);
                }
            }
        }
    }
}

async fn scrape(State(sources): State<MetricsSources>) -> impl IntoResponse {
    sources.sample().await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        sources.metrics.render(),
    )
}

/// Serves `/metrics` on `listener` until `stop` resolves, and keeps
/// histogram upkeep running meanwhile.
pub async fn serve_metrics(
    listener: TcpListener,
    sources: MetricsSources,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep_metrics = sources.metrics.clone();
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep_metrics.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(sources);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    upkeep.abort();
    served
}
