//! One ledger node: its stores, openraft, and its gRPC server.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::{Config, Raft, SnapshotPolicy};
use spentledger_protocol::pb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{AdminService, ApiLimits, IssuerService, SettlementService};
use crate::consensus::{LedgerStateMachine, NodeId, StateHandle, TypeConfig};
use crate::network::{PeerNetworkFactory, RAFT_MESSAGE_BYTES_MAX, RaftService};
use crate::state_machine::{Ledger, LedgerConfig};
use crate::storage::LogStore;

pub type LedgerRaft = Raft<TypeConfig, LedgerStateMachine>;

/// Health service name that is SERVING whenever the process runs (liveness
/// must never depend on a leader). The empty name and every API service are
/// SERVING only when the node is ready: it knows a leader and has applied
/// everything it knows to be committed.
pub const LIVENESS_SERVICE: &str = "spentledger.liveness";
const READY_SERVICES: [&str; 4] = [
    "",
    "spentledger.v1.Settlement",
    "spentledger.v1.Issuer",
    "spentledger.v1.Admin",
];

/// Follows Raft's metrics and publishes readiness until Raft stops.
async fn report_readiness(raft: LedgerRaft, reporter: tonic_health::server::HealthReporter) {
    use openraft::type_config::async_runtime::WatchReceiver;
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let ready = {
            let m = metrics.borrow_watched();
            let caught_up = match (m.last_applied, m.local_committed) {
                (_, None) => true,
                (Some(applied), Some(committed)) => applied.index >= committed.index,
                (None, Some(_)) => false,
            };
            m.current_leader.is_some() && caught_up
        };
        if last != Some(ready) {
            let status = if ready {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for name in READY_SERVICES {
                reporter.set_service_status(name, status).await;
            }
            last = Some(ready);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Largest client request: a full batch of 1,000 two-input payments is about
/// 1.3 MiB, so 16 MiB leaves room while bounding what one call can pin.
pub const API_MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Raft timing, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is built after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the latest snapshot (for slow followers).
    pub logs_kept_after_snapshot: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1_000,
            election_timeout_max_ms: 2_000,
            snapshot_after_entries: 10_000,
            logs_kept_after_snapshot: 1_000,
        }
    }
}

/// What a node needs to start.
pub struct NodeOptions {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// Already bound, so callers can use port 0 and learn the address.
    pub listener: TcpListener,
    pub timings: RaftTimings,
    pub ledger: LedgerConfig,
    pub api: ApiLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node id must be at least 1")]
    ZeroNodeId,
    #[error("invalid Raft timings: {0}")]
    Timings(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("validator: {0}")]
    Validator(#[from] spentledger_protocol::ValidatorError),
    #[error("raft: {0}")]
    Raft(String),
}

/// A running node. Dropping it without [`LedgerNode::shutdown`] leaves its
/// tasks running until the runtime ends.
pub struct LedgerNode {
    pub id: NodeId,
    pub addr: std::net::SocketAddr,
    pub raft: LedgerRaft,
    pub state: StateHandle,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl LedgerNode {
    pub async fn start(options: NodeOptions) -> Result<Self, NodeError> {
        if options.node_id == 0 {
            return Err(NodeError::ZeroNodeId);
        }
        let t = options.timings;
        let config = Config {
            cluster_name: "spentledger".into(),
            heartbeat_interval: t.heartbeat_interval_ms,
            election_timeout_min: t.election_timeout_min_ms,
            election_timeout_max: t.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_after_entries),
            max_in_snapshot_log_to_keep: t.logs_kept_after_snapshot,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Timings(e.to_string()))?;
        let log = LogStore::open(&options.data_dir.join("raft-log"))?;
        let ledger = Arc::new(Ledger::new(options.ledger)?);
        let sm = LedgerStateMachine::open(&options.data_dir.join("state"), ledger)?;
        let state = sm.state();
        let network = PeerNetworkFactory::new(options.node_id);
        let raft = Raft::new(options.node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let addr = options.listener.local_addr()?;
        let service = RaftService::new(raft.clone(), options.data_dir.join("incoming"));
        // Ingress validation has its own pool and cache, apart from apply's.
        let ingress = Arc::new(spentledger_protocol::Validator::new(
            options.ledger.validation_threads,
            options.ledger.certificate_cache_entries,
        )?);
        let settlement = SettlementService::new(raft.clone(), state.clone(), ingress, options.api);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(options.listener);
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status(LIVENESS_SERVICE, tonic_health::ServingStatus::Serving)
            .await;
        for name in READY_SERVICES {
            health_reporter
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        tokio::spawn(report_readiness(raft.clone(), health_reporter));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| NodeError::Raft(format!("reflection: {e}")))?;
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(reflection)
                .add_service(
                    pb::raft_server::RaftServer::new(service)
                        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
                )
                .add_service(
                    pb::settlement_server::SettlementServer::new(settlement)
                        .max_decoding_message_size(API_MESSAGE_BYTES_MAX),
                )
                .add_service(pb::issuer_server::IssuerServer::new(IssuerService::new(
                    raft.clone(),
                )))
                .add_service(pb::admin_server::AdminServer::new(AdminService::new(
                    raft.clone(),
                    state.clone(),
                )))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                }),
        );
        tracing::info!(node_id = options.node_id, %addr, "node started");
        Ok(LedgerNode {
            id: options.node_id,
            addr,
            raft,
            state,
            stop_server: Some(stop_tx),
            server,
        })
    }

    /// Stops Raft (no more votes or appends), then the server.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.id, error = %e, "raft shutdown");
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}
