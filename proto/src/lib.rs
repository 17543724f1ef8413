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
//!
//! ```
//! use spentledger_protocol::sim::{IssuancePolicy, IssuanceRequest, Issuer, MerchantTerminal, Wallet};
//! use spentledger_protocol::types::{Currency, IdText};
//! use spentledger_protocol::{RejectReason, ValidationContext, ValidationMode, Validator, pb};
//!
//! let t0 = 1_767_225_600_000; // 2026-01-01, unix ms
//! let issuer = Issuer::from_seed(IdText::new("key_id", "bank-a")?, [1; 32], t0, t0 + 86_400_000);
//! let device_seed = [2; 32];
//! let issued = issuer.issue(&IssuancePolicy::default(), &IssuanceRequest {
//!     wallet_id: IdText::new("wallet_id", "alice")?,
//!     device_key: Wallet::device_key_for(&device_seed),
//!     currency: Currency::new("currency", "EUR")?,
//!     balance: 10_000,
//!     credit_line: 0,
//!     issued_at_ms: t0,
//! })?;
//! let mut wallet = Wallet::new(device_seed, issued.certificate, issued.tokens)?;
//! // Both steps at once, where a simulation holds the device's seed:
//! // issuer.fund_device(&policy, device_seed, &Funding::eur(wallet_id, 10_000, t0))
//!
//! // Offline: the terminal issues a challenge, the device pays, the terminal verifies.
//! let keys = vec![issuer.issuer_key()];
//! let ctx = ValidationContext::new(t0 + 60_000, 300_000, &keys); // stamp, skew, trusted keys
//! let mut terminal = MerchantTerminal::new(IdText::new("payee_id", "cafe-17")?);
//! let challenge = terminal.challenge([9; 32]);
//! let payment = wallet.pay(1_250, terminal.payee_id(), challenge, t0 + 60_000)?;
//! assert!(terminal.verify(&payment, &ctx).is_ok());
//!
//! // Online: a node validates a gateway's batch as it arrives on the wire.
//! let mut forged = pb::Payment::from(&payment);
//! forged.amount += 1;
//! let validator = Validator::new(2, 65_536)?; // threads, certificate cache entries
//! let verdicts = validator.validate_wire_batch(
//!     &[pb::Payment::from(&payment), forged],
//!     &ctx,
//!     ValidationMode::Ingress,
//! );
//! assert_eq!(verdicts[0].as_ref().map(|c| c.tx_id), Ok(payment.tx_id()));
//! assert_eq!(verdicts[1].as_ref().map_err(|(r, _)| *r).err(), Some(RejectReason::AmountMismatch));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access;
pub mod canonical;
pub mod decode_error;
pub mod direct;
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
    ValidatorError,
};
pub use verdict::{RejectReason, Verdict};
