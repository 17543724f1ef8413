use crate::decode_error::{DecodeError, DecodeProblem};
use crate::ids::CertId;
use crate::pb;
use crate::types::RevocationReason;

/// The ledger's running account of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateState {
    pub cert_id: CertId,
    /// Value of the tokens of accepted payments.
    pub spent_value: u64,
    /// Value of the fresh tokens of losing double spends: signed away by the
    /// device, never refunded, kept for the dispute.
    pub held_value: u64,
    pub payment_count: u64,
    pub revoked: Option<RevocationReason>,
    pub settled: bool,
}

impl CertificateState {
    pub fn new(cert_id: CertId) -> Self {
        CertificateState {
            cert_id,
            spent_value: 0,
            held_value: 0,
            payment_count: 0,
            revoked: None,
            settled: false,
        }
    }
}

impl TryFrom<&pb::CertificateState> for CertificateState {
    type Error = DecodeError;

    fn try_from(wire: &pb::CertificateState) -> Result<Self, DecodeError> {
        let revoked = if wire.revoked {
            Some(RevocationReason::from_wire(
                "revocation_reason",
                wire.revocation_reason,
            )?)
        } else if wire.revocation_reason != 0 {
            return Err(DecodeError::new(
                "revocation_reason",
                DecodeProblem::OutOfRange {
                    detail: "set on a certificate that is not revoked",
                },
            ));
        } else {
            None
        };
        Ok(CertificateState {
            cert_id: CertId::from_field("cert_id", &wire.cert_id)?,
            spent_value: wire.spent_value,
            held_value: wire.held_value,
            payment_count: wire.payment_count,
            revoked,
            settled: wire.settled,
        })
    }
}

impl From<&CertificateState> for pb::CertificateState {
    fn from(state: &CertificateState) -> Self {
        pb::CertificateState {
            cert_id: state.cert_id.0.to_vec(),
            spent_value: state.spent_value,
            held_value: state.held_value,
            payment_count: state.payment_count,
            revoked: state.revoked.is_some(),
            revocation_reason: state.revoked.map_or(0, |reason| reason.to_wire() as i32),
            settled: state.settled,
        }
    }
}
