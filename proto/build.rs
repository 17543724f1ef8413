//! Compiles the wire schema with protox (pure Rust, no protoc install) and
//! writes the file descriptor set next to the generated code, so the node can
//! serve gRPC reflection from `spentledger_protocol::pb::FILE_DESCRIPTOR_SET`.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "proto/spentledger/v1/types.proto",
    "proto/spentledger/v1/settlement.proto",
    "proto/spentledger/v1/issuer.proto",
    "proto/spentledger/v1/admin.proto",
    "proto/spentledger/v1/raft.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(PROTO_FILES, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out_dir.join("spentledger_descriptor.bin"), descriptor_bytes)?;
    tonic_prost_build::configure()
        // Log entries carry their command as shared bytes: decoding an
        // AppendEntries request slices them out without copying payments.
        .bytes(".spentledger.v1.Entry.command")
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
