use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ServerState};
use spentledger_protocol::pb;
use spentledger_protocol::pb::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::raft_write::not_leader;
use crate::consensus::StateHandle;
use crate::ledger_node::LedgerRaft;
use crate::network::PeerDialer;
use crate::ops::Quarantine;

/// Deadline for asking a peer for its own status.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The Admin API for operators: status and membership.
#[derive(Clone)]
pub struct AdminService {
    raft: LedgerRaft,
    state: StateHandle,
    quarantine: Quarantine,
    dialer: PeerDialer,
    cluster_id: crate::network::ClusterId,
}

impl AdminService {
    pub fn new(
        raft: LedgerRaft,
        state: StateHandle,
        quarantine: Quarantine,
        dialer: PeerDialer,
        cluster_id: crate::network::ClusterId,
    ) -> Self {
        AdminService {
            raft,
            state,
            quarantine,
            dialer,
            cluster_id,
        }
    }

    fn self_status(&self) -> Result<pb::NodeStatus, Status> {
        let m = self.raft.metrics().borrow_watched().clone();
        let applied = self
            .state
            .current()
            .applied_state()
            .map_err(|e| Status::internal(e.to_string()))?;
        let role = match m.state {
            ServerState::Leader => pb::NodeRole::Leader,
            ServerState::Follower => pb::NodeRole::Follower,
            ServerState::Candidate => pb::NodeRole::Candidate,
            ServerState::Learner => pb::NodeRole::Learner,
            ServerState::Shutdown => pb::NodeRole::Shutdown,
        };
        let address = m
            .membership_config
            .membership()
            .get_node(&m.id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Ok(pb::NodeStatus {
            node_id: m.id,
            address,
            role: role as i32,
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.local_committed.map_or(0, |c| c.index),
            applied_index: applied.applied.map_or(0, |a| a.index),
            state_digest: applied.digest.0.to_vec(),
            digest_mismatch: self.quarantine.is_set(),
            reachable: true,
            error: String::new(),
            cluster_id: self.cluster_id.to_string(),
        })
    }

    fn members(&self) -> Vec<pb::Member> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| pb::Member {
                node_id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    fn admin_response(&self, log_index: u64, message: impl Into<String>) -> pb::AdminResponse {
        pb::AdminResponse {
            log_index,
            members: self.members(),
            message: message.into(),
        }
    }
}

/// Membership-change errors as statuses: redirect off the leader, refusals
/// (e.g. an unsafe change, a node that is not a learner) as FAILED_PRECONDITION.
fn change_error(
    e: RaftError<crate::consensus::TypeConfig, ClientWriteError<crate::consensus::TypeConfig>>,
) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(f.leader_id.map(|id| (id, f.leader_node.map(|n| n.addr))))
        }
        RaftError::APIError(other) => Status::failed_precondition(other.to_string()),
        RaftError::Fatal(f) => Status::unavailable(format!("raft: {f}")),
    }
}

/// Asks the node at `address` for its status (its own view and the members it knows).
pub async fn peer_status_response(
    dialer: &PeerDialer,
    address: &str,
) -> Result<pb::StatusResponse, String> {
    let channel = dialer
        .endpoint(address)?
        .connect_timeout(PEER_STATUS_TIMEOUT)
        .timeout(PEER_STATUS_TIMEOUT)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    pb::admin_client::AdminClient::new(channel)
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.to_string())
}

/// Asks the node at `address` for its own status (term, applied index,
/// digest). A node there of another cluster is an error, not a peer: an
/// address reused elsewhere must not be compared with this cluster's state.
pub async fn peer_status(
    dialer: &PeerDialer,
    address: &str,
    cluster: &crate::network::ClusterId,
) -> Result<pb::NodeStatus, String> {
    let status = peer_status_response(dialer, address)
        .await?
        .self_
        .ok_or_else(|| "reply without status".to_owned())?;
    if status.cluster_id != cluster.as_str() {
        return Err(format!(
            "the node at {address} belongs to cluster {:?}, not {:?}",
            status.cluster_id,
            cluster.as_str()
        ));
    }
    Ok(status)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let own = self.self_status()?;
        let members = self.members();
        let mut peers = Vec::new();
        if request.into_inner().include_peers {
            let asks = members
                .iter()
                .filter(|m| m.node_id != own.node_id)
                .map(|m| async move {
                    match peer_status(&self.dialer, &m.address, &self.cluster_id).await {
                        Ok(status) => status,
                        Err(error) => pb::NodeStatus {
                            node_id: m.node_id,
                            address: m.address.clone(),
                            reachable: false,
                            error,
                            ..Default::default()
                        },
                    }
                });
            peers = futures::future::join_all(asks).await;
            // Same applied index, different digest: replicas diverged.
            let mismatch = peers.iter().any(|p| {
                p.reachable
                    && p.applied_index == own.applied_index
                    && p.state_digest != own.state_digest
            });
            if mismatch {
                tracing::error!(
                    node_id = own.node_id,
                    "state digest differs from a peer at the same applied index"
                );
            }
            for p in peers.iter_mut() {
                p.digest_mismatch = p.reachable
                    && p.applied_index == own.applied_index
                    && p.state_digest != own.state_digest;
            }
        }
        Ok(Response::new(pb::StatusResponse {
            self_: Some(own),
            members,
            peers,
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let req = request.into_inner();
        if req.node_id == 0 || req.address.is_empty() {
            return Err(Status::invalid_argument(
                "node_id must be at least 1 and address non-empty",
            ));
        }
        let resp = self
            .raft
            .add_learner(req.node_id, BasicNode::new(req.address), req.wait_caught_up)
            .await
            .map_err(change_error)?;
        Ok(Response::new(self.admin_response(
            resp.log_id.index,
            format!("node {} added as learner", req.node_id),
        )))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let req = request.into_inner();
        let change = match (req.voters.is_empty(), req.add_voters.is_empty()) {
            (false, true) => {
                let voters: BTreeSet<u64> = req.voters.into_iter().collect();
                if voters.contains(&0) {
                    return Err(Status::invalid_argument("voters: node ids are >= 1"));
                }
                ChangeMembers::ReplaceAllVoters(voters)
            }
            (true, false) => {
                let add: BTreeSet<u64> = req.add_voters.into_iter().collect();
                if add.contains(&0) {
                    return Err(Status::invalid_argument("add_voters: node ids are >= 1"));
                }
                ChangeMembers::AddVoterIds(add)
            }
            _ => {
                return Err(Status::invalid_argument(
                    "give exactly one of voters (the whole new set) and add_voters",
                ));
            }
        };
        let resp = self
            .raft
            .change_membership(change, req.retain_removed_as_learners)
            .await
            .map_err(change_error)?;
        Ok(Response::new(
            self.admin_response(resp.log_id.index, "membership changed"),
        ))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let id = request.into_inner().node_id;
        let is_voter = self.members().iter().any(|m| m.node_id == id && m.voter);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let resp = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(change_error)?;
        Ok(Response::new(self.admin_response(
            resp.log_id.index,
            format!("node {id} removed"),
        )))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let own = self.self_status()?;
        if own.role != pb::NodeRole::Leader as i32 {
            return Err(not_leader(
                (own.leader_id != 0).then_some((own.leader_id, None)),
            ));
        }
        let mut to = request.into_inner().to_node_id;
        if to == 0 {
            to = self
                .members()
                .iter()
                .find(|m| m.voter && m.node_id != own.node_id)
                .map(|m| m.node_id)
                .ok_or_else(|| Status::failed_precondition("no other voter to transfer to"))?;
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(self.admin_response(
            0,
            format!("leadership transfer to node {to} started"),
        )))
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(self.admin_response(0, "snapshot started")))
    }
}
