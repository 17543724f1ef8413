use crate::decode_error::{DecodeError, DecodeProblem, field};
use crate::ids::CertId;
use crate::limits::REASON_TEXT_BYTES_MAX;
use crate::pb;
use crate::types::{CertificateState, IdText, OfflineCertificate};

/// The closing account of a certificate: `total = spent + held + unspent`,
/// and the issuer refunds `unspent` to the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSettlement {
    pub cert_id: CertId,
    pub wallet_id: IdText,
    pub total_value: u64,
    pub spent_value: u64,
    pub held_value: u64,
    pub unspent_value: u64,
    pub payment_count: u64,
    pub double_spend_detected: bool,
    pub settled_at_ms: u64,
    pub log_index: u64,
    /// `Some(reason)` when settled before `settle_until` by force.
    pub forced: Option<String>,
}

/// Why a settlement cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("spent {spent} + held {held} exceeds the certificate's total value {total}")]
    ValueExceedsTotal { spent: u64, held: u64, total: u64 },
    #[error("the state belongs to certificate {state}, not {certificate}")]
    WrongCertificate { certificate: CertId, state: CertId },
}

impl CertificateSettlement {
    /// Closes `certificate` with its ledger `state`.
    pub fn compute(
        certificate: &OfflineCertificate,
        state: &CertificateState,
        double_spend_detected: bool,
        settled_at_ms: u64,
        log_index: u64,
        forced: Option<String>,
    ) -> Result<Self, SettlementError> {
        let cert_id = certificate.cert_id();
        if cert_id != state.cert_id {
            return Err(SettlementError::WrongCertificate {
                certificate: cert_id,
                state: state.cert_id,
            });
        }
        let unspent_value = state
            .spent_value
            .checked_add(state.held_value)
            .and_then(|used| certificate.total_value.checked_sub(used))
            .ok_or(SettlementError::ValueExceedsTotal {
                spent: state.spent_value,
                held: state.held_value,
                total: certificate.total_value,
            })?;
        Ok(CertificateSettlement {
            cert_id,
            wallet_id: certificate.wallet_id.clone(),
            total_value: certificate.total_value,
            spent_value: state.spent_value,
            held_value: state.held_value,
            unspent_value,
            payment_count: state.payment_count,
            double_spend_detected,
            settled_at_ms,
            log_index,
            forced,
        })
    }
}

impl TryFrom<&pb::CertificateSettlement> for CertificateSettlement {
    type Error = DecodeError;

    fn try_from(wire: &pb::CertificateSettlement) -> Result<Self, DecodeError> {
        let balanced = wire
            .spent_value
            .checked_add(wire.held_value)
            .and_then(|used| used.checked_add(wire.unspent_value))
            == Some(wire.total_value);
        if !balanced {
            return Err(DecodeError::new(
                "total_value",
                DecodeProblem::OutOfRange {
                    detail: "must equal spent_value + held_value + unspent_value",
                },
            ));
        }
        let forced = if wire.forced {
            field::free_text("force_reason", &wire.force_reason, REASON_TEXT_BYTES_MAX)?;
            Some(wire.force_reason.clone())
        } else {
            None
        };
        Ok(CertificateSettlement {
            cert_id: CertId::from_field("cert_id", &wire.cert_id)?,
            wallet_id: IdText::new("wallet_id", wire.wallet_id.clone())?,
            total_value: wire.total_value,
            spent_value: wire.spent_value,
            held_value: wire.held_value,
            unspent_value: wire.unspent_value,
            payment_count: wire.payment_count,
            double_spend_detected: wire.double_spend_detected,
            settled_at_ms: wire.settled_at_ms,
            log_index: wire.log_index,
            forced,
        })
    }
}

impl From<&CertificateSettlement> for pb::CertificateSettlement {
    fn from(s: &CertificateSettlement) -> Self {
        pb::CertificateSettlement {
            cert_id: s.cert_id.0.to_vec(),
            wallet_id: s.wallet_id.as_str().to_owned(),
            total_value: s.total_value,
            spent_value: s.spent_value,
            held_value: s.held_value,
            unspent_value: s.unspent_value,
            payment_count: s.payment_count,
            double_spend_detected: s.double_spend_detected,
            settled_at_ms: s.settled_at_ms,
            log_index: s.log_index,
            forced: s.forced.is_some(),
            force_reason: s.forced.clone().unwrap_or_default(),
        }
    }
}
