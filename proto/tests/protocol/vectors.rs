//! docs/protocol-test-vectors.json: regenerated from fixed seeds and compared
//! byte for byte, then read back on its own and every case re-validated.
//!
//! To rewrite the file after a deliberate protocol change:
//! `SPENTLEDGER_WRITE_VECTORS=1 cargo test -p spentledger-protocol --test protocol vectors`

use std::path::PathBuf;

use prost::Message;
use serde::{Deserialize, Serialize};
use spentledger_protocol::ids::{context, signing_domain};
use spentledger_protocol::merkle::{MerkleTree, leaf_hash};
use spentledger_protocol::types::{Currency, IdText};
use spentledger_protocol::{
    IssuerKey, OfflineCertificate, Payment, PaymentInput, RejectReason, TokenLeaf,
    ValidationContext, Validator, pb,
};

use crate::fixtures::*;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct VectorFile {
    about: String,
    contexts: Contexts,
    issuer: KeyVector,
    device: KeyVector,
    tokens: Vec<TokenVector>,
    merkle_root: String,
    certificate: CertificateVector,
    payment: PaymentVector,
    context: ContextVector,
    invalid_payments: Vec<InvalidCase>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Contexts {
    cert_id: String,
    tx_id: String,
    token_nullifier: String,
    counter_nullifier: String,
    merkle_leaf: String,
    merkle_node: String,
    certificate_signature_prefix_hex: String,
    payment_signature_prefix_hex: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct KeyVector {
    key_id: Option<String>,
    secret_seed: String,
    public_key: String,
    valid_from_ms: Option<u64>,
    valid_until_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TokenVector {
    index: u32,
    value: u64,
    leaf_hash: String,
    path: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct CertificateJson {
    issuer_key_id: String,
    wallet_id: String,
    device_key: String,
    currency: String,
    token_root: String,
    token_count: u32,
    total_value: u64,
    issued_at_ms: u64,
    spend_until_ms: u64,
    settle_until_ms: u64,
    issuer_signature: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct CertificateVector {
    fields: CertificateJson,
    canonical_body: String,
    cert_id: String,
    signing_message: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct InputJson {
    index: u32,
    value: u64,
    path: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct PaymentJson {
    certificate: CertificateJson,
    inputs: Vec<InputJson>,
    amount: u64,
    payee_id: String,
    payee_challenge: String,
    counter: u64,
    created_at_ms: u64,
    device_signature: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct PaymentVector {
    fields: PaymentJson,
    canonical_body: String,
    tx_id: String,
    signing_message: String,
    token_nullifiers: Vec<String>,
    counter_nullifier: String,
    protobuf: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ContextVector {
    stamp_ms: u64,
    skew_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct InvalidCase {
    name: String,
    what_changed: String,
    stamp_ms: u64,
    payment: PaymentJson,
    expected_reason: String,
    expected_code: u8,
}

fn h(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s)
        .expect("vector hex")
        .try_into()
        .expect("vector length")
}

fn cert_json(c: &OfflineCertificate) -> CertificateJson {
    CertificateJson {
        issuer_key_id: c.issuer_key_id.to_string(),
        wallet_id: c.wallet_id.to_string(),
        device_key: h(&c.device_key),
        currency: c.currency.to_string(),
        token_root: h(&c.token_root),
        token_count: c.token_count,
        total_value: c.total_value,
        issued_at_ms: c.issued_at_ms,
        spend_until_ms: c.spend_until_ms,
        settle_until_ms: c.settle_until_ms,
        issuer_signature: h(&c.issuer_signature),
    }
}

fn payment_json(p: &Payment) -> PaymentJson {
    PaymentJson {
        certificate: cert_json(&p.certificate),
        inputs: p
            .inputs
            .iter()
            .map(|i| InputJson {
                index: i.leaf.index,
                value: i.leaf.value,
                path: i.path.iter().map(|x| h(x)).collect(),
            })
            .collect(),
        amount: p.amount,
        payee_id: p.payee_id.to_string(),
        payee_challenge: h(&p.payee_challenge),
        counter: p.counter,
        created_at_ms: p.created_at_ms,
        device_signature: h(&p.device_signature),
    }
}

fn payment_from_json(j: &PaymentJson) -> Payment {
    let c = &j.certificate;
    Payment {
        certificate: OfflineCertificate {
            issuer_key_id: IdText::new("issuer_key_id", c.issuer_key_id.clone()).expect("vector"),
            wallet_id: IdText::new("wallet_id", c.wallet_id.clone()).expect("vector"),
            device_key: unhex(&c.device_key),
            currency: Currency::new("currency", &c.currency).expect("vector"),
            token_root: unhex(&c.token_root),
            token_count: c.token_count,
            total_value: c.total_value,
            issued_at_ms: c.issued_at_ms,
            spend_until_ms: c.spend_until_ms,
            settle_until_ms: c.settle_until_ms,
            issuer_signature: unhex(&c.issuer_signature),
        },
        inputs: j
            .inputs
            .iter()
            .map(|i| PaymentInput {
                leaf: TokenLeaf {
                    index: i.index,
                    value: i.value,
                },
                path: i.path.iter().map(|x| unhex(x)).collect(),
            })
            .collect(),
        amount: j.amount,
        payee_id: IdText::new("payee_id", j.payee_id.clone()).expect("vector"),
        payee_challenge: unhex(&j.payee_challenge),
        counter: j.counter,
        created_at_ms: j.created_at_ms,
        device_signature: unhex(&j.device_signature),
    }
}

const STAMP_MS: u64 = T0_MS + 2 * HOUR_MS;
const VECTOR_DEVICE: u8 = 1;

fn generate() -> VectorFile {
    let issuer = issuer();
    let key = issuer.issuer_key();
    let seed = device_seed(VECTOR_DEVICE);
    let mut wallet = {
        // A small certificate keeps the vectors readable: 5 tokens, an odd count.
        let leaves: Vec<TokenLeaf> = [500u64, 200, 100, 50, 20]
            .iter()
            .enumerate()
            .map(|(i, &value)| TokenLeaf {
                index: i as u32,
                value,
            })
            .collect();
        let tree = MerkleTree::build(&leaves).expect("five leaves");
        let cert = issuer.sign(OfflineCertificate {
            issuer_key_id: key.key_id.clone(),
            wallet_id: id("wallet-0001"),
            device_key: spentledger_protocol::sim::Wallet::device_key_for(&seed),
            currency: eur(),
            token_root: tree.root(),
            token_count: 5,
            total_value: 870,
            issued_at_ms: T0_MS,
            spend_until_ms: T0_MS + 7 * 24 * HOUR_MS,
            settle_until_ms: T0_MS + 14 * 24 * HOUR_MS,
            issuer_signature: [0; 64],
        });
        spentledger_protocol::sim::Wallet::new(seed, cert, leaves).expect("matches")
    };
    let tree = MerkleTree::build(wallet.tokens()).expect("five leaves");
    let payment = wallet
        .pay(250, &id("merchant-cafe-17"), [0x5a; 32], T0_MS + HOUR_MS)
        .expect("200 + 50");
    let cert = payment.certificate.clone();
    let cert_id = cert.cert_id();

    let mut invalid = Vec::new();
    let mut case = |name: &str, what: &str, stamp_ms: u64, p: &Payment, reason: RejectReason| {
        invalid.push(InvalidCase {
            name: name.into(),
            what_changed: what.into(),
            stamp_ms,
            payment: payment_json(p),
            expected_reason: reason.name().into(),
            expected_code: reason.code(),
        });
    };
    let resign = |p: Payment| sign_as_device(p, &seed);
    let mut p = payment.clone();
    p.amount = 251;
    case(
        "amount_mismatch",
        "amount 251, re-signed by the device",
        STAMP_MS,
        &resign(p),
        RejectReason::AmountMismatch,
    );
    let mut p = payment.clone();
    p.inputs[0].path[0][0] ^= 1;
    case(
        "bad_merkle_path",
        "first sibling of input 0 has its lowest bit flipped",
        STAMP_MS,
        &p,
        RejectReason::BadMerklePath,
    );
    let mut p = payment.clone();
    p.counter = 1;
    case(
        "bad_device_signature",
        "counter changed to 1 after signing",
        STAMP_MS,
        &p,
        RejectReason::BadDeviceSignature,
    );
    let mut p = payment.clone();
    p.certificate.issuer_signature[0] ^= 1;
    case(
        "bad_issuer_signature",
        "lowest bit of the issuer signature flipped",
        STAMP_MS,
        &resign(p),
        RejectReason::BadIssuerSignature,
    );
    let mut p = payment.clone();
    p.inputs.swap(0, 1);
    case(
        "inputs_not_sorted",
        "inputs in descending index order, re-signed",
        STAMP_MS,
        &resign(p),
        RejectReason::InputsNotSorted,
    );
    let mut p = payment.clone();
    p.inputs[1] = p.inputs[0].clone();
    p.amount = p.inputs[0].leaf.value * 2;
    case(
        "duplicate_input",
        "input 0 repeated, amount adjusted, re-signed",
        STAMP_MS,
        &resign(p),
        RejectReason::DuplicateInput,
    );
    let mut p = payment.clone();
    p.inputs[1].leaf.index = 5;
    case(
        "index_out_of_range",
        "input 1 claims index 5 of a 5-token certificate, re-signed",
        STAMP_MS,
        &resign(p),
        RejectReason::IndexOutOfRange,
    );
    let mut p = payment.clone();
    p.created_at_ms = STAMP_MS + SKEW_MS + 1;
    case(
        "created_in_future",
        "created 1 ms past stamp + skew, re-signed",
        STAMP_MS,
        &resign(p),
        RejectReason::CreatedInFuture,
    );
    case(
        "settlement_window_closed",
        "unchanged payment, entry stamped 1 ms after settle_until",
        cert.settle_until_ms + 1,
        &payment,
        RejectReason::SettlementWindowClosed,
    );
    let mut p = payment.clone();
    let mut s = u128::from_le_bytes(p.device_signature[32..48].try_into().expect("16 bytes"));
    s = s.wrapping_add(0x14def9dea2f79cd65812631a5cf5d3ed);
    p.device_signature[32..48].copy_from_slice(&s.to_le_bytes());
    p.device_signature[63] = p.device_signature[63].wrapping_add(0x10);
    case(
        "non_canonical_signature",
        "s replaced by s + l (same scalar, unreduced)",
        STAMP_MS,
        &p,
        RejectReason::NonCanonicalSignature,
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = custom_payment(&[5], &[0], Some(identity));
    case(
        "weak_device_key",
        "certificate's device key is the identity point (small order)",
        T0_MS + HOUR_MS,
        &weak,
        RejectReason::WeakDeviceKey,
    );
    let overflow = custom_payment(&[u64::MAX, 2], &[0, 1], None);
    case(
        "amount_overflow",
        "two tokens whose values sum past 2^64 - 1",
        T0_MS + HOUR_MS,
        &overflow,
        RejectReason::AmountOverflow,
    );

    VectorFile {
        about: "spentledger protocol v1 test vectors; see docs/PROTOCOL.md. Hex strings are lowercase; integers are JSON numbers (u64 values may exceed 2^53).".into(),
        contexts: Contexts {
            cert_id: context::CERT_ID.into(),
            tx_id: context::TX_ID.into(),
            token_nullifier: context::TOKEN_NULLIFIER.into(),
            counter_nullifier: context::COUNTER_NULLIFIER.into(),
            merkle_leaf: context::MERKLE_LEAF.into(),
            merkle_node: context::MERKLE_NODE.into(),
            certificate_signature_prefix_hex: h(signing_domain::CERTIFICATE),
            payment_signature_prefix_hex: h(signing_domain::PAYMENT),
        },
        issuer: KeyVector {
            key_id: Some(key.key_id.to_string()),
            secret_seed: h(&ISSUER_SEED),
            public_key: h(&key.public_key),
            valid_from_ms: Some(key.valid_from_ms),
            valid_until_ms: Some(key.valid_until_ms),
        },
        device: KeyVector {
            key_id: None,
            secret_seed: h(&seed),
            public_key: h(&cert.device_key),
            valid_from_ms: None,
            valid_until_ms: None,
        },
        tokens: wallet
            .tokens()
            .iter()
            .map(|t| TokenVector {
                index: t.index,
                value: t.value,
                leaf_hash: h(&leaf_hash(t)),
                path: tree.path(t.index).expect("in range").iter().map(|x| h(x)).collect(),
            })
            .collect(),
        merkle_root: h(&tree.root()),
        certificate: CertificateVector {
            fields: cert_json(&cert),
            canonical_body: h(&cert.canonical_body()),
            cert_id: h(cert_id.as_bytes()),
            signing_message: h(&cert.signing_message()),
        },
        payment: PaymentVector {
            fields: payment_json(&payment),
            canonical_body: h(&payment.canonical_body()),
            tx_id: h(payment.tx_id().as_bytes()),
            signing_message: h(&payment.signing_message()),
            token_nullifiers: payment.nullifiers().iter().map(|n| h(n.as_bytes())).collect(),
            counter_nullifier: h(payment.counter_nullifier().as_bytes()),
            protobuf: h(&pb::Payment::from(&payment).encode_to_vec()),
        },
        context: ContextVector { stamp_ms: STAMP_MS, skew_ms: SKEW_MS },
        invalid_payments: invalid,
    }
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol-test-vectors.json")
}

#[test]
fn vectors_file_matches_the_implementation() {
    let generated = generate();
    let text = serde_json::to_string_pretty(&generated).expect("serialisable") + "\n";
    if std::env::var_os("SPENTLEDGER_WRITE_VECTORS").is_some() {
        std::fs::write(vectors_path(), &text).expect("write vectors");
    }
    let on_disk =
        std::fs::read_to_string(vectors_path()).expect("docs/protocol-test-vectors.json exists");
    let parsed: VectorFile = serde_json::from_str(&on_disk).expect("vectors parse");
    assert_eq!(
        parsed, generated,
        "the vectors file drifted from the implementation"
    );
}

#[test]
fn vectors_file_checks_out_on_its_own() {
    let on_disk =
        std::fs::read_to_string(vectors_path()).expect("docs/protocol-test-vectors.json exists");
    let v: VectorFile = serde_json::from_str(&on_disk).expect("vectors parse");

    eprintln!("--- keys derive from the seeds");
    let issuer_pk =
        ed25519_dalek::SigningKey::from_bytes(&unhex(&v.issuer.secret_seed)).verifying_key();
    assert_eq!(h(issuer_pk.as_bytes()), v.issuer.public_key);

    eprintln!("--- the Merkle root and every path recompute");
    let leaves: Vec<TokenLeaf> = v
        .tokens
        .iter()
        .map(|t| TokenLeaf {
            index: t.index,
            value: t.value,
        })
        .collect();
    let tree = MerkleTree::build(&leaves).expect("vector tokens");
    assert_eq!(h(&tree.root()), v.merkle_root);
    for t in &v.tokens {
        assert_eq!(
            h(&leaf_hash(&TokenLeaf {
                index: t.index,
                value: t.value
            })),
            t.leaf_hash
        );
        let path: Vec<[u8; 32]> = t.path.iter().map(|x| unhex(x)).collect();
        assert!(spentledger_protocol::merkle::verify_path(
            &tree.root(),
            leaves.len() as u32,
            &TokenLeaf {
                index: t.index,
                value: t.value
            },
            &path
        ));
    }

    eprintln!("--- ids, signing messages and nullifiers recompute from the fields");
    let payment = payment_from_json(&v.payment.fields);
    assert_eq!(
        h(&payment.certificate.canonical_body()),
        v.certificate.canonical_body
    );
    assert_eq!(
        h(payment.certificate.cert_id().as_bytes()),
        v.certificate.cert_id
    );
    assert_eq!(
        h(&payment.certificate.signing_message()),
        v.certificate.signing_message
    );
    assert_eq!(h(&payment.canonical_body()), v.payment.canonical_body);
    assert_eq!(h(payment.tx_id().as_bytes()), v.payment.tx_id);
    assert_eq!(h(&payment.signing_message()), v.payment.signing_message);
    let nullifiers: Vec<String> = payment
        .nullifiers()
        .iter()
        .map(|n| h(n.as_bytes()))
        .collect();
    assert_eq!(nullifiers, v.payment.token_nullifiers);
    assert_eq!(
        h(payment.counter_nullifier().as_bytes()),
        v.payment.counter_nullifier
    );
    let wire = pb::Payment::decode(hex::decode(&v.payment.protobuf).expect("hex").as_slice())
        .expect("protobuf");
    assert_eq!(Payment::try_from(&wire).expect("converts"), payment);

    eprintln!("--- the valid payment is valid and every invalid one gets its reason");
    let key = IssuerKey {
        key_id: IdText::new("key_id", v.issuer.key_id.clone().expect("issuer key id"))
            .expect("vector"),
        public_key: unhex(&v.issuer.public_key),
        valid_from_ms: v.issuer.valid_from_ms.expect("from"),
        valid_until_ms: v.issuer.valid_until_ms.expect("until"),
    };
    let keys = vec![key];
    let validator = Validator::new(1, 16).expect("one thread");
    let ctx = ValidationContext::new(v.context.stamp_ms, v.context.skew_ms, &keys);
    assert!(validator.validate_one(&payment, &ctx).is_ok());
    assert!(
        v.invalid_payments.len() >= 10,
        "a useful set of invalid cases"
    );
    for case in &v.invalid_payments {
        let p = payment_from_json(&case.payment);
        let ctx = ValidationContext::new(case.stamp_ms, v.context.skew_ms, &keys);
        let reason = RejectReason::from_name(&case.expected_reason).expect("known reason");
        assert_eq!(reason.code(), case.expected_code);
        assert_eq!(
            validator.validate_one(&p, &ctx),
            Err(reason),
            "case {}",
            case.name
        );
    }
}
