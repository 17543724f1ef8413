//! RocksDB storage: the Raft log store (its own database, group-committed
//! fsyncs) and the state machine's database (column families per record
//! kind, one atomic write batch per apply, snapshot files, atomic install).

mod accepted_record;
mod background_work;
mod close_signal;
mod keys;
pub mod log_store;
pub mod memory_budget;
mod recent_entries;
pub mod snapshot_file;
pub mod state_store;
pub mod usage_report;

pub use close_signal::CloseSignal;
pub use log_store::LogStore;
pub use snapshot_file::SnapshotFile;
pub use state_store::StateStore;

/// A RocksDB error as the `io::Error` openraft's storage traits use.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// What a write batch spends besides keys and values: its header (sequence
/// number and count), and per record a tag, a column family id and two
/// length varints (at most this many bytes together for our sizes).
const WRITE_BATCH_HEADER_BYTES: usize = 12;
const WRITE_BATCH_RECORD_OVERHEAD_BYTES: usize = 16;

/// An empty write batch with room for `records` records holding
/// `key_value_bytes` bytes of keys and values in all.
///
/// Why: a batch's buffer is a C++ string that grows by doubling. An apply's
/// batch (about 600 KiB for 1,000 payments) or a log append of such an
/// entry went through a dozen reallocations, each copying what was written
/// so far and touching fresh pages; in the profile, growing these strings
/// was about 1.7% of all CPU (docs/BENCHMARKS.md, twelfth round). An
/// estimate that falls short costs one doubling, not a dozen.
pub(crate) fn sized_write_batch(records: usize, key_value_bytes: usize) -> rocksdb::WriteBatch {
    rocksdb::WriteBatch::with_capacity_bytes(
        WRITE_BATCH_HEADER_BYTES
            .saturating_add(records.saturating_mul(WRITE_BATCH_RECORD_OVERHEAD_BYTES))
            .saturating_add(key_value_bytes),
    )
}

/// A database's size as RocksDB estimates it, summed over column families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskBytes {
    /// Bytes in SST files on disk.
    pub sst: u64,
    /// Bytes in memtables not yet flushed (they are in the WAL).
    pub memtable: u64,
    /// Memory held by open SST readers outside the block cache (index and
    /// filter blocks): grows with the data unless they are cached.
    pub table_readers: u64,
    /// Memory used by the database's block cache.
    pub block_cache: u64,
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
        total.table_readers += read("rocksdb.estimate-table-readers-mem");
        // Every family of a database shares one cache (memory_budget), and
        // each reports that cache's usage: count it once.
        total.block_cache = total.block_cache.max(read("rocksdb.block-cache-usage"));
    }
    total
}

/// Flushes every column family's memtables and compacts all its files into
/// the bottom level (what RocksDB would reach on its own eventually), then
/// returns each family's table-file bytes. Offline tooling: it rewrites the
/// whole database.
pub(crate) fn compact_all(
    db: &rocksdb::DB,
    column_families: &[&str],
) -> std::io::Result<Vec<(String, u64)>> {
    for name in column_families {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| io_err(format!("column family {name} missing")))?;
        db.flush_cf(cf).map_err(io_err)?;
        db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
    }
    sst_bytes_per_family(db, column_families)
}

/// Each column family's table-file bytes, as they are.
pub(crate) fn sst_bytes_per_family(
    db: &rocksdb::DB,
    column_families: &[&str],
) -> std::io::Result<Vec<(String, u64)>> {
    column_families
        .iter()
        .map(|name| {
            let cf = db
                .cf_handle(name)
                .ok_or_else(|| io_err(format!("column family {name} missing")))?;
            let bytes = db
                .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                .map_err(io_err)?
                .unwrap_or(0);
            Ok(((*name).to_owned(), bytes))
        })
        .collect()
}
