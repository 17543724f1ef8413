//! Consensus glue: the openraft type configuration and the conversions
//! between openraft's in-memory types and our protobuf messages, which are
//! the only encoding of log entries, votes and membership on disk and on the
//! wire (never serde or bincode of openraft internals).

pub mod apply_journal;
pub mod apply_lag;
mod codec;
mod raft_state_machine;
pub mod rpc_codec;
mod type_config;

pub use codec::{
    CodecError, decode_entry, decode_log_id, decode_membership, decode_owned_entry,
    decode_snapshot_meta, decode_vote, encode_entry, encode_log_id, encode_membership,
    encode_snapshot_meta, encode_vote, entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb,
    membership_from_pb, membership_to_pb, snapshot_meta_from_pb, snapshot_meta_to_pb,
    snapshot_name, vote_from_pb, vote_to_pb,
};
pub use raft_state_machine::{
    LedgerSnapshotBuilder, LedgerStateMachine, SnapshotBuilds, StateHandle, current_state_dir,
};
pub use type_config::{
    ClientRequest, Entry, LogId, Membership, NodeId, SnapshotMeta, StoredMembership, TypeConfig,
    Vote,
};
