//! The stateless rules of DESIGN.md ("Rules of the state machine", rule 2) as
//! pure functions, and the batch entry points that spread them over threads.
//!
//! Two modes differ only in how device signatures are batched:
//! - [`ValidationMode::Ingress`]: the receiving node, any chunking, batch
//!   verification with per-item `verify_strict` fallback;
//! - [`ValidationMode::Deterministic`]: the state machine; fixed chunks of
//!   [`crate::limits::DETERMINISTIC_CHUNK_SIGNATURES`] in entry order, so the
//!   verdicts depend only on the entry's bytes, whatever the thread count.

mod certificate_cache;
mod context;
pub mod point_check;
mod rules;
pub mod signature;
mod validator;

pub use certificate_cache::CertificateCache;
pub use context::{IssuerKeys, ValidationContext};
pub use rules::{Checked, check_certificate, validate_single};
pub use validator::{ThreadStart, ValidationMode, Validator, ValidatorError};

/// The stateless verdict of one payment: its ids when valid, else the first
/// rule it broke (in the order of docs/PROTOCOL.md §6).
pub type StatelessVerdict = Result<Checked, crate::RejectReason>;
