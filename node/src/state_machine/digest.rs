use spentledger_protocol::{RejectReason, Verdict};

use super::outcome::{CommandOutcome, PaymentOutcome};

/// A running BLAKE3 digest over (log index, outcomes) of every applied entry.
/// Replicas that applied the same log report the same digest; a mismatch is a
/// bug and must stop the node from serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StateDigest(pub [u8; 32]);

const CONTEXT: &str = "spentledger v1 state digest";

fn verdict_code(verdict: Verdict) -> [u8; 2] {
    match verdict {
        Verdict::Accepted => [1, 0],
        Verdict::Duplicate => [2, 0],
        Verdict::DoubleSpend => [3, 0],
        Verdict::Rejected(reason) => [4, reason.code()],
    }
}

fn op_code<T, E>(result: &Result<T, E>) -> u8 {
    u8::from(result.is_ok())
}

impl StateDigest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The digest after applying entry `log_index` with `outcome` (`None` for
    /// blank and membership entries).
    pub fn fold(&self, log_index: u64, outcome: Option<&CommandOutcome>) -> StateDigest {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        h.update(&self.0);
        h.update(&log_index.to_le_bytes());
        match outcome {
            None => {
                h.update(&[0]);
            }
            Some(CommandOutcome::Submitted(payments)) => {
                h.update(&[1]);
                h.update(&(payments.len() as u64).to_le_bytes());
                for p in payments {
                    h.update(&p.tx_id().map_or([0u8; 32], |t| t.0));
                    h.update(&verdict_code(p.verdict()));
                    if let PaymentOutcome::Accepted { receipt, .. } = p {
                        h.update(&receipt.flags.to_le_bytes());
                    }
                }
            }
            Some(CommandOutcome::Settled(r)) => {
                h.update(&[2, op_code(r)]);
                if let Ok(s) = r {
                    h.update(&s.cert_id.0);
                    h.update(&s.spent_value.to_le_bytes());
                    h.update(&s.held_value.to_le_bytes());
                    h.update(&s.unspent_value.to_le_bytes());
                }
            }
            Some(CommandOutcome::Revoked(r)) => {
                h.update(&[3, op_code(r)]);
                if let Ok(rev) = r {
                    h.update(&rev.cert_id.0);
                    h.update(&rev.sequence.to_le_bytes());
                }
            }
            Some(CommandOutcome::KeyRegistered(r)) | Some(CommandOutcome::KeyRetired(r)) => {
                h.update(&[4, op_code(r)]);
                if let Ok(k) = r {
                    h.update(k.key_id.as_str().as_bytes());
                    h.update(&k.valid_until_ms.to_le_bytes());
                }
            }
            Some(CommandOutcome::Internal) => {
                h.update(&[0]);
            }
            Some(CommandOutcome::Malformed(_)) => {
                h.update(&[5, RejectReason::Malformed.code()]);
            }
        }
        StateDigest(*h.finalize().as_bytes())
    }
}
