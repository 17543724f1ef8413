//! Byte-level checks on ed25519 encodings, made before any batch verification
//! so that weak keys and non-canonical signatures are refused by rule rather
//! than by the luck of a batch.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::{Signature, VerifyingKey};

/// The y coordinates (little-endian, sign bit clear) of the eight points of
/// small order: identity (y = 1), order 2 (y = -1), order 4 (y = 0) and
/// order 8 (y = ±0x7a03ac92...). A point is of small order iff its y is one
/// of these, whatever its sign bit. Checked against curve25519-dalek's
/// `EIGHT_TORSION` in the tests.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [0; 32],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// p = 2^255 - 19, little-endian.
const FIELD_P: [u8; 32] = [
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
];

fn y_of(encoding: &[u8; 32]) -> [u8; 32] {
    let mut y = *encoding;
    y[31] &= 0x7f;
    y
}

/// Little-endian `a < b`.
fn less_than(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// True when the encoding's y is reduced (y < p). Whether a point with that y
/// exists is a separate question that only decompression answers.
pub fn y_is_canonical(encoding: &[u8; 32]) -> bool {
    less_than(&y_of(encoding), &FIELD_P)
}

/// True when the encoding names one of the eight points of small order.
pub fn is_small_order_encoding(encoding: &[u8; 32]) -> bool {
    let y = y_of(encoding);
    SMALL_ORDER_Y.contains(&y)
}

/// A public key fit to verify payments or certificates: a canonical encoding
/// of a point in the prime-order subgroup (which excludes the weak keys of
/// small order and the mixed-order keys that would let cofactored and
/// cofactorless verification disagree). Costs a decompression and a scalar
/// multiplication, so callers check it once per key and cache the result.
pub fn strong_public_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    if !y_is_canonical(bytes) || is_small_order_encoding(bytes) {
        return None;
    }
    // With y reduced, the only other non-canonical encodings set the sign
    // bit of x = 0, which only y = 1 and y = -1 have: both of small order,
    // refused above. So the point re-encodes to `bytes` (the tests check).
    // `from_bytes` keeps `bytes` as the key's encoding; building the key
    // from the point instead would compress it again (a field inversion,
    // about 0.4% of all CPU under load, docs/BENCHMARKS.md twenty-first round).
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    if !in_prime_order_subgroup(&key.to_edwards()) {
        return None;
    }
    Some(key)
}

/// Whether `[l]P` is the identity, in variable time: a public key is public,
/// so nothing leaks. curve25519-dalek's `is_torsion_free` does the same in
/// constant time, about twice as slow, and every node runs this once per new
/// device certificate. `[l]P = [l-1]P + P`, and `l - 1` is a reduced scalar.
fn in_prime_order_subgroup(point: &EdwardsPoint) -> bool {
    let l_minus_one = -Scalar::ONE;
    let multiple =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&l_minus_one, point, &Scalar::ZERO);
    (multiple + point).is_identity()
}

/// A signature whose encoding is canonical: `s < l`, `R`'s y reduced, `R` not
/// of small order. `verify_strict` and batch verification then agree on every
/// signature an honest signer can produce.
pub fn canonical_signature(bytes: &[u8; 64]) -> Option<Signature> {
    let r: [u8; 32] = bytes[..32]
        .try_into()
        .expect("64-byte signature has a 32-byte R");
    let s: [u8; 32] = bytes[32..]
        .try_into()
        .expect("64-byte signature has a 32-byte s");
    if !y_is_canonical(&r) || is_small_order_encoding(&r) {
        return None;
    }
    // s must be reduced mod l: an unreduced s is a second encoding of the same signature.
    Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
    Some(Signature::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};

    #[test]
    fn the_small_order_table_is_exactly_the_eight_torsion_points() {
        for point in EIGHT_TORSION {
            let encoding = point.compress().to_bytes();
            assert!(is_small_order_encoding(&encoding), "{encoding:02x?}");
            let mut flipped = encoding;
            flipped[31] ^= 0x80;
            assert!(is_small_order_encoding(&flipped));
        }
        let base = ED25519_BASEPOINT_POINT.compress().to_bytes();
        assert!(!is_small_order_encoding(&base));
        assert!(strong_public_key(&base).is_some());
    }

    #[test]
    fn weak_mixed_order_and_non_canonical_keys_are_refused() {
        for point in EIGHT_TORSION {
            assert!(strong_public_key(&point.compress().to_bytes()).is_none());
        }
        let mixed = (ED25519_BASEPOINT_POINT + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        assert!(
            strong_public_key(&mixed).is_none(),
            "mixed-order key accepted"
        );
        // y = p + 1 encodes the identity non-canonically.
        let mut non_canonical = FIELD_P;
        non_canonical[0] += 1;
        assert!(!y_is_canonical(&non_canonical));
        assert!(strong_public_key(&non_canonical).is_none());
        assert!(y_is_canonical(&SMALL_ORDER_Y[1]));
    }

    #[test]
    fn strong_keys_keep_their_encoding() {
        for k in 1..40u64 {
            let point =
                ED25519_BASEPOINT_POINT * Scalar::from(k.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let bytes = point.compress().to_bytes();
            let key = strong_public_key(&bytes).expect("a prime-order point is a strong key");
            assert_eq!(key.to_bytes(), bytes);
            // The point the key computes with is the one its bytes name.
            assert_eq!(key.to_edwards(), point);
            let mut signed_zero_x = SMALL_ORDER_Y[0];
            signed_zero_x[31] |= 0x80;
            assert!(strong_public_key(&signed_zero_x).is_none());
        }
    }

    #[test]
    fn the_subgroup_check_agrees_with_curve25519_dalek() {
        for k in 1..40u64 {
            let scalar = Scalar::from(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let prime_order = ED25519_BASEPOINT_POINT * scalar;
            for torsion in EIGHT_TORSION {
                let point = prime_order + torsion;
                assert_eq!(
                    in_prime_order_subgroup(&point),
                    point.is_torsion_free(),
                    "k = {k}, torsion {:02x?}",
                    torsion.compress().as_bytes()
                );
            }
        }
    }

    #[test]
    fn non_canonical_signatures_are_refused() {
        let base = ED25519_BASEPOINT_POINT.compress().to_bytes();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&base);
        sig[32] = 1;
        assert!(canonical_signature(&sig).is_some());
        // s = 2^256 - 1 is not reduced.
        let mut high_s = sig;
        high_s[32..].fill(0xff);
        assert!(canonical_signature(&high_s).is_none());
        // R of small order.
        let mut small_r = sig;
        small_r[..32].copy_from_slice(&EIGHT_TORSION[4].compress().to_bytes());
        assert!(canonical_signature(&small_r).is_none());
        // R with y >= p.
        let mut big_r = sig;
        big_r[..32].copy_from_slice(&[0xff; 32]);
        assert!(canonical_signature(&big_r).is_none());
    }
}
