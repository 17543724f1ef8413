//! `spentledger-node storage-report`: what a stopped node's data directory
//! holds, per database and column family, optionally after compacting it
//! completely; and the figure the performance target is stated in, bytes per
//! live nullifier.

use std::path::{Path, PathBuf};

use super::{LogStore, StateStore, io_err};
use crate::consensus::current_state_dir;

/// The index a double spend is detected with: spent tokens and device
/// counters (and, in databases of the first counters format until their
/// migration, the certificate index).
pub const NULLIFIER_INDEX_FAMILIES: [&str; 3] = ["nullifiers", "counters", "cert_index"];

/// `storage-report` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "spentledger-node storage-report",
    about = "Size of a stopped node's databases per column family (optionally compacted first), as JSON"
)]
pub struct StorageReportArgs {
    /// The node's data directory (the node must not be running).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Flush and compact every column family first (rewrites the databases).
    #[arg(long)]
    pub compact: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyBytes {
    pub name: String,
    pub sst_bytes: u64,
}

/// The report `storage-report` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageReport {
    pub compacted: bool,
    pub state: Vec<FamilyBytes>,
    pub raft_log: Vec<FamilyBytes>,
    /// Whole directories, WAL and metadata files included.
    pub state_dir_bytes: u64,
    pub raft_log_dir_bytes: u64,
    pub live_nullifiers: u64,
}

impl StorageReport {
    fn state_sst_bytes(&self, only: Option<&[&str]>) -> u64 {
        self.state
            .iter()
            .filter(|f| only.is_none_or(|names| names.contains(&f.name.as_str())))
            .map(|f| f.sst_bytes)
            .sum()
    }

    fn per_nullifier(&self, bytes: u64) -> Option<f64> {
        (self.live_nullifiers > 0).then(|| bytes as f64 / self.live_nullifiers as f64)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let families = |fs: &[FamilyBytes]| {
            fs.iter()
                .map(|f| (f.name.clone(), serde_json::Value::from(f.sst_bytes)))
                .collect::<serde_json::Map<_, _>>()
        };
        let index = self.state_sst_bytes(Some(&NULLIFIER_INDEX_FAMILIES));
        serde_json::json!({
            "compacted": self.compacted,
            "live_nullifiers": self.live_nullifiers,
            "state_sst_bytes": families(&self.state),
            "raft_log_sst_bytes": families(&self.raft_log),
            "state_dir_bytes": self.state_dir_bytes,
            "raft_log_dir_bytes": self.raft_log_dir_bytes,
            "state_bytes_per_nullifier": self.per_nullifier(self.state_dir_bytes),
            "nullifier_index_bytes_per_nullifier": self.per_nullifier(index),
            "payment_archive_bytes_per_nullifier": self.per_nullifier(
                self.state_sst_bytes(Some(&["accepted", "held", "cert_bodies", "evidence"]))
            ),
        })
    }
}

fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Opens the node's databases (it must be stopped: RocksDB's lock refuses a
/// running node's), optionally compacts them, and measures.
pub fn storage_report(data_dir: &Path, compact: bool) -> std::io::Result<StorageReport> {
    let state_root = data_dir.join("state");
    let state_dir = current_state_dir(&state_root)?.ok_or_else(|| {
        io_err(format!(
            "{}: no state database (has a node run with this data directory?)",
            state_root.display()
        ))
    })?;
    let log_dir = data_dir.join("raft-log");
    if !log_dir.is_dir() {
        return Err(io_err(format!("{}: no Raft log", log_dir.display())));
    }
    let measure = |sizes: Vec<(String, u64)>| {
        sizes
            .into_iter()
            .map(|(name, sst_bytes)| FamilyBytes { name, sst_bytes })
            .collect::<Vec<_>>()
    };
    let (state, live_nullifiers) = {
        let store = StateStore::open(&state_dir)?;
        let sizes = if compact {
            store.compact_all()?
        } else {
            store.sst_bytes_per_family()?
        };
        (measure(sizes), store.nullifier_count().map_err(io_err)?)
    };
    let raft_log = {
        let log = LogStore::open(&log_dir)?;
        measure(if compact {
            log.compact_all()?
        } else {
            log.sst_bytes_per_family()?
        })
    };
    Ok(StorageReport {
        compacted: compact,
        state,
        raft_log,
        state_dir_bytes: dir_bytes(&state_dir)?,
        raft_log_dir_bytes: dir_bytes(&log_dir)?,
        live_nullifiers,
    })
}
