use crate::decode_error::{DecodeError, field};
use crate::ids::CounterNullifier;
use crate::pb;
use crate::types::{EvidenceError, Payment};
use crate::validate::signature;

/// Proof that a device's secure element was cloned: two different payments
/// under one certificate carrying the same counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneEvidence {
    pub counter_nullifier: CounterNullifier,
    pub first_payment: Payment,
    pub second_payment: Payment,
    pub detected_log_index: u64,
}

impl CloneEvidence {
    /// Checks the evidence against the issuer's public key, as
    /// [`crate::DoubleSpendEvidence::verify`] does, with the counter in place
    /// of the token.
    pub fn verify(&self, issuer_public_key: &[u8; 32]) -> Result<(), EvidenceError> {
        signature::verify_two_payments(
            &self.first_payment,
            &self.second_payment,
            issuer_public_key,
        )?;
        if self.first_payment.counter_nullifier() != self.counter_nullifier
            || self.second_payment.counter_nullifier() != self.counter_nullifier
        {
            return Err(EvidenceError::CounterNotShared);
        }
        Ok(())
    }
}

impl TryFrom<&pb::CloneEvidence> for CloneEvidence {
    type Error = DecodeError;

    fn try_from(wire: &pb::CloneEvidence) -> Result<Self, DecodeError> {
        Ok(CloneEvidence {
            counter_nullifier: CounterNullifier::from_field(
                "counter_nullifier",
                &wire.counter_nullifier,
            )?,
            first_payment: Payment::try_from(field::required(
                "first_payment",
                &wire.first_payment,
            )?)
            .map_err(|e| e.within("first_payment"))?,
            second_payment: Payment::try_from(field::required(
                "second_payment",
                &wire.second_payment,
            )?)
            .map_err(|e| e.within("second_payment"))?,
            detected_log_index: wire.detected_log_index,
        })
    }
}

impl From<&CloneEvidence> for pb::CloneEvidence {
    fn from(e: &CloneEvidence) -> Self {
        pb::CloneEvidence {
            counter_nullifier: e.counter_nullifier.0.to_vec(),
            first_payment: Some((&e.first_payment).into()),
            second_payment: Some((&e.second_payment).into()),
            detected_log_index: e.detected_log_index,
        }
    }
}
