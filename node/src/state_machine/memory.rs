//! An in-memory [`LedgerRead`] with the same semantics as the RocksDB store:
//! the reference the rules are tested against, and a model for the storage
//! tests to compare with.

use std::collections::BTreeMap;

use spentledger_protocol::types::Revocation;
use spentledger_protocol::{CertId, CertificateSettlement, IssuerKey, Nullifier, Payment, TxId};

use super::ledger_read::{
    AcceptedPayment, CertRecord, CounterKey, LedgerRead, NullifierRecord, StoreError,
};
use super::overlay::{Evidence, WriteSet};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemLedger {
    pub accepted: BTreeMap<TxId, AcceptedPayment>,
    pub held_payments: BTreeMap<TxId, Payment>,
    pub nullifiers: BTreeMap<Nullifier, NullifierRecord>,
    pub counters: BTreeMap<CounterKey, TxId>,
    pub certificates: BTreeMap<CertId, CertRecord>,
    pub settlements: BTreeMap<CertId, CertificateSettlement>,
    pub revocations: BTreeMap<u64, Revocation>,
    pub evidence: BTreeMap<(CertId, u64, u32), Evidence>,
    pub issuer_keys: BTreeMap<String, IssuerKey>,
    pub last_stamp_ms: u64,
}

impl MemLedger {
    /// Applies a write set, as the RocksDB store does in one write batch.
    pub fn commit(&mut self, writes: WriteSet) {
        self.accepted.extend(writes.accepted);
        self.held_payments.extend(writes.held_payments);
        for (k, v) in writes.nullifiers {
            match v {
                Some(v) => self.nullifiers.insert(k, v),
                None => self.nullifiers.remove(&k),
            };
        }
        for (k, v) in writes.counters {
            match v {
                Some(v) => self.counters.insert(k, v),
                None => self.counters.remove(&k),
            };
        }
        self.certificates.extend(writes.certificates);
        self.settlements.extend(writes.settlements);
        self.revocations.extend(writes.revocations);
        self.evidence.extend(writes.evidence);
        self.issuer_keys.extend(writes.issuer_keys);
        if let Some(stamp) = writes.last_stamp_ms {
            self.last_stamp_ms = stamp;
        }
    }
}

impl LedgerRead for MemLedger {
    fn accepted(&self, tx_id: &TxId) -> Result<Option<AcceptedPayment>, StoreError> {
        Ok(self.accepted.get(tx_id).cloned())
    }
    fn held_payment(&self, tx_id: &TxId) -> Result<Option<Payment>, StoreError> {
        Ok(self.held_payments.get(tx_id).cloned())
    }
    fn nullifier(&self, n: &Nullifier) -> Result<Option<NullifierRecord>, StoreError> {
        Ok(self.nullifiers.get(n).copied())
    }
    fn counter(&self, c: &CounterKey) -> Result<Option<TxId>, StoreError> {
        Ok(self.counters.get(c).copied())
    }
    fn certificate(&self, cert_id: &CertId) -> Result<Option<CertRecord>, StoreError> {
        Ok(self.certificates.get(cert_id).cloned())
    }
    fn settlement(&self, cert_id: &CertId) -> Result<Option<CertificateSettlement>, StoreError> {
        Ok(self.settlements.get(cert_id).cloned())
    }
    fn counters_of(&self, cert_id: &CertId) -> Result<Vec<u64>, StoreError> {
        let from = CounterKey {
            cert_id: *cert_id,
            counter: 0,
        };
        Ok(self
            .counters
            .range(from..)
            .take_while(|(key, _)| key.cert_id == *cert_id)
            .map(|(key, _)| key.counter)
            .collect())
    }
    fn revocation(&self, sequence: u64) -> Result<Option<Revocation>, StoreError> {
        Ok(self.revocations.get(&sequence).cloned())
    }
    fn last_revocation_sequence(&self) -> Result<u64, StoreError> {
        Ok(self.revocations.keys().next_back().copied().unwrap_or(0))
    }
    fn issuer_keys(&self) -> Result<BTreeMap<String, IssuerKey>, StoreError> {
        Ok(self.issuer_keys.clone())
    }
    fn last_stamp_ms(&self) -> Result<u64, StoreError> {
        Ok(self.last_stamp_ms)
    }
}
