//! Node-to-node Raft transport over tonic: the client side
//! ([`PeerNetworkFactory`]), the server side ([`RaftService`]), and how a
//! node dials its peers ([`PeerDialer`]).

#[cfg(feature = "fault-injection")]
pub mod fault_control;
pub mod fault_layer;
mod peer_client;
mod peer_dialer;
mod raft_service;

pub use peer_client::{PeerNetwork, PeerNetworkFactory};
pub use peer_dialer::PeerDialer;
pub use raft_service::RaftService;

/// Bytes of snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest snapshot a node accepts.
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 30;
/// Largest gRPC message between nodes (entries are bounded by the leader's batching).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;
