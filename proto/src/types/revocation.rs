use crate::decode_error::{DecodeError, DecodeProblem};
use crate::ids::CertId;
use crate::pb;

/// Why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RevocationReason {
    DoubleSpend,
    ClonedDevice,
    LostOrStolen,
    IssuerRequest,
}

impl RevocationReason {
    pub fn to_wire(self) -> pb::RevocationReason {
        match self {
            RevocationReason::DoubleSpend => pb::RevocationReason::DoubleSpend,
            RevocationReason::ClonedDevice => pb::RevocationReason::ClonedDevice,
            RevocationReason::LostOrStolen => pb::RevocationReason::LostOrStolen,
            RevocationReason::IssuerRequest => pb::RevocationReason::IssuerRequest,
        }
    }

    /// `field_name` names the field on error; `UNSPECIFIED` is refused.
    pub fn from_wire(field_name: &str, value: i32) -> Result<Self, DecodeError> {
        match pb::RevocationReason::try_from(value) {
            Ok(pb::RevocationReason::DoubleSpend) => Ok(RevocationReason::DoubleSpend),
            Ok(pb::RevocationReason::ClonedDevice) => Ok(RevocationReason::ClonedDevice),
            Ok(pb::RevocationReason::LostOrStolen) => Ok(RevocationReason::LostOrStolen),
            Ok(pb::RevocationReason::IssuerRequest) => Ok(RevocationReason::IssuerRequest),
            Ok(pb::RevocationReason::Unspecified) => Err(DecodeError::missing(field_name)),
            Err(_) => Err(DecodeError::new(
                field_name,
                DecodeProblem::UnknownEnum { value },
            )),
        }
    }
}

/// One entry of the revocation feed that terminals sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Position in the feed: starts at 1, no gaps.
    pub sequence: u64,
    pub cert_id: CertId,
    pub reason: RevocationReason,
    pub revoked_at_ms: u64,
    pub log_index: u64,
}

impl TryFrom<&pb::Revocation> for Revocation {
    type Error = DecodeError;

    fn try_from(wire: &pb::Revocation) -> Result<Self, DecodeError> {
        if wire.sequence == 0 {
            return Err(DecodeError::missing("sequence"));
        }
        Ok(Revocation {
            sequence: wire.sequence,
            cert_id: CertId::from_field("cert_id", &wire.cert_id)?,
            reason: RevocationReason::from_wire("reason", wire.reason)?,
            revoked_at_ms: wire.revoked_at_ms,
            log_index: wire.log_index,
        })
    }
}

impl From<&Revocation> for pb::Revocation {
    fn from(revocation: &Revocation) -> Self {
        pb::Revocation {
            sequence: revocation.sequence,
            cert_id: revocation.cert_id.0.to_vec(),
            reason: revocation.reason.to_wire() as i32,
            revoked_at_ms: revocation.revoked_at_ms,
            log_index: revocation.log_index,
        }
    }
}
