//! How RocksDB's background work (flushes and compactions) shares the
//! machine with the node's own threads.
//!
//! Every node receives the same writes, so every node's memtables fill at
//! the same entry, flush together and compact together. As the state grows,
//! each round of level-0 compactions rewrites more of it (about 500 MB per
//! node with 3.6 million nullifiers, docs/BENCHMARKS.md, nineteenth round):
//! at normal priority those threads took the CPU from the followers' apply
//! (whose validation runs at a lowered priority, see `thread_priority`), the
//! quorum's apply fell up to 0.7 s behind, and answers given during the
//! compactions waited up to 1.3 s.

use rocksdb::{Env, Options};

/// Written table data is handed to the kernel for write-back every this many
/// bytes, instead of leaving a whole compaction's output (hundreds of MB)
/// dirty until one large write-back, which a later fsync of the Raft log
/// can end up waiting behind.
pub const BYTES_PER_SYNC: u64 = 1 << 20;

/// Applies the background-work settings to a database's options: the
/// compaction threads (RocksDB's low-priority pool, shared by the process's
/// databases) run at the lowest CPU priority, so they use the CPU the
/// node's apply and ingress leave idle; flushes (the high-priority pool)
/// keep normal priority, as a memtable waiting for its flush would stop
/// writes.
pub fn apply_to_db(opts: &mut Options) -> Result<(), rocksdb::Error> {
    let mut env = Env::new()?;
    env.lower_thread_pool_cpu_priority();
    opts.set_env(&env);
    opts.set_bytes_per_sync(BYTES_PER_SYNC);
    Ok(())
}
