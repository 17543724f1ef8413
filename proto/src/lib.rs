//! # spentledger-protocol
//!
//! The protocol rules of spentledger, pure and without I/O: the wire schema
//! (`pb`), the domain types with their checked conversions, the canonical
//! bytes every id and signature is computed over, the token Merkle tree, the
//! stateless validation rules with their batch entry points, and the issuer,
//! wallet and merchant helpers used by the CLI, the tests and the benchmarks.
//!
//! `docs/PROTOCOL.md` specifies every byte; this crate is its reference
//! implementation, and `docs/protocol-test-vectors.json` is checked by its tests.

pub mod canonical;
pub mod decode_error;
pub mod ids;
pub mod limits;
pub mod merkle;
pub mod pb;
pub mod sim;
pub mod types;
pub mod validate;
pub mod verdict;

pub use decode_error::{DecodeError, DecodeProblem};
pub use ids::{CertId, CounterNullifier, Nullifier, TxId};
pub use types::{
    CertificateSettlement, CertificateState, CloneEvidence, DoubleSpendEvidence, IssuerKey,
    OfflineCertificate, Payment, PaymentInput, Receipt, RevocationReason, TokenLeaf,
};
pub use validate::{
    CertificateCache, IssuerKeys, StatelessVerdict, ValidationContext, ValidationMode, Validator,
};
pub use verdict::{RejectReason, Verdict};
