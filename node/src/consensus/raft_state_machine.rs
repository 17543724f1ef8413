use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};

use super::apply_journal::{ApplyJournal, JournalEvent, JournalRecord, OutcomeSummary};
use super::codec::{decode_snapshot_meta, encode_snapshot_meta, snapshot_name};
use super::type_config::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::ops::NodeMetrics;
use crate::state_machine::{CommandOutcome, Ledger, Overlay, WriteSet};
use crate::storage::snapshot_file::{self, SnapshotFile, sync_dir};
use crate::storage::state_store::AppliedState;
use crate::storage::{StateStore, io_err};

const CURRENT_FILE: &str = "CURRENT";
/// Snapshot files kept on disk (the newest ones).
const SNAPSHOTS_KEPT: usize = 2;

/// A handle to the live state database, swapped atomically when a snapshot
/// is installed. Readers (gRPC queries) clone the inner `Arc` and keep a
/// consistent database for the duration of their read.
#[derive(Clone)]
pub struct StateHandle(Arc<RwLock<Arc<StateStore>>>);

impl StateHandle {
    pub fn current(&self) -> Arc<StateStore> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A probe that turns true once the database live now is closed: every
    /// handle and every reader's clone of it gone. Take it after Raft
    /// stopped, when no install can swap in another database. Holds no
    /// reference itself.
    pub fn closed_probe(&self) -> impl Fn() -> bool + Send + Sync + use<> {
        self.current().closed_probe()
    }

    fn replace(&self, store: Arc<StateStore>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = store;
    }
}

#[derive(Debug, Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    path: PathBuf,
}

/// The openraft state machine: applies committed entries with the
/// [`Ledger`] rules, persists each apply call atomically with its applied
/// log id, and builds and installs snapshots.
///
/// Layout under its directory: `CURRENT` names the live database
/// generation (`gen-000001`, ...); `snapshots/` holds snapshot files with a
/// `.meta` sidecar each.
pub struct LedgerStateMachine {
    dir: PathBuf,
    generation: u64,
    state: StateHandle,
    applied: AppliedState,
    ledger: Arc<Ledger>,
    current_snapshot: Arc<Mutex<Option<CurrentSnapshot>>>,
    metrics: NodeMetrics,
    builds: SnapshotBuilds,
    journal: ApplyJournal,
    /// See [`LedgerStateMachine::allowing_gaps`].
    gaps_allowed: bool,
    /// Test-only: the cluster's faults and this node's id (slow apply).
    #[cfg(feature = "fault-injection")]
    faults: Option<(crate::network::fault_layer::FaultNetwork, u64)>,
}

/// Snapshot builds in progress. A build writes its file on a blocking
/// thread that outlives openraft's shutdown, so a stopping node waits for
/// it before it reports itself stopped (its directory may then be deleted
/// or reused at once).
#[derive(Clone, Default)]
pub struct SnapshotBuilds(Arc<tokio::sync::RwLock<()>>);

impl SnapshotBuilds {
    /// Waits until no build is running, at most `timeout`; false when one
    /// still is.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        tokio::time::timeout(timeout, self.0.write()).await.is_ok()
    }
}

fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("gen-{generation:06}"))
}

fn snapshots_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// Writes `CURRENT` atomically: temp file, fsync, rename, fsync the directory.
fn write_current(dir: &Path, generation: u64) -> io::Result<()> {
    let tmp = dir.join("CURRENT.tmp");
    std::fs::write(&tmp, format!("gen-{generation:06}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(CURRENT_FILE))?;
    sync_dir(dir)
}

/// The directory of the state database a node opens from `dir` (its
/// `state/`), or `None` when the node never ran there.
pub fn current_state_dir(dir: &Path) -> io::Result<Option<PathBuf>> {
    Ok(read_current(dir)?.map(|g| generation_dir(dir, g)))
}

fn read_current(dir: &Path) -> io::Result<Option<u64>> {
    match std::fs::read_to_string(dir.join(CURRENT_FILE)) {
        Ok(text) => text
            .trim()
            .strip_prefix("gen-")
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad CURRENT file: {text:?}"),
                )
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The newest complete snapshot in `snapshots/` (file plus readable sidecar).
fn find_current_snapshot(dir: &Path) -> io::Result<Option<CurrentSnapshot>> {
    let mut best: Option<CurrentSnapshot> = None;
    let Ok(entries) = std::fs::read_dir(snapshots_dir(dir)) else {
        return Ok(None);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("meta") {
            continue;
        }
        let data = path.with_extension("snap");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(meta) = decode_snapshot_meta(&bytes) else {
            continue;
        };
        if !data.exists() {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|b| b.meta.last_log_id < meta.last_log_id)
        {
            best = Some(CurrentSnapshot { meta, path: data });
        }
    }
    Ok(best)
}

impl LedgerStateMachine {
    /// Opens (or creates) the state machine under `dir`, removing leftovers
    /// of an install that crashed before switching `CURRENT`.
    pub fn open(dir: &Path, ledger: Arc<Ledger>) -> io::Result<Self> {
        std::fs::create_dir_all(snapshots_dir(dir))?;
        let generation = match read_current(dir)? {
            Some(g) => g,
            None => {
                write_current(dir, 1)?;
                1
            }
        };
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.starts_with("gen-") && path != generation_dir(dir, generation) {
                std::fs::remove_dir_all(&path)?;
            }
        }
        let store = StateStore::open(&generation_dir(dir, generation))?;
        let applied = store.applied_state()?;
        let journal = ApplyJournal::default();
        journal.record([JournalRecord {
            log_id: applied.applied,
            event: JournalEvent::Opened,
            digest_after: applied.digest,
        }]);
        Ok(LedgerStateMachine {
            dir: dir.to_owned(),
            generation,
            state: StateHandle(Arc::new(RwLock::new(Arc::new(store)))),
            applied,
            ledger,
            current_snapshot: Arc::new(Mutex::new(find_current_snapshot(dir)?)),
            metrics: NodeMetrics::new(0),
            builds: SnapshotBuilds::default(),
            journal,
            gaps_allowed: false,
            #[cfg(feature = "fault-injection")]
            faults: None,
        })
    }

    /// Records apply and snapshot figures into `metrics` (the node's).
    pub fn with_metrics(mut self, metrics: NodeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Test-only: apply waits as long as `faults` says for `node_id`.
    #[cfg(feature = "fault-injection")]
    pub fn with_faults(
        mut self,
        faults: Option<crate::network::fault_layer::FaultNetwork>,
        node_id: u64,
    ) -> Self {
        self.faults = faults.map(|f| (f, node_id));
        self
    }

    /// The snapshot builds this state machine starts, to wait for on shutdown.
    pub fn snapshot_builds(&self) -> SnapshotBuilds {
        self.builds.clone()
    }

    /// The live database, for reads.
    pub fn state(&self) -> StateHandle {
        self.state.clone()
    }

    /// Applied log id, membership and digest after the last apply.
    pub fn applied(&self) -> &AppliedState {
        &self.applied
    }

    /// Accepts entries to apply that skip indexes (still refusing repeats
    /// and lower log ids). For openraft's storage test suite only, which
    /// applies 1.3 and then 1.5 to the same state machine; openraft itself
    /// always applies from the index after the last applied, and a node
    /// never uses this.
    pub fn allowing_gaps(mut self) -> Self {
        self.gaps_allowed = true;
        self
    }

    /// The journal of this state machine's last steps (for diagnosis).
    pub fn journal(&self) -> ApplyJournal {
        self.journal.clone()
    }
}

/// Refuses entries that do not continue the applied log: each must have a
/// greater log id than the one before it (the first: than `applied`) and,
/// with `gaps_allowed` false, the very next index. openraft reads the
/// entries it asks us to apply from the log store (from the index after the
/// last applied) and does not check them in release builds; were the store
/// to hand back a purged range's neighbours or an entry a truncation
/// replaced, this replica's state would silently fork from the others. An
/// error instead stops this node's Raft (a storage error is fatal), with the
/// evidence in its log. With nothing applied yet any start is accepted.
fn check_continues(
    applied: Option<&LogId>,
    entries: &[Entry],
    gaps_allowed: bool,
) -> io::Result<()> {
    let mut previous = applied;
    for entry in entries {
        let refused = previous.is_some_and(|p| {
            entry.log_id <= *p
                || entry.log_id.index() <= p.index()
                || (!gaps_allowed && entry.log_id.index() != p.index() + 1)
        });
        if refused {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "apply was handed entry {} after {}: entries must continue the applied log without gap, repeat or lower term",
                    entry.log_id,
                    previous.map_or("nothing".to_owned(), ToString::to_string),
                ),
            ));
        }
        previous = Some(&entry.log_id);
    }
    Ok(())
}

/// What one apply call computed: the state after it, each entry's outcome
/// and journal record, and the writes that record it, not yet written.
struct Applied {
    state: AppliedState,
    outcomes: Vec<CommandOutcome>,
    journal: Vec<JournalRecord>,
    writes: WriteSet,
}

/// Applies entries on a blocking thread (validation is CPU work, RocksDB
/// reads and writes are blocking I/O).
fn apply_entries(
    store: &StateStore,
    ledger: &Ledger,
    mut applied: AppliedState,
    entries: &[Entry],
) -> io::Result<Applied> {
    let mut overlay = Overlay::new(store);
    let mut outcomes = Vec::with_capacity(entries.len());
    let mut journal = Vec::with_capacity(entries.len());
    for entry in entries {
        let index = entry.log_id.index();
        let (outcome, event) = match &entry.payload {
            EntryPayload::Blank => (CommandOutcome::Internal, JournalEvent::Blank),
            EntryPayload::Normal(request) => {
                // The proposer applies the command it holds decoded, or the
                // payments it prechecked; every other replica (and the
                // proposer after a restart) from the bytes in its log.
                let outcome = match request.decoded() {
                    Some(command) => {
                        ledger.apply(&mut overlay, index, command, request.precheck())?
                    }
                    None => ledger.apply_encoded(
                        &mut overlay,
                        index,
                        request.encoded(),
                        request.precheck(),
                    )?,
                };
                let event = JournalEvent::Command {
                    bytes: request.encoded().len(),
                    hash: JournalRecord::entry_hash(request.encoded()),
                    outcome: OutcomeSummary::of(&outcome),
                };
                (outcome, event)
            }
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                (CommandOutcome::Internal, JournalEvent::Membership)
            }
        };
        let folded = match outcome {
            CommandOutcome::Internal => None,
            ref o => Some(o),
        };
        applied.digest = applied.digest.fold(index, folded);
        applied.applied = Some(entry.log_id);
        journal.push(JournalRecord {
            log_id: Some(entry.log_id),
            event,
            digest_after: applied.digest,
        });
        outcomes.push(outcome);
    }
    Ok(Applied {
        state: applied,
        outcomes,
        journal,
        writes: overlay.into_writes(),
    })
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.applied.applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let items: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if items.is_empty() {
            return Ok(());
        }
        let (entries, responders): (Vec<Entry>, Vec<_>) = items.into_iter().unzip();
        if let Err(e) = check_continues(self.applied.applied.as_ref(), &entries, self.gaps_allowed)
        {
            tracing::error!(
                error = %e,
                recent_applies = %self.journal.render(8),
                "refusing to apply: the log handed over entries that do not continue the state"
            );
            return Err(e);
        }
        #[cfg(feature = "fault-injection")]
        if let Some((faults, node_id)) = &self.faults {
            tokio::time::sleep(faults.apply_delay(*node_id, entries.len())).await;
        }
        let store = self.state.current();
        let ledger = self.ledger.clone();
        let applied = self.applied.clone();
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        let entry_count = entries.len();
        let prechecked_before = self.ledger.prechecked_payments();
        let direct_before = self.ledger.direct_decoded_payments();
        let journal = self.journal.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let Applied {
                state: applied,
                outcomes,
                journal: records,
                writes,
            } = apply_entries(&store, &ledger, applied, &entries)?;
            metrics.applied_outcomes(&outcomes);
            // Answered before the state write: an answer needs the entry
            // committed (in a majority's fsynced logs, so it is durable) and
            // its outcome, which apply computes the same way on every node
            // and on every redo. Were this node to stop before the write
            // below, it would apply the entry again from its log at start-up
            // with the same outcome. Reads still see the entry only after
            // the write: openraft counts it applied when this call returns.
            for (responder, outcome) in responders.into_iter().zip(outcomes) {
                if let Some(responder) = responder {
                    responder.send(outcome);
                }
            }
            store.commit(&writes, &applied)?;
            journal.record(records);
            Ok::<_, io::Error>(applied)
        })
        .await
        .map_err(io_err)??;
        self.applied = applied;
        self.metrics.applied(entry_count, started.elapsed());
        self.metrics
            .apply_prechecked(self.ledger.prechecked_payments() - prechecked_before);
        self.metrics
            .apply_direct_decoded(self.ledger.direct_decoded_payments() - direct_before);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        LedgerSnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
            current_snapshot: self.current_snapshot.clone(),
            metrics: self.metrics.clone(),
            builds: self.builds.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let dir = self.dir.clone();
        let next = self.generation + 1;
        let meta_owned = meta.clone();
        let (store, kept) = tokio::task::spawn_blocking(move || {
            install_blocking(&dir, next, &meta_owned, &snapshot)
        })
        .await
        .map_err(io_err)??;
        let old = generation_dir(&self.dir, self.generation);
        self.applied = store.applied_state()?;
        self.journal.record([JournalRecord {
            log_id: self.applied.applied,
            event: JournalEvent::SnapshotInstalled,
            digest_after: self.applied.digest,
        }]);
        self.state.replace(Arc::new(store));
        self.generation = next;
        self.metrics.snapshot_installed();
        *self
            .current_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(kept);
        // The old generation is no longer named by CURRENT; readers holding
        // it keep their open handle, RocksDB tolerates the unlink.
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!(dir = %old.display(), error = %e, "could not remove the replaced state database");
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>>> {
        let current = self
            .current_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(current.map(|c| Snapshot {
            meta: c.meta,
            snapshot: SnapshotFile { path: c.path },
        }))
    }
}

/// Install: load into `gen-N.tmp`, check it, flush and close, rename to
/// `gen-N`, fsync, then switch `CURRENT`. A crash at any point leaves either
/// the old state (CURRENT unchanged, leftovers removed at the next open) or
/// the complete new one.
fn install_blocking(
    dir: &Path,
    generation: u64,
    meta: &SnapshotMeta,
    snapshot: &SnapshotFile,
) -> io::Result<(StateStore, CurrentSnapshot)> {
    let final_dir = generation_dir(dir, generation);
    let tmp_dir = final_dir.with_extension("tmp");
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir)?;
    }
    {
        let store = StateStore::open(&tmp_dir)?;
        if let Err(e) = snapshot_file::load(&snapshot.path, &store) {
            drop(store);
            std::fs::remove_dir_all(&tmp_dir)?;
            return Err(e);
        }
        let loaded = store.applied_state()?;
        if loaded.applied != meta.last_log_id {
            drop(store);
            std::fs::remove_dir_all(&tmp_dir)?;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot data ends at {:?} but its meta says {:?}",
                    loaded.applied, meta.last_log_id
                ),
            ));
        }
    }
    std::fs::rename(&tmp_dir, &final_dir)?;
    sync_dir(dir)?;
    write_current(dir, generation)?;
    // Keep the installed snapshot as our current one (copy: it may be the
    // sender's file in tests, or a received temp file).
    let name = snapshot_name(meta);
    let kept_path = snapshots_dir(dir).join(format!("{name}.snap"));
    if snapshot.path != kept_path {
        std::fs::copy(&snapshot.path, &kept_path)?;
        std::fs::File::open(&kept_path)?.sync_all()?;
    }
    write_meta_sidecar(dir, meta)?;
    prune_snapshots(dir)?;
    let store = StateStore::open(&final_dir)?;
    Ok((
        store,
        CurrentSnapshot {
            meta: meta.clone(),
            path: kept_path,
        },
    ))
}

fn write_meta_sidecar(dir: &Path, meta: &SnapshotMeta) -> io::Result<()> {
    let path = snapshots_dir(dir).join(format!("{}.meta", snapshot_name(meta)));
    let tmp = path.with_extension("meta.tmp");
    std::fs::write(&tmp, encode_snapshot_meta(meta))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(&snapshots_dir(dir))
}

/// Keeps the newest `SNAPSHOTS_KEPT` snapshots.
fn prune_snapshots(dir: &Path) -> io::Result<()> {
    let mut metas: Vec<(SnapshotMeta, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(snapshots_dir(dir))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("meta")
            && let Ok(meta) = std::fs::read(&path)
                .map_err(io_err)
                .and_then(|b| decode_snapshot_meta(&b).map_err(Into::into))
        {
            metas.push((meta, path));
        }
    }
    metas.sort_by_key(|m| std::cmp::Reverse(m.0.last_log_id));
    for (_, meta_path) in metas.into_iter().skip(SNAPSHOTS_KEPT) {
        let _ = std::fs::remove_file(meta_path.with_extension("snap"));
        let _ = std::fs::remove_file(&meta_path);
    }
    Ok(())
}

/// Builds a snapshot from a consistent RocksDB view of the live database.
pub struct LedgerSnapshotBuilder {
    dir: PathBuf,
    state: StateHandle,
    current_snapshot: Arc<Mutex<Option<CurrentSnapshot>>>,
    metrics: NodeMetrics,
    builds: SnapshotBuilds,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(
        &mut self,
    ) -> io::Result<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>> {
        let store = self.state.current();
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        // Held by the blocking thread until the file is complete, even if
        // this future is dropped at shutdown.
        let building = self.builds.0.clone().read_owned().await;
        // At the lowest priority: every node builds at the same log index, so
        // on machines the nodes share all builds run at once, and at normal
        // priority they took the CPU from apply (docs/BENCHMARKS.md,
        // nineteenth round). Nothing waits for a build promptly.
        let build = move || -> io::Result<CurrentSnapshot> {
            let _building = building;
            let tmp = snapshots_dir(&dir).join("building.snap");
            let (_, applied) = snapshot_file::write(&store, &tmp)?;
            let meta = SnapshotMeta {
                last_log_id: applied.applied,
                last_membership: applied.membership,
            };
            let path = snapshots_dir(&dir).join(format!("{}.snap", snapshot_name(&meta)));
            std::fs::rename(&tmp, &path)?;
            write_meta_sidecar(&dir, &meta)?;
            prune_snapshots(&dir)?;
            Ok(CurrentSnapshot { meta, path })
        };
        let current =
            crate::ops::thread_priority::run_at_lowest_priority("snapshot-build", build).await??;
        self.metrics.snapshot_built(started.elapsed());
        *self
            .current_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(current.clone());
        Ok(Snapshot {
            meta: current.meta,
            snapshot: SnapshotFile { path: current.path },
        })
    }
}
