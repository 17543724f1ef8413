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
/// Largest gRPC message between nodes (entries per AppendEntries are bounded
/// by [`append_entries_max`]).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;
/// An entry's encoding beyond its payments' bytes: a tag and a length per
/// payment (at most 100,000 per entry), the command's and the entry's headers.
const ENTRY_FRAMING_BYTES_MAX: usize = 1 << 20;

/// The most entries one AppendEntries may carry (openraft's
/// `max_payload_entries`) so that it always fits [`RAFT_MESSAGE_BYTES_MAX`]
/// when no entry's payments exceed `entry_payments_bytes_max`.
///
/// Why: openraft batches up to 300 entries by default. A follower a few big
/// entries behind was sent an AppendEntries over the limit, the send failed,
/// and the same request was retried forever: the follower never caught up
/// (seen in a benchmark, where one follower trails on shared cores).
pub fn append_entries_max(entry_payments_bytes_max: usize) -> u64 {
    let per_entry = entry_payments_bytes_max.saturating_add(ENTRY_FRAMING_BYTES_MAX);
    u64::try_from((RAFT_MESSAGE_BYTES_MAX / per_entry).max(1)).expect("a count of entries fits u64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_append_entries_fits_the_message_limit() {
        for entry_bytes in [
            1_024,
            1 << 20,
            8 << 20,
            16 << 20,
            RAFT_MESSAGE_BYTES_MAX / 2,
        ] {
            let n = append_entries_max(entry_bytes);
            assert!(n >= 1, "{entry_bytes}: at least one entry per message");
            let worst = n as usize * (entry_bytes + ENTRY_FRAMING_BYTES_MAX);
            assert!(
                worst <= RAFT_MESSAGE_BYTES_MAX,
                "{entry_bytes}: {n} entries take up to {worst} bytes"
            );
        }
        assert_eq!(append_entries_max(16 << 20), 3);
    }
}
