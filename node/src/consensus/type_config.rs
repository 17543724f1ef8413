use std::fmt;

use spentledger_protocol::pb;

use crate::state_machine::CommandOutcome;

/// A state-machine command as Raft log data: the protobuf command with its
/// leader stamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest(pub pb::Command);

impl fmt::Display for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pb::command::Kind;
        let stamp = self.0.stamp_ms;
        match &self.0.kind {
            Some(Kind::Submit(s)) => write!(f, "submit({} payments)@{stamp}", s.payments.len()),
            Some(Kind::Settle(_)) => write!(f, "settle@{stamp}"),
            Some(Kind::Revoke(_)) => write!(f, "revoke@{stamp}"),
            Some(Kind::RegisterKey(_)) => write!(f, "register-key@{stamp}"),
            Some(Kind::RetireKey(_)) => write!(f, "retire-key@{stamp}"),
            None => write!(f, "empty@{stamp}"),
        }
    }
}

openraft::declare_raft_types!(
    /// spentledger's Raft types: standard Raft leader ids (one leader per
    /// term, so a log id is (term, index)), u64 node ids starting at 1,
    /// nodes identified by their advertised gRPC address.
    pub TypeConfig:
        D = ClientRequest,
        R = CommandOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

pub type NodeId = u64;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
