//! How much memory each RocksDB database of a node may hold: one place for
//! both stores, so a node's footprint is the sum of these numbers plus the
//! process's own working set.
//!
//! Without a budget, memory grew for as long as data did (measured with
//! `spentledger bench`, docs/BENCHMARKS.md): every column family had its own
//! default block cache (32 MiB each in RocksDB 11, twelve families in the
//! state store), and every family could hold two 64 MiB memtables.

use rocksdb::{BlockBasedOptions, Cache, Options};

/// One database's memory: memtables (all column families together) and one
/// block cache shared by its column families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub memtables_bytes_max: usize,
    pub block_cache_bytes_max: usize,
}

/// The state machine's database: point look-ups of nullifiers, counters and
/// accepted payments, mostly of recent data.
pub const STATE_STORE: MemoryBudget = MemoryBudget {
    memtables_bytes_max: 64 << 20,
    block_cache_bytes_max: 64 << 20,
};

/// The Raft log: entries are read back soon after they are written
/// (replication, apply), from the memtables, or not at all; a small cache
/// serves a follower catching up from table files.
pub const LOG_STORE: MemoryBudget = MemoryBudget {
    memtables_bytes_max: 64 << 20,
    block_cache_bytes_max: 16 << 20,
};

impl MemoryBudget {
    /// Database-wide options: the memtable cap.
    pub fn apply_to_db(&self, opts: &mut Options) {
        opts.set_db_write_buffer_size(self.memtables_bytes_max);
    }

    /// The cache every column family of one database shares.
    pub fn block_cache(&self) -> Cache {
        Cache::new_lru_cache(self.block_cache_bytes_max)
    }
}

/// Table options for a column family using `cache`; `bloom` adds a
/// 10-bit-per-key filter for families read by point look-ups that usually
/// miss.
///
/// Index and filter blocks stay outside the cache, held by each open table
/// file (`spentledger_rocksdb_table_readers_bytes`): they grow with the data,
/// about 4 MiB per million nullifiers. Charging them to the 64 MiB cache
/// instead made them compete with data blocks, and at 3,000 payments/s the
/// p99 latency went from 87 ms to 5.1 s (docs/BENCHMARKS.md).
pub fn table_options(cache: &Cache, bloom: bool) -> BlockBasedOptions {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if bloom {
        table.set_bloom_filter(10.0, false);
    }
    table
}
