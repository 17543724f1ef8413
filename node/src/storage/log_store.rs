use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use super::io_err;
use super::keys::{u64_from_key, u64_key};
use super::recent_entries::{EntryBytesBudget, RecentEntries, RecentEntriesLimits};
use crate::consensus::{
    Entry, LogId, TypeConfig, Vote, decode_entry, decode_log_id, decode_owned_entry, decode_vote,
    encode_entry, encode_log_id, encode_vote,
};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// The most bytes of entries one read for replication returns (openraft's
/// `limited_get_log_entries`; one AppendEntries carries one such read).
///
/// Why: the Raft message limit is 64 MiB. Counting entries alone let a
/// follower a few big entries behind be sent an AppendEntries over it: the
/// send failed before a byte left, openraft resent the same range, and the
/// follower never caught up (seen in a benchmark sweep). Half the limit
/// leaves room for one entry over the budget (entries are at most half the
/// limit, `config.rs`) and for the message's framing.
pub const REPLICATION_READ_BYTES_MAX: usize = 32 << 20;

/// Appends waiting for their fsync, handed to the flusher thread.
type Pending = IOFlushed<TypeConfig>;

struct Inner {
    db: DB,
    /// The newest entries as appended, for reads right after (see
    /// [`RecentEntries`]); locked across each append's write so it never
    /// runs ahead of or behind the log for a reader.
    recent: std::sync::Mutex<RecentEntries>,
    /// Send side of the group-commit queue; `None` once shutting down.
    flush_tx: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    /// Declared after `db`: set once it is closed.
    closed: super::CloseSignal,
}

/// The Raft log in its own RocksDB database.
///
/// Durability contract (openraft `RaftLogStorage`): an append's callback is
/// called only after its entries are fsynced; `save_vote` returns only after
/// the vote is fsynced. Appends are written to the WAL at once and fsynced by
/// a flusher thread that syncs once for every append queued since its last
/// sync (group commit), so concurrent appends share one fsync.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
    /// See [`REPLICATION_READ_BYTES_MAX`].
    read_bytes_max: usize,
}

impl LogStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        super::memory_budget::LOG_STORE.apply_to_db(&mut opts);
        super::background_work::apply_to_db(&mut opts).map_err(io_err)?;
        let cache = super::memory_budget::LOG_STORE.block_cache();
        let cfs = [CF_LOGS, CF_META].map(|name| {
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&super::memory_budget::table_options(&cache, false));
            ColumnFamilyDescriptor::new(name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(io_err)?;
        let (tx, rx) = mpsc::channel::<Pending>();
        let inner = Arc::new(Inner {
            db,
            recent: std::sync::Mutex::new(RecentEntries::new(RecentEntriesLimits::default())),
            flush_tx: std::sync::Mutex::new(Some(tx)),
            closed: super::CloseSignal::default(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("raft-log-fsync".into())
            .spawn(move || flusher(weak, rx))?;
        Ok(LogStore {
            inner,
            read_bytes_max: REPLICATION_READ_BYTES_MAX,
        })
    }

    /// A probe that turns true once every handle of this store is gone and
    /// its database closed: its directory is free to reopen, copy or
    /// delete. Holds no reference itself.
    pub fn closed_probe(&self) -> impl Fn() -> bool + Send + Sync + use<> {
        self.inner.closed.probe()
    }

    /// The same store, with replication reads bounded by `bytes_max`
    /// instead of [`REPLICATION_READ_BYTES_MAX`] (tests use small bounds).
    pub fn with_read_bytes_max(mut self, bytes_max: usize) -> Self {
        self.read_bytes_max = bytes_max.max(1);
        self
    }

    /// Estimated on-disk and in-memory size, for metrics.
    pub fn disk_bytes(&self) -> super::DiskBytes {
        super::disk_bytes(&self.inner.db, &[CF_LOGS, CF_META])
    }

    /// Each column family's table-file bytes.
    pub fn sst_bytes_per_family(&self) -> io::Result<Vec<(String, u64)>> {
        super::sst_bytes_per_family(&self.inner.db, &[CF_LOGS, CF_META])
    }

    /// Offline: compacts the log completely; each family's table bytes.
    pub fn compact_all(&self) -> io::Result<Vec<(String, u64)>> {
        super::compact_all(&self.inner.db, &[CF_LOGS, CF_META])
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.inner
            .db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        // Every mutation keeps the run contiguous before it can panic, so a
        // poisoned lock still guards a consistent cache.
        self.inner.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_meta(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.inner.db.get_cf(self.cf(CF_META), key).map_err(io_err)
    }

    /// Writes and fsyncs, on a blocking thread.
    async fn write_synced(&self, batch: WriteBatch) -> io::Result<()> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            store.inner.db.write_opt(batch, &opts).map_err(io_err)
        })
        .await
        .map_err(io_err)?
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        let mut it = self
            .inner
            .db
            .iterator_cf(self.cf(CF_LOGS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(io_err)?;
                Ok(Some(decode_entry(&value)?.log_id))
            }
        }
    }
}

/// Group commit: sync the WAL once for every append queued, then report.
fn flusher(store: std::sync::Weak<Inner>, rx: mpsc::Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = match store.upgrade() {
            Some(inner) => inner.db.flush_wal(true).map_err(io_err),
            None => Err(io::Error::other("log store closed before fsync")),
        };
        for callback in batch {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            callback.io_completed(outcome);
        }
    }
}

impl LogStore {
    /// Entries `start..end` (`end` exclusive; `None`: to the log's end), in
    /// order, stopping before the entry that would take their bytes past
    /// `bytes_max` (the first is always returned).
    fn read_entries(
        &self,
        start: u64,
        end: Option<u64>,
        bytes_max: usize,
    ) -> io::Result<Vec<Entry>> {
        if let Some(entries) = self.recent().range(start, end, bytes_max) {
            return Ok(entries);
        }
        let mut entries = Vec::new();
        let mut budget = EntryBytesBudget::new(bytes_max);
        let it = self.inner.db.iterator_cf(
            self.cf(CF_LOGS),
            IteratorMode::From(&u64_key(start), Direction::Forward),
        );
        for item in it {
            let (key, value) = item.map_err(io_err)?;
            let index = u64_from_key(&key).ok_or_else(|| io_err("log key is not 8 bytes"))?;
            if end.is_some_and(|end| index >= end) || !budget.admits(value.len()) {
                break;
            }
            entries.push(decode_owned_entry(prost::bytes::Bytes::from(value))?);
        }
        Ok(entries)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i.saturating_add(1)),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        self.read_entries(start, end, usize::MAX)
    }

    /// Replication's read: at most [`REPLICATION_READ_BYTES_MAX`] of
    /// entries (never none when the range holds one), so that every
    /// AppendEntries fits the Raft message limit.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        self.read_entries(start, Some(end), self.read_bytes_max)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.get_meta(KEY_VOTE)?
            .map(|bytes| decode_vote(&bytes).map_err(Into::into))
            .transpose()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id = self
            .get_meta(KEY_LAST_PURGED)?
            .map(|bytes| decode_log_id(&bytes))
            .transpose()?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), KEY_VOTE, encode_vote(vote));
        self.write_synced(batch).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not fsynced: openraft tolerates losing it (it is re-learned from the leader).
        match committed {
            Some(id) => self
                .inner
                .db
                .put_cf(self.cf(CF_META), KEY_COMMITTED, encode_log_id(&id)),
            None => self.inner.db.delete_cf(self.cf(CF_META), KEY_COMMITTED),
        }
        .map_err(io_err)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.get_meta(KEY_COMMITTED)?
            .map(|bytes| decode_log_id(&bytes).map_err(Into::into))
            .transpose()
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<Vec<u8>> = entries.iter().map(encode_entry).collect();
        let key_bytes = u64_key(0).len();
        let mut batch = super::sized_write_batch(
            encoded.len(),
            encoded.iter().map(|v| key_bytes + v.len()).sum(),
        );
        for (entry, value) in entries.iter().zip(encoded) {
            batch.put_cf(self.cf(CF_LOGS), u64_key(entry.log_id.index()), value);
        }
        // Into the WAL now (no fsync); the flusher fsyncs and then calls back.
        {
            let mut recent = self.recent();
            self.inner.db.write(batch).map_err(io_err)?;
            for entry in entries {
                recent.appended(entry);
            }
        }
        let sender = self
            .inner
            .flush_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| io_err("log store is shutting down"))?;
        sender
            .send(callback)
            .map_err(|_| io_err("log fsync thread stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        // Forgotten here first: a read in between falls back to the log.
        self.recent().truncated_from(from);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOGS), u64_key(from), u64_key(u64::MAX));
        // delete_range's end is exclusive: remove a (theoretical) last index too.
        batch.delete_cf(self.cf(CF_LOGS), u64_key(u64::MAX));
        self.write_synced(batch).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.recent().purged_upto(log_id.index());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), KEY_LAST_PURGED, encode_log_id(&log_id));
        batch.delete_range_cf(self.cf(CF_LOGS), u64_key(0), u64_key(log_id.index() + 1));
        self.write_synced(batch).await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the flusher thread.
        self.flush_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}
