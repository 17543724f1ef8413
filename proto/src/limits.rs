//! Protocol limits. They are part of the protocol (docs/PROTOCOL.md, "Limits"):
//! a payment outside them is refused by every node and every terminal alike.

/// Inputs (tokens) one payment may spend.
pub const INPUTS_PER_PAYMENT_MAX: usize = 64;
/// Tokens under one certificate; bounds the Merkle depth to 16.
pub const TOKENS_PER_CERTIFICATE_MAX: u32 = 1 << 16;
/// Sibling hashes in one Merkle path (= depth of a tree of the maximum size).
pub const MERKLE_PATH_LEN_MAX: usize = 16;
/// Bytes in a key id, wallet id or payee id.
pub const ID_TEXT_BYTES_MAX: usize = 64;
/// Bytes in a free-text reason (forced settlement).
pub const REASON_TEXT_BYTES_MAX: usize = 256;
/// Bytes in a currency code (ISO 4217).
pub const CURRENCY_BYTES: usize = 3;
/// Signatures verified together in one batch by the deterministic (apply)
/// mode. Fixed: changing it changes which chunk a signature falls into, so it
/// is a protocol constant, not a tuning knob. 256 because ed25519-dalek's
/// batch check costs 18% less per signature at 256 than at 16..=64
/// (docs/BENCHMARKS.md), and in apply a chunk only fails when a faulty leader
/// proposed a bad signature, so the per-item fallback is rare.
pub const DETERMINISTIC_CHUNK_SIGNATURES: usize = 256;
/// Default allowance for device clock error, applied to `created_at` checks.
pub const CLOCK_SKEW_MS_DEFAULT: u64 = 5 * 60 * 1000;
