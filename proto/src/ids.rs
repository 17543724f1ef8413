//! Identifiers and nullifiers, each a domain-separated BLAKE3 hash.
//!
//! Every derivation uses BLAKE3's `derive_key` mode with its own context
//! string, so no two kinds of id can ever collide. The context strings are part
//! of the protocol (docs/PROTOCOL.md, "Identifiers").

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

/// `derive_key` contexts. Changing one is a protocol version change.
pub mod context {
    pub const CERT_ID: &str = "spentledger v1 certificate id";
    pub const TX_ID: &str = "spentledger v1 payment id";
    pub const TOKEN_NULLIFIER: &str = "spentledger v1 token nullifier";
    pub const COUNTER_NULLIFIER: &str = "spentledger v1 counter nullifier";
    pub const MERKLE_LEAF: &str = "spentledger v1 merkle leaf";
    pub const MERKLE_NODE: &str = "spentledger v1 merkle node";
}

/// A `derive_key` context whose key is derived once per process.
///
/// BLAKE3's `derive_key` first hashes the context string into a key: one
/// compression, as much as hashing a whole 64-byte message. For a Merkle node
/// (64 bytes) that is half its cost, and every node hashes about seven of
/// them per input of every payment it validates. The keyed state does not
/// depend on the message, so it is built once; the output is byte for byte
/// `blake3::derive_key(context, message)` (tested).
///
/// [`DerivedContext::hash_parts`] reuses one hasher per context and thread,
/// reset after each hash, rather than cloning the keyed state: a clone copies
/// the whole hasher (about 1.9 KB, most of it BLAKE3's chaining-value stack),
/// which cost about as much as the compression itself for these short
/// messages (1% of all CPU under load; docs/BENCHMARKS.md, sixteenth round).
pub struct DerivedContext {
    context: &'static str,
    /// This context's hasher in each thread's [`THREAD_HASHERS`].
    slot: usize,
    keyed: OnceLock<blake3::Hasher>,
}

/// Contexts with a per-thread hasher: one slot each.
const CONTEXT_SLOTS: usize = 6;

thread_local! {
    /// Each thread's hasher per context, keyed and with nothing absorbed
    /// between uses.
    static THREAD_HASHERS: [RefCell<Option<blake3::Hasher>>; CONTEXT_SLOTS] = Default::default();
}

impl DerivedContext {
    /// `slot` must be below `CONTEXT_SLOTS` and differ from every other
    /// context's (tested for the contexts of [`derived`]).
    pub const fn new(context: &'static str, slot: usize) -> Self {
        DerivedContext {
            context,
            slot,
            keyed: OnceLock::new(),
        }
    }

    /// A hasher in `derive_key` mode for this context, with nothing absorbed.
    pub fn hasher(&self) -> blake3::Hasher {
        self.keyed
            .get_or_init(|| blake3::Hasher::new_derive_key(self.context))
            .clone()
    }

    /// `derive_key(context, message)`.
    pub fn hash(&self, message: &[u8]) -> [u8; 32] {
        self.hash_parts(&[message])
    }

    /// `derive_key(context, parts[0] ‖ parts[1] ‖ …)`, on this thread's
    /// hasher for the context.
    pub fn hash_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        THREAD_HASHERS.with(|slots| {
            let mut slot = slots[self.slot].borrow_mut();
            let hasher = slot.get_or_insert_with(|| self.hasher());
            for part in parts {
                hasher.update(part);
            }
            let hash = *hasher.finalize().as_bytes();
            hasher.reset();
            hash
        })
    }
}

/// The hot contexts of [`context`], keyed once (see [`DerivedContext`]).
pub mod derived {
    use super::{DerivedContext, context};

    pub static CERT_ID: DerivedContext = DerivedContext::new(context::CERT_ID, 0);
    pub static TX_ID: DerivedContext = DerivedContext::new(context::TX_ID, 1);
    pub static TOKEN_NULLIFIER: DerivedContext = DerivedContext::new(context::TOKEN_NULLIFIER, 2);
    pub static COUNTER_NULLIFIER: DerivedContext =
        DerivedContext::new(context::COUNTER_NULLIFIER, 3);
    pub static MERKLE_LEAF: DerivedContext = DerivedContext::new(context::MERKLE_LEAF, 4);
    pub static MERKLE_NODE: DerivedContext = DerivedContext::new(context::MERKLE_NODE, 5);
}

/// Prefixes of the messages that ed25519 keys sign (docs/PROTOCOL.md, "Signatures").
pub mod signing_domain {
    pub const CERTIFICATE: &[u8] = b"spentledger/v1/certificate-signature\0";
    pub const PAYMENT: &[u8] = b"spentledger/v1/payment-signature\0";
}

/// The byte-wise (lexicographic) order of two 32-byte ids: the derived
/// order of `[u8; 32]`, and RocksDB's bytewise comparator's.
///
/// Why not derive it: the derived order calls `memcmp` for every
/// comparison, and apply sorts, searches and inserts into ordered maps
/// about five of these ids per payment on every node; those calls were
/// about 3% of all CPU under load (docs/BENCHMARKS.md, fourteenth round).
/// The ids are hashes, so their first eight bytes nearly always decide:
/// read as one big-endian word they compare in a few inlined
/// instructions, and only a tie compares the rest.
#[inline]
pub fn cmp_bytes_32(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    let word = |x: &[u8; 32]| u64::from_be_bytes(x[..8].try_into().expect("8 of 32 bytes"));
    match word(a).cmp(&word(b)) {
        std::cmp::Ordering::Equal => a[8..].cmp(&b[8..]),
        decided => decided,
    }
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub [u8; 32]);

        /// Byte-wise order ([`cmp_bytes_32`]).
        impl Ord for $name {
            #[inline]
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                cmp_bytes_32(&self.0, &other.0)
            }
        }

        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }

            /// Parse from wire bytes, naming the field on error.
            pub fn from_field(name: &str, bytes: &[u8]) -> Result<Self, crate::DecodeError> {
                crate::decode_error::field::fixed::<32>(name, bytes).map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

hash_id!(
    /// `derive_key(CERT_ID, canonical certificate body)`.
    CertId
);
hash_id!(
    /// `derive_key(TX_ID, canonical payment body)`; the device signature is excluded.
    TxId
);
hash_id!(
    /// `derive_key(TOKEN_NULLIFIER, cert_id ‖ u32le(index))`: marks one token spent.
    Nullifier
);
hash_id!(
    /// `derive_key(COUNTER_NULLIFIER, cert_id ‖ u64le(counter))`: marks one device counter used.
    CounterNullifier
);

impl CertId {
    /// The nullifier of token `index` of this certificate.
    pub fn token_nullifier(&self, index: u32) -> Nullifier {
        Nullifier(derived::TOKEN_NULLIFIER.hash_parts(&[&self.0, &index.to_le_bytes()]))
    }

    /// The nullifier of payment counter `counter` under this certificate.
    pub fn counter_nullifier(&self, counter: u64) -> CounterNullifier {
        CounterNullifier(derived::COUNTER_NULLIFIER.hash_parts(&[&self.0, &counter.to_le_bytes()]))
    }

    /// The shard this certificate belongs to among `shard_count` Raft groups.
    /// Every payment spends tokens of exactly one certificate, so routing by
    /// `cert_id` needs no cross-shard transactions.
    pub fn shard(&self, shard_count: u32) -> u32 {
        let prefix = u64::from_le_bytes(self.0[..8].try_into().expect("32-byte id has 8 bytes"));
        (prefix % u64::from(shard_count.max(1))) as u32
    }
}

/// The message an issuer signs for a certificate.
pub fn certificate_signing_message(cert_id: &CertId) -> Vec<u8> {
    [signing_domain::CERTIFICATE, cert_id.as_bytes()].concat()
}

/// The message a device signs for a payment.
pub fn payment_signing_message(tx_id: &TxId) -> Vec<u8> {
    [signing_domain::PAYMENT, tx_id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_routing_is_the_first_eight_bytes_modulo_the_shard_count() {
        let mut id = CertId([0; 32]);
        id.0[..8].copy_from_slice(&1_000_003u64.to_le_bytes());
        assert_eq!(id.shard(1), 0);
        assert_eq!(id.shard(7), (1_000_003 % 7) as u32);
        assert_eq!(id.shard(0), 0, "zero shards is treated as one");
    }

    /// Two ids that agree on a prefix of `shared` bytes and differ after it
    /// (the case the word comparison could get wrong), or arbitrary ones.
    fn id_pair() -> impl proptest::strategy::Strategy<Value = ([u8; 32], [u8; 32])> {
        use proptest::prelude::*;
        (any::<[u8; 32]>(), any::<[u8; 32]>(), 0usize..=32).prop_map(|(a, mut b, shared)| {
            b[..shared].copy_from_slice(&a[..shared]);
            (a, b)
        })
    }

    proptest::proptest! {
        #[test]
        fn ids_are_ordered_byte_by_byte((a, b) in id_pair()) {
            let bytes = a.as_slice().cmp(b.as_slice());
            proptest::prop_assert_eq!(cmp_bytes_32(&a, &b), bytes);
            proptest::prop_assert_eq!(Nullifier(a).cmp(&Nullifier(b)), bytes);
            proptest::prop_assert_eq!(TxId(a).partial_cmp(&TxId(b)), Some(bytes));
            proptest::prop_assert_eq!(CertId(a).cmp(&CertId(a)), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn ids_sort_as_their_bytes_do() {
        // Ids that differ in one byte only, at the first or last byte of an
        // 8-byte word: a little-endian reading of the first word would order
        // some of them the other way round.
        let mut ids = Vec::new();
        for position in [0usize, 7, 8, 15, 16, 31] {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut bytes = [0x55u8; 32];
                bytes[position] = value;
                ids.push(bytes);
            }
        }
        let mut by_bytes = ids.clone();
        by_bytes.sort();
        let mut by_id: Vec<TxId> = ids.into_iter().map(TxId).collect();
        by_id.sort();
        assert_eq!(by_id.into_iter().map(|t| t.0).collect::<Vec<_>>(), by_bytes);
    }

    #[test]
    fn each_derived_context_has_its_own_thread_hasher_slot() {
        let slots = [
            derived::CERT_ID.slot,
            derived::TX_ID.slot,
            derived::TOKEN_NULLIFIER.slot,
            derived::COUNTER_NULLIFIER.slot,
            derived::MERKLE_LEAF.slot,
            derived::MERKLE_NODE.slot,
        ];
        let distinct: std::collections::BTreeSet<usize> = slots.into_iter().collect();
        assert_eq!(distinct.len(), slots.len(), "{slots:?}");
        assert!(slots.iter().all(|&s| s < CONTEXT_SLOTS), "{slots:?}");
    }

    #[test]
    fn a_derived_context_hashes_exactly_as_derive_key() {
        let contexts = [
            (&derived::CERT_ID, context::CERT_ID),
            (&derived::TX_ID, context::TX_ID),
            (&derived::TOKEN_NULLIFIER, context::TOKEN_NULLIFIER),
            (&derived::COUNTER_NULLIFIER, context::COUNTER_NULLIFIER),
            (&derived::MERKLE_LEAF, context::MERKLE_LEAF),
            (&derived::MERKLE_NODE, context::MERKLE_NODE),
        ];
        // Lengths around BLAKE3's 64-byte block and 1,024-byte chunk.
        for len in [0usize, 1, 12, 63, 64, 65, 1_023, 1_024, 1_025, 5_000] {
            let message: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            for (derived_context, name) in contexts {
                let expected = blake3::derive_key(name, &message);
                // Twice: hashing must not change the keyed state it clones.
                assert_eq!(
                    derived_context.hash(&message),
                    expected,
                    "{name}, {len} bytes"
                );
                assert_eq!(
                    derived_context.hash(&message),
                    expected,
                    "{name}, {len} bytes"
                );
                let mut split = derived_context.hasher();
                split.update(&message[..len / 2]);
                split.update(&message[len / 2..]);
                assert_eq!(split.finalize().as_bytes(), &expected, "{name}, in parts");
                assert_eq!(
                    derived_context.hash_parts(&[&message[..len / 3], &message[len / 3..]]),
                    expected,
                    "{name}, in parts on the thread's hasher"
                );
            }
        }
    }
}
