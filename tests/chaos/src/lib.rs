//! # spentledger-chaos
//!
//! What a fault test records and how it is judged, apart from how faults
//! are made, so any recorded history can be checked again later:
//! - [`history`]: the events of a run (JSON Lines): the seed, each gateway
//!   request and its answer, each fault, and every node's final state
//!   after healing.
//! - [`checker`]: the safety and liveness rules a history must satisfy; on
//!   a violation, the seed and the history lines involved.

pub mod checker;
pub mod history;
