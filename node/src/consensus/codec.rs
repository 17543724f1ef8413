//! openraft types <-> protobuf messages (`spentledger.v1` raft.proto).

use std::collections::{BTreeMap, BTreeSet};

use openraft::entry::RaftEntry;
use openraft::vote::RaftLeaderId;
use openraft::vote::leader_id_std::CommittedLeaderId;
use openraft::{BasicNode, EntryPayload};
use prost::Message;
use spentledger_protocol::pb;

use super::type_config::{
    ClientRequest, Entry, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};

/// Stored or received consensus bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what}: invalid protobuf: {detail}")]
    Protobuf { what: &'static str, detail: String },
    #[error("{what}: missing field {field}")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("membership: {0}")]
    Membership(String),
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

fn decode<M: Message + Default>(
    what: &'static str,
    bytes: impl prost::bytes::Buf,
) -> Result<M, CodecError> {
    M::decode(bytes).map_err(|e| CodecError::Protobuf {
        what,
        detail: e.to_string(),
    })
}

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.committed_leader_id().term,
        index: id.index(),
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term), id.index)
}

/// A snapshot's name: the log id it ends at (openraft 0.10 keeps no id).
pub fn snapshot_name(meta: &SnapshotMeta) -> String {
    match &meta.last_log_id {
        Some(id) => format!("{}-{}", id.committed_leader_id().term, id.index()),
        None => "empty".to_owned(),
    }
}

pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    log_id_to_pb(id).encode_to_vec()
}

pub fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    Ok(log_id_from_pb(&decode::<pb::LogId>("log id", bytes)?))
}

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::NodeIdSet {
                node_ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, node)| pb::NodeInfo {
                node_id: *id,
                address: node.addr.clone(),
            })
            .collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .iter()
        .map(|set| set.node_ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, BasicNode> = m
        .nodes
        .iter()
        .map(|n| (n.node_id, BasicNode::new(n.address.clone())))
        .collect();
    Membership::new(configs, nodes).map_err(|e| CodecError::Membership(e.to_string()))
}

pub fn encode_membership(m: &StoredMembership) -> Vec<u8> {
    pb::SnapshotMeta {
        last_log_id: None,
        last_membership_log_id: m.log_id().as_ref().map(log_id_to_pb),
        last_membership: Some(membership_to_pb(m.membership())),
        snapshot_id: String::new(),
    }
    .encode_to_vec()
}

pub fn decode_membership(bytes: &[u8]) -> Result<StoredMembership, CodecError> {
    let meta = decode::<pb::SnapshotMeta>("stored membership", bytes)?;
    stored_membership_from_pb(&meta)
}

fn stored_membership_from_pb(meta: &pb::SnapshotMeta) -> Result<StoredMembership, CodecError> {
    let membership = match &meta.last_membership {
        Some(m) => membership_from_pb(m)?,
        None => Membership::default(),
    };
    Ok(StoredMembership::new(
        meta.last_membership_log_id.as_ref().map(log_id_from_pb),
        membership,
    ))
}

pub fn snapshot_meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_pb),
        last_membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_pb),
        last_membership: Some(membership_to_pb(meta.last_membership.membership())),
        snapshot_id: snapshot_name(meta),
    }
}

pub fn snapshot_meta_from_pb(meta: &pb::SnapshotMeta) -> Result<SnapshotMeta, CodecError> {
    Ok(SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_from_pb),
        last_membership: stored_membership_from_pb(meta)?,
    })
}

pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Vec<u8> {
    snapshot_meta_to_pb(meta).encode_to_vec()
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, CodecError> {
    let meta = decode::<pb::SnapshotMeta>("snapshot meta", bytes)?;
    Ok(SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_from_pb),
        last_membership: stored_membership_from_pb(&meta)?,
    })
}

pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        leader_id: Some(pb::LeaderId {
            term: vote.leader_id.term(),
            node_id: *vote.leader_id.node_id(),
        }),
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: &pb::Vote) -> Result<Vote, CodecError> {
    let leader = vote.leader_id.as_ref().ok_or(CodecError::Missing {
        what: "vote",
        field: "leader_id",
    })?;
    let leader_id = openraft::impls::leader_id_std::LeaderId::new(leader.term, leader.node_id);
    Ok(if vote.committed {
        Vote::new_committed(leader_id.term, *leader_id.node_id())
    } else {
        Vote::new(leader_id.term, *leader_id.node_id())
    })
}

pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    vote_to_pb(vote).encode_to_vec()
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    vote_from_pb(&decode::<pb::Vote>("vote", bytes)?)
}

pub fn entry_to_pb(entry: &Entry) -> pb::Entry {
    use pb::entry::Payload;
    let log_id = entry.log_id();
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(request) => Payload::Command(request.encoded().clone()),
        EntryPayload::Membership(m) => Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        term: log_id.committed_leader_id().term,
        index: log_id.index(),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry, CodecError> {
    use pb::entry::Payload;
    let log_id = LogId::new(CommittedLeaderId::new(entry.term), entry.index);
    let payload = match entry.payload.ok_or(CodecError::Missing {
        what: "entry",
        field: "payload",
    })? {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Command(bytes) => EntryPayload::Normal(ClientRequest::from_encoded(bytes)),
        Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(&m)?),
    };
    Ok(Entry::new(log_id, payload))
}

pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry_to_pb(entry).encode_to_vec()
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    entry_from_pb(decode::<pb::Entry>("log entry", bytes)?)
}

/// As [`decode_entry`], from a buffer the entry may keep: its command
/// bytes become a slice of `bytes` instead of a copy. The log store reads
/// each entry back for replication to every follower, so this saves a copy
/// of every payment per follower on the leader.
pub fn decode_owned_entry(bytes: prost::bytes::Bytes) -> Result<Entry, CodecError> {
    entry_from_pb(decode::<pb::Entry>("log entry", bytes)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use maplit_free::btreeset;

    use super::*;

    mod maplit_free {
        macro_rules! btreeset {
            ($($x:expr),*) => {{ let mut s = std::collections::BTreeSet::new(); $(s.insert($x);)* s }};
        }
        pub(crate) use btreeset;
    }

    fn lid(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term), index)
    }

    fn membership() -> Membership {
        let nodes: BTreeMap<u64, BasicNode> = [1, 2, 3, 4]
            .into_iter()
            .map(|id| (id, BasicNode::new(format!("10.0.0.{id}:7000"))))
            .collect();
        Membership::new(vec![btreeset![1, 2, 3], btreeset![2, 3, 4]], nodes)
            .expect("valid joint config")
    }

    #[test]
    fn entries_round_trip_through_protobuf() {
        let cmd = pb::Command {
            stamp_ms: 42,
            kind: Some(pb::command::Kind::Revoke(pb::RevokeCommand {
                cert_id: vec![7; 32],
                reason: 1,
            })),
        };
        for entry in [
            Entry::new(lid(3, 10), EntryPayload::Blank),
            Entry::new(lid(3, 11), EntryPayload::Normal(ClientRequest::new(cmd))),
            Entry::new(lid(4, 12), EntryPayload::Membership(membership())),
        ] {
            let back = decode_entry(&encode_entry(&entry)).expect("decodes");
            let owned = decode_owned_entry(encode_entry(&entry).into()).expect("decodes");
            assert_eq!(back, entry);
            assert_eq!(owned, entry);
        }
    }

    #[test]
    fn votes_log_ids_and_meta_round_trip() {
        for vote in [Vote::new(5, 2), Vote::new_committed(6, 3)] {
            assert_eq!(decode_vote(&encode_vote(&vote)).expect("decodes"), vote);
        }
        let id = lid(9, 1_000);
        assert_eq!(decode_log_id(&encode_log_id(&id)).expect("decodes"), id);
        let meta = SnapshotMeta {
            last_log_id: Some(id),
            last_membership: StoredMembership::new(Some(lid(2, 3)), membership()),
        };
        assert_eq!(snapshot_name(&meta), "9-1000");
        assert_eq!(
            decode_snapshot_meta(&encode_snapshot_meta(&meta)).expect("decodes"),
            meta
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(decode_entry(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_owned_entry(prost::bytes::Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
        assert!(matches!(decode_entry(&[]), Err(CodecError::Missing { .. })));
        assert!(matches!(decode_vote(&[]), Err(CodecError::Missing { .. })));
    }
}
