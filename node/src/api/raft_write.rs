//! Writing a command through Raft from a gRPC handler, shared by every service.

use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use spentledger_protocol::pb;
use tonic::Status;

use super::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};
use crate::consensus::{ClientRequest, TypeConfig};
use crate::ledger_node::LedgerRaft;
use crate::state_machine::CommandOutcome;

/// UNAVAILABLE naming the leader (id and address in metadata) when known, so
/// clients can redirect.
pub fn not_leader(leader: Option<(u64, Option<String>)>) -> Status {
    let mut status = Status::unavailable("this node is not the leader; retry on the leader");
    if let Some((id, addr)) = leader {
        if let Ok(v) = id.to_string().parse() {
            status.metadata_mut().insert(LEADER_ID_HEADER, v);
        }
        if let Some(Ok(v)) = addr.map(|a| a.parse()) {
            status.metadata_mut().insert(LEADER_ADDR_HEADER, v);
        }
    }
    status
}

/// Proposes `command` and waits for its outcome. Only the leader accepts;
/// elsewhere the caller gets [`not_leader`].
pub async fn write(
    raft: &LedgerRaft,
    command: pb::Command,
) -> Result<(u64, CommandOutcome), Status> {
    match raft.client_write(ClientRequest::new(command)).await {
        Ok(response) => Ok((response.log_id.index, response.data)),
        Err(RaftError::APIError(e)) => Err(write_error_status(e)),
        Err(e) => Err(Status::unavailable(format!("raft: {e}"))),
    }
}

/// The status for a write Raft refused: [`not_leader`] when it names (or
/// lacks) a leader, UNAVAILABLE otherwise.
pub fn write_error_status(e: ClientWriteError<TypeConfig>) -> Status {
    match e {
        ClientWriteError::ForwardToLeader(f) => {
            not_leader(f.leader_id.map(|id| (id, f.leader_node.map(|n| n.addr))))
        }
        other => Status::unavailable(format!("raft: {other}")),
    }
}

/// Linearizable reads (the default) confirm leadership with a quorum and wait
/// until this node has applied up to the read index; `Stale` skips that.
pub async fn read_barrier(raft: &LedgerRaft, consistency: i32) -> Result<(), Status> {
    if consistency == pb::ReadConsistency::Stale as i32 {
        return Ok(());
    }
    raft.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => {
                not_leader(f.leader_id.map(|id| (id, f.leader_node.map(|n| n.addr))))
            }
            other => Status::unavailable(format!("raft: {other}")),
        })
}

/// The wall clock in unix ms: the leader's stamp for new entries.
pub fn now_ms() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    // Test builds only: the chaos suite skews a node's clock in the app.
    #[cfg(feature = "fault-injection")]
    let wall = wall.saturating_add_signed(crate::network::fault_control::clock_offset_ms());
    wall
}
