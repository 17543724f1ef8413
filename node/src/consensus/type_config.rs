use std::fmt;
use std::sync::Arc;

use prost::Message;
use prost::bytes::Bytes;
use spentledger_protocol::pb;

use crate::state_machine::{CommandOutcome, Prechecked};

/// A state-machine command as Raft log data: the protobuf `Command` as the
/// leader encoded it, once. Log stores and peers pass these bytes through
/// untouched; each replica decodes them when it applies the entry. The node
/// that proposed the command may also keep its decoded form, so it does not
/// decode what it just encoded, and the stateless verdicts it computed for a
/// submit command ([`Prechecked`]), so it neither decodes nor validates
/// those payments again. Neither is ever written or sent.
#[derive(Clone)]
pub struct ClientRequest {
    encoded: Bytes,
    decoded: Option<Arc<pb::Command>>,
    precheck: Option<Arc<Prechecked>>,
}

impl ClientRequest {
    /// Encodes `command` for the log.
    pub fn new(command: pb::Command) -> Self {
        ClientRequest {
            encoded: Bytes::from(command.encode_to_vec()),
            decoded: Some(Arc::new(command)),
            precheck: None,
        }
    }

    /// A submit command given as its bytes (written from the payments'
    /// own bytes, `spentledger_protocol::direct::encode_submit_command`),
    /// with the verdicts its proposer computed; the caller keeps
    /// [`Prechecked`]'s contract.
    pub fn encoded_prechecked(encoded: Bytes, precheck: Prechecked) -> Self {
        ClientRequest {
            encoded,
            decoded: None,
            precheck: Some(Arc::new(precheck)),
        }
    }

    /// The proposer's verdicts for this command, on the node that proposed it.
    pub fn precheck(&self) -> Option<&Prechecked> {
        self.precheck.as_deref()
    }

    /// A command read from a log or received from a peer, not yet decoded.
    pub fn from_encoded(encoded: Bytes) -> Self {
        ClientRequest {
            encoded,
            decoded: None,
            precheck: None,
        }
    }

    /// The bytes every replica stores and applies.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The command, on the node that proposed it (and encoded it); `None`
    /// for a command read from a log or received from a peer, which its
    /// replica applies from [`ClientRequest::encoded`].
    pub fn decoded(&self) -> Option<&pb::Command> {
        self.decoded.as_deref()
    }
}

/// Equal when the bytes are: the bytes are what the log holds.
impl PartialEq for ClientRequest {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientRequest({self})")
    }
}

impl fmt::Display for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pb::command::Kind;
        let Some(command) = &self.decoded else {
            return write!(f, "command({} bytes)", self.encoded.len());
        };
        let stamp = command.stamp_ms;
        match &command.kind {
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
