//! RocksDB storage: the Raft log store (its own database, group-committed
//! fsyncs) and the state machine's database (column families per record
//! kind, one atomic write batch per apply, snapshot files, atomic install).

mod keys;
pub mod log_store;
pub mod snapshot_file;
pub mod state_store;

pub use log_store::LogStore;
pub use snapshot_file::SnapshotFile;
pub use state_store::StateStore;

/// A RocksDB error as the `io::Error` openraft's storage traits use.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
