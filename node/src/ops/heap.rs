//! The node's heap: jemalloc, and the figures it reports.
//!
//! Why jemalloc (docs/BENCHMARKS.md, "Memory over ten minutes"): under a
//! long load glibc's allocator kept freed memory resident. After 8 minutes at
//! 3,000 payments/s it held 584 MB from the system for 274 MB in use, and
//! capping its arenas plus a periodic `malloc_trim` only slowed the climb,
//! because glibc returns memory only from the top of an arena. Most of the
//! churn is RocksDB's C++ allocations (memtables, blocks, compaction
//! buffers), so a Rust-only allocator would not reach it: the binary links
//! jemalloc *unprefixed*, which replaces `malloc`/`free` for the whole
//! process, C++ `new` included. jemalloc's background threads hand dirty
//! pages back to the system after its decay time (10 s by default), off the
//! request path.
//!
//! The binary (`main.rs`) declares jemalloc as Rust's global allocator;
//! this module only reads its statistics, for the `spentledger_heap_*`
//! gauges.

use tikv_jemalloc_ctl::{epoch, stats};

/// Heap figures from jemalloc, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapBytes {
    /// Bytes handed out to the program and not yet freed.
    pub allocated: u64,
    /// Bytes in pages the allocator has touched and not yet returned:
    /// `allocated` plus fragmentation plus dirty pages awaiting decay.
    pub resident: u64,
}

/// Reads jemalloc's statistics, or `None` when the read fails or reports
/// nothing (a process where jemalloc never allocated).
pub fn heap_bytes() -> Option<HeapBytes> {
    // jemalloc caches its statistics; advancing the epoch refreshes them.
    epoch::advance().ok()?;
    let allocated = stats::allocated::read().ok()? as u64;
    let resident = stats::resident::read().ok()? as u64;
    if resident == 0 {
        return None;
    }
    Some(HeapBytes {
        allocated,
        resident,
    })
}
