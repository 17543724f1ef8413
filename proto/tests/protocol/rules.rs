//! Every stateless reject reason, each produced by breaking exactly one rule,
//! and checked on all three paths (single, ingress batch, deterministic batch).

use spentledger_protocol::limits::INPUTS_PER_PAYMENT_MAX;
use spentledger_protocol::{
    Payment, RejectReason, ValidationContext, ValidationMode, Validator, pb,
};

use crate::fixtures::*;

fn ctx_at(stamp_ms: u64, keys: &dyn spentledger_protocol::IssuerKeys) -> ValidationContext<'_> {
    ValidationContext::new(stamp_ms, SKEW_MS, keys)
}

/// Validates on every path and panics with context unless all three agree on `expected`.
fn must_get(
    payment: &Payment,
    stamp_ms: u64,
    keys: &dyn spentledger_protocol::IssuerKeys,
    expected: Result<(), RejectReason>,
) {
    let validator = Validator::new(2, 64).expect("two threads");
    let ctx = ctx_at(stamp_ms, keys);
    let single = validator.validate_one(payment, &ctx).map(|_| ());
    assert_eq!(single, expected, "single path");
    // Surround the payment with others, so batching and fallback are exercised;
    // each must get in the batch what it gets alone.
    let mut batch: Vec<Payment> = (0..5).map(|d| valid_payment(d, 170)).collect();
    batch.insert(2, payment.clone());
    let alone: Vec<_> = batch
        .iter()
        .map(|p| validator.validate_one(p, &ctx))
        .collect();
    for mode in [ValidationMode::Ingress, ValidationMode::Deterministic] {
        let verdicts = validator.validate_batch(&batch, &ctx, mode);
        assert_eq!(verdicts[2].map(|_| ()), expected, "{mode:?} batch");
        assert_eq!(
            verdicts, alone,
            "{mode:?}: batch and single verdicts differ"
        );
    }
}

fn must_reject(payment: &Payment, reason: RejectReason) {
    must_get(payment, T0_MS + 2 * HOUR_MS, &issuer_keys(), Err(reason));
}

const DEVICE: u8 = 1;

fn base() -> Payment {
    valid_payment(DEVICE, 1_234)
}

fn seed() -> [u8; 32] {
    device_seed(DEVICE)
}

#[test]
fn a_valid_payment_is_valid_on_every_path() {
    eprintln!("--- a payment fresh from a funded wallet");
    must_get(&base(), T0_MS + 2 * HOUR_MS, &issuer_keys(), Ok(()));
    eprintln!("--- the ids it reports are the payment's own");
    let validator = Validator::new(1, 8).expect("one thread");
    let keys = issuer_keys();
    let checked = validator
        .validate_one(&base(), &ctx_at(T0_MS + 2 * HOUR_MS, &keys))
        .expect("valid");
    assert_eq!(checked.tx_id, base().tx_id());
    assert_eq!(checked.cert_id, base().certificate.cert_id());
}

#[test]
fn malformed_wire_payments_name_the_field() {
    let mut wire = pb::Payment::from(&base());
    wire.certificate
        .as_mut()
        .expect("has certificate")
        .device_key
        .pop();
    let validator = Validator::new(1, 8).expect("one thread");
    let keys = issuer_keys();
    let ctx = ctx_at(T0_MS + 2 * HOUR_MS, &keys);
    for mode in [ValidationMode::Ingress, ValidationMode::Deterministic] {
        let out =
            validator.validate_wire_batch(&[pb::Payment::from(&base()), wire.clone()], &ctx, mode);
        assert!(out[0].is_ok(), "{:?}", out[0]);
        let (reason, error) = out[1].clone().expect_err("31-byte device key");
        assert_eq!(reason, RejectReason::Malformed);
        let error = error.expect("decode error is reported");
        assert_eq!(error.field, "certificate.device_key");
        assert_eq!(
            error.to_string(),
            "certificate.device_key: expected 32 bytes, got 31"
        );
    }
}

#[test]
fn no_inputs() {
    let mut p = base();
    p.inputs.clear();
    p.amount = 0;
    must_reject(&sign_as_device(p, &seed()), RejectReason::NoInputs);
}

#[test]
fn too_many_inputs_domain_and_wire() {
    let values = vec![1u64; INPUTS_PER_PAYMENT_MAX + 1];
    let spend: Vec<u32> = (0..=INPUTS_PER_PAYMENT_MAX as u32).collect();
    let p = custom_payment(&values, &spend, None);
    must_reject(&p, RejectReason::TooManyInputs);
    let validator = Validator::new(1, 8).expect("one thread");
    let keys = issuer_keys();
    let out = validator.validate_wire_batch(
        &[pb::Payment::from(&p)],
        &ctx_at(T0_MS + 2 * HOUR_MS, &keys),
        ValidationMode::Deterministic,
    );
    assert_eq!(
        out[0].clone().expect_err("too many").0,
        RejectReason::TooManyInputs
    );
}

#[test]
fn bad_certificate_windows_and_counts() {
    let mut p = base();
    p.certificate.spend_until_ms = p.certificate.issued_at_ms - 1;
    must_reject(&resign_all(p, &seed()), RejectReason::BadCertificate);
    let mut p = base();
    p.certificate.settle_until_ms = p.certificate.spend_until_ms - 1;
    must_reject(&resign_all(p, &seed()), RejectReason::BadCertificate);
    let mut p = base();
    p.certificate.total_value = 0;
    must_reject(&resign_all(p, &seed()), RejectReason::BadCertificate);
}

#[test]
fn unknown_issuer_key() {
    must_get(
        &base(),
        T0_MS + 2 * HOUR_MS,
        &vec![],
        Err(RejectReason::UnknownIssuerKey),
    );
}

#[test]
fn issuer_key_not_valid_at_issuance() {
    let mut keys = issuer_keys();
    keys[0].valid_from_ms = T0_MS + 1;
    must_get(
        &base(),
        T0_MS + 2 * HOUR_MS,
        &keys,
        Err(RejectReason::IssuerKeyNotValid),
    );
    let mut keys = issuer_keys();
    keys[0].valid_until_ms = T0_MS - 1;
    must_get(
        &base(),
        T0_MS + 2 * HOUR_MS,
        &keys,
        Err(RejectReason::IssuerKeyNotValid),
    );
}

#[test]
fn time_rules_with_skew() {
    let cert = base().certificate;
    eprintln!("--- created before issuance, beyond the skew allowance");
    let mut p = base();
    p.created_at_ms = cert.issued_at_ms - SKEW_MS - 1;
    must_reject(
        &sign_as_device(p, &seed()),
        RejectReason::CreatedBeforeIssuance,
    );
    eprintln!("--- ... and just within it");
    let mut p = base();
    p.created_at_ms = cert.issued_at_ms - SKEW_MS;
    must_get(
        &sign_as_device(p, &seed()),
        T0_MS + 2 * HOUR_MS,
        &issuer_keys(),
        Ok(()),
    );
    eprintln!("--- created after spend_until + skew");
    let mut p = base();
    p.created_at_ms = cert.spend_until_ms + SKEW_MS + 1;
    let stamp = cert.spend_until_ms + HOUR_MS;
    must_get(
        &sign_as_device(p, &seed()),
        stamp,
        &issuer_keys(),
        Err(RejectReason::CreatedAfterSpendUntil),
    );
    eprintln!("--- created after the entry stamp + skew");
    let mut p = base();
    p.created_at_ms = T0_MS + 2 * HOUR_MS + SKEW_MS + 1;
    must_reject(&sign_as_device(p, &seed()), RejectReason::CreatedInFuture);
    eprintln!("--- submitted after settle_until");
    must_get(
        &base(),
        cert.settle_until_ms + 1,
        &issuer_keys(),
        Err(RejectReason::SettlementWindowClosed),
    );
    must_get(&base(), cert.settle_until_ms, &issuer_keys(), Ok(()));
}

#[test]
fn index_out_of_range() {
    let mut p = base();
    let last = p.inputs.len() - 1;
    p.inputs[last].leaf.index = p.certificate.token_count;
    must_reject(&sign_as_device(p, &seed()), RejectReason::IndexOutOfRange);
}

#[test]
fn duplicate_and_unsorted_inputs() {
    let p = custom_payment(&[5, 7, 9], &[0, 2], None);
    let mut dup = p.clone();
    dup.inputs[1] = dup.inputs[0].clone();
    dup.amount = 10;
    must_reject(
        &sign_as_device(dup, &device_seed(200)),
        RejectReason::DuplicateInput,
    );
    let mut unsorted = p;
    unsorted.inputs.swap(0, 1);
    must_reject(
        &sign_as_device(unsorted, &device_seed(200)),
        RejectReason::InputsNotSorted,
    );
}

#[test]
fn zero_value_input() {
    must_reject(
        &custom_payment(&[0, 3], &[0, 1], None),
        RejectReason::ZeroValueInput,
    );
}

#[test]
fn amount_overflow() {
    must_reject(
        &custom_payment(&[u64::MAX, 2], &[0, 1], None),
        RejectReason::AmountOverflow,
    );
}

#[test]
fn amount_mismatch() {
    let mut p = base();
    p.amount += 1;
    must_reject(&sign_as_device(p, &seed()), RejectReason::AmountMismatch);
}

#[test]
fn bad_issuer_signature() {
    let mut p = base();
    p.certificate.issuer_signature[5] ^= 0x01;
    must_reject(
        &sign_as_device(p, &seed()),
        RejectReason::BadIssuerSignature,
    );
}

#[test]
fn weak_device_key() {
    // The identity point: a key of small order, which would verify forged signatures.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    must_reject(
        &custom_payment(&[5], &[0], Some(identity)),
        RejectReason::WeakDeviceKey,
    );
}

#[test]
fn bad_merkle_path() {
    let mut p = base();
    p.inputs[0].path[0][0] ^= 0x80;
    must_reject(&p, RejectReason::BadMerklePath);
    let mut p = base();
    p.inputs[0].path.push([0; 32]);
    must_reject(&p, RejectReason::BadMerklePath);
}

#[test]
fn non_canonical_device_signature() {
    // s + l encodes the same scalar non-canonically: malleability, refused by rule.
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut p = base();
    let mut carry = 0u16;
    for (byte, l_byte) in p.device_signature[32..].iter_mut().zip(l) {
        let sum = u16::from(*byte) + u16::from(l_byte) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    must_reject(&p, RejectReason::NonCanonicalSignature);
}

#[test]
fn bad_device_signature() {
    eprintln!("--- signed by another device");
    let p = sign_as_device(base(), &device_seed(99));
    must_reject(&p, RejectReason::BadDeviceSignature);
    eprintln!("--- a signed field changed after signing");
    let mut p = base();
    p.counter += 1;
    must_reject(&p, RejectReason::BadDeviceSignature);
}
