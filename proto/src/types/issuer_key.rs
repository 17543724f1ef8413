use crate::decode_error::{DecodeError, DecodeProblem, field};
use crate::pb;
use crate::types::IdText;
use crate::validate::point_check;

/// An issuer's ed25519 verification key and the window of issuance times it
/// is trusted for (inclusive at both ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    pub key_id: IdText,
    pub public_key: [u8; 32],
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
}

impl IssuerKey {
    /// True when a certificate issued at `issued_at_ms` may rely on this key.
    pub fn covers(&self, issued_at_ms: u64) -> bool {
        (self.valid_from_ms..=self.valid_until_ms).contains(&issued_at_ms)
    }
}

impl TryFrom<&pb::IssuerKey> for IssuerKey {
    type Error = DecodeError;

    fn try_from(wire: &pb::IssuerKey) -> Result<Self, DecodeError> {
        let key_id = IdText::new("key_id", wire.key_id.clone())?;
        let public_key = field::fixed::<32>("public_key", &wire.public_key)?;
        if point_check::strong_public_key(&public_key).is_none() {
            return Err(DecodeError::new(
                "public_key",
                DecodeProblem::Invalid {
                    detail: "not a canonical, prime-order ed25519 public key",
                },
            ));
        }
        if wire.valid_until_ms < wire.valid_from_ms {
            return Err(DecodeError::new(
                "valid_until_ms",
                DecodeProblem::OutOfRange {
                    detail: "must not be before valid_from_ms",
                },
            ));
        }
        Ok(IssuerKey {
            key_id,
            public_key,
            valid_from_ms: wire.valid_from_ms,
            valid_until_ms: wire.valid_until_ms,
        })
    }
}

impl From<&IssuerKey> for pb::IssuerKey {
    fn from(key: &IssuerKey) -> Self {
        pb::IssuerKey {
            key_id: key.key_id.as_str().to_owned(),
            public_key: key.public_key.to_vec(),
            valid_from_ms: key.valid_from_ms,
            valid_until_ms: key.valid_until_ms,
        }
    }
}
