//! Starting a cluster safely: the node identity bound to a data directory,
//! initialising the cluster exactly once, and registering the genesis
//! issuer keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::BasicNode;
use openraft::type_config::async_runtime::WatchReceiver;
use spentledger_protocol::{IssuerKey, pb};

use crate::api::peer_status_response;
use crate::ledger_node::{LedgerNode, NodeError};

/// File in the data directory naming the node it belongs to.
pub const IDENTITY_FILE: &str = "NODE_ID";

/// How long the bootstrapping node waits for the first leader, and then for
/// the genesis keys to be registered.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{dir} belongs to node {found}, not node {wanted}: a data directory is never reused under another node id"
    )]
    Mismatch {
        dir: String,
        found: String,
        wanted: u64,
    },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Binds `data_dir` to `node_id` on first use (an fsynced file) and refuses
/// a directory that belongs to another node, so a volume moved to the wrong
/// pod, or a node id typo, cannot corrupt the cluster.
pub fn claim_identity(data_dir: &Path, node_id: u64) -> Result<(), IdentityError> {
    let io = |e| IdentityError::Io(data_dir.display().to_string(), e);
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == node_id.to_string() => Ok(()),
        Ok(text) => Err(IdentityError::Mismatch {
            dir: data_dir.display().to_string(),
            found: text.trim().to_owned(),
            wanted: node_id,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{node_id}\n")).map_err(io)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// Whether any other initial member already belongs to an initialised
/// cluster (it knows members). Unreachable peers count as not initialised:
/// on a first start they are starting too.
async fn a_peer_is_initialised(node: &LedgerNode, members: &BTreeMap<u64, String>) -> Option<u64> {
    for (id, addr) in members.iter().filter(|(id, _)| **id != node.id) {
        if let Ok(status) = peer_status_response(&node.dialer, addr).await
            && !status.members.is_empty()
        {
            return Some(*id);
        }
    }
    None
}

/// Initialises the cluster once: only when this node's log is empty and no
/// other initial member is already part of a cluster (a node that lost its
/// volume must not found a second cluster). Then registers the genesis
/// issuer keys, through whichever node leads.
pub async fn bootstrap_once(
    node: &LedgerNode,
    initial_members: &BTreeMap<u64, String>,
    genesis_issuer_keys: &[IssuerKey],
) -> Result<(), NodeError> {
    let raft_err = |e: &dyn std::fmt::Display| NodeError::Raft(e.to_string());
    if node.raft.is_initialized().await.map_err(|e| raft_err(&e))? {
        tracing::info!(node_id = node.id, "already initialised; bootstrap skipped");
        return Ok(());
    }
    if let Some(peer) = a_peer_is_initialised(node, initial_members).await {
        tracing::warn!(
            node_id = node.id,
            peer,
            "a peer already belongs to an initialised cluster; not bootstrapping (this node joins it or must be re-added)"
        );
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = initial_members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    node.raft
        .initialize(members)
        .await
        .map_err(|e| raft_err(&e))?;
    tracing::info!(node_id = node.id, members = ?initial_members, "cluster initialised");
    if genesis_issuer_keys.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_WAIT;
    for key in genesis_issuer_keys {
        loop {
            match register_through_leader(node, key).await {
                Ok(()) => {
                    tracing::info!(key_id = %key.key_id, "genesis issuer key registered");
                    break;
                }
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(NodeError::Raft(format!(
                        "genesis issuer key {} not registered within {BOOTSTRAP_WAIT:?}: {e}",
                        key.key_id
                    )));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "genesis key: retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    Ok(())
}

/// One attempt to register `key` through the current leader's Issuer API
/// (this node's own when it leads). A key already registered counts.
async fn register_through_leader(node: &LedgerNode, key: &IssuerKey) -> Result<(), String> {
    let (leader, address) = {
        let m = node.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader.ok_or("no leader yet")?;
        let address = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .ok_or("leader has no address")?;
        (leader, address)
    };
    let address = if leader == node.id {
        node.addr.to_string()
    } else {
        address
    };
    let channel = node
        .dialer
        .endpoint(&address)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    match pb::issuer_client::IssuerClient::new(channel)
        .register_issuer_key(pb::RegisterIssuerKeyRequest {
            key: Some(key.into()),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            tracing::warn!(key_id = %key.key_id, "a different key with this id is registered; genesis key skipped");
            Ok(())
        }
        Err(s) => Err(s.to_string()),
    }
}

/// How long a joining node keeps trying to be added.
const JOIN_WAIT: Duration = Duration::from_secs(600);

/// Joins an existing cluster when this node is not a member: finds the
/// leader through the `seeds`, asks it to add this node as a learner (the
/// call returns once the learner caught up), then to make it a voter
/// (keeping every current voter, so concurrent joins cannot drop one).
/// A node that is already a member, or already has state, does nothing.
pub async fn join_once(
    node: &LedgerNode,
    seeds: &BTreeMap<u64, String>,
    advertise: &str,
) -> Result<(), NodeError> {
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    loop {
        let is_voter = node
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == node.id);
        if is_voter {
            tracing::info!(node_id = node.id, "a voter of the cluster; nothing to join");
            return Ok(());
        }
        match join_attempt(node, seeds, advertise).await {
            Ok(JoinStep::AlreadyMember) => {
                // Listed in the membership: the leader will replicate to us.
                tracing::info!(
                    node_id = node.id,
                    "listed as a member; waiting for the leader"
                );
            }
            Ok(JoinStep::Joined) => {
                tracing::info!(node_id = node.id, "joined the cluster as a voter");
                return Ok(());
            }
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(NodeError::Raft(format!(
                    "could not join within {JOIN_WAIT:?}: {e}"
                )));
            }
            Err(e) => tracing::debug!(node_id = node.id, error = %e, "join: retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

enum JoinStep {
    AlreadyMember,
    Joined,
}

async fn join_attempt(
    node: &LedgerNode,
    seeds: &BTreeMap<u64, String>,
    advertise: &str,
) -> Result<JoinStep, String> {
    let self_id = node.id;
    let mut last = String::from("no seed answered");
    for (_, seed) in seeds.iter().filter(|(id, _)| **id != self_id) {
        let status = match peer_status_response(&node.dialer, seed).await {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let me = status.members.iter().find(|m| m.node_id == self_id);
        if me.is_some_and(|m| m.voter) {
            return Ok(JoinStep::AlreadyMember);
        }
        let leader_id = status.self_.as_ref().map_or(0, |s| s.leader_id);
        let Some(leader) = status.members.iter().find(|m| m.node_id == leader_id) else {
            last = format!("{seed} knows no leader");
            continue;
        };
        let channel = node
            .dialer
            .endpoint(&leader.address)?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut admin = pb::admin_client::AdminClient::new(channel);
        if me.is_none() {
            admin
                .add_learner(pb::AddLearnerRequest {
                    node_id: self_id,
                    address: advertise.to_owned(),
                    wait_caught_up: true,
                })
                .await
                .map_err(|s| format!("add learner: {s}"))?;
        }
        admin
            .change_membership(pb::ChangeMembershipRequest {
                voters: vec![],
                retain_removed_as_learners: false,
                add_voters: vec![self_id],
            })
            .await
            .map_err(|s| format!("promote: {s}"))?;
        return Ok(JoinStep::Joined);
    }
    Err(last)
}
