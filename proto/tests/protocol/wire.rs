//! Protobuf conversions: round trips, and typed errors naming the field.

use prost::Message;
use spentledger_protocol::pb;
use spentledger_protocol::types::Revocation;
use spentledger_protocol::{
    CertificateSettlement, CertificateState, DecodeError, DecodeProblem, IssuerKey, Payment,
    Receipt, RevocationReason,
};

use crate::fixtures::*;

#[test]
fn a_payment_round_trips_through_protobuf_bytes() {
    let p = valid_payment(1, 777);
    let bytes = pb::Payment::from(&p).encode_to_vec();
    let back =
        Payment::try_from(&pb::Payment::decode(bytes.as_slice()).expect("decodes")).expect("valid");
    assert_eq!(back, p);
    assert_eq!(back.tx_id(), p.tx_id());
}

#[test]
fn decode_errors_name_nested_fields() {
    let p = valid_payment(1, 777);
    type Case = (Box<dyn Fn(&mut pb::Payment)>, &'static str, DecodeProblem);
    let cases: Vec<Case> = vec![
        (
            Box::new(|w| w.certificate = None),
            "certificate",
            DecodeProblem::Missing,
        ),
        (
            Box::new(|w| w.inputs[0].path[1].push(0)),
            "inputs[0].path[1]",
            DecodeProblem::WrongLength {
                expected: 32,
                actual: 33,
            },
        ),
        (
            Box::new(|w| w.inputs[0].leaf = None),
            "inputs[0].leaf",
            DecodeProblem::Missing,
        ),
        (
            Box::new(|w| w.certificate.as_mut().expect("cert").currency = "eur".into()),
            "certificate.currency",
            DecodeProblem::InvalidText {
                detail: "a currency is three upper-case ASCII letters",
            },
        ),
        (
            Box::new(|w| w.payee_id = "a b".into()),
            "payee_id",
            DecodeProblem::InvalidText {
                detail: "only printable ASCII 0x21..=0x7E is allowed",
            },
        ),
        (
            Box::new(|w| w.payee_id = "x".repeat(65)),
            "payee_id",
            DecodeProblem::TooLong {
                max: 64,
                actual: 65,
            },
        ),
        (
            Box::new(|w| w.payee_id.clear()),
            "payee_id",
            DecodeProblem::Missing,
        ),
        (
            Box::new(|w| w.device_signature.truncate(10)),
            "device_signature",
            DecodeProblem::WrongLength {
                expected: 64,
                actual: 10,
            },
        ),
        (
            Box::new(|w| w.inputs[0].path = vec![vec![0; 32]; 17]),
            "inputs[0].path",
            DecodeProblem::TooMany {
                max: 16,
                actual: 17,
            },
        ),
    ];
    for (mutate, field, problem) in cases {
        let mut wire = pb::Payment::from(&p);
        mutate(&mut wire);
        assert_eq!(
            Payment::try_from(&wire),
            Err(DecodeError::new(field, problem.clone())),
            "field {field}"
        );
    }
}

#[test]
fn issuer_keys_must_be_strong_and_windows_ordered() {
    let key = issuer().issuer_key();
    let mut wire = pb::IssuerKey::from(&key);
    wire.public_key = {
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        identity
    };
    assert_eq!(
        IssuerKey::try_from(&wire).expect_err("weak").field,
        "public_key"
    );
    let mut wire = pb::IssuerKey::from(&key);
    wire.valid_until_ms = wire.valid_from_ms - 1;
    assert_eq!(
        IssuerKey::try_from(&wire).expect_err("window").field,
        "valid_until_ms"
    );
}

#[test]
fn receipts_states_revocations_and_settlements_round_trip() {
    let p = valid_payment(2, 50);
    let receipt = Receipt {
        tx_id: p.tx_id(),
        log_index: 9,
        settled_at_ms: T0_MS,
        payee_id: id("merchant-1"),
        amount: 50,
        cert_id: p.certificate.cert_id(),
        flags: spentledger_protocol::types::receipt_flags::CLONE_DETECTED,
    };
    assert_eq!(
        Receipt::try_from(&pb::Receipt::from(&receipt)),
        Ok(receipt.clone())
    );
    let mut bad = pb::Receipt::from(&receipt);
    bad.flags = 0x80;
    assert_eq!(Receipt::try_from(&bad).expect_err("flags").field, "flags");

    let mut state = CertificateState::new(p.certificate.cert_id());
    state.revoked = Some(RevocationReason::ClonedDevice);
    state.spent_value = 50;
    assert_eq!(
        CertificateState::try_from(&pb::CertificateState::from(&state)),
        Ok(state.clone())
    );

    let revocation = Revocation {
        sequence: 3,
        cert_id: state.cert_id,
        reason: RevocationReason::DoubleSpend,
        revoked_at_ms: T0_MS,
        log_index: 12,
    };
    assert_eq!(
        Revocation::try_from(&pb::Revocation::from(&revocation)),
        Ok(revocation.clone())
    );
    let mut bad = pb::Revocation::from(&revocation);
    bad.reason = 0;
    assert_eq!(
        Revocation::try_from(&bad),
        Err(DecodeError::missing("reason"))
    );
    bad.reason = 77;
    assert_eq!(
        Revocation::try_from(&bad),
        Err(DecodeError::new(
            "reason",
            DecodeProblem::UnknownEnum { value: 77 }
        ))
    );

    let settlement = CertificateSettlement::compute(
        &p.certificate,
        &state,
        false,
        T0_MS,
        99,
        Some("device lost, forced".into()),
    )
    .expect("balanced");
    let wire = pb::CertificateSettlement::from(&settlement);
    assert_eq!(CertificateSettlement::try_from(&wire), Ok(settlement));
    let mut unbalanced = wire;
    unbalanced.unspent_value += 1;
    assert_eq!(
        CertificateSettlement::try_from(&unbalanced)
            .expect_err("sum")
            .field,
        "total_value"
    );
}

#[test]
fn the_descriptor_set_describes_every_service_for_reflection() {
    let fds = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)
        .expect("valid descriptor set");
    let services: Vec<String> = fds
        .file
        .iter()
        .filter(|f| f.package() == "spentledger.v1")
        .flat_map(|f| f.service.iter().map(|s| s.name().to_owned()))
        .collect();
    for expected in ["Settlement", "Issuer", "Admin", "Raft"] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }
}
