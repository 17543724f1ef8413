//! Property tests (proptest): round trips, single-bit tampering, Merkle
//! proofs of random trees, overflow, determinism across thread counts, and
//! decode + validate never panicking on arbitrary bytes.

use proptest::prelude::*;
use prost::Message;
use spentledger_protocol::merkle::{MerkleTree, verify_path};
use spentledger_protocol::types::{Currency, IdText};
use spentledger_protocol::{
    OfflineCertificate, Payment, PaymentInput, RejectReason, TokenLeaf, ValidationContext,
    ValidationMode, Validator, pb,
};

use crate::fixtures::*;

fn id_text() -> impl Strategy<Value = IdText> {
    "[!-~]{1,64}".prop_map(|s| IdText::new("p", s).expect("strategy yields valid ids"))
}

fn certificate() -> impl Strategy<Value = OfflineCertificate> {
    (
        (
            id_text(),
            id_text(),
            any::<[u8; 32]>(),
            "[A-Z]{3}",
            any::<[u8; 32]>(),
        ),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |((issuer, wallet, device, cur, root), (count, total, a, b, c), sig)| {
                OfflineCertificate {
                    issuer_key_id: issuer,
                    wallet_id: wallet,
                    device_key: device,
                    currency: Currency::new("c", &cur).expect("strategy yields valid codes"),
                    token_root: root,
                    token_count: count,
                    total_value: total,
                    issued_at_ms: a,
                    spend_until_ms: b,
                    settle_until_ms: c,
                    issuer_signature: sig.try_into().expect("64 bytes"),
                }
            },
        )
}

fn payment() -> impl Strategy<Value = Payment> {
    (
        certificate(),
        prop::collection::vec(
            (
                any::<u32>(),
                any::<u64>(),
                prop::collection::vec(any::<[u8; 32]>(), 0..16),
            ),
            0..8,
        ),
        (
            any::<u64>(),
            id_text(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u64>(),
        ),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |(certificate, inputs, (amount, payee, challenge, counter, created), sig)| Payment {
                certificate,
                inputs: inputs
                    .into_iter()
                    .map(|(index, value, path)| PaymentInput {
                        leaf: TokenLeaf { index, value },
                        path,
                    })
                    .collect(),
                amount,
                payee_id: payee,
                payee_challenge: challenge,
                counter,
                created_at_ms: created,
                device_signature: sig.try_into().expect("64 bytes"),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encodings_round_trip(p in payment()) {
        let bytes = pb::Payment::from(&p).encode_to_vec();
        let wire = pb::Payment::decode(bytes.as_slice()).expect("own encoding decodes");
        let back = Payment::try_from(&wire).expect("own encoding converts");
        prop_assert_eq!(back.canonical_body(), p.canonical_body());
        prop_assert_eq!(back.tx_id(), p.tx_id());
        prop_assert_eq!(back, p);
    }

    #[test]
    fn distinct_signed_fields_give_distinct_tx_ids(p in payment(), counter_delta in 1u64..1000, challenge_bit in 0usize..256) {
        let mut q = p.clone();
        q.counter = q.counter.wrapping_add(counter_delta);
        prop_assert_ne!(q.tx_id(), p.tx_id());
        let mut r = p.clone();
        r.payee_challenge[challenge_bit / 8] ^= 1 << (challenge_bit % 8);
        prop_assert_ne!(r.tx_id(), p.tx_id());
        let mut s = p.clone();
        s.certificate.wallet_id = IdText::new("w", format!("{}x", &p.certificate.wallet_id.as_str()[..p.certificate.wallet_id.as_str().len().min(63)])).expect("valid");
        prop_assert_ne!(s.certificate.cert_id(), p.certificate.cert_id());
    }

    #[test]
    fn merkle_proofs_hold_for_random_trees(values in prop::collection::vec(1u64..1_000_000, 1..300), pick in any::<prop::sample::Index>(), flip in 0usize..256) {
        let leaves: Vec<TokenLeaf> = values.iter().enumerate().map(|(i, &v)| TokenLeaf { index: i as u32, value: v }).collect();
        let tree = MerkleTree::build(&leaves).expect("non-empty");
        let count = leaves.len() as u32;
        for leaf in &leaves {
            let path = tree.path(leaf.index).expect("in range");
            prop_assert!(verify_path(&tree.root(), count, leaf, &path));
        }
        let leaf = leaves[pick.index(leaves.len())];
        let path = tree.path(leaf.index).expect("in range");
        let forged = TokenLeaf { value: leaf.value + 1, ..leaf };
        prop_assert!(!verify_path(&tree.root(), count, &forged, &path));
        if !path.is_empty() {
            let mut bad = path.clone();
            let level = (flip / 8) % bad.len();
            bad[level][flip % 32] ^= 1 << (flip % 8);
            prop_assert!(!verify_path(&tree.root(), count, &leaf, &bad));
        }
    }

    #[test]
    fn amount_overflow_is_refused(a in (u64::MAX / 2 + 1)..=u64::MAX, b in (u64::MAX / 2 + 1)..=u64::MAX) {
        let p = custom_payment(&[a, b], &[0, 1], None);
        let keys = issuer_keys();
        let validator = Validator::new(1, 4).expect("one thread");
        let verdict = validator.validate_one(&p, &ValidationContext::new(T0_MS + HOUR_MS, SKEW_MS, &keys));
        prop_assert_eq!(verdict, Err(RejectReason::AmountOverflow));
    }

    #[test]
    fn decode_and_validate_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let keys = issuer_keys();
        let ctx = ValidationContext::new(T0_MS + HOUR_MS, SKEW_MS, &keys);
        if let Ok(wire) = pb::Payment::decode(bytes.as_slice()) {
            let validator = Validator::new(1, 4).expect("one thread");
            let out = validator.validate_wire_batch(&[wire], &ctx, ValidationMode::Deterministic);
            prop_assert_eq!(out.len(), 1);
        }
    }
}

/// A valid payment's protobuf bytes, shared by the tampering property.
fn signed_bytes() -> &'static Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| pb::Payment::from(&valid_payment(1, 4_321)).encode_to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any single-bit change to a signed payment, anywhere in its bytes, either
    /// makes it undecodable or makes it invalid: nothing can be altered and
    /// still pass.
    #[test]
    fn flipping_any_single_bit_of_a_signed_payment_makes_it_invalid(bit in 0usize..(signed_bytes().len() * 8)) {
        let mut bytes = signed_bytes().clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let keys = issuer_keys();
        let ctx = ValidationContext::new(T0_MS + 2 * HOUR_MS, SKEW_MS, &keys);
        let validator = Validator::new(1, 4).expect("one thread");
        if let Ok(wire) = pb::Payment::decode(bytes.as_slice()) {
            let out = validator.validate_wire_batch(&[wire], &ctx, ValidationMode::Deterministic);
            prop_assert!(out[0].is_err(), "bit {} flipped and still valid", bit);
        }
    }

    /// Arbitrary byte edits of a valid encoding get a verdict, never a panic.
    #[test]
    fn mutated_encodings_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = signed_bytes().clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keys = issuer_keys();
        let ctx = ValidationContext::new(T0_MS + 2 * HOUR_MS, SKEW_MS, &keys);
        if let Ok(wire) = pb::Payment::decode(bytes.as_slice()) {
            let validator = Validator::new(1, 4).expect("one thread");
            prop_assert_eq!(validator.validate_wire_batch(&[wire], &ctx, ValidationMode::Ingress).len(), 1);
        }
    }
}

/// A batch of valid payments from `devices` wallets, with some broken according to `breaks`.
fn mixed_batch(len: usize, breaks: &[(usize, u8)]) -> Vec<Payment> {
    // Small amounts over many wallets: each wallet's change tokens always suffice.
    let mut wallets: Vec<_> = (0..=255u8).map(|d| funded_wallet(d, 5_000)).collect();
    let mut batch: Vec<Payment> = (0..len)
        .map(|i| {
            let w = &mut wallets[i % 50];
            w.pay(
                1 + (i as u64 / 50) % 3,
                &id("m"),
                [i as u8; 32],
                T0_MS + HOUR_MS,
            )
            .expect("funded enough")
        })
        .collect();
    let mut broken = std::collections::BTreeSet::new();
    for &(at, how) in breaks {
        let i = at % len;
        // One break per payment: a second identical flip would undo the first.
        if !broken.insert(i) {
            continue;
        }
        let p = &mut batch[i];
        match how % 4 {
            0 => p.device_signature[40] ^= 1,
            1 => p.counter ^= 1,
            2 => p.inputs[0].path.clear(),
            _ => p.device_signature[3] ^= 0x20,
        }
    }
    batch
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The deterministic mode's verdicts depend on the payments alone: 1, 2
    /// and 3 threads agree, and so does the single path for these payments.
    /// Batches up to 700 span up to three 256-signature chunks.
    #[test]
    fn deterministic_mode_is_independent_of_thread_count(
        len in 1usize..700,
        breaks in prop::collection::vec((any::<usize>(), any::<u8>()), 0..12),
    ) {
        let batch = mixed_batch(len, &breaks);
        let keys = issuer_keys();
        let ctx = ValidationContext::new(T0_MS + 2 * HOUR_MS, SKEW_MS, &keys);
        let reference = Validator::new(1, 0).expect("one thread").validate_batch(&batch, &ctx, ValidationMode::Deterministic);
        for threads in [2, 3] {
            let v = Validator::new(threads, 1024).expect("threads");
            prop_assert_eq!(&v.validate_batch(&batch, &ctx, ValidationMode::Deterministic), &reference);
            prop_assert_eq!(&v.validate_batch(&batch, &ctx, ValidationMode::Ingress), &reference);
        }
        let single: Vec<_> = batch.iter().map(|p| Validator::new(1, 0).expect("one").validate_one(p, &ctx)).collect();
        prop_assert_eq!(&single, &reference);
        let broken: std::collections::BTreeSet<usize> = breaks.iter().map(|(at, _)| at % len).collect();
        for (i, v) in reference.iter().enumerate() {
            prop_assert_eq!(v.is_ok(), !broken.contains(&i), "payment {}", i);
        }
    }
}
