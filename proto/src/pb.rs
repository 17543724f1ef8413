//! Generated protobuf messages and gRPC stubs for package `spentledger.v1`.
//!
//! Protobuf is the transport encoding only: ids and signatures are computed
//! over the canonical bytes of [`crate::canonical`], never over these messages.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("spentledger.v1");

/// The encoded `FileDescriptorSet` of every spentledger `.proto` file, for
/// serving gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/spentledger_descriptor.bin"));
