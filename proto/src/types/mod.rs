//! Domain types of DESIGN.md's "Objects", with checked conversions from and to
//! the protobuf messages. A value of these types is well-formed (lengths,
//! alphabets, presence); whether it is *valid* is decided by [`crate::validate`].

mod certificate;
mod certificate_settlement;
mod certificate_state;
mod clone_evidence;
mod double_spend_evidence;
mod id_text;
mod issuer_key;
mod payment;
mod receipt;
mod revocation;
mod token;

pub use certificate::{Currency, OfflineCertificate};
pub use certificate_settlement::{CertificateSettlement, SettlementError};
pub use certificate_state::CertificateState;
pub use clone_evidence::CloneEvidence;
pub use double_spend_evidence::{DoubleSpendEvidence, EvidenceError};
pub use id_text::IdText;
pub use issuer_key::IssuerKey;
pub use payment::Payment;
pub use receipt::{Receipt, receipt_flags};
pub use revocation::{Revocation, RevocationReason};
pub use token::{PaymentInput, TokenLeaf};
