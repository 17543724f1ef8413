//! # spentledger-client
//!
//! - [`gateway`]: the settlement-gateway SDK (leader following, retries with
//!   back-off that are safe because verdicts are idempotent by `tx_id`,
//!   batch splitting, typed verdicts).
//! - [`local_cluster`]: a local cluster of `spentledger-node` processes.
//! - [`demo`]: the end-to-end demo behind `spentledger demo`.

pub mod demo;
pub mod gateway;
pub mod local_cluster;
