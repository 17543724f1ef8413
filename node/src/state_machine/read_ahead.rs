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

use std::collections::{BTreeMap, BTreeSet};

use spentledger_protocol::validate::Checked;
use spentledger_protocol::{CertId, Nullifier, Payment, TxId};

use super::StoreError;
use super::ledger_read::{AcceptedPayment, CertRecord, CounterKey, LedgerRead, NullifierRecord};
use super::overlay::WriteSet;

/// The keys a group of payments will read, without repeats.
#[derive(Debug, Default)]
pub struct ReadKeys {
    accepted: BTreeSet<TxId>,
    nullifiers: BTreeSet<Nullifier>,
    counters: BTreeSet<CounterKey>,
    certificates: BTreeSet<CertId>,
}

impl ReadKeys {
    /// What judging `payment`, which passed the stateless rules as
    /// `checked`, reads on the way to its verdict.
    pub fn add_payment(&mut self, payment: &Payment, checked: &Checked) {
        self.accepted.insert(checked.tx_id);
        self.certificates.insert(checked.cert_id);
        self.counters.insert(CounterKey {
            cert_id: checked.cert_id,
            counter: payment.counter,
        });
        for input in &payment.inputs {
            self.nullifiers
                .insert(checked.cert_id.token_nullifier(input.leaf.index));
        }
    }

    /// Drops the keys `writes` holds: reads of those never reach the store.
    fn without(mut self, writes: &WriteSet) -> Self {
        self.accepted.retain(|k| !writes.accepted.contains_key(k));
        self.nullifiers
            .retain(|k| !writes.nullifiers.contains_key(k));
        self.counters.retain(|k| !writes.counters.contains_key(k));
        self.certificates
            .retain(|k| !writes.certificates.contains_key(k));
        self
    }
}

/// Applied-state values fetched ahead, each `None` when the store has no
/// record. A key not held here was not fetched (read the store).
#[derive(Debug, Default)]
pub struct ReadAhead {
    accepted: BTreeMap<TxId, Option<AcceptedPayment>>,
    nullifiers: BTreeMap<Nullifier, Option<NullifierRecord>>,
    counters: BTreeMap<CounterKey, Option<TxId>>,
    certificates: BTreeMap<CertId, Option<CertRecord>>,
}

impl ReadAhead {
    /// Fetches `keys` from `base`, skipping those `writes` already holds.
    pub fn fetch(
        base: &dyn LedgerRead,
        keys: ReadKeys,
        writes: &WriteSet,
    ) -> Result<Self, StoreError> {
        let keys = keys.without(writes);
        Ok(ReadAhead {
            accepted: fetched(keys.accepted, |k| base.accepted_batch(k))?,
            nullifiers: fetched(keys.nullifiers, |k| base.nullifier_batch(k))?,
            counters: fetched(keys.counters, |k| base.counter_batch(k))?,
            certificates: fetched(keys.certificates, |k| base.certificate_batch(k))?,
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

/// One batched read of `keys`, paired back with them.
fn fetched<K: Ord + Copy, V>(
    keys: BTreeSet<K>,
    read: impl FnOnce(&[K]) -> Result<Vec<Option<V>>, StoreError>,
) -> Result<BTreeMap<K, Option<V>>, StoreError> {
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let keys: Vec<K> = keys.into_iter().collect();
    let values = read(&keys)?;
    if values.len() != keys.len() {
        return Err(StoreError::Io(format!(
            "a batched read answered {} of {} keys",
            values.len(),
            keys.len()
        )));
    }
    Ok(keys.into_iter().zip(values).collect())
}
