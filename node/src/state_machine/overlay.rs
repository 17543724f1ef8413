use std::collections::BTreeMap;

use spentledger_protocol::types::Revocation;
use spentledger_protocol::{
    CertId, CertificateSettlement, CloneEvidence, DoubleSpendEvidence, IssuerKey, Nullifier,
    Payment, TxId,
};

use super::ledger_read::{
    AcceptedPayment, CertRecord, CounterKey, LedgerRead, NullifierRecord, StoreError,
};
use super::read_ahead::{ReadAhead, ReadKeys};
use super::write_map::WriteMap;

/// The most inputs per payment [`Overlay::reserve_payments`] reserves for.
pub const RESERVED_INPUTS_MAX: usize = 4;

/// Evidence recorded by the ledger, in detection order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    DoubleSpend(DoubleSpendEvidence),
    Clone(CloneEvidence),
}

/// The writes of one apply call, in ordered maps (or [`WriteMap`]s, which
/// hand their entries out in key order) so that persisting them is
/// deterministic. `None` values are deletions (compaction).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSet {
    pub accepted: WriteMap<TxId, AcceptedPayment>,
    pub held_payments: BTreeMap<TxId, Payment>,
    pub nullifiers: WriteMap<Nullifier, Option<NullifierRecord>>,
    pub counters: BTreeMap<CounterKey, Option<TxId>>,
    pub certificates: BTreeMap<CertId, CertRecord>,
    pub settlements: BTreeMap<CertId, CertificateSettlement>,
    pub revocations: BTreeMap<u64, Revocation>,
    /// Evidence keyed by (certificate, detecting log index, position).
    pub evidence: BTreeMap<(CertId, u64, u32), Evidence>,
    pub issuer_keys: BTreeMap<String, IssuerKey>,
    pub last_stamp_ms: Option<u64>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        *self == WriteSet::default()
    }
}

/// Reads through pending writes to the applied state: the writes first,
/// then whatever was fetched ahead, then the store.
pub struct Overlay<'a> {
    base: &'a dyn LedgerRead,
    pub(crate) writes: WriteSet,
    ahead: ReadAhead,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn LedgerRead) -> Self {
        Overlay {
            base,
            writes: WriteSet::default(),
            ahead: ReadAhead::default(),
        }
    }

    pub fn into_writes(self) -> WriteSet {
        self.writes
    }

    /// Fetches `keys` from the store in batches, replacing what was fetched
    /// before (so it holds one group's reads at a time). Speed only: reads
    /// answer the same with or without it.
    pub fn read_ahead(&mut self, keys: ReadKeys) -> Result<(), StoreError> {
        self.ahead = ReadAhead::fetch(self.base, keys, &self.writes)?;
        Ok(())
    }

    pub fn accepted(&self, tx_id: &TxId) -> Result<Option<AcceptedPayment>, StoreError> {
        if let Some(a) = self.writes.accepted.get(tx_id) {
            return Ok(Some(a.clone()));
        }
        match self.ahead.accepted(tx_id) {
            Some(fetched) => Ok(fetched.clone()),
            None => self.base.accepted(tx_id),
        }
    }

    pub fn held_payment(&self, tx_id: &TxId) -> Result<Option<Payment>, StoreError> {
        match self.writes.held_payments.get(tx_id) {
            Some(p) => Ok(Some(p.clone())),
            None => self.base.held_payment(tx_id),
        }
    }

    pub fn nullifier(&self, n: &Nullifier) -> Result<Option<NullifierRecord>, StoreError> {
        if let Some(record) = self.writes.nullifiers.get(n) {
            return Ok(*record);
        }
        match self.ahead.nullifier(n) {
            Some(fetched) => Ok(fetched),
            None => self.base.nullifier(n),
        }
    }

    pub fn counter(&self, c: &CounterKey) -> Result<Option<TxId>, StoreError> {
        if let Some(tx) = self.writes.counters.get(c) {
            return Ok(*tx);
        }
        match self.ahead.counter(c) {
            Some(fetched) => Ok(fetched),
            None => self.base.counter(c),
        }
    }

    pub fn certificate(&self, cert_id: &CertId) -> Result<Option<CertRecord>, StoreError> {
        if let Some(c) = self.writes.certificates.get(cert_id) {
            return Ok(Some(c.clone()));
        }
        match self.ahead.certificate(cert_id) {
            Some(fetched) => Ok(fetched.clone()),
            None => self.base.certificate(cert_id),
        }
    }

    pub fn settlement(
        &self,
        cert_id: &CertId,
    ) -> Result<Option<CertificateSettlement>, StoreError> {
        match self.writes.settlements.get(cert_id) {
            Some(s) => Ok(Some(s.clone())),
            None => self.base.settlement(cert_id),
        }
    }

    pub fn revocation(&self, sequence: u64) -> Result<Option<Revocation>, StoreError> {
        match self.writes.revocations.get(&sequence) {
            Some(r) => Ok(Some(r.clone())),
            None => self.base.revocation(sequence),
        }
    }

    pub fn last_revocation_sequence(&self) -> Result<u64, StoreError> {
        match self.writes.revocations.keys().next_back() {
            Some(&seq) => Ok(seq),
            None => self.base.last_revocation_sequence(),
        }
    }

    pub fn issuer_keys(&self) -> Result<BTreeMap<String, IssuerKey>, StoreError> {
        let mut keys = self.base.issuer_keys()?;
        keys.extend(self.writes.issuer_keys.clone());
        Ok(keys)
    }

    pub fn last_stamp_ms(&self) -> Result<u64, StoreError> {
        match self.writes.last_stamp_ms {
            Some(stamp) => Ok(stamp),
            None => self.base.last_stamp_ms(),
        }
    }

    /// The counters recorded under a certificate: applied ones plus pending
    /// ones, minus pending removals, ascending.
    pub fn counters_of(&self, cert_id: &CertId) -> Result<Vec<u64>, StoreError> {
        let mut counters: std::collections::BTreeSet<u64> =
            self.base.counters_of(cert_id)?.into_iter().collect();
        let range = CounterKey {
            cert_id: *cert_id,
            counter: 0,
        }..=CounterKey {
            cert_id: *cert_id,
            counter: u64::MAX,
        };
        for (key, tx) in self.writes.counters.range(range) {
            if tx.is_some() {
                counters.insert(key.counter);
            } else {
                counters.remove(&key.counter);
            }
        }
        Ok(counters.into_iter().collect())
    }

    pub fn put_accepted(&mut self, accepted: AcceptedPayment) {
        self.writes
            .accepted
            .insert(accepted.receipt.tx_id, accepted);
    }

    /// Room for the writes of `payments` more payments of about
    /// `inputs_per_payment` inputs each (speed only; more than
    /// [`RESERVED_INPUTS_MAX`] inputs each are not reserved for, so one
    /// payment of many inputs cannot make a whole command reserve for them).
    pub fn reserve_payments(&mut self, payments: usize, inputs_per_payment: usize) {
        self.writes.accepted.reserve(payments);
        self.writes
            .nullifiers
            .reserve(payments.saturating_mul(inputs_per_payment.min(RESERVED_INPUTS_MAX)));
    }

    pub fn put_held_payment(&mut self, tx_id: TxId, payment: Payment) {
        self.writes.held_payments.insert(tx_id, payment);
    }

    pub fn put_nullifier(&mut self, n: Nullifier, record: NullifierRecord) {
        self.writes.nullifiers.insert(n, Some(record));
    }

    pub fn put_counter(&mut self, c: CounterKey, tx_id: TxId) {
        self.writes.counters.insert(c, Some(tx_id));
    }

    pub fn put_certificate(&mut self, record: CertRecord) {
        self.writes
            .certificates
            .insert(record.state.cert_id, record);
    }

    pub fn put_settlement(&mut self, settlement: CertificateSettlement) {
        self.writes
            .settlements
            .insert(settlement.cert_id, settlement);
    }

    pub fn put_revocation(&mut self, revocation: Revocation) {
        self.writes
            .revocations
            .insert(revocation.sequence, revocation);
    }

    pub fn put_evidence(&mut self, cert_id: CertId, log_index: u64, evidence: Evidence) {
        let position = self
            .writes
            .evidence
            .range((cert_id, log_index, 0)..=(cert_id, log_index, u32::MAX))
            .count();
        let position =
            u32::try_from(position).expect("evidence per entry is bounded by its payments");
        self.writes
            .evidence
            .insert((cert_id, log_index, position), evidence);
    }

    pub fn put_issuer_key(&mut self, key: IssuerKey) {
        self.writes
            .issuer_keys
            .insert(key.key_id.as_str().to_owned(), key);
    }

    pub fn put_last_stamp_ms(&mut self, stamp_ms: u64) {
        self.writes.last_stamp_ms = Some(stamp_ms);
    }

    /// Deletes a settled certificate's token nullifiers and counters; returns
    /// how many records went. Only a settled certificate's: apply's
    /// read-ahead relies on a recorded payment keeping its nullifiers until
    /// its certificate settles (`ReadAhead::proves_unrecorded`).
    ///
    /// No index is kept for this: a certificate's nullifiers are derived
    /// from its id and token indices (`0..token_count`, at most 2^16), so
    /// they are looked up, and its counters are one key range. Settlement
    /// is rare, and the look-ups are bloom-filtered point reads.
    pub fn compact(&mut self, cert_id: &CertId, token_count: u32) -> Result<usize, StoreError> {
        let mut removed = 0;
        for index in 0..token_count {
            let n = cert_id.token_nullifier(index);
            if self.nullifier(&n)?.is_some() {
                self.writes.nullifiers.insert(n, None);
                removed += 1;
            }
        }
        for counter in self.counters_of(cert_id)? {
            self.writes.counters.insert(
                CounterKey {
                    cert_id: *cert_id,
                    counter,
                },
                None,
            );
            removed += 1;
        }
        Ok(removed)
    }
}
