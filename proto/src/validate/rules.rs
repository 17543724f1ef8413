//! The stateless rules, in the order of docs/PROTOCOL.md §6: the first rule a
//! payment breaks is its reject reason. Device signatures, the expensive part,
//! come last so that [`crate::Validator`] can batch them.

use ed25519_dalek::Signature;

use crate::ids::{CertId, TxId, payment_signing_message};
use crate::limits::{INPUTS_PER_PAYMENT_MAX, TOKENS_PER_CERTIFICATE_MAX};
use crate::merkle;
use crate::types::{OfflineCertificate, Payment};
use crate::validate::signature::{self, SignatureJob};
use crate::validate::{CertificateCache, ValidationContext, point_check};
use crate::verdict::RejectReason;

/// The ids of a payment that passed the stateless rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checked {
    pub cert_id: CertId,
    pub tx_id: TxId,
}

/// A payment that passed every rule but its device signature.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub checked: Checked,
    pub job: SignatureJob,
}

/// Every rule, with a single `verify_strict` for the device signature: what a
/// merchant terminal runs, and what the batch modes agree with for every
/// signature an honest device produces.
pub fn validate_single(
    payment: &Payment,
    ctx: &ValidationContext<'_>,
    cache: &CertificateCache,
) -> Result<Checked, RejectReason> {
    let prepared = prepare(payment, ctx, cache)?;
    let job = &prepared.job;
    if signature::verify_strict(&job.key, &job.message, &job.signature) {
        Ok(prepared.checked)
    } else {
        Err(RejectReason::BadDeviceSignature)
    }
}

pub(crate) fn prepare(
    payment: &Payment,
    ctx: &ValidationContext<'_>,
    cache: &CertificateCache,
) -> Result<Prepared, RejectReason> {
    let cert = &payment.certificate;
    check_shape(payment)?;
    check_certificate_fields(cert)?;
    let issuer_key = trusted_issuer_key(cert, ctx)?;
    check_times(payment, ctx)?;
    check_inputs(payment)?;
    let cert_id = cert.cert_id();
    let device_key = verified_device_key(cert, &cert_id, &issuer_key.public_key, cache)?;
    let paths = payment
        .inputs
        .iter()
        .map(|input| (&input.leaf, input.path.as_slice()));
    if !merkle::verify_paths(&cert.token_root, cert.token_count, paths) {
        return Err(RejectReason::BadMerklePath);
    }
    let signature = point_check::canonical_signature(&payment.device_signature)
        .ok_or(RejectReason::NonCanonicalSignature)?;
    let tx_id = payment.tx_id_with(&cert_id);
    Ok(Prepared {
        checked: Checked { cert_id, tx_id },
        job: SignatureJob {
            key: device_key,
            message: payment_signing_message(&tx_id),
            signature,
        },
    })
}

/// A certificate on its own (issuer operations such as settlement): rules 2,
/// 3 and 6 of §6, with the same cache as payments.
pub fn check_certificate(
    cert: &OfflineCertificate,
    ctx: &ValidationContext<'_>,
    cache: &CertificateCache,
) -> Result<CertId, RejectReason> {
    check_certificate_fields(cert)?;
    let issuer_key = trusted_issuer_key(cert, ctx)?;
    let cert_id = cert.cert_id();
    verified_device_key(cert, &cert_id, &issuer_key.public_key, cache)?;
    Ok(cert_id)
}

fn check_shape(payment: &Payment) -> Result<(), RejectReason> {
    if payment.inputs.is_empty() {
        return Err(RejectReason::NoInputs);
    }
    if payment.inputs.len() > INPUTS_PER_PAYMENT_MAX {
        return Err(RejectReason::TooManyInputs);
    }
    Ok(())
}

fn check_certificate_fields(cert: &OfflineCertificate) -> Result<(), RejectReason> {
    let well_formed = (1..=TOKENS_PER_CERTIFICATE_MAX).contains(&cert.token_count)
        && cert.total_value > 0
        && cert.issued_at_ms <= cert.spend_until_ms
        && cert.spend_until_ms <= cert.settle_until_ms;
    if well_formed {
        Ok(())
    } else {
        Err(RejectReason::BadCertificate)
    }
}

/// Rule 3: the certificate's issuer key is trusted and covers its issuance.
fn trusted_issuer_key<'k>(
    cert: &OfflineCertificate,
    ctx: &ValidationContext<'k>,
) -> Result<&'k crate::IssuerKey, RejectReason> {
    let key = ctx
        .issuer_keys
        .issuer_key(cert.issuer_key_id.as_str())
        .ok_or(RejectReason::UnknownIssuerKey)?;
    if !key.covers(cert.issued_at_ms) {
        return Err(RejectReason::IssuerKeyNotValid);
    }
    Ok(key)
}

fn check_times(payment: &Payment, ctx: &ValidationContext<'_>) -> Result<(), RejectReason> {
    let cert = &payment.certificate;
    let created = payment.created_at_ms;
    if created.saturating_add(ctx.skew_ms) < cert.issued_at_ms {
        return Err(RejectReason::CreatedBeforeIssuance);
    }
    if created > cert.spend_until_ms.saturating_add(ctx.skew_ms) {
        return Err(RejectReason::CreatedAfterSpendUntil);
    }
    if created > ctx.stamp_ms.saturating_add(ctx.skew_ms) {
        return Err(RejectReason::CreatedInFuture);
    }
    if ctx.stamp_ms > cert.settle_until_ms {
        return Err(RejectReason::SettlementWindowClosed);
    }
    Ok(())
}

fn check_inputs(payment: &Payment) -> Result<(), RejectReason> {
    let token_count = payment.certificate.token_count;
    let mut sum: u64 = 0;
    let mut previous: Option<u32> = None;
    for input in &payment.inputs {
        let index = input.leaf.index;
        if index >= token_count {
            return Err(RejectReason::IndexOutOfRange);
        }
        match previous {
            Some(prev) if index == prev => return Err(RejectReason::DuplicateInput),
            Some(prev) if index < prev => return Err(RejectReason::InputsNotSorted),
            _ => {}
        }
        previous = Some(index);
        if input.leaf.value == 0 {
            return Err(RejectReason::ZeroValueInput);
        }
        sum = sum
            .checked_add(input.leaf.value)
            .ok_or(RejectReason::AmountOverflow)?;
    }
    if sum != payment.amount {
        return Err(RejectReason::AmountMismatch);
    }
    Ok(())
}

/// Rule 6: the issuer's signature on the certificate and the strength of the
/// device key, cached by `cert_id` (only successes are cached).
fn verified_device_key(
    cert: &OfflineCertificate,
    cert_id: &CertId,
    issuer_public_key: &[u8; 32],
    cache: &CertificateCache,
) -> Result<ed25519_dalek::VerifyingKey, RejectReason> {
    if let Some(device_key) = cache.get(cert_id, issuer_public_key, &cert.issuer_signature) {
        return Ok(device_key);
    }
    // verify_strict is deterministic for any key and refuses small-order ones,
    // so the issuer key needs only decompression here (registration already
    // refuses keys outside the prime-order subgroup). Device keys get the full
    // check below because they are batch-verified.
    let issuer = cache
        .issuer_key(issuer_public_key)
        .ok_or(RejectReason::BadIssuerSignature)?;
    let cert_signature = Signature::from_bytes(&cert.issuer_signature);
    let message = crate::ids::certificate_signing_message(cert_id);
    if !signature::verify_strict(&issuer, &message, &cert_signature) {
        return Err(RejectReason::BadIssuerSignature);
    }
    let device_key =
        point_check::strong_public_key(&cert.device_key).ok_or(RejectReason::WeakDeviceKey)?;
    cache.insert(
        *cert_id,
        *issuer_public_key,
        cert.issuer_signature,
        device_key,
    );
    Ok(device_key)
}
