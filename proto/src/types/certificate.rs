use std::fmt;

use crate::canonical::CanonicalWriter;
use crate::decode_error::{DecodeError, DecodeProblem, field};
use crate::ids::{CertId, certificate_signing_message, derived};
use crate::pb;
use crate::types::IdText;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn new(field_name: &str, code: &str) -> Result<Self, DecodeError> {
        let bytes: [u8; 3] = code.as_bytes().try_into().map_err(|_| {
            DecodeError::new(
                field_name,
                DecodeProblem::WrongLength {
                    expected: 3,
                    actual: code.len(),
                },
            )
        })?;
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(DecodeError::new(
                field_name,
                DecodeProblem::InvalidText {
                    detail: "a currency is three upper-case ASCII letters",
                },
            ));
        }
        Ok(Currency(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("checked ASCII at construction")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An issuer-signed offline certificate: funds one device's secure element
/// with `token_count` tokens worth `total_value` in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineCertificate {
    pub issuer_key_id: IdText,
    pub wallet_id: IdText,
    pub device_key: [u8; 32],
    pub currency: Currency,
    pub token_root: [u8; 32],
    pub token_count: u32,
    pub total_value: u64,
    pub issued_at_ms: u64,
    pub spend_until_ms: u64,
    pub settle_until_ms: u64,
    pub issuer_signature: [u8; 64],
}

impl OfflineCertificate {
    /// The canonical body (everything but the issuer signature), docs/PROTOCOL.md §3.1.
    pub fn canonical_body(&self) -> Vec<u8> {
        let mut w = CanonicalWriter::new(256);
        w.short_text(self.issuer_key_id.as_str())
            .short_text(self.wallet_id.as_str())
            .fixed(&self.device_key)
            .fixed(self.currency.as_bytes())
            .fixed(&self.token_root)
            .u32(self.token_count)
            .u64(self.total_value)
            .u64(self.issued_at_ms)
            .u64(self.spend_until_ms)
            .u64(self.settle_until_ms);
        w.finish()
    }

    pub fn cert_id(&self) -> CertId {
        CertId(derived::CERT_ID.hash(&self.canonical_body()))
    }

    /// The bytes the issuer signs.
    pub fn signing_message(&self) -> Vec<u8> {
        certificate_signing_message(&self.cert_id())
    }
}

impl TryFrom<&pb::OfflineCertificate> for OfflineCertificate {
    type Error = DecodeError;

    fn try_from(wire: &pb::OfflineCertificate) -> Result<Self, DecodeError> {
        Ok(OfflineCertificate {
            issuer_key_id: IdText::new("issuer_key_id", wire.issuer_key_id.clone())?,
            wallet_id: IdText::new("wallet_id", wire.wallet_id.clone())?,
            device_key: field::fixed("device_key", &wire.device_key)?,
            currency: Currency::new("currency", &wire.currency)?,
            token_root: field::fixed("token_root", &wire.token_root)?,
            token_count: wire.token_count,
            total_value: wire.total_value,
            issued_at_ms: wire.issued_at_ms,
            spend_until_ms: wire.spend_until_ms,
            settle_until_ms: wire.settle_until_ms,
            issuer_signature: field::fixed("issuer_signature", &wire.issuer_signature)?,
        })
    }
}

impl From<&OfflineCertificate> for pb::OfflineCertificate {
    fn from(cert: &OfflineCertificate) -> Self {
        pb::OfflineCertificate {
            issuer_key_id: cert.issuer_key_id.as_str().to_owned(),
            wallet_id: cert.wallet_id.as_str().to_owned(),
            device_key: cert.device_key.to_vec(),
            currency: cert.currency.as_str().to_owned(),
            token_root: cert.token_root.to_vec(),
            token_count: cert.token_count,
            total_value: cert.total_value,
            issued_at_ms: cert.issued_at_ms,
            spend_until_ms: cert.spend_until_ms,
            settle_until_ms: cert.settle_until_ms,
            issuer_signature: cert.issuer_signature.to_vec(),
        }
    }
}
