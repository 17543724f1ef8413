use spentledger_protocol::types::Revocation;
use spentledger_protocol::{
    CertificateSettlement, CloneEvidence, DoubleSpendEvidence, IssuerKey, Receipt, RejectReason,
    TxId, Verdict,
};

/// The verdict of one submitted payment, with what the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Accepted {
        receipt: Receipt,
        /// Set when the payment reused a counter (receipt flagged, certificate revoked).
        clone_evidence: Option<Box<CloneEvidence>>,
    },
    /// Already recorded: the original receipt.
    Duplicate { receipt: Receipt },
    DoubleSpend {
        tx_id: TxId,
        evidence: Box<DoubleSpendEvidence>,
    },
    Rejected {
        /// `None` when the payment could not be decoded.
        tx_id: Option<TxId>,
        reason: RejectReason,
        detail: Option<String>,
    },
}

impl PaymentOutcome {
    pub fn verdict(&self) -> Verdict {
        match self {
            PaymentOutcome::Accepted { .. } => Verdict::Accepted,
            PaymentOutcome::Duplicate { .. } => Verdict::Duplicate,
            PaymentOutcome::DoubleSpend { .. } => Verdict::DoubleSpend,
            PaymentOutcome::Rejected { reason, .. } => Verdict::Rejected(*reason),
        }
    }

    pub fn tx_id(&self) -> Option<TxId> {
        match self {
            PaymentOutcome::Accepted { receipt, .. } | PaymentOutcome::Duplicate { receipt } => {
                Some(receipt.tx_id)
            }
            PaymentOutcome::DoubleSpend { tx_id, .. } => Some(*tx_id),
            PaymentOutcome::Rejected { tx_id, .. } => *tx_id,
        }
    }
}

/// Why an issuer operation was refused. Recorded in the log like any
/// outcome: every replica refuses it identically.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerOpError {
    #[error("the certificate is invalid: {0}")]
    InvalidCertificate(RejectReason),
    #[error(
        "the certificate cannot be settled before {settle_until_ms} (entry time {stamp_ms}) without force"
    )]
    NotYetSettleable { settle_until_ms: u64, stamp_ms: u64 },
    #[error("the ledger's figures exceed the certificate's total value: {0}")]
    Inconsistent(String),
    #[error("issuer key {key_id} is registered with another public key")]
    KeyConflict { key_id: String },
    #[error("issuer key {key_id} is not registered")]
    UnknownKey { key_id: String },
    #[error("retirement time {retired_at_ms} is before the key's valid_from {valid_from_ms}")]
    RetiredBeforeValid {
        retired_at_ms: u64,
        valid_from_ms: u64,
    },
}

/// The outcome of one log entry's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Submitted(Vec<PaymentOutcome>),
    Settled(Result<CertificateSettlement, IssuerOpError>),
    Revoked(Result<Revocation, IssuerOpError>),
    KeyRegistered(Result<IssuerKey, IssuerOpError>),
    KeyRetired(Result<IssuerKey, IssuerOpError>),
    /// The command did not decode (a faulty leader); nothing was changed.
    Malformed(String),
    /// A blank or membership entry: nothing for a client.
    Internal,
}
