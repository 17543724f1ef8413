//! Identifiers and nullifiers, each a domain-separated BLAKE3 hash.
//!
//! Every derivation uses BLAKE3's `derive_key` mode with its own context
//! string, so no two kinds of id can ever collide. The context strings are part
//! of the protocol (docs/PROTOCOL.md, "Identifiers").

use std::fmt;

/// `derive_key` contexts. Changing one is a protocol version change.
pub mod context {
    pub const CERT_ID: &str = "spentledger v1 certificate id";
    pub const TX_ID: &str = "spentledger v1 payment id";
    pub const TOKEN_NULLIFIER: &str = "spentledger v1 token nullifier";
    pub const COUNTER_NULLIFIER: &str = "spentledger v1 counter nullifier";
    pub const MERKLE_LEAF: &str = "spentledger v1 merkle leaf";
    pub const MERKLE_NODE: &str = "spentledger v1 merkle node";
}

/// Prefixes of the messages that ed25519 keys sign (docs/PROTOCOL.md, "Signatures").
pub mod signing_domain {
    pub const CERTIFICATE: &[u8] = b"spentledger/v1/certificate-signature\0";
    pub const PAYMENT: &[u8] = b"spentledger/v1/payment-signature\0";
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

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
        let mut hasher = blake3::Hasher::new_derive_key(context::TOKEN_NULLIFIER);
        hasher.update(&self.0);
        hasher.update(&index.to_le_bytes());
        Nullifier(*hasher.finalize().as_bytes())
    }

    /// The nullifier of payment counter `counter` under this certificate.
    pub fn counter_nullifier(&self, counter: u64) -> CounterNullifier {
        let mut hasher = blake3::Hasher::new_derive_key(context::COUNTER_NULLIFIER);
        hasher.update(&self.0);
        hasher.update(&counter.to_le_bytes());
        CounterNullifier(*hasher.finalize().as_bytes())
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
}
