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

/// A database's size as RocksDB estimates it, summed over column families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskBytes {
    /// Bytes in SST files on disk.
    pub sst: u64,
    /// Bytes in memtables not yet flushed (they are in the WAL).
    pub memtable: u64,
}

pub(crate) fn disk_bytes(db: &rocksdb::DB, column_families: &[&str]) -> DiskBytes {
    let mut total = DiskBytes::default();
    for name in column_families {
        let Some(cf) = db.cf_handle(name) else {
            continue;
        };
        let read = |property: &str| {
            db.property_int_value_cf(cf, property)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        total.sst += read("rocksdb.total-sst-files-size");
        total.memtable += read("rocksdb.cur-size-all-mem-tables");
    }
    total
}
