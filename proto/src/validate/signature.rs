//! ed25519 verification: single (`verify_strict`), and batches with per-item
//! fallback. ed25519-dalek 3 derives its batch coefficients from a transcript
//! of the batch itself (no randomness), so a batch's outcome is a function of
//! its contents alone.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::types::{EvidenceError, Payment};
use crate::validate::point_check;

/// One signature to check: the key, the exact signed message, the signature.
#[derive(Debug, Clone)]
pub struct SignatureJob {
    pub key: VerifyingKey,
    pub message: Vec<u8>,
    pub signature: Signature,
}

/// Verifies one signature with the strict (cofactorless, canonical) rules.
pub fn verify_strict(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    key.verify_strict(message, signature).is_ok()
}

/// Verifies `jobs` as one batch; when the batch fails, verifies each job on
/// its own with [`verify_strict`]. Returns one result per job, in order.
pub fn verify_chunk(jobs: &[&SignatureJob]) -> Vec<bool> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let messages: Vec<&[u8]> = jobs.iter().map(|job| job.message.as_slice()).collect();
    let signatures: Vec<Signature> = jobs.iter().map(|job| job.signature).collect();
    let keys: Vec<VerifyingKey> = jobs.iter().map(|job| job.key).collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return vec![true; jobs.len()];
    }
    jobs.iter()
        .map(|job| verify_strict(&job.key, &job.message, &job.signature))
        .collect()
}

/// The checks shared by both kinds of evidence: one genuine certificate, two
/// different payments under it, both genuinely signed by its device.
pub(crate) fn verify_two_payments(
    first: &Payment,
    second: &Payment,
    issuer_public_key: &[u8; 32],
) -> Result<(), EvidenceError> {
    let cert_id = first.certificate.cert_id();
    if second.certificate.cert_id() != cert_id {
        return Err(EvidenceError::DifferentCertificates);
    }
    if first.tx_id_with(&cert_id) == second.tx_id_with(&cert_id) {
        return Err(EvidenceError::SamePayment);
    }
    let issuer = point_check::strong_public_key(issuer_public_key)
        .ok_or(EvidenceError::BadIssuerSignature)?;
    let cert_sig = Signature::from_bytes(&first.certificate.issuer_signature);
    if !verify_strict(&issuer, &first.certificate.signing_message(), &cert_sig) {
        return Err(EvidenceError::BadIssuerSignature);
    }
    let device = point_check::strong_public_key(&first.certificate.device_key)
        .ok_or(EvidenceError::BadDeviceSignature { which: "first" })?;
    for (which, payment) in [("first", first), ("second", second)] {
        let sig = Signature::from_bytes(&payment.device_signature);
        if !verify_strict(&device, &payment.signing_message(), &sig) {
            return Err(EvidenceError::BadDeviceSignature { which });
        }
    }
    Ok(())
}
