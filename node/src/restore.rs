//! Filling a new data directory from a snapshot file (a backup), so a whole
//! cluster can be rebuilt from one snapshot: every member restored from the
//! same file under its usual node id, then started with its usual flags,
//! elects a leader among the snapshot's voters and continues from the
//! snapshot's log index. Whatever was committed after the snapshot is lost;
//! that is the backup's recovery point.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};

use crate::consensus::{LedgerStateMachine, Vote, decode_snapshot_meta};
use crate::state_machine::{Ledger, LedgerConfig};
use crate::storage::{LogStore, SnapshotFile};

/// Subdirectories of a node's data directory that hold state.
const STATE_DIRS: [&str; 2] = ["raft-log", "state"];

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} already holds node state; a restore only fills a new data directory")]
    NotEmpty(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a snapshot's metadata: {problem}")]
    BadMeta { path: String, problem: String },
    #[error("the snapshot covers no log entry")]
    EmptySnapshot,
    #[error("node {node_id} is not a voter of the snapshot's membership (voters {voters:?})")]
    NotAVoter { node_id: u64, voters: Vec<u64> },
    #[error("the snapshot does not install: {0}")]
    Install(String),
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub voters: Vec<u64>,
}

/// The metadata sidecar of a snapshot file (`name.snap` → `name.meta`).
pub fn meta_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("meta")
}

/// Restores `data_dir` (which must hold no node state) for `node_id` from
/// `snapshot` and its `.meta` sidecar: installs the state atomically, then
/// records in the Raft log that everything up to the snapshot is compacted,
/// and a vote in the snapshot's term (so the next election's term is above
/// every restored log id).
pub async fn restore_from_snapshot(
    data_dir: &Path,
    node_id: u64,
    snapshot: &Path,
    ledger: LedgerConfig,
) -> Result<Restored, RestoreError> {
    for sub in STATE_DIRS {
        let path = data_dir.join(sub);
        if path.exists() {
            return Err(RestoreError::NotEmpty(path.display().to_string()));
        }
    }
    let meta_file = meta_path(snapshot);
    let meta_bytes = std::fs::read(&meta_file).map_err(|source| RestoreError::Io {
        path: meta_file.display().to_string(),
        source,
    })?;
    let meta = decode_snapshot_meta(&meta_bytes).map_err(|e| RestoreError::BadMeta {
        path: meta_file.display().to_string(),
        problem: e.to_string(),
    })?;
    let last = meta.last_log_id.ok_or(RestoreError::EmptySnapshot)?;
    let voters: Vec<u64> = meta.last_membership.membership().voter_ids().collect();
    if !voters.contains(&node_id) {
        return Err(RestoreError::NotAVoter { node_id, voters });
    }
    if !snapshot.is_file() {
        return Err(RestoreError::Io {
            path: snapshot.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no snapshot file"),
        });
    }
    let install = |e: &dyn std::fmt::Display| RestoreError::Install(e.to_string());
    let ledger = Arc::new(Ledger::new(ledger).map_err(|e| install(&e))?);
    let mut sm =
        LedgerStateMachine::open(&data_dir.join("state"), ledger).map_err(|e| install(&e))?;
    sm.install_snapshot(
        &meta,
        SnapshotFile {
            path: snapshot.to_owned(),
        },
    )
    .await
    .map_err(|e| install(&e))?;
    let mut log = LogStore::open(&data_dir.join("raft-log")).map_err(|e| install(&e))?;
    let term = last.committed_leader_id().term;
    log.save_vote(&Vote::new(term, node_id))
        .await
        .map_err(|e| install(&e))?;
    log.purge(last).await.map_err(|e| install(&e))?;
    Ok(Restored {
        last_log_index: last.index(),
        last_log_term: term,
        voters,
    })
}
