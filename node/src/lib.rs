//! # spentledger-node
//!
//! The ledger node. This crate grows module by module (issue 3); so far:
//!
//! - [`state_machine`]: the replicated state machine's rules (accept,
//!   duplicate, double spend with evidence and held tokens, clone detection,
//!   revocation, settlement with compaction, issuer keys, running digest), as
//!   deterministic logic over a storage-neutral read interface.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod consensus;
pub mod ledger_node;
pub mod network;
pub mod ops;
pub mod restore;
pub mod security;
pub mod state_machine;
pub mod storage;
#[cfg(test)]
mod test_support;
