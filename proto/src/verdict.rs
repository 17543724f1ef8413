//! Verdicts and the stable reject reason codes (docs/PROTOCOL.md §6).

use std::fmt;

use crate::decode_error::{DecodeError, DecodeProblem};
use crate::pb;

/// Why a payment is rejected. The numeric codes are stable: they are the
/// protobuf `RejectReason` numbers and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum RejectReason {
    Malformed = 1,
    NoInputs = 2,
    TooManyInputs = 3,
    BadCertificate = 4,
    UnknownIssuerKey = 5,
    IssuerKeyNotValid = 6,
    CreatedBeforeIssuance = 7,
    CreatedAfterSpendUntil = 8,
    CreatedInFuture = 9,
    SettlementWindowClosed = 10,
    IndexOutOfRange = 11,
    DuplicateInput = 12,
    InputsNotSorted = 13,
    ZeroValueInput = 14,
    AmountOverflow = 15,
    AmountMismatch = 16,
    BadIssuerSignature = 17,
    WeakDeviceKey = 18,
    BadMerklePath = 19,
    NonCanonicalSignature = 20,
    BadDeviceSignature = 21,
    CertificateSettled = 22,
}

impl RejectReason {
    /// Every reason, in code order.
    pub const ALL: [RejectReason; 22] = [
        RejectReason::Malformed,
        RejectReason::NoInputs,
        RejectReason::TooManyInputs,
        RejectReason::BadCertificate,
        RejectReason::UnknownIssuerKey,
        RejectReason::IssuerKeyNotValid,
        RejectReason::CreatedBeforeIssuance,
        RejectReason::CreatedAfterSpendUntil,
        RejectReason::CreatedInFuture,
        RejectReason::SettlementWindowClosed,
        RejectReason::IndexOutOfRange,
        RejectReason::DuplicateInput,
        RejectReason::InputsNotSorted,
        RejectReason::ZeroValueInput,
        RejectReason::AmountOverflow,
        RejectReason::AmountMismatch,
        RejectReason::BadIssuerSignature,
        RejectReason::WeakDeviceKey,
        RejectReason::BadMerklePath,
        RejectReason::NonCanonicalSignature,
        RejectReason::BadDeviceSignature,
        RejectReason::CertificateSettled,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// The stable upper-case name, as in the protobuf enum without its prefix.
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::Malformed => "MALFORMED",
            RejectReason::NoInputs => "NO_INPUTS",
            RejectReason::TooManyInputs => "TOO_MANY_INPUTS",
            RejectReason::BadCertificate => "BAD_CERTIFICATE",
            RejectReason::UnknownIssuerKey => "UNKNOWN_ISSUER_KEY",
            RejectReason::IssuerKeyNotValid => "ISSUER_KEY_NOT_VALID",
            RejectReason::CreatedBeforeIssuance => "CREATED_BEFORE_ISSUANCE",
            RejectReason::CreatedAfterSpendUntil => "CREATED_AFTER_SPEND_UNTIL",
            RejectReason::CreatedInFuture => "CREATED_IN_FUTURE",
            RejectReason::SettlementWindowClosed => "SETTLEMENT_WINDOW_CLOSED",
            RejectReason::IndexOutOfRange => "INDEX_OUT_OF_RANGE",
            RejectReason::DuplicateInput => "DUPLICATE_INPUT",
            RejectReason::InputsNotSorted => "INPUTS_NOT_SORTED",
            RejectReason::ZeroValueInput => "ZERO_VALUE_INPUT",
            RejectReason::AmountOverflow => "AMOUNT_OVERFLOW",
            RejectReason::AmountMismatch => "AMOUNT_MISMATCH",
            RejectReason::BadIssuerSignature => "BAD_ISSUER_SIGNATURE",
            RejectReason::WeakDeviceKey => "WEAK_DEVICE_KEY",
            RejectReason::BadMerklePath => "BAD_MERKLE_PATH",
            RejectReason::NonCanonicalSignature => "NON_CANONICAL_SIGNATURE",
            RejectReason::BadDeviceSignature => "BAD_DEVICE_SIGNATURE",
            RejectReason::CertificateSettled => "CERTIFICATE_SETTLED",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.name() == name)
    }

    /// The reason for a payment that failed to decode: limits have their own
    /// code, everything else is `MALFORMED`.
    pub fn for_decode_error(error: &DecodeError) -> Self {
        match (&error.problem, error.field.as_str()) {
            (DecodeProblem::TooMany { .. }, "inputs") => RejectReason::TooManyInputs,
            _ => RejectReason::Malformed,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<RejectReason> for pb::RejectReason {
    fn from(reason: RejectReason) -> Self {
        pb::RejectReason::try_from(i32::from(reason.code()))
            .expect("every RejectReason code exists in the protobuf enum (tested)")
    }
}

impl TryFrom<pb::RejectReason> for RejectReason {
    type Error = DecodeError;

    fn try_from(wire: pb::RejectReason) -> Result<Self, DecodeError> {
        u8::try_from(wire as i32)
            .ok()
            .and_then(RejectReason::from_code)
            .ok_or_else(|| {
                DecodeError::new(
                    "reject_reason",
                    DecodeProblem::UnknownEnum { value: wire as i32 },
                )
            })
    }
}

/// The verdict a payment gets from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accepted,
    Duplicate,
    DoubleSpend,
    Rejected(RejectReason),
}

impl Verdict {
    pub fn to_wire(self) -> (pb::Verdict, pb::RejectReason) {
        match self {
            Verdict::Accepted => (pb::Verdict::Accepted, pb::RejectReason::Unspecified),
            Verdict::Duplicate => (pb::Verdict::Duplicate, pb::RejectReason::Unspecified),
            Verdict::DoubleSpend => (pb::Verdict::DoubleSpend, pb::RejectReason::Unspecified),
            Verdict::Rejected(reason) => (pb::Verdict::Rejected, reason.into()),
        }
    }

    pub fn from_wire(verdict: i32, reason: i32) -> Result<Self, DecodeError> {
        let verdict = pb::Verdict::try_from(verdict).map_err(|_| {
            DecodeError::new("verdict", DecodeProblem::UnknownEnum { value: verdict })
        })?;
        Ok(match verdict {
            pb::Verdict::Accepted => Verdict::Accepted,
            pb::Verdict::Duplicate => Verdict::Duplicate,
            pb::Verdict::DoubleSpend => Verdict::DoubleSpend,
            pb::Verdict::Rejected => {
                let wire_reason = pb::RejectReason::try_from(reason).map_err(|_| {
                    DecodeError::new(
                        "reject_reason",
                        DecodeProblem::UnknownEnum { value: reason },
                    )
                })?;
                Verdict::Rejected(RejectReason::try_from(wire_reason)?)
            }
            pb::Verdict::Unspecified => return Err(DecodeError::missing("verdict")),
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accepted => f.write_str("ACCEPTED"),
            Verdict::Duplicate => f.write_str("DUPLICATE"),
            Verdict::DoubleSpend => f.write_str("DOUBLE_SPEND"),
            Verdict::Rejected(reason) => write!(f, "REJECTED({reason})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_code_name_and_protobuf() {
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_code(reason.code()), Some(reason));
            assert_eq!(RejectReason::from_name(reason.name()), Some(reason));
            let wire = pb::RejectReason::from(reason);
            assert_eq!(
                wire.as_str_name(),
                format!("REJECT_REASON_{}", reason.name())
            );
            assert_eq!(RejectReason::try_from(wire), Ok(reason));
            let (v, r) = Verdict::Rejected(reason).to_wire();
            assert_eq!(
                Verdict::from_wire(v as i32, r as i32),
                Ok(Verdict::Rejected(reason))
            );
        }
        assert_eq!(RejectReason::from_code(0), None);
        assert_eq!(RejectReason::from_code(23), None);
    }

    #[test]
    fn unknown_wire_verdicts_are_typed_errors() {
        assert!(Verdict::from_wire(99, 0).is_err());
        assert!(Verdict::from_wire(pb::Verdict::Rejected as i32, 0).is_err());
        assert!(Verdict::from_wire(pb::Verdict::Rejected as i32, 1000).is_err());
        assert_eq!(
            Verdict::from_wire(0, 0),
            Err(DecodeError::missing("verdict"))
        );
    }
}
