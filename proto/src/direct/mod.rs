//! Decoding a submit command straight from its log bytes to domain payments.
//!
//! A follower receives each entry as bytes. The general way to apply it
//! decodes the bytes into protobuf structs (`pb::Command`, with one heap
//! buffer per string, key, signature and Merkle hash), converts every
//! payment into domain types, and drops the structs: two decodes and most of
//! a payment's bytes copied twice. This module reads the same bytes once,
//! into domain types.
//!
//! **Contract.** For any bytes, if [`submit_command`] and [`payment`] accept
//! them, the general way accepts them too and gives exactly the same stamp
//! and payments, every payment decoding without error. So a replica may use
//! either way and reach the same state. The reverse does not hold: the
//! direct decoder refuses ([`NotDirect`]) anything it does not need to
//! reproduce — a field that appears twice (protobuf merges or overwrites),
//! an unknown field, a wire type other than varint and length-delimited, a
//! `uint32` above 2^32 - 1, a payment that fails a domain check — and the
//! caller decodes that command the general way, which gives the precise
//! error. Honest gateways and leaders never produce any of these, so the
//! direct way takes every entry in normal operation.
//!
//! The leader uses the same decoder on the payments of a gateway's request,
//! and writes their bytes into the entry as they came
//! ([`submit_batch_request`], [`encode_submit_command`]).
//!
//! Tests: `proto/tests/protocol/direct.rs` (property tests against prost
//! and the domain conversions, on valid, mutated and arbitrary bytes).

mod batch_request;
mod field_reader;
mod payment_decoder;

pub use batch_request::{BatchRequest, encode_submit_command, submit_batch_request};
pub use field_reader::NotDirect;
pub use payment_decoder::{SubmitCommand, payment, submit_command};
