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
//!
//! One family is not read for most payments: a payment's record (the
//! duplicate check). The ledger's own writes prove most payments
//! unrecorded from the other reads (a recorded payment leaves a nullifier
//! or a settled certificate: [`ReadAhead::proves_unrecorded`]); that read
//! was most of a group's negative look-ups in the largest family, and
//! skipping it cut node CPU per payment by about 2 µs (docs/BENCHMARKS.md,
//! twenty-second round).

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
    /// One per payment, in the group's order.
    payments: Vec<PaymentKeys>,
    /// Every payment's token nullifiers, in the group's and then input
    /// order (`PaymentKeys::inputs` of them per payment).
    nullifiers: Vec<Nullifier>,
}

/// What one payment reads besides its nullifiers.
#[derive(Debug)]
struct PaymentKeys {
    tx_id: TxId,
    counter: CounterKey,
    inputs: usize,
}

impl ReadKeys {
    /// What judging `payment`, which passed the stateless rules as
    /// `checked` and spends the tokens with `nullifiers`, reads on the way to
    /// its verdict.
    pub fn add_payment(&mut self, payment: &Payment, checked: &Checked, nullifiers: &[Nullifier]) {
        self.payments.push(PaymentKeys {
            tx_id: checked.tx_id,
            counter: CounterKey {
                cert_id: checked.cert_id,
                counter: payment.counter,
            },
            inputs: nullifiers.len(),
        });
        self.nullifiers.extend_from_slice(nullifiers);
    }

    /// Each payment's keys with its own nullifiers.
    fn per_payment(&self) -> impl Iterator<Item = (&PaymentKeys, &[Nullifier])> {
        let mut from = 0;
        self.payments.iter().map(move |p| {
            let ours = self.nullifiers.get(from..from + p.inputs).unwrap_or(&[]);
            from += p.inputs;
            (p, ours)
        })
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
        let certificates = distinct_unheld(
            keys.payments.iter().map(|p| p.counter.cert_id).collect(),
            |k| writes.certificates.contains_key(k),
        );
        let nullifiers = distinct_unheld(keys.nullifiers.clone(), |k| {
            writes.nullifiers.contains_key(k)
        });
        let counters = distinct_unheld(keys.payments.iter().map(|p| p.counter).collect(), |k| {
            writes.counters.contains_key(k)
        });
        let mut ahead = ReadAhead {
            accepted: Fetched::default(),
            nullifiers: Fetched::read(nullifiers, |k| base.nullifier_batch(k))?,
            counters: Fetched::read(counters, |k| base.counter_batch(k))?,
            certificates: Fetched::read(certificates, |k| base.certificate_batch(k))?,
        };
        ahead.accepted = ahead.fetch_accepted(base, &keys, writes)?;
        Ok(ahead)
    }

    /// The group's payment records: `None` without a read for each payment
    /// the fetched reads prove the store does not record
    /// ([`Self::proves_unrecorded`]), one batched read for the others.
    fn fetch_accepted(
        &self,
        base: &dyn LedgerRead,
        keys: &ReadKeys,
        writes: &WriteSet,
    ) -> Result<Fetched<TxId, AcceptedPayment>, StoreError> {
        let mut unrecorded = Vec::new();
        let mut unknown = Vec::new();
        for (payment, nullifiers) in keys.per_payment() {
            if self.proves_unrecorded(&payment.counter.cert_id, nullifiers) {
                unrecorded.push(payment.tx_id);
            } else {
                unknown.push(payment.tx_id);
            }
        }
        let held = |k: &TxId| writes.accepted.contains_key(k);
        let unrecorded = distinct_unheld(unrecorded, held);
        // A payment repeated in the group has the same certificate and
        // nullifiers each time, so it lands on the same side; the filter
        // keeps the two sides disjoint even so.
        let unknown = distinct_unheld(unknown, |k| held(k) || unrecorded.binary_search(k).is_ok());
        let read = Fetched::read(unknown, |k| base.accepted_batch(k))?;
        Ok(read.merged_with_absent(unrecorded))
    }

    /// Whether the store holds no record of a payment of certificate
    /// `cert_id` spending `nullifiers`, by what was fetched: the ledger
    /// records a payment in the same write as all of its token nullifiers
    /// (as spent or held) and its certificate's record, and removes
    /// nullifiers only when it settles the certificate (DESIGN.md, rule 4).
    /// So a recorded payment leaves at least one of its nullifiers in the
    /// store, or its certificate settled. When every nullifier was fetched
    /// and found unspent, and the certificate was fetched and is not
    /// settled, the payment is not recorded. Anything not fetched (held by
    /// this apply's writes) proves nothing.
    fn proves_unrecorded(&self, cert_id: &CertId, nullifiers: &[Nullifier]) -> bool {
        let open = match self.certificates.get(cert_id) {
            Some(Some(record)) => !record.state.settled,
            Some(None) => true,
            None => false,
        };
        open && !nullifiers.is_empty()
            && nullifiers
                .iter()
                .all(|n| matches!(self.nullifiers.get(n), Some(None)))
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

    /// These values and `absent` (sorted, distinct, none of them here),
    /// each answering `None`, as one sorted set of fetched keys.
    fn merged_with_absent(self, absent: Vec<K>) -> Self {
        if absent.is_empty() {
            return self;
        }
        let mut keys = Vec::with_capacity(self.keys.len() + absent.len());
        let mut values = Vec::with_capacity(keys.capacity());
        let mut read = self.keys.into_iter().zip(self.values).peekable();
        for key in absent {
            while let Some((k, v)) = read.next_if(|(k, _)| *k < key) {
                keys.push(k);
                values.push(v);
            }
            keys.push(key);
            values.push(None);
        }
        for (k, v) in read {
            keys.push(k);
            values.push(v);
        }
        Self { keys, values }
    }

    fn get(&self, key: &K) -> Option<&Option<V>> {
        let at = self.keys.binary_search(key).ok()?;
        self.values.get(at)
    }
}

#[cfg(test)]
mod tests {
    use spentledger_protocol::types::CertificateState;

    use super::*;
    use crate::state_machine::memory::MemLedger;
    use crate::test_support::{accepted_as, id, wallet};

    /// A payment of its own device (so of its own certificate).
    fn payment_of(device: u8) -> Payment {
        wallet(device, 1_000)
            .pay(5, &id("shop"), [device; 32], 2_000)
            .expect("funded")
    }

    fn keys_of(payments: &[&Payment]) -> ReadKeys {
        let mut keys = ReadKeys::default();
        for p in payments {
            let checked = Checked {
                cert_id: p.certificate.cert_id(),
                tx_id: p.tx_id(),
            };
            keys.add_payment(p, &checked, &p.nullifiers());
        }
        keys
    }

    fn record_of(p: &Payment) -> AcceptedPayment {
        accepted_as(p.clone(), 1, 2_000, 0)
    }

    fn cert_record(p: &Payment, settled: bool) -> CertRecord {
        let mut state = CertificateState::new(p.certificate.cert_id());
        state.settled = settled;
        CertRecord {
            state,
            double_spend_detected: false,
            revocation_sequence: None,
        }
    }

    #[test]
    fn a_payment_record_is_read_only_when_the_other_reads_cannot_prove_it_absent() {
        let [
            unknown_cert,
            open_cert,
            spent_one,
            settled,
            held_nullifier,
            held_cert,
        ] = [1, 2, 3, 4, 5, 6].map(payment_of);
        // A store that records every payment and, for most, nothing else the
        // ledger would have written with it: it breaks the ledger's
        // invariant on purpose, so an answer of "no record" shows that the
        // record was not read, and its record shows that it was.
        let group = [
            &unknown_cert,
            &open_cert,
            &spent_one,
            &settled,
            &held_nullifier,
            &held_cert,
            &open_cert,
        ];
        let mut base = MemLedger::default();
        for p in group {
            base.accepted.insert(p.tx_id(), record_of(p));
        }
        base.certificates.insert(
            open_cert.certificate.cert_id(),
            cert_record(&open_cert, false),
        );
        for p in [&settled, &held_cert] {
            base.certificates
                .insert(p.certificate.cert_id(), cert_record(p, true));
        }
        base.nullifiers.insert(
            spent_one.nullifiers()[0],
            NullifierRecord {
                tx_id: spent_one.tx_id(),
                held: false,
            },
        );
        let mut writes = WriteSet::default();
        writes
            .nullifiers
            .insert(held_nullifier.nullifiers()[0], None);
        writes.certificates.insert(
            held_cert.certificate.cert_id(),
            cert_record(&held_cert, true),
        );
        let ahead = ReadAhead::fetch(&base, keys_of(&group), &writes).expect("fetch");

        eprintln!(
            "--- unspent nullifiers under an unknown or open certificate: not recorded, not read"
        );
        for p in [&unknown_cert, &open_cert] {
            assert_eq!(ahead.accepted(&p.tx_id()), Some(&None), "{:?}", p.tx_id());
        }
        eprintln!(
            "--- a spent nullifier, a settled certificate, a nullifier or a certificate not fetched: read"
        );
        for p in [&spent_one, &settled, &held_nullifier, &held_cert] {
            assert_eq!(
                ahead.accepted(&p.tx_id()),
                Some(&Some(record_of(p))),
                "{:?}",
                p.tx_id()
            );
        }
    }

    #[test]
    fn a_ledger_recorded_payment_is_never_proven_absent() {
        // What the ledger really writes with a record: its nullifiers and its
        // certificate's record, in one write set.
        let p = payment_of(7);
        let mut base = MemLedger::default();
        base.accepted.insert(p.tx_id(), record_of(&p));
        base.certificates
            .insert(p.certificate.cert_id(), cert_record(&p, false));
        for n in p.nullifiers() {
            base.nullifiers.insert(
                n,
                NullifierRecord {
                    tx_id: p.tx_id(),
                    held: false,
                },
            );
        }
        let ahead = ReadAhead::fetch(&base, keys_of(&[&p]), &WriteSet::default()).expect("fetch");
        assert_eq!(ahead.accepted(&p.tx_id()), Some(&Some(record_of(&p))));
        eprintln!("--- settled: its nullifiers compacted away, its certificate says so");
        base.nullifiers.clear();
        base.certificates
            .insert(p.certificate.cert_id(), cert_record(&p, true));
        let ahead = ReadAhead::fetch(&base, keys_of(&[&p]), &WriteSet::default()).expect("fetch");
        assert_eq!(ahead.accepted(&p.tx_id()), Some(&Some(record_of(&p))));
    }

    #[test]
    fn read_values_and_proven_absent_keys_merge_into_one_sorted_set() {
        let read = Fetched::read(vec![2u32, 6, 9], |keys| {
            Ok(keys.iter().map(|k| Some(k * 10)).collect())
        })
        .expect("one answer per key");
        let merged = read.merged_with_absent(vec![1, 5, 7, 12]);
        assert_eq!(merged.keys, vec![1, 2, 5, 6, 7, 9, 12]);
        assert_eq!(
            merged.values,
            vec![None, Some(20), None, Some(60), None, Some(90), None]
        );
        let none_read = Fetched::<u32, u32>::default().merged_with_absent(vec![3, 4]);
        assert_eq!(
            (none_read.keys, none_read.values),
            (vec![3, 4], vec![None, None])
        );
    }

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
