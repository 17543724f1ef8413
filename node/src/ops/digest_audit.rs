//! Divergence detection: replicas that applied the same log must hold the
//! same running state digest (DESIGN.md, state machine rule 5). A node
//! periodically compares its digest with every peer that reports the same
//! applied index; when peers at that index disagree with it and none
//! agrees, this node is the odd one out and quarantines itself: it reports
//! NOT_SERVING, refuses the client APIs, stops its Raft (so it can neither
//! lead nor vote with a state it cannot trust; the others carry on as after
//! losing a node), and shows the mismatch in Admin.Status and metrics. Quarantine lasts until restart;
//! the operator replaces the node's data (docs/NODE.md).
//!
//! Comparing only at equal applied indexes makes false alarms impossible:
//! the digest after index N is a pure function of the log up to N.

use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;
use tokio::sync::watch;

use super::NodeMetrics;
use crate::api::peer_status;
use crate::consensus::StateHandle;
use crate::consensus::apply_journal::ApplyJournal;
use crate::ledger_node::LedgerRaft;
use crate::network::PeerDialer;

/// Shared quarantine flag: `true` once a divergence was found here.
#[derive(Clone)]
pub struct Quarantine {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine {
            tx: std::sync::Arc::new(watch::channel(false).0),
        }
    }
}

impl Quarantine {
    pub fn is_set(&self) -> bool {
        *self.tx.borrow()
    }

    fn set(&self) {
        self.tx.send_replace(true);
    }

    /// Follows changes (for readiness reporting).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// The status a quarantined node answers client calls with.
    pub fn refusal() -> tonic::Status {
        let mut status = tonic::Status::unavailable(
            "this node's state digest diverged from its peers; it stopped serving (use another node)",
        );
        status.metadata_mut().insert(
            crate::api::REASON_HEADER,
            tonic::metadata::MetadataValue::from_static("state-digest-mismatch"),
        );
        status
    }
}

/// What one audit round concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    /// No reachable peer was at our applied index.
    NothingToCompare,
    /// At least one peer at our index has our digest; any disagreeing peer is
    /// the one that must act.
    Agreed { disagreeing_peers: usize },
    /// Every peer at our index disagrees with us.
    Diverged { disagreeing_peers: usize },
}

/// Journal records logged with a quarantine.
const DIVERGENCE_JOURNAL_RECORDS: usize = 32;

/// What the audit reads of its own node: the live state, and the journal of
/// the steps that led to it (logged when the node quarantines itself).
pub struct AuditedState {
    pub state: StateHandle,
    pub journal: ApplyJournal,
    /// Peers that answer for another cluster are not compared.
    pub cluster_id: crate::network::ClusterId,
}

/// Runs audit rounds every `interval_ms` until the node stops.
pub async fn run_digest_audit(
    raft: LedgerRaft,
    AuditedState {
        state,
        journal,
        cluster_id,
    }: AuditedState,
    quarantine: Quarantine,
    metrics: NodeMetrics,
    interval_ms: u64,
    dialer: PeerDialer,
    mut stopping: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => return,
        }
        if quarantine.is_set() {
            continue;
        }
        let result = audit_once(&raft, &state, &dialer, &cluster_id).await;
        match result {
            AuditResult::Diverged { disagreeing_peers } => {
                // The journal says which entry, and how, for the report
                // that must follow (docs/NODE.md, "Divergence").
                tracing::error!(
                    node_id = raft.metrics().borrow_watched().id,
                    disagreeing_peers,
                    recent_applies = %journal.render(DIVERGENCE_JOURNAL_RECORDS),
                    "state digest differs from every peer at the same applied index; quarantined: not serving"
                );
                quarantine.set();
                metrics.set_gauge("spentledger_state_digest_mismatch", 1.0);
                if let Err(e) = raft.shutdown().await {
                    tracing::warn!(error = %e, "raft shutdown after divergence");
                }
            }
            AuditResult::Agreed { disagreeing_peers } if disagreeing_peers > 0 => {
                tracing::error!(
                    disagreeing_peers,
                    "a peer's state digest differs from ours and a majority's at the same applied index"
                );
                metrics.set_gauge("spentledger_state_digest_mismatch", 0.0);
            }
            _ => metrics.set_gauge("spentledger_state_digest_mismatch", 0.0),
        }
    }
}

/// One comparison with every other member.
pub async fn audit_once(
    raft: &LedgerRaft,
    state: &StateHandle,
    dialer: &PeerDialer,
    cluster: &crate::network::ClusterId,
) -> AuditResult {
    let (me, peers) = {
        let m = raft.metrics().borrow_watched().clone();
        let peers: Vec<String> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != m.id)
            .map(|(_, n)| n.addr.clone())
            .collect();
        (m.id, peers)
    };
    let store = state.current();
    let Ok(Ok(own)) = tokio::task::spawn_blocking(move || store.applied_state()).await else {
        return AuditResult::NothingToCompare;
    };
    let own_index = own.applied.map_or(0, |a| a.index);
    let replies =
        futures::future::join_all(peers.iter().map(|a| peer_status(dialer, a, cluster))).await;
    let mut agreeing = 0;
    let mut disagreeing = 0;
    for reply in replies.into_iter().flatten() {
        if reply.node_id == me || reply.applied_index != own_index {
            continue;
        }
        if reply.state_digest == own.digest.0 {
            agreeing += 1;
        } else {
            disagreeing += 1;
        }
    }
    match (agreeing, disagreeing) {
        (0, 0) => AuditResult::NothingToCompare,
        (0, d) => AuditResult::Diverged {
            disagreeing_peers: d,
        },
        (_, d) => AuditResult::Agreed {
            disagreeing_peers: d,
        },
    }
}
