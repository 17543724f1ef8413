//! Property tests (proptest): round trips, single-bit tampering, Merkle
//! proofs of random trees, overflow, determinism across thread counts, and
//! decode + validate never panicking on arbitrary bytes.

use proptest::prelude::*;
use prost::Message;
use spentledger_protocol::merkle::{Hash, MerkleTree, verify_path, verify_paths};
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

pub fn payment() -> impl Strategy<Value = Payment> {
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

    /// The borrowed and the owned way to the recorded form agree: every
    /// field kept, every path dropped, the same tx_id.
    #[test]
    fn a_recorded_payment_is_the_same_from_a_borrow_or_a_move(p in payment()) {
        let borrowed = p.recorded();
        prop_assert!(borrowed.inputs.iter().all(|i| i.path.is_empty()));
        prop_assert_eq!(borrowed.tx_id(), p.tx_id());
        prop_assert_eq!(&borrowed, &p.clone().into_recorded());
    }

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
        // Another wallet id of at most 64 bytes: append, or change the last byte.
        let w = p.certificate.wallet_id.as_str();
        let other = if w.len() < 64 {
            format!("{w}x")
        } else {
            format!("{}{}", &w[..63], if w.ends_with('x') { 'y' } else { 'x' })
        };
        s.certificate.wallet_id = IdText::new("w", other).expect("valid");
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

    /// Checking a payment's leaves together (sharing the climb above where
    /// their paths meet) answers exactly as checking each alone, for honest
    /// leaves in any order, repeats included, and for every kind of forgery:
    /// another value, a flipped sibling bit, a sibling added or dropped.
    #[test]
    fn merkle_leaves_checked_together_answer_as_each_alone(
        values in prop::collection::vec(1u64..1_000_000, 1..200),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        sorted in any::<bool>(),
        forge in 0usize..5,
        victim in any::<prop::sample::Index>(),
        flip in 0usize..512,
    ) {
        let leaves: Vec<TokenLeaf> = values.iter().enumerate().map(|(i, &v)| TokenLeaf { index: i as u32, value: v }).collect();
        let tree = MerkleTree::build(&leaves).expect("non-empty");
        let count = leaves.len() as u32;
        let mut chosen: Vec<usize> = picks.iter().map(|p| p.index(leaves.len())).collect();
        if sorted {
            chosen.sort_unstable();
        }
        let mut inputs: Vec<(TokenLeaf, Vec<Hash>)> = chosen
            .iter()
            .map(|&i| (leaves[i], tree.path(i as u32).expect("in range")))
            .collect();
        if !inputs.is_empty() {
            let at = victim.index(inputs.len());
            let (leaf, path) = &mut inputs[at];
            match forge {
                1 => leaf.value += 1,
                2 if !path.is_empty() => {
                    let level = (flip / 8) % path.len();
                    path[level][flip % 32] ^= 1 << (flip % 8);
                }
                3 => path.push([flip as u8; 32]),
                4 => { path.pop(); }
                _ => {}
            }
        }
        let alone = inputs.iter().all(|(leaf, path)| verify_path(&tree.root(), count, leaf, path));
        let together = verify_paths(&tree.root(), count, inputs.iter().map(|(leaf, path)| (leaf, path.as_slice())));
        prop_assert_eq!(together, alone);
        // A wrong root or count is refused together as alone.
        if !inputs.is_empty() {
            let mut other_root = tree.root();
            other_root[flip % 32] ^= 1;
            prop_assert!(!verify_paths(&other_root, count, inputs.iter().map(|(leaf, path)| (leaf, path.as_slice()))));
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
            let w = &mut wallets[i % 256];
            w.pay(
                1 + (i as u64 / 256) % 3,
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

/// A device signature whose R carries an order-2 torsion component: made by
/// the device itself (it needs the secret key). `verify_strict` refuses it; a
/// batch accepts it exactly when the batch's transcript-derived coefficient for
/// it is even, so its verdict depends on its chunk's contents (PROTOCOL.md §5).
fn torsion_signature(payment: &Payment, seed: &[u8; 32], nonce: u8) -> [u8; 64] {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let esk = ed25519_dalek::hazmat::ExpandedSecretKey::from(seed);
    let public = ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes();
    let r = Scalar::from_bytes_mod_order_wide(&[nonce; 64]);
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[4]).compress();
    let k: [u8; 64] = Sha512::new()
        .chain_update(big_r.as_bytes())
        .chain_update(public)
        .chain_update(payment.signing_message())
        .finalize()
        .into();
    let s = r + Scalar::from_bytes_mod_order_wide(&k) * esk.scalar;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// Replaces payments at `at` (mod len) with torsion-signed ones; returns their positions.
fn plant_torsion_signatures(
    batch: &mut [Payment],
    at: &[usize],
) -> std::collections::BTreeSet<usize> {
    let mut planted = std::collections::BTreeSet::new();
    for (n, &a) in at.iter().enumerate() {
        let i = a % batch.len();
        // Device d's seed is device_seed(d); batch[i] was paid by wallet i % 256.
        let seed = device_seed((i % 256) as u8);
        batch[i].device_signature = torsion_signature(&batch[i], &seed, n as u8 + 1);
        planted.insert(i);
    }
    planted
}

#[test]
fn torsion_signatures_split_batch_and_single_but_never_replicas() {
    let mut batch = mixed_batch(600, &[]);
    let planted =
        plant_torsion_signatures(&mut batch, &(0..24).map(|n| n * 25).collect::<Vec<_>>());
    let keys = issuer_keys();
    let ctx = ValidationContext::new(T0_MS + 2 * HOUR_MS, SKEW_MS, &keys);
    let one = Validator::new(1, 0).expect("one thread");
    eprintln!("--- the single check refuses every crafted signature");
    for &i in &planted {
        assert_eq!(
            one.validate_one(&batch[i], &ctx),
            Err(RejectReason::BadDeviceSignature)
        );
    }
    eprintln!("--- replicas agree whatever their thread count");
    let reference = one.validate_batch(&batch, &ctx, ValidationMode::Deterministic);
    for threads in [2, 3, 4] {
        let v = Validator::new(threads, 64).expect("threads");
        assert_eq!(
            v.validate_batch(&batch, &ctx, ValidationMode::Deterministic),
            reference,
            "{threads} threads"
        );
    }
    eprintln!(
        "--- and the batch outcome of a crafted signature depends on its chunk (documented edge)"
    );
    let accepted = planted.iter().filter(|&&i| reference[i].is_ok()).count();
    assert!(
        accepted > 0 && accepted < planted.len(),
        "{accepted} of {} accepted",
        planted.len()
    );
    for (i, v) in reference
        .iter()
        .enumerate()
        .filter(|(i, _)| !planted.contains(i))
    {
        assert!(v.is_ok(), "honest payment {i}: {v:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The deterministic mode's verdicts depend on the payments alone: 1, 2
    /// and 3 threads agree, including on crafted signatures whose batch outcome
    /// depends on their chunk. Batches up to 700 span up to three 256-signature
    /// chunks. For honest payments, ingress and single checks agree too.
    #[test]
    fn deterministic_mode_is_independent_of_thread_count(
        len in 1usize..700,
        breaks in prop::collection::vec((any::<usize>(), any::<u8>()), 0..12),
        torsion in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut batch = mixed_batch(len, &breaks);
        let planted = plant_torsion_signatures(&mut batch, &torsion);
        let keys = issuer_keys();
        let ctx = ValidationContext::new(T0_MS + 2 * HOUR_MS, SKEW_MS, &keys);
        let reference = Validator::new(1, 0).expect("one thread").validate_batch(&batch, &ctx, ValidationMode::Deterministic);
        for threads in [2, 3] {
            let v = Validator::new(threads, 1024).expect("threads");
            prop_assert_eq!(&v.validate_batch(&batch, &ctx, ValidationMode::Deterministic), &reference);
            let ingress = v.validate_batch(&batch, &ctx, ValidationMode::Ingress);
            for (i, verdict) in ingress.iter().enumerate().filter(|(i, _)| !planted.contains(i)) {
                prop_assert_eq!(verdict, &reference[i], "ingress, payment {}", i);
            }
        }
        let single = Validator::new(1, 0).expect("one");
        let broken: std::collections::BTreeSet<usize> = breaks.iter().map(|(at, _)| at % len).collect();
        for (i, v) in reference.iter().enumerate().filter(|(i, _)| !planted.contains(i)) {
            prop_assert_eq!(v, &single.validate_one(&batch[i], &ctx), "single, payment {}", i);
            prop_assert_eq!(v.is_ok(), !broken.contains(&i), "payment {}", i);
        }
    }
}
