//! # spentledger-client
//!
//! - [`gateway`]: the settlement-gateway SDK (leader following, retries with
//!   back-off that are safe because verdicts are idempotent by `tx_id`,
//!   batch splitting, typed verdicts).
//! - [`outbox`]: a gateway's durable outbox (payments on disk until their
//!   verdicts are, so a crash loses nothing and counts nothing twice).
//! - [`revocations`]: following the revocation feed, resuming after the
//!   last sequence seen.
//! - [`local_cluster`]: a local cluster of `spentledger-node` processes;
//!   [`ports`]: loopback ports for them, reserved across processes.
//! - [`demo`]: the end-to-end demo behind `spentledger demo`.
//! - [`bench`]: the load generator behind `spentledger bench`.
//! - [`tls`]: client TLS identities and the development PKI;
//!   [`connect`]: dialling a member with or without it.
//! - [`cli`]: the `spentledger` commands; [`files`]: their key, device,
//!   terminal and payment files; [`qr`]: payments as QR codes.

pub mod bench;
pub mod bench_plot;
pub mod bench_resources;
pub mod bench_sweep;
pub mod cli;
pub mod connect;
pub mod demo;
pub mod encoded_batch;
pub mod files;
pub mod gateway;
pub mod local_cluster;
pub mod outbox;
pub mod ports;
pub mod qr;
pub mod revocations;
pub mod tls;
