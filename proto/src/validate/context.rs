use std::collections::BTreeMap;

use crate::types::IssuerKey;

/// The set of trusted issuer keys the rules judge against.
///
/// Contract: during one validation call the answers must not change, and every
/// replica must hold the same set for the same log position (it is replicated
/// state), or replicas would give different verdicts.
pub trait IssuerKeys: Sync {
    fn issuer_key(&self, key_id: &str) -> Option<&IssuerKey>;
}

impl IssuerKeys for BTreeMap<String, IssuerKey> {
    fn issuer_key(&self, key_id: &str) -> Option<&IssuerKey> {
        self.get(key_id)
    }
}

/// A short list (a terminal's synced keys, tests): a linear scan.
impl IssuerKeys for Vec<IssuerKey> {
    fn issuer_key(&self, key_id: &str) -> Option<&IssuerKey> {
        self.iter().find(|key| key.key_id.as_str() == key_id)
    }
}

/// Everything outside the payment that the stateless rules depend on.
#[derive(Clone, Copy)]
pub struct ValidationContext<'a> {
    /// The time the rules judge by: the log entry's leader stamp in apply, the
    /// node's (or terminal's) clock at ingress.
    pub stamp_ms: u64,
    /// Allowance for device clock error on `created_at` (docs/PROTOCOL.md §5).
    pub skew_ms: u64,
    pub issuer_keys: &'a dyn IssuerKeys,
}

impl<'a> ValidationContext<'a> {
    pub fn new(stamp_ms: u64, skew_ms: u64, issuer_keys: &'a dyn IssuerKeys) -> Self {
        ValidationContext {
            stamp_ms,
            skew_ms,
            issuer_keys,
        }
    }
}
