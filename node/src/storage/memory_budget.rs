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
/// Index and filter blocks are partitioned and charged to the cache, so the
/// cache bounds them too: only each table's small top-level index and
/// filter partition index, and level-0 tables' blocks, stay pinned. Held
/// outside the cache instead (each open table file keeping its whole index
/// and filter), they grew with the data, about 4 MiB per million nullifiers,
/// and a node's memory never levelled off. Charging *unpartitioned* index
/// and filter blocks to the cache was tried first: whole-file blocks
/// competed with data blocks, and at 3,000 payments/s the p99 went from
/// 87 ms to 5.1 s; partitioned, the same load keeps its p99
/// (docs/BENCHMARKS.md).
pub fn table_options(cache: &Cache, bloom: bool) -> BlockBasedOptions {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if bloom {
        table.set_bloom_filter(10.0, false);
    }
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table
}
