//! Stateless verdicts computed by the node that proposes a submit entry, in
//! the context its own apply will have, and handed to that apply so the
//! leader validates each payment once instead of twice (at ingress, then in
//! apply). Followers, and the leader after a restart, validate everything
//! themselves: a precheck lives only in the proposer's memory.

use std::collections::BTreeMap;

use spentledger_protocol::validate::Checked;
use spentledger_protocol::{IssuerKey, Payment, ValidationContext};

use super::ledger::APPLY_SKEW_MS;

/// The context apply judges a submit entry's payments in: the entry's stamp,
/// the protocol's clock skew allowance and the replicated issuer keys. Ingress
/// uses it too when it prechecks an entry, so both compute the same verdicts.
pub fn apply_context(
    stamp_ms: u64,
    issuer_keys: &BTreeMap<String, IssuerKey>,
) -> ValidationContext<'_> {
    ValidationContext::new(stamp_ms, APPLY_SKEW_MS, issuer_keys)
}

/// A submit entry's payments, decoded, with the deterministic verdict of
/// each, all of which passed.
///
/// Contract (who builds one must keep it): `payments[i]` is the decoded form
/// of the entry's i-th wire payment, and its `Checked` is what
/// `Validator::validate_batch(.., ValidationMode::Deterministic)` returned for
/// it over the whole entry in [`apply_context`] with `stamp_ms` and
/// `issuer_keys`. Deterministic validation is a function of the payments and
/// the context alone, so apply, finding the same stamp and the same keys,
/// gets exactly the verdicts it would compute: it changes speed, never a
/// verdict or the state digest.
#[derive(Debug)]
pub struct Prechecked {
    stamp_ms: u64,
    issuer_keys: BTreeMap<String, IssuerKey>,
    payments: Vec<(Payment, Checked)>,
}

impl Prechecked {
    pub fn new(
        stamp_ms: u64,
        issuer_keys: BTreeMap<String, IssuerKey>,
        payments: Vec<(Payment, Checked)>,
    ) -> Self {
        Prechecked {
            stamp_ms,
            issuer_keys,
            payments,
        }
    }

    pub fn stamp_ms(&self) -> u64 {
        self.stamp_ms
    }

    pub fn len(&self) -> usize {
        self.payments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payments.is_empty()
    }

    /// The payments and their verdicts when apply's context is the one they
    /// were computed in (same stamp, same keys, same number of payments);
    /// otherwise `None`, and apply validates on its own. The stamp can differ
    /// when an earlier entry carried a later stamp (apply raises it), the keys
    /// when an entry in between registered or retired one.
    pub fn matching(
        &self,
        stamp_ms: u64,
        issuer_keys: &BTreeMap<String, IssuerKey>,
        payments: usize,
    ) -> Option<&[(Payment, Checked)]> {
        (self.stamp_ms == stamp_ms
            && self.payments.len() == payments
            && self.issuer_keys == *issuer_keys)
            .then_some(self.payments.as_slice())
    }
}
