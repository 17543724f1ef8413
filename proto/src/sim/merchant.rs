use std::collections::{BTreeSet, VecDeque};

use crate::ids::CertId;
use crate::types::{IdText, Payment};
use crate::validate::{CertificateCache, Checked, ValidationContext, validate_single};
use crate::verdict::RejectReason;

/// Challenges a terminal keeps open at once; the oldest is dropped past this.
const OPEN_CHALLENGES_MAX: usize = 1_024;

/// Why a terminal refuses a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerchantRejection {
    #[error("the payment is to payee {actual}, not to this terminal ({expected})")]
    WrongPayee { expected: IdText, actual: IdText },
    #[error("the payment answers no open challenge of this terminal (unknown or already used)")]
    UnknownChallenge,
    #[error("the certificate {0} is on the revocation list")]
    Revoked(CertId),
    #[error("the payment is invalid: {0}")]
    Invalid(RejectReason),
}

/// A merchant terminal verifying payments offline, as DESIGN.md describes:
/// its own one-time challenge, the issuer keys and the revocation list it last
/// synced, and the full stateless rules with `verify_strict`.
pub struct MerchantTerminal {
    payee_id: IdText,
    open_challenges: VecDeque<[u8; 32]>,
    revoked: BTreeSet<CertId>,
    cache: CertificateCache,
}

impl MerchantTerminal {
    pub fn new(payee_id: IdText) -> Self {
        MerchantTerminal {
            payee_id,
            open_challenges: VecDeque::new(),
            revoked: BTreeSet::new(),
            cache: CertificateCache::new(1_024),
        }
    }

    /// A terminal restored from storage with the challenges it had open
    /// (oldest first; at most the last `OPEN_CHALLENGES_MAX` are kept).
    pub fn restore(payee_id: IdText, open_challenges: impl IntoIterator<Item = [u8; 32]>) -> Self {
        let mut terminal = MerchantTerminal::new(payee_id);
        for challenge in open_challenges {
            if terminal.open_challenges.len() == OPEN_CHALLENGES_MAX {
                terminal.open_challenges.pop_front();
            }
            terminal.open_challenges.push_back(challenge);
        }
        terminal
    }

    /// Challenges issued and not yet consumed, oldest first.
    pub fn open_challenges(&self) -> impl Iterator<Item = &[u8; 32]> + '_ {
        self.open_challenges.iter()
    }

    pub fn payee_id(&self) -> &IdText {
        &self.payee_id
    }

    /// Opens a one-time challenge for the next payment. `entropy` must come
    /// from a CSPRNG; the challenge is bound to this terminal's payee id.
    pub fn challenge(&mut self, entropy: [u8; 32]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key("spentledger v1 merchant challenge");
        hasher.update(self.payee_id.as_str().as_bytes());
        hasher.update(&entropy);
        let challenge = *hasher.finalize().as_bytes();
        if self.open_challenges.len() == OPEN_CHALLENGES_MAX {
            self.open_challenges.pop_front();
        }
        self.open_challenges.push_back(challenge);
        challenge
    }

    /// Replaces the revocation list with the one just synced from the ledger.
    pub fn sync_revocations(&mut self, revoked: impl IntoIterator<Item = CertId>) {
        self.revoked = revoked.into_iter().collect();
    }

    /// Verifies a payment; on success the challenge is consumed, so the same
    /// payment cannot be presented twice at this terminal.
    pub fn verify(
        &mut self,
        payment: &Payment,
        ctx: &ValidationContext<'_>,
    ) -> Result<Checked, MerchantRejection> {
        if payment.payee_id != self.payee_id {
            return Err(MerchantRejection::WrongPayee {
                expected: self.payee_id.clone(),
                actual: payment.payee_id.clone(),
            });
        }
        let position = self
            .open_challenges
            .iter()
            .position(|c| *c == payment.payee_challenge)
            .ok_or(MerchantRejection::UnknownChallenge)?;
        let cert_id = payment.certificate.cert_id();
        if self.revoked.contains(&cert_id) {
            return Err(MerchantRejection::Revoked(cert_id));
        }
        let checked =
            validate_single(payment, ctx, &self.cache).map_err(MerchantRejection::Invalid)?;
        self.open_challenges.remove(position);
        Ok(checked)
    }
}
