use std::collections::BTreeMap;

use spentledger_protocol::types::Revocation;
use spentledger_protocol::{
    CertId, CertificateSettlement, CloneEvidence, CounterNullifier, DoubleSpendEvidence, IssuerKey,
    Nullifier, Payment, TxId,
};

use super::ledger_read::{
    AcceptedPayment, CertRecord, IndexKey, LedgerRead, NullifierRecord, StoreError,
};

/// Evidence recorded by the ledger, in detection order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    DoubleSpend(DoubleSpendEvidence),
    Clone(CloneEvidence),
}

/// The writes of one apply call, in ordered maps so that persisting them is
/// deterministic. `None` values are deletions (compaction).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSet {
    pub accepted: BTreeMap<TxId, AcceptedPayment>,
    pub held_payments: BTreeMap<TxId, Payment>,
    pub nullifiers: BTreeMap<Nullifier, Option<NullifierRecord>>,
    pub counters: BTreeMap<CounterNullifier, Option<TxId>>,
    pub certificates: BTreeMap<CertId, CertRecord>,
    pub settlements: BTreeMap<CertId, CertificateSettlement>,
    pub cert_index: BTreeMap<(CertId, IndexKey), bool>,
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

/// Reads through pending writes to the applied state.
pub struct Overlay<'a> {
    base: &'a dyn LedgerRead,
    pub(crate) writes: WriteSet,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn LedgerRead) -> Self {
        Overlay {
            base,
            writes: WriteSet::default(),
        }
    }

    pub fn into_writes(self) -> WriteSet {
        self.writes
    }

    pub fn accepted(&self, tx_id: &TxId) -> Result<Option<AcceptedPayment>, StoreError> {
        match self.writes.accepted.get(tx_id) {
            Some(a) => Ok(Some(a.clone())),
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
        match self.writes.nullifiers.get(n) {
            Some(record) => Ok(*record),
            None => self.base.nullifier(n),
        }
    }

    pub fn counter(&self, c: &CounterNullifier) -> Result<Option<TxId>, StoreError> {
        match self.writes.counters.get(c) {
            Some(tx) => Ok(*tx),
            None => self.base.counter(c),
        }
    }

    pub fn certificate(&self, cert_id: &CertId) -> Result<Option<CertRecord>, StoreError> {
        match self.writes.certificates.get(cert_id) {
            Some(c) => Ok(Some(c.clone())),
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

    /// The certificate's compaction index: applied entries plus pending ones,
    /// minus pending removals, in key order.
    pub fn cert_index(&self, cert_id: &CertId) -> Result<Vec<IndexKey>, StoreError> {
        let mut keys: std::collections::BTreeSet<IndexKey> =
            self.base.cert_index(cert_id)?.into_iter().collect();
        for ((id, key), present) in self
            .writes
            .cert_index
            .range((*cert_id, IndexKey::Token(Nullifier([0; 32])))..)
        {
            if id != cert_id {
                break;
            }
            if *present {
                keys.insert(*key);
            } else {
                keys.remove(key);
            }
        }
        Ok(keys.into_iter().collect())
    }

    pub fn put_accepted(&mut self, accepted: AcceptedPayment) {
        self.writes
            .accepted
            .insert(accepted.receipt.tx_id, accepted);
    }

    pub fn put_held_payment(&mut self, tx_id: TxId, payment: Payment) {
        self.writes.held_payments.insert(tx_id, payment);
    }

    pub fn put_nullifier(&mut self, cert_id: CertId, n: Nullifier, record: NullifierRecord) {
        self.writes.nullifiers.insert(n, Some(record));
        self.writes
            .cert_index
            .insert((cert_id, IndexKey::Token(n)), true);
    }

    pub fn put_counter(&mut self, cert_id: CertId, c: CounterNullifier, tx_id: TxId) {
        self.writes.counters.insert(c, Some(tx_id));
        self.writes
            .cert_index
            .insert((cert_id, IndexKey::Counter(c)), true);
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

    /// Deletes a settled certificate's nullifiers and counters and its index.
    pub fn compact(&mut self, cert_id: &CertId) -> Result<usize, StoreError> {
        let keys = self.cert_index(cert_id)?;
        for key in &keys {
            match key {
                IndexKey::Token(n) => {
                    self.writes.nullifiers.insert(*n, None);
                }
                IndexKey::Counter(c) => {
                    self.writes.counters.insert(*c, None);
                }
            }
            self.writes.cert_index.insert((*cert_id, *key), false);
        }
        Ok(keys.len())
    }
}
