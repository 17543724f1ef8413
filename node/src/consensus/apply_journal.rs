//! The state machine's last steps, kept in memory for diagnosis.
//!
//! When a replica's state digest diverges (`ops::digest_audit`), the
//! question is which entry made it and how: an entry the others never
//! applied (another log id at the same index), the same log id with other
//! bytes, or the same bytes with another outcome (a nondeterminism bug). The
//! digest alone cannot say; this journal can. Each record names the log id,
//! a hash of the entry's bytes, a summary of its outcome, and the digest
//! after it; snapshot installs and the state a node opened with are
//! recorded too, since they replace the state without applying entries.
//!
//! It costs one BLAKE3 pass over each command's bytes (about 0.2 ms for an
//! entry of 1,000 payments) and a bounded ring of small records.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::state_machine::{CommandOutcome, StateDigest};
use spentledger_protocol::Verdict;

use super::type_config::LogId;

/// Records kept: the newest ones.
pub const APPLY_JOURNAL_RECORDS: usize = 256;

/// What one journal record saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEvent {
    /// The state the state machine opened with (at start-up).
    Opened,
    /// A snapshot replaced the state.
    SnapshotInstalled,
    /// A blank entry (a new leader's first).
    Blank,
    /// A membership entry.
    Membership,
    /// A command entry: its encoded size, the first 8 bytes of the BLAKE3
    /// hash of those bytes, and what it did.
    Command {
        bytes: usize,
        hash: [u8; 8],
        outcome: OutcomeSummary,
    },
}

/// A command's outcome in a few numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeSummary {
    Submitted {
        accepted: u32,
        duplicate: u32,
        double_spend: u32,
        rejected: u32,
    },
    /// An issuer operation (settle, revoke, key register or retire): whether
    /// it succeeded.
    IssuerOp {
        name: &'static str,
        ok: bool,
    },
    Malformed,
    Internal,
}

impl OutcomeSummary {
    pub fn of(outcome: &CommandOutcome) -> Self {
        match outcome {
            CommandOutcome::Submitted(payments) => {
                let (mut accepted, mut duplicate, mut double_spend, mut rejected) = (0, 0, 0, 0);
                for p in payments {
                    match p.verdict() {
                        Verdict::Accepted => accepted += 1,
                        Verdict::Duplicate => duplicate += 1,
                        Verdict::DoubleSpend => double_spend += 1,
                        Verdict::Rejected(_) => rejected += 1,
                    }
                }
                OutcomeSummary::Submitted {
                    accepted,
                    duplicate,
                    double_spend,
                    rejected,
                }
            }
            CommandOutcome::Settled(r) => OutcomeSummary::IssuerOp {
                name: "settle",
                ok: r.is_ok(),
            },
            CommandOutcome::Revoked(r) => OutcomeSummary::IssuerOp {
                name: "revoke",
                ok: r.is_ok(),
            },
            CommandOutcome::KeyRegistered(r) => OutcomeSummary::IssuerOp {
                name: "register-key",
                ok: r.is_ok(),
            },
            CommandOutcome::KeyRetired(r) => OutcomeSummary::IssuerOp {
                name: "retire-key",
                ok: r.is_ok(),
            },
            CommandOutcome::Malformed(_) => OutcomeSummary::Malformed,
            CommandOutcome::Internal => OutcomeSummary::Internal,
        }
    }
}

/// One step of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The entry applied, or where the opened or installed state ends.
    pub log_id: Option<LogId>,
    pub event: JournalEvent,
    pub digest_after: StateDigest,
}

impl JournalRecord {
    /// The hash of a command's bytes, as recorded.
    pub fn entry_hash(bytes: &[u8]) -> [u8; 8] {
        let mut head = [0u8; 8];
        head.copy_from_slice(&blake3::hash(bytes).as_bytes()[..8]);
        head
    }
}

impl fmt::Display for JournalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.log_id {
            Some(id) => write!(f, "{}-{}", id.committed_leader_id().term, id.index())?,
            None => write!(f, "none")?,
        }
        match &self.event {
            JournalEvent::Opened => write!(f, " opened")?,
            JournalEvent::SnapshotInstalled => write!(f, " snapshot installed")?,
            JournalEvent::Blank => write!(f, " blank")?,
            JournalEvent::Membership => write!(f, " membership")?,
            JournalEvent::Command {
                bytes,
                hash,
                outcome,
            } => {
                write!(f, " command {bytes} B #")?;
                for b in hash {
                    write!(f, "{b:02x}")?;
                }
                match outcome {
                    OutcomeSummary::Submitted {
                        accepted,
                        duplicate,
                        double_spend,
                        rejected,
                    } => write!(
                        f,
                        " submit accepted={accepted} duplicate={duplicate} double_spend={double_spend} rejected={rejected}"
                    )?,
                    OutcomeSummary::IssuerOp { name, ok } => {
                        write!(f, " {name} {}", if *ok { "ok" } else { "refused" })?
                    }
                    OutcomeSummary::Malformed => write!(f, " malformed")?,
                    OutcomeSummary::Internal => write!(f, " internal")?,
                }
            }
        }
        let hex = self.digest_after.to_hex();
        write!(f, " -> {}", &hex[..16])
    }
}

/// The journal: a bounded ring shared by the state machine (which writes)
/// and diagnostics (which read).
#[derive(Clone, Default)]
pub struct ApplyJournal(Arc<Mutex<VecDeque<JournalRecord>>>);

impl ApplyJournal {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<JournalRecord>> {
        // Every mutation is one push or pop: a poisoned ring is still whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, records: impl IntoIterator<Item = JournalRecord>) {
        let mut ring = self.lock();
        for record in records {
            if ring.len() == APPLY_JOURNAL_RECORDS {
                ring.pop_front();
            }
            ring.push_back(record);
        }
    }

    /// The newest `n` records, oldest first.
    pub fn recent(&self, n: usize) -> Vec<JournalRecord> {
        let ring = self.lock();
        ring.iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The newest `n` records, one per line, for logs and test failures.
    pub fn render(&self, n: usize) -> String {
        self.recent(n)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::leader_id_std::CommittedLeaderId;

    use super::*;

    fn record(index: u64) -> JournalRecord {
        JournalRecord {
            log_id: Some(LogId::new(CommittedLeaderId::new(4), index)),
            event: JournalEvent::Command {
                bytes: 10,
                hash: JournalRecord::entry_hash(b"entry"),
                outcome: OutcomeSummary::Submitted {
                    accepted: 2,
                    duplicate: 1,
                    double_spend: 0,
                    rejected: 0,
                },
            },
            digest_after: StateDigest([0xAB; 32]),
        }
    }

    #[test]
    fn keeps_the_newest_records_in_order() {
        let journal = ApplyJournal::default();
        journal.record((0..APPLY_JOURNAL_RECORDS as u64 + 5).map(record));
        let all = journal.recent(usize::MAX);
        assert_eq!(all.len(), APPLY_JOURNAL_RECORDS);
        assert_eq!(all[0].log_id.expect("id").index(), 5);
        let last_two: Vec<u64> = journal
            .recent(2)
            .iter()
            .map(|r| r.log_id.expect("id").index())
            .collect();
        assert_eq!(
            last_two,
            vec![
                APPLY_JOURNAL_RECORDS as u64 + 3,
                APPLY_JOURNAL_RECORDS as u64 + 4
            ]
        );
    }

    #[test]
    fn a_record_reads_as_log_id_hash_outcome_and_digest() {
        let text = record(7).to_string();
        let hash: String = JournalRecord::entry_hash(b"entry")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            text,
            format!(
                "4-7 command 10 B #{hash} submit accepted=2 duplicate=1 double_spend=0 rejected=0 -> abababababababab"
            )
        );
    }
}
