//! Stateless validation throughput, raw ed25519 verification speed, and a
//! follower's decoding of a submit entry.
//!
//! Run: `cargo bench -p spentledger-protocol --bench validation`
//! Results and the machine they came from: docs/BENCHMARKS.md.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, ValidationContext, ValidationMode, Validator};

const T0_MS: u64 = 1_767_225_600_000;
const BATCH: usize = 1_024;
const DEVICES: usize = 256;

fn id(text: &str) -> IdText {
    IdText::new("bench", text).expect("bench ids are valid")
}

/// `BATCH` payments of exactly `inputs` tokens each, from `DEVICES` devices.
fn payments(issuer: &Issuer, inputs: usize) -> Vec<Payment> {
    let policy = IssuancePolicy {
        denominations: vec![1],
        change_tokens_per_denomination: 0,
        tokens_max: 64,
        ..Default::default()
    };
    let wallets: Vec<Wallet> = (0..DEVICES)
        .map(|d| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(d as u64 + 1).to_le_bytes());
            issuer
                .fund_device(
                    &policy,
                    seed,
                    &Funding::eur(id(&format!("w{d}")), 64, T0_MS),
                )
                .expect("fundable")
        })
        .collect();
    let indices: Vec<u32> = (0..inputs as u32).collect();
    (0..BATCH)
        .map(|i| {
            wallets[i % DEVICES]
                .sign_payment(
                    &indices,
                    i as u64,
                    &id("merchant"),
                    [i as u8; 32],
                    T0_MS + 1_000,
                )
                .expect("within limits")
        })
        .collect()
}

fn stateless_validation(c: &mut Criterion) {
    let issuer = Issuer::from_seed(id("bank"), [1; 32], 0, u64::MAX);
    let keys = vec![issuer.issuer_key()];
    let ctx = ValidationContext::new(T0_MS + 60_000, 300_000, &keys);
    let mut group = c.benchmark_group("stateless_validation");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(BATCH as u64));
    for inputs in [1usize, 4, 16] {
        let batch = payments(&issuer, inputs);
        for threads in [1usize, 2] {
            // One validator per configuration: its certificate cache is warm
            // after the first iteration, as on a node where devices pay often.
            let validator = Validator::new(threads, 4_096).expect("thread pool");
            for (mode, name) in [
                (ValidationMode::Ingress, "ingress"),
                (ValidationMode::Deterministic, "deterministic"),
            ] {
                let label = format!("{name}/threads={threads}/inputs={inputs}");
                group.bench_function(BenchmarkId::from_parameter(label), |b| {
                    b.iter(|| {
                        let verdicts = validator.validate_batch(&batch, &ctx, mode);
                        assert!(verdicts.iter().all(Result::is_ok));
                        verdicts
                    })
                });
            }
        }
    }
    group.finish();
}

fn raw_signatures(c: &mut Criterion) {
    const SIGNATURES_MAX: usize = 2048;
    let keys: Vec<SigningKey> = (0..SIGNATURES_MAX)
        .map(|i| SigningKey::from_bytes(&[(i % 251) as u8 + 1; 32]))
        .collect();
    let messages: Vec<Vec<u8>> = (0..SIGNATURES_MAX)
        .map(|i| (i as u64).to_le_bytes().repeat(8))
        .collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let public: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();

    let mut group = c.benchmark_group("ed25519");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            public[0]
                .verify_strict(&messages[0], &signatures[0])
                .expect("valid")
        })
    });
    // Once per new device certificate on every node: decompression and the
    // prime-order subgroup check (variable time), against dalek's
    // constant-time subgroup check alone.
    let device_key = public[1].to_bytes();
    group.bench_function("strong_public_key", |b| {
        b.iter(|| {
            spentledger_protocol::validate::point_check::strong_public_key(&device_key)
                .expect("a strong key")
        })
    });
    let point = curve25519_dalek::edwards::CompressedEdwardsY(device_key)
        .decompress()
        .expect("a point");
    group.bench_function("is_torsion_free_constant_time", |b| {
        b.iter(|| assert!(point.is_torsion_free()))
    });
    // Batch size decides the deterministic chunk (a protocol constant).
    for size in [16usize, 32, 64, 128, 256, 512, 1024, 2048] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("verify_batch_{size}"), |b| {
            b.iter(|| {
                ed25519_dalek::verify_batch(
                    &message_refs[..size],
                    &signatures[..size],
                    &public[..size],
                )
                .expect("valid")
            })
        });
    }
    group.finish();
}

/// The BLAKE3 hashes every node computes per payment: a Merkle node (about
/// seven per input), a token nullifier (one per input), the payment id; and
/// a payment's Merkle paths checked alone and together.
fn protocol_hashes(c: &mut Criterion) {
    let issuer = Issuer::from_seed(id("bank"), [1; 32], 0, u64::MAX);
    let payment = payments(&issuer, 2).swap_remove(0);
    let cert_id = payment.certificate.cert_id();
    let mut group = c.benchmark_group("hashes");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("merkle_node", |b| {
        b.iter(|| spentledger_protocol::merkle::node_hash(&[1; 32], &[2; 32]))
    });
    group.bench_function("token_nullifier", |b| b.iter(|| cert_id.token_nullifier(7)));
    group.bench_function("tx_id", |b| b.iter(|| payment.tx_id_with(&cert_id)));
    // A payment's two inputs (neighbouring tokens of a 64-token tree): each
    // path climbed alone, and together (sharing the climb above where the
    // paths meet), as the rules do.
    let cert = &payment.certificate;
    group.bench_function("merkle_paths_2_inputs_alone", |b| {
        b.iter(|| {
            assert!(payment.inputs.iter().all(|input| {
                spentledger_protocol::merkle::verify_path(
                    &cert.token_root,
                    cert.token_count,
                    &input.leaf,
                    &input.path,
                )
            }))
        })
    });
    group.bench_function("merkle_paths_2_inputs_together", |b| {
        b.iter(|| {
            assert!(spentledger_protocol::merkle::verify_paths(
                &cert.token_root,
                cert.token_count,
                payment
                    .inputs
                    .iter()
                    .map(|input| (&input.leaf, input.path.as_slice())),
            ))
        })
    });
    group.finish();
}

/// A follower's decoding of one submit entry of `BATCH` payments with two
/// inputs, on one thread: the general way (protobuf structs, then domain
/// types) against the direct decoder (`spentledger_protocol::direct`).
fn entry_decoding(c: &mut Criterion) {
    use prost::Message;
    use spentledger_protocol::{direct, pb};
    let issuer = Issuer::from_seed(id("bank"), [1; 32], 0, u64::MAX);
    let entry = pb::Command {
        stamp_ms: T0_MS,
        kind: Some(pb::command::Kind::Submit(pb::SubmitPayments {
            payments: payments(&issuer, 2).iter().map(pb::Payment::from).collect(),
        })),
    }
    .encode_to_vec();
    let mut group = c.benchmark_group("entry_decoding");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("general", |b| {
        b.iter(|| {
            let command = pb::Command::decode(entry.as_slice()).expect("decodes");
            let Some(pb::command::Kind::Submit(submit)) = command.kind else {
                panic!("a submit command")
            };
            submit
                .payments
                .iter()
                .map(Payment::try_from)
                .collect::<Result<Vec<_>, _>>()
                .expect("valid payments")
        })
    });
    group.bench_function("direct", |b| {
        b.iter(|| {
            let submit = direct::submit_command(&entry).expect("direct");
            submit
                .payments
                .iter()
                .map(|p| direct::payment(p))
                .collect::<Result<Vec<_>, _>>()
                .expect("valid payments")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    raw_signatures,
    stateless_validation,
    protocol_hashes,
    entry_decoding
);
criterion_main!(benches);
