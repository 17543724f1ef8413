//! A gateway's durable outbox: payments are stored on local disk before
//! the gateway acknowledges them to merchants, and stay there until the
//! ledger's verdicts are stored too. A gateway that crashes at any point
//! reopens the outbox and drains it: nothing is lost, and a batch that was
//! submitted but whose verdicts were not yet stored is submitted again,
//! which the ledger answers DUPLICATE with the original receipts (payments
//! are idempotent by `tx_id`), so nothing is counted twice.
//!
//! Layout: `pending/<seq>.batch` (a `SubmitBatchRequest`) and
//! `done/<seq>.result` (its `SubmitBatchResponse`), protobuf-encoded. Every
//! file is written to a temporary name, fsynced, renamed and its directory
//! fsynced; a batch's result is durable before its pending file is removed.

use std::path::{Path, PathBuf};

use prost::Message;
use spentledger_protocol::{Payment, pb};

use crate::encoded_batch::EncodedBatch;
use crate::gateway::{Gateway, GatewayError};

/// Payments per stored batch, at most.
pub const OUTBOX_BATCH_PAYMENTS_MAX: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("outbox file {path} is corrupt: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("a stored batch holds 1..={OUTBOX_BATCH_PAYMENTS_MAX} payments, {0} given")]
    BadBatch(usize),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// temp file, fsync, rename, fsync the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path.parent().expect("outbox files live in a directory"))
}

/// One stored batch waiting for its verdicts.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub sequence: u64,
    pub request: pb::SubmitBatchRequest,
}

/// A stored batch and the ledger's answer.
#[derive(Debug, Clone)]
pub struct DoneBatch {
    pub sequence: u64,
    pub response: pb::SubmitBatchResponse,
}

pub struct Outbox {
    pending_dir: PathBuf,
    done_dir: PathBuf,
    next_sequence: u64,
}

fn sequence_of(path: &Path, extension: &str) -> Option<u64> {
    if path.extension()? != extension {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn list(dir: &Path, extension: &str) -> Result<Vec<(u64, PathBuf)>, OutboxError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            // A write interrupted by a crash: never renamed, never counted.
            std::fs::remove_file(&path).map_err(io(&path))?;
            continue;
        }
        if let Some(seq) = sequence_of(&path, extension) {
            found.push((seq, path));
        }
    }
    found.sort();
    Ok(found)
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, discarding interrupted writes.
    pub fn open(dir: &Path) -> Result<Self, OutboxError> {
        let pending_dir = dir.join("pending");
        let done_dir = dir.join("done");
        std::fs::create_dir_all(&pending_dir).map_err(io(&pending_dir))?;
        std::fs::create_dir_all(&done_dir).map_err(io(&done_dir))?;
        let last = list(&pending_dir, "batch")?
            .into_iter()
            .chain(list(&done_dir, "result")?)
            .map(|(seq, _)| seq)
            .max()
            .unwrap_or(0);
        Ok(Outbox {
            pending_dir,
            done_dir,
            next_sequence: last + 1,
        })
    }

    /// Stores `payments` as one batch; when this returns they survive a crash.
    pub fn enqueue(&mut self, payments: &[Payment]) -> Result<u64, OutboxError> {
        if payments.is_empty() || payments.len() > OUTBOX_BATCH_PAYMENTS_MAX {
            return Err(OutboxError::BadBatch(payments.len()));
        }
        let sequence = self.next_sequence;
        let request = pb::SubmitBatchRequest {
            batch_id: sequence,
            payments: payments.iter().map(pb::Payment::from).collect(),
        };
        write_durably(
            &self.pending_dir.join(format!("{sequence:020}.batch")),
            &request.encode_to_vec(),
        )?;
        self.next_sequence += 1;
        Ok(sequence)
    }

    /// Batches stored and not yet answered, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingBatch>, OutboxError> {
        Ok(read_all(&self.pending_dir, "batch")?
            .into_iter()
            .map(|(sequence, request)| PendingBatch { sequence, request })
            .collect())
    }

    /// Stores the ledger's answer for `batch`, then forgets the batch.
    pub fn record(
        &mut self,
        batch: &PendingBatch,
        response: &pb::SubmitBatchResponse,
    ) -> Result<(), OutboxError> {
        write_durably(
            &self.done_dir.join(format!("{:020}.result", batch.sequence)),
            &response.encode_to_vec(),
        )?;
        let pending = self
            .pending_dir
            .join(format!("{:020}.batch", batch.sequence));
        std::fs::remove_file(&pending).map_err(io(&pending))?;
        sync_dir(&self.pending_dir)
    }

    /// Submits every pending batch in order and records each answer; returns
    /// how many batches were drained.
    pub async fn drain(&mut self, gateway: &Gateway) -> Result<usize, OutboxError> {
        let pending = self.pending()?;
        for batch in &pending {
            let encoded = EncodedBatch::new(&batch.request);
            let response = gateway.submit_encoded(&encoded).await?;
            self.record(batch, &response)?;
        }
        Ok(pending.len())
    }

    /// Forgets answered batches up to and including `sequence`, once the
    /// gateway has passed their verdicts on; returns how many were removed.
    pub fn prune_done(&mut self, sequence: u64) -> Result<usize, OutboxError> {
        let mut removed = 0;
        for (seq, path) in list(&self.done_dir, "result")? {
            if seq <= sequence {
                std::fs::remove_file(&path).map_err(io(&path))?;
                removed += 1;
            }
        }
        sync_dir(&self.done_dir)?;
        Ok(removed)
    }

    /// Answered batches, oldest first.
    pub fn done(&self) -> Result<Vec<DoneBatch>, OutboxError> {
        Ok(read_all(&self.done_dir, "result")?
            .into_iter()
            .map(|(sequence, response)| DoneBatch { sequence, response })
            .collect())
    }
}

/// Every `<seq>.<extension>` message in `dir`, in sequence order.
fn read_all<M: Message + Default>(
    dir: &Path,
    extension: &str,
) -> Result<Vec<(u64, M)>, OutboxError> {
    list(dir, extension)?
        .into_iter()
        .map(|(sequence, path)| {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let message = M::decode(bytes.as_slice()).map_err(|e| OutboxError::Corrupt {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
            Ok((sequence, message))
        })
        .collect()
}
