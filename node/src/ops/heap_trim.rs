//! Giving freed heap memory back to the operating system.
//!
//! Measured under load (docs/BENCHMARKS.md): after 8 minutes at 3,000
//! payments/s glibc's allocator held 584 MB from the system for 274 MB in
//! use, spread over 16 per-thread arenas (8 per core), and a node's resident
//! set kept climbing. glibc only returns memory at the top of an arena, so
//! freed chunks below live ones stay resident. Fewer arenas and a periodic
//! `malloc_trim` (which also releases whole free pages inside an arena)
//! bound that. Other allocators and platforms are left alone.

use std::time::Duration;

/// Arenas at most: enough that the node's few busy threads (tokio workers,
/// validation, RocksDB flush and compaction) rarely share one.
pub const MALLOC_ARENAS_MAX: i32 = 4;
/// How often freed memory is handed back.
pub const HEAP_TRIM_INTERVAL_MS: u64 = 10_000;

/// Caps glibc's arena count. Call first thing in `main`, before any thread
/// starts (arenas already created stay).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; with no other
    // threads running yet nothing races with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX);
    }
}

/// Starts a thread that calls `malloc_trim(0)` every
/// [`HEAP_TRIM_INTERVAL_MS`] for the life of the process.
pub fn spawn_heap_trimmer() -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("heap-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(HEAP_TRIM_INTERVAL_MS));
                // SAFETY: malloc_trim is thread-safe (it takes each arena's
                // lock) and has no preconditions.
                let released = unsafe { libc::malloc_trim(0) };
                tracing::trace!(released = released != 0, "malloc_trim");
            }
        })?;
    Ok(())
}
