use crate::decode_error::{DecodeError, DecodeProblem};
use crate::ids::{CertId, TxId};
use crate::pb;
use crate::types::{IdText, Payment};

/// Bits of [`Receipt::flags`].
pub mod receipt_flags {
    /// Another payment under the same certificate used the same counter:
    /// the device's secure element was cloned.
    pub const CLONE_DETECTED: u32 = 1;
    /// Every flag this version knows.
    pub const KNOWN: u32 = CLONE_DETECTED;
}

/// What the ledger recorded for an accepted payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tx_id: TxId,
    pub log_index: u64,
    /// The leader's time stamp of the entry that recorded the payment.
    pub settled_at_ms: u64,
    pub payee_id: IdText,
    pub amount: u64,
    pub cert_id: CertId,
    pub flags: u32,
}

impl Receipt {
    /// The receipt of `payment`, recorded as `tx_id` under `cert_id` by the
    /// entry at `log_index` stamped `settled_at_ms`: its payee and amount are
    /// always the payment's (so stores need not keep them twice).
    pub fn of(
        payment: &Payment,
        tx_id: TxId,
        cert_id: CertId,
        log_index: u64,
        settled_at_ms: u64,
        flags: u32,
    ) -> Receipt {
        Receipt {
            tx_id,
            log_index,
            settled_at_ms,
            payee_id: payment.payee_id.clone(),
            amount: payment.amount,
            cert_id,
            flags,
        }
    }

    pub fn clone_detected(&self) -> bool {
        self.flags & receipt_flags::CLONE_DETECTED != 0
    }
}

impl TryFrom<&pb::Receipt> for Receipt {
    type Error = DecodeError;

    fn try_from(wire: &pb::Receipt) -> Result<Self, DecodeError> {
        if wire.verdict != pb::Verdict::Accepted as i32 {
            return Err(DecodeError::new(
                "verdict",
                DecodeProblem::OutOfRange {
                    detail: "a recorded receipt is always VERDICT_ACCEPTED",
                },
            ));
        }
        if wire.flags & !receipt_flags::KNOWN != 0 {
            return Err(DecodeError::new(
                "flags",
                DecodeProblem::OutOfRange {
                    detail: "unknown flag bits",
                },
            ));
        }
        Ok(Receipt {
            tx_id: TxId::from_field("tx_id", &wire.tx_id)?,
            log_index: wire.log_index,
            settled_at_ms: wire.settled_at_ms,
            payee_id: IdText::new("payee_id", wire.payee_id.clone())?,
            amount: wire.amount,
            cert_id: CertId::from_field("cert_id", &wire.cert_id)?,
            flags: wire.flags,
        })
    }
}

impl From<&Receipt> for pb::Receipt {
    fn from(receipt: &Receipt) -> Self {
        pb::Receipt {
            tx_id: receipt.tx_id.0.to_vec(),
            verdict: pb::Verdict::Accepted as i32,
            log_index: receipt.log_index,
            settled_at_ms: receipt.settled_at_ms,
            payee_id: receipt.payee_id.as_str().to_owned(),
            amount: receipt.amount,
            cert_id: receipt.cert_id.0.to_vec(),
            flags: receipt.flags,
        }
    }
}
