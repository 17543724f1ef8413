//! Point reads fetched ahead for a group of payments.
//!
//! Judging one payment reads about five keys (its receipt, its certificate's
//! record, its nullifiers, its counter), nearly all of them misses. Asked
//! one at a time, each pays RocksDB's whole lookup path (version pinning,
//! the memtables, the filter partitions); under load those reads were a
//! third of the leader's apply thread (docs/BENCHMARKS.md, eighth round).
//! Apply therefore collects the keys of the next group of payments first
//! and fetches them with one batched lookup per column family.
//!
//! Correctness does not depend on what is fetched: [`super::Overlay`] reads
//! its own pending writes first, then this, then the store, and every value
//! here is the applied state's, which does not change during an apply call.
//! Read-ahead changes speed only, never an outcome.

use spentledger_protocol::validate::Checked;
use spentledger_protocol::{CertId, Nullifier, Payment, TxId};

use super::StoreError;
use super::ledger_read::{AcceptedPayment, CertRecord, CounterKey, LedgerRead, NullifierRecord};
use super::overlay::WriteSet;

/// The keys a group of payments will read (repeats are dropped when they
/// are fetched).
///
/// Sorted vectors rather than ordered sets and maps: keys are 32-byte
/// hashes, and about five per payment went through B-tree inserts, then
/// B-tree look-ups, each a chain of `memcmp` calls; in the profile that was
/// about 1% of all CPU (docs/BENCHMARKS.md, twelfth round). A push, one sort
/// per group and binary searches do the same with fewer comparisons and
/// contiguous memory. Sorting is deterministic, like the sets were.
#[derive(Debug, Default)]
pub struct ReadKeys {
    accepted: Vec<TxId>,
    nullifiers: Vec<Nullifier>,
    counters: Vec<CounterKey>,
    certificates: Vec<CertId>,
}

impl ReadKeys {
    /// What judging `payment`, which passed the stateless rules as
    /// `checked` and spends the tokens with `nullifiers`, reads on the way to
    /// its verdict.
    pub fn add_payment(&mut self, payment: &Payment, checked: &Checked, nullifiers: &[Nullifier]) {
        self.accepted.push(checked.tx_id);
        self.certificates.push(checked.cert_id);
        self.counters.push(CounterKey {
            cert_id: checked.cert_id,
            counter: payment.counter,
        });
        self.nullifiers.extend_from_slice(nullifiers);
    }
}

/// `keys` sorted, without repeats and without those `held` (the apply's own
/// pending writes: reads of those never reach the store).
fn distinct_unheld<K: Ord>(mut keys: Vec<K>, held: impl Fn(&K) -> bool) -> Vec<K> {
    keys.sort_unstable();
    keys.dedup();
    keys.retain(|k| !held(k));
    keys
}

/// Applied-state values fetched ahead, each `None` when the store has no
/// record, sorted by key. A key not held here was not fetched (read the
/// store).
#[derive(Debug, Default)]
pub struct ReadAhead {
    accepted: Fetched<TxId, AcceptedPayment>,
    nullifiers: Fetched<Nullifier, NullifierRecord>,
    counters: Fetched<CounterKey, TxId>,
    certificates: Fetched<CertId, CertRecord>,
}

impl ReadAhead {
    /// Fetches `keys` from `base`, skipping those `writes` already holds.
    pub fn fetch(
        base: &dyn LedgerRead,
        keys: ReadKeys,
        writes: &WriteSet,
    ) -> Result<Self, StoreError> {
        let accepted = distinct_unheld(keys.accepted, |k| writes.accepted.contains_key(k));
        let nullifiers = distinct_unheld(keys.nullifiers, |k| writes.nullifiers.contains_key(k));
        let counters = distinct_unheld(keys.counters, |k| writes.counters.contains_key(k));
        let certificates =
            distinct_unheld(keys.certificates, |k| writes.certificates.contains_key(k));
        Ok(ReadAhead {
            accepted: Fetched::read(accepted, |k| base.accepted_batch(k))?,
            nullifiers: Fetched::read(nullifiers, |k| base.nullifier_batch(k))?,
            counters: Fetched::read(counters, |k| base.counter_batch(k))?,
            certificates: Fetched::read(certificates, |k| base.certificate_batch(k))?,
        })
    }

    pub fn accepted(&self, key: &TxId) -> Option<&Option<AcceptedPayment>> {
        self.accepted.get(key)
    }

    pub fn nullifier(&self, key: &Nullifier) -> Option<Option<NullifierRecord>> {
        self.nullifiers.get(key).copied()
    }

    pub fn counter(&self, key: &CounterKey) -> Option<Option<TxId>> {
        self.counters.get(key).copied()
    }

    pub fn certificate(&self, key: &CertId) -> Option<&Option<CertRecord>> {
        self.certificates.get(key)
    }
}

/// One family's fetched values: sorted keys and, at the same positions,
/// what the store answered for each.
#[derive(Debug)]
struct Fetched<K, V> {
    keys: Vec<K>,
    values: Vec<Option<V>>,
}

impl<K, V> Default for Fetched<K, V> {
    fn default() -> Self {
        Fetched {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: Ord, V> Fetched<K, V> {
    /// One batched read of `keys` (sorted, distinct).
    fn read(
        keys: Vec<K>,
        read: impl FnOnce(&[K]) -> Result<Vec<Option<V>>, StoreError>,
    ) -> Result<Self, StoreError> {
        if keys.is_empty() {
            return Ok(Fetched::default());
        }
        let values = read(&keys)?;
        if values.len() != keys.len() {
            return Err(StoreError::Io(format!(
                "a batched read answered {} of {} keys",
                values.len(),
                keys.len()
            )));
        }
        Ok(Fetched { keys, values })
    }

    fn get(&self, key: &K) -> Option<&Option<V>> {
        let at = self.keys.binary_search(key).ok()?;
        self.values.get(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_distinct_and_without_those_held() {
        let keys = distinct_unheld(vec![5, 3, 9, 3, 1, 5, 7], |k| *k == 7);
        assert_eq!(keys, vec![1, 3, 5, 9]);
    }

    #[test]
    fn a_fetched_key_answers_its_own_value_and_an_unfetched_one_nothing() {
        let fetched = Fetched::read(vec![2u32, 4, 8], |keys| {
            Ok(keys.iter().map(|k| (*k != 4).then_some(k * 10)).collect())
        })
        .expect("one answer per key");
        assert_eq!(fetched.get(&2), Some(&Some(20)));
        assert_eq!(fetched.get(&4), Some(&None));
        assert_eq!(fetched.get(&8), Some(&Some(80)));
        assert_eq!(fetched.get(&3), None);
        assert_eq!(fetched.get(&9), None);
    }

    #[test]
    fn a_short_answer_is_an_error() {
        let short = Fetched::<u32, u32>::read(vec![1, 2], |_| Ok(vec![Some(1)]));
        assert!(matches!(short, Err(StoreError::Io(_))));
    }
}
