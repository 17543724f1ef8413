//! # spentledger-chaos
//!
//! What a fault test records and how it is judged, apart from how faults
//! are made, so any recorded history can be checked again later:
//! - [`history`]: the events of a run (JSON Lines): the seed, each gateway
//!   request and its answer, each fault, and every node's final state
//!   after healing; [`history::Recorder`] writes them as a run goes.
//! - [`checker`]: the safety and liveness rules a history must satisfy; on
//!   a violation, the seed and the history lines involved.
//!
//! And the machinery of the multi-process fault tests:
//! - [`sandbox`]: a self-cleaning `unshare` sandbox with a bridge and one
//!   network namespace per node.
//! - [`packet_filter`]: partitions, one-way blocks and loss made with
//!   nftables in those namespaces.

pub mod checker;
pub mod history;
pub mod packet_filter;
pub mod sandbox;
