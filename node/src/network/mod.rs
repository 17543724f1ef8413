//! Node-to-node Raft transport over tonic: the client side
//! ([`PeerNetworkFactory`]), the server side ([`RaftService`]), and how a
//! node dials its peers ([`PeerDialer`]).

pub mod cluster_id;
#[cfg(feature = "fault-injection")]
pub mod fault_control;
pub mod fault_layer;
mod peer_client;
mod peer_dialer;
mod raft_service;

pub use cluster_id::{CLUSTER_HEADER, ClusterId};
pub use peer_client::{PeerNetwork, PeerNetworkFactory};
pub use peer_dialer::PeerDialer;
pub use raft_service::RaftService;

/// Bytes of snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest snapshot a node accepts.
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 30;
/// Largest gRPC message between nodes. An AppendEntries stays under it
/// because the log store's replication reads return at most
/// [`REPLICATION_READ_BYTES_MAX`] of entries, or one entry alone, and an
/// entry's payments are at most half of it (`config.rs`).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log_store::REPLICATION_READ_BYTES_MAX;

    /// A tag and a length per payment (at most 100,000 per entry), the
    /// command's and the entry's headers.
    const ENTRY_FRAMING_BYTES_MAX: usize = 1 << 20;
    /// A log id and a length per entry, for openraft's 300 entries at most.
    const APPEND_FRAMING_BYTES_MAX: usize = 300 * 64;

    #[test]
    fn the_largest_append_entries_fits_the_message_limit() {
        let largest_entry = RAFT_MESSAGE_BYTES_MAX / 2 + ENTRY_FRAMING_BYTES_MAX;
        let worst = REPLICATION_READ_BYTES_MAX.max(largest_entry) + APPEND_FRAMING_BYTES_MAX;
        assert!(
            worst <= RAFT_MESSAGE_BYTES_MAX,
            "an AppendEntries may take {worst} bytes, over {RAFT_MESSAGE_BYTES_MAX}"
        );
    }
}
