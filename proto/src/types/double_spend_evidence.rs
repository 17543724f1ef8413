use crate::decode_error::{DecodeError, field};
use crate::ids::Nullifier;
use crate::pb;
use crate::types::{Payment, Receipt};
use crate::validate::signature;

/// Proof that one device signed away the same token in two payments. Anyone
/// holding the issuer's public key can check it offline with [`Self::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleSpendEvidence {
    pub nullifier: Nullifier,
    /// The payment that consumed the token first, as recorded.
    pub first_payment: Payment,
    /// Its receipt; `None` when the first payment was itself a losing double
    /// spend whose fresh tokens were consumed as held (it has no receipt).
    pub first_receipt: Option<Receipt>,
    pub second_payment: Payment,
    pub detected_log_index: u64,
}

/// Why a piece of evidence does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the two payments are under different certificates")]
    DifferentCertificates,
    #[error("the two payments are the same payment (same tx_id)")]
    SamePayment,
    #[error("the nullifier is not spent by both payments")]
    NullifierNotShared,
    #[error("the counter nullifier does not match both payments' counter")]
    CounterNotShared,
    #[error("the receipt does not belong to the first payment")]
    ReceiptMismatch,
    #[error("the issuer signature on the certificate does not verify under the given key")]
    BadIssuerSignature,
    #[error("the device signature of the {which} payment does not verify")]
    BadDeviceSignature { which: &'static str },
}

impl DoubleSpendEvidence {
    /// Checks the evidence against the issuer's public key: one certificate,
    /// genuinely signed by the issuer; two different payments, both genuinely
    /// signed by its device; both spending the token behind `nullifier`.
    pub fn verify(&self, issuer_public_key: &[u8; 32]) -> Result<(), EvidenceError> {
        signature::verify_two_payments(
            &self.first_payment,
            &self.second_payment,
            issuer_public_key,
        )?;
        if let Some(receipt) = &self.first_receipt
            && receipt.tx_id != self.first_payment.tx_id()
        {
            return Err(EvidenceError::ReceiptMismatch);
        }
        let spends = |payment: &Payment| payment.nullifiers().contains(&self.nullifier);
        if !spends(&self.first_payment) || !spends(&self.second_payment) {
            return Err(EvidenceError::NullifierNotShared);
        }
        Ok(())
    }
}

impl TryFrom<&pb::DoubleSpendEvidence> for DoubleSpendEvidence {
    type Error = DecodeError;

    fn try_from(wire: &pb::DoubleSpendEvidence) -> Result<Self, DecodeError> {
        Ok(DoubleSpendEvidence {
            nullifier: Nullifier::from_field("nullifier", &wire.nullifier)?,
            first_payment: Payment::try_from(field::required(
                "first_payment",
                &wire.first_payment,
            )?)
            .map_err(|e| e.within("first_payment"))?,
            first_receipt: wire
                .first_receipt
                .as_ref()
                .map(|r| Receipt::try_from(r).map_err(|e| e.within("first_receipt")))
                .transpose()?,
            second_payment: Payment::try_from(field::required(
                "second_payment",
                &wire.second_payment,
            )?)
            .map_err(|e| e.within("second_payment"))?,
            detected_log_index: wire.detected_log_index,
        })
    }
}

impl From<&DoubleSpendEvidence> for pb::DoubleSpendEvidence {
    fn from(e: &DoubleSpendEvidence) -> Self {
        pb::DoubleSpendEvidence {
            nullifier: e.nullifier.0.to_vec(),
            first_payment: Some((&e.first_payment).into()),
            first_receipt: e.first_receipt.as_ref().map(Into::into),
            second_payment: Some((&e.second_payment).into()),
            detected_log_index: e.detected_log_index,
        }
    }
}
