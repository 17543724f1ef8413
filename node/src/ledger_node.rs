//! One ledger node: its stores, openraft, and its gRPC server.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::{Config, Raft, SnapshotPolicy};
use spentledger_protocol::pb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{
    AdminService, ApiLimits, Coalescer, Forwarder, IngressCheck, IssuerService, SettlementRoutes,
    SettlementService,
};
use crate::consensus::apply_lag::{ApplyLagGate, run_apply_lag_monitor};
use crate::consensus::{LedgerStateMachine, NodeId, StateHandle, TypeConfig};
use crate::network::{PeerDialer, PeerNetworkFactory, RAFT_MESSAGE_BYTES_MAX, RaftService};
use crate::ops::{MetricsSources, NodeMetrics, Quarantine, run_digest_audit, serve_metrics};
use crate::security::{NodeTls, RoleGuardLayer};
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
async fn report_readiness(
    raft: LedgerRaft,
    reporter: tonic_health::server::HealthReporter,
    quarantine: Quarantine,
) {
    use openraft::type_config::async_runtime::WatchReceiver;
    let mut metrics = raft.metrics();
    let mut quarantined = quarantine.subscribe();
    let mut last = None;
    loop {
        let ready = {
            let m = metrics.borrow_watched();
            let caught_up = match (m.last_applied, m.local_committed) {
                (_, None) => true,
                (Some(applied), Some(committed)) => applied.index >= committed.index,
                (None, Some(_)) => false,
            };
            m.current_leader.is_some() && caught_up && !*quarantined.borrow_and_update()
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
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() {
                // Raft stopped (shutdown or quarantine): not ready any more.
                for name in READY_SERVICES {
                    reporter
                        .set_service_status(name, tonic_health::ServingStatus::NotServing)
                        .await;
                }
                return;
            },
            _ = quarantined.changed() => {}
        }
    }
}

/// Largest client request: a full batch of 1,000 two-input payments is about
/// 1.3 MiB, so 16 MiB leaves room while bounding what one call can pin.
pub const API_MESSAGE_BYTES_MAX: usize = 16 << 20;
/// Concurrent HTTP/2 streams one connection may open (one client cannot
/// hold unbounded handlers).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// HTTP/2 keepalive: ping an idle connection this often...
pub const KEEPALIVE_INTERVAL_MS: u64 = 30_000;
/// ...and drop it when the ping is not answered within this.
pub const KEEPALIVE_TIMEOUT_MS: u64 = 20_000;
/// Largest header block a request may carry.
pub const HEADER_LIST_BYTES_MAX: u32 = 16 << 10;

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
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_listener: Option<TcpListener>,
    /// Where the standard gRPC health service alone is served in plaintext,
    /// if anywhere: for probes that cannot speak mutual TLS (Kubernetes'
    /// gRPC probes). It reveals serving status only.
    pub health_listener: Option<TcpListener>,
    /// How long shutdown waits for in-flight requests before cutting them.
    pub drain_timeout_ms: u64,
    /// How often the state digest is compared with the peers'.
    pub digest_audit_interval_ms: u64,
    /// The cluster this node belongs to: stamped on its Raft messages, and
    /// required on those it receives (`network::cluster_id`).
    pub cluster_id: crate::network::ClusterId,
    /// Mutual TLS for clients and peers, with roles enforced per RPC.
    /// `None` is plaintext without access control (development only).
    pub tls: Option<NodeTls>,
    /// Test-only: the fault layer this node's Raft messages pass through.
    #[cfg(feature = "fault-injection")]
    pub faults: Option<crate::network::fault_layer::FaultNetwork>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node id must be at least 1")]
    ZeroNodeId,
    #[error("invalid Raft timings: {0}")]
    Timings(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("validator: {0}")]
    Validator(#[from] spentledger_protocol::ValidatorError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// How long a stopping node waits for a snapshot build to finish its file.
const SNAPSHOT_BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a stopping node waits for its last tasks to let go of its
/// databases (each close also waits for RocksDB's running flush or
/// compaction).
const STORE_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often that wait looks.
const STORE_CLOSE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// A running node. Dropping it without [`LedgerNode::shutdown`] leaves its
/// tasks running until the runtime ends.
pub struct LedgerNode {
    pub id: NodeId,
    pub addr: std::net::SocketAddr,
    pub raft: LedgerRaft,
    pub state: StateHandle,
    pub metrics: NodeMetrics,
    /// How this node dials its peers (TLS with its certificate, or not).
    pub dialer: PeerDialer,
    /// Set when this node's digest diverged from its peers'.
    pub quarantine: Quarantine,
    /// The state machine's last steps, for diagnosing a divergence.
    pub journal: crate::consensus::apply_journal::ApplyJournal,
    /// The cluster this node belongs to.
    pub cluster_id: crate::network::ClusterId,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the plaintext health-only service is, when it is.
    pub health_addr: Option<std::net::SocketAddr>,
    stopping: tokio::sync::watch::Sender<bool>,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_server: Option<JoinHandle<std::io::Result<()>>>,
    drain_timeout_ms: u64,
    heartbeat_interval_ms: u64,
    snapshot_builds: crate::consensus::SnapshotBuilds,
    /// True once the Raft log's database is closed (see [`Self::shutdown`]).
    log_closed: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// Accepted connections with Nagle's algorithm off. tonic sets TCP_NODELAY
/// only on listeners it binds itself; on ours, small responses would wait
/// for the peer's delayed ACK (40 ms on Linux) before leaving.
fn accept_nodelay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |accepted| {
            let stream = accepted?;
            stream.set_nodelay(true)?;
            Ok(stream)
        },
    )
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
            // openraft's default count of entries per AppendEntries (300)
            // stays; their bytes are bounded by the log store's replication
            // reads (`REPLICATION_READ_BYTES_MAX`).
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Timings(e.to_string()))?;
        let metrics = NodeMetrics::new(options.node_id);
        let log = LogStore::open(&options.data_dir.join("raft-log"))?;
        let log_closed = Arc::new(log.closed_probe());
        let ledger = Arc::new(Ledger::new(options.ledger)?);
        let sm = LedgerStateMachine::open(&options.data_dir.join("state"), ledger)?
            .with_metrics(metrics.clone());
        #[cfg(feature = "fault-injection")]
        let sm = sm.with_faults(options.faults.clone(), options.node_id);
        let state = sm.state();
        let journal = sm.journal();
        let snapshot_builds = sm.snapshot_builds();
        let dialer = PeerDialer::new(options.tls.as_ref().map(NodeTls::client_config));
        if options.tls.is_none() {
            tracing::warn!(
                node_id = options.node_id,
                "PLAINTEXT: no TLS and no access control; for development only"
            );
        }
        #[cfg(feature = "fault-injection")]
        let faults = crate::network::fault_layer::FaultHook::new(options.faults.clone());
        #[cfg(not(feature = "fault-injection"))]
        let faults = crate::network::fault_layer::FaultHook::default();
        let network =
            PeerNetworkFactory::new(options.node_id, dialer.clone(), faults, &options.cluster_id);
        let peers = network.clone();
        // After a crash the state (written without a WAL) can be behind the
        // log's committed index; `Raft::new` applies the difference again
        // before the node serves. Logged so an operator can tell a slow
        // start from a stuck one.
        let state_applied_index = sm.applied().applied.map(|id| id.index());
        let log_committed_index = log.clone().read_committed().await?.map(|id| id.index());
        tracing::info!(
            node_id = options.node_id,
            ?state_applied_index,
            ?log_committed_index,
            "storage opened; committed entries after the state's applied index are applied again before serving"
        );
        let raft = Raft::new(options.node_id, Arc::new(config), network, log.clone(), sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let addr = options.listener.local_addr()?;
        let service = RaftService::new(
            raft.clone(),
            options.data_dir.join("incoming"),
            &options.cluster_id,
        );
        // Ingress validation has its own pool and cache, apart from apply's.
        let ingress = Arc::new(spentledger_protocol::Validator::with_threads(
            "ingress-val",
            options.api.ingress_validation_threads,
            options.ledger.certificate_cache_entries,
            None,
        )?);
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let apply_lag_gate = ApplyLagGate::default();
        tokio::spawn(run_apply_lag_monitor(
            raft.clone(),
            peers,
            apply_lag_gate.clone(),
            options.api.apply_lag,
            metrics.clone(),
            stopping_rx.clone(),
        ));
        let coalescer = Coalescer::start(
            raft.clone(),
            options.api.submit,
            metrics.clone(),
            IngressCheck::new(ingress, state.clone()),
            apply_lag_gate,
        );
        let settlement = SettlementService::new(
            raft.clone(),
            state.clone(),
            options.api,
            coalescer.clone(),
            metrics.clone(),
            stopping_rx.clone(),
        )
        .with_forwarder(Forwarder::new(dialer.clone()));
        let mut metrics_addr = None;
        let metrics_server = match options.metrics_listener {
            Some(listener) => {
                metrics_addr = Some(listener.local_addr()?);
                let sources = MetricsSources {
                    metrics: metrics.clone(),
                    raft: raft.clone(),
                    state: state.clone(),
                    log,
                    coalescer,
                };
                let mut stop = stopping_rx.clone();
                Some(tokio::spawn(serve_metrics(listener, sources, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })))
            }
            None => None,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let incoming = accept_nodelay(options.listener);
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status(LIVENESS_SERVICE, tonic_health::ServingStatus::Serving)
            .await;
        for name in READY_SERVICES {
            health_reporter
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        let mut health_addr = None;
        if let Some(listener) = options.health_listener {
            health_addr = Some(listener.local_addr()?);
            let mut stop = stopping_rx.clone();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(health_service.clone())
                    .serve_with_incoming_shutdown(accept_nodelay(listener), async move {
                        let _ = stop.wait_for(|s| *s).await;
                    }),
            );
        }
        let quarantine = Quarantine::default();
        tokio::spawn(report_readiness(
            raft.clone(),
            health_reporter,
            quarantine.clone(),
        ));
        tokio::spawn(run_digest_audit(
            raft.clone(),
            crate::ops::AuditedState {
                state: state.clone(),
                journal: journal.clone(),
                cluster_id: options.cluster_id.clone(),
            },
            quarantine.clone(),
            metrics.clone(),
            options.digest_audit_interval_ms,
            dialer.clone(),
            stopping_rx.clone(),
        ));
        // A quarantined node refuses the client APIs (Admin stays up so
        // operators can see why).
        let refuse_when_quarantined = {
            let quarantine = quarantine.clone();
            move |request: tonic::Request<()>| {
                if quarantine.is_set() {
                    Err(Quarantine::refusal())
                } else {
                    Ok(request)
                }
            }
        };
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| NodeError::Raft(format!("reflection: {e}")))?;
        let mut server_builder = tonic::transport::Server::builder()
            .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
            .http2_keepalive_interval(Some(std::time::Duration::from_millis(
                KEEPALIVE_INTERVAL_MS,
            )))
            .http2_keepalive_timeout(Some(std::time::Duration::from_millis(KEEPALIVE_TIMEOUT_MS)))
            .http2_max_header_list_size(HEADER_LIST_BYTES_MAX);
        if let Some(tls) = &options.tls {
            server_builder = server_builder
                .tls_config(tls.server_config())
                .map_err(|e| NodeError::Tls(e.to_string()))?;
        }
        let server = tokio::spawn(
            server_builder
                .layer(RoleGuardLayer::new(options.tls.is_some()))
                .add_service(health_service)
                .add_service(reflection)
                .add_service(
                    pb::raft_server::RaftServer::new(service)
                        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
                )
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    // SubmitBatch from the request's bytes; the rest generated.
                    SettlementRoutes::new(
                        settlement.clone(),
                        pb::settlement_server::SettlementServer::new(settlement)
                            .max_decoding_message_size(API_MESSAGE_BYTES_MAX),
                        API_MESSAGE_BYTES_MAX,
                    ),
                    refuse_when_quarantined.clone(),
                ))
                .add_service(pb::issuer_server::IssuerServer::with_interceptor(
                    IssuerService::new(raft.clone()),
                    refuse_when_quarantined,
                ))
                .add_service(pb::admin_server::AdminServer::new(AdminService::new(
                    raft.clone(),
                    state.clone(),
                    quarantine.clone(),
                    dialer.clone(),
                    options.cluster_id.clone(),
                )))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                }),
        );
        tracing::info!(
            node_id = options.node_id,
            %addr,
            metrics = ?metrics_addr,
            ingress_validation_threads = options.api.ingress_validation_threads,
            apply_validation_threads = options.ledger.validation_threads,
            apply_validation_nice = options.ledger.validation_nice,
            "node started"
        );
        Ok(LedgerNode {
            id: options.node_id,
            addr,
            raft,
            state,
            metrics,
            dialer,
            quarantine,
            journal,
            cluster_id: options.cluster_id.clone(),
            metrics_addr,
            health_addr,
            stopping,
            stop_server: Some(stop_tx),
            server,
            metrics_server,
            drain_timeout_ms: options.drain_timeout_ms,
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            snapshot_builds,
            log_closed,
        })
    }

    /// Graceful stop: refuse new connections and end open watches, let
    /// in-flight requests finish (they still need Raft, so it keeps running)
    /// for up to the drain timeout, hand leadership to another voter if
    /// this node leads, then stop Raft, which flushes and closes the stores.
    pub async fn shutdown(mut self) {
        let _ = self.stopping.send(true);
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let drain = std::time::Duration::from_millis(self.drain_timeout_ms);
        match tokio::time::timeout(drain, &mut self.server).await {
            Ok(_) => tracing::info!(node_id = self.id, "in-flight requests finished"),
            Err(_) => {
                tracing::warn!(
                    node_id = self.id,
                    drain_timeout_ms = self.drain_timeout_ms,
                    "in-flight requests still running at the drain timeout; cutting them"
                );
                self.server.abort();
            }
        }
        self.hand_over_leadership().await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.id, error = %e, "raft shutdown");
        }
        if !self.snapshot_builds.wait_idle(SNAPSHOT_BUILD_WAIT).await {
            tracing::warn!(
                node_id = self.id,
                "a snapshot build is still writing; its partial file is removed at the next start"
            );
        }
        if let Some(server) = self.metrics_server.take() {
            let _ = server.await;
        }
        self.release_stores().await;
    }

    /// Drops this node and waits until both its databases are closed, so
    /// that when shutdown returns the data directory can be reopened (a
    /// restart in the same process), copied or deleted. Tasks that ended
    /// with the server, the audit or Raft may drop their handles a moment
    /// after; a task that keeps one past [`STORE_CLOSE_WAIT`] is logged.
    async fn release_stores(self) {
        let id = self.id;
        let state_closed = self.state.closed_probe();
        let log_closed = Arc::clone(&self.log_closed);
        drop(self);
        let deadline = tokio::time::Instant::now() + STORE_CLOSE_WAIT;
        while !(log_closed() && state_closed()) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    node_id = id,
                    log_open = !log_closed(),
                    state_open = !state_closed(),
                    wait_ms = STORE_CLOSE_WAIT.as_millis() as u64,
                    "a task still holds a database after shutdown; its directory stays locked until it ends"
                );
                return;
            }
            tokio::time::sleep(STORE_CLOSE_POLL).await;
        }
        tracing::info!(node_id = id, "databases closed");
    }

    /// If this node leads, asks the most caught-up other voter to take over,
    /// so clients do not wait out an election timeout. Our listener is
    /// already closed, so the successor's vote request cannot reach us to
    /// confirm; we give the TransferLeader RPC two heartbeats to go out.
    async fn hand_over_leadership(&self) {
        use openraft::type_config::async_runtime::WatchReceiver;
        let target = {
            let m = self.raft.metrics().borrow_watched().clone();
            if m.current_leader != Some(self.id) {
                return;
            }
            let voters: Vec<NodeId> = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|id| *id != self.id)
                .collect();
            let matched = |id: &NodeId| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
            };
            voters.into_iter().max_by_key(matched)
        };
        let Some(target) = target else { return };
        if self.raft.trigger().transfer_leader(target).await.is_err() {
            return;
        }
        let handed = self
            .raft
            .wait(Some(std::time::Duration::from_millis(
                2 * self.heartbeat_interval_ms,
            )))
            .metrics(
                |m| m.current_leader != Some(self.id),
                "leadership handed over",
            )
            .await;
        match handed {
            Ok(_) => tracing::info!(node_id = self.id, to = target, "leadership handed over"),
            Err(_) => {
                tracing::info!(
                    node_id = self.id,
                    to = target,
                    "leadership hand-over requested"
                )
            }
        }
    }
}
