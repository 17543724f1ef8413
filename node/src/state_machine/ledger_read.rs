use std::collections::BTreeMap;

use spentledger_protocol::types::Revocation;
use spentledger_protocol::{
    CertId, CertificateSettlement, CertificateState, CounterNullifier, IssuerKey, Nullifier,
    Payment, Receipt, TxId,
};

/// A storage failure while reading or writing ledger state. Fatal for the
/// apply call that meets it: the node stops rather than diverge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O: {0}")]
    Io(String),
    #[error("stored record {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// What the ledger keeps for a spent token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullifierRecord {
    /// The payment that consumed the token.
    pub tx_id: TxId,
    /// Consumed as held value of a losing double spend (never refunded).
    pub held: bool,
}

/// An accepted payment as recorded, with its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedPayment {
    pub payment: Payment,
    pub receipt: Receipt,
}

/// The ledger's record of a certificate: the public state plus what the
/// settlement needs to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub state: CertificateState,
    /// A double spend under this certificate was detected (kept even when the
    /// certificate had been revoked for another reason first).
    pub double_spend_detected: bool,
    /// Sequence of its entry in the revocation feed, once revoked.
    pub revocation_sequence: Option<u64>,
}

/// A device's payment counter under a certificate: what clone detection
/// records (DESIGN: `(cert_id, counter)` is recorded). Ordered by
/// certificate first, so one certificate's counters are one key range,
/// which settlement deletes without an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterKey {
    pub cert_id: CertId,
    pub counter: u64,
}

impl CounterKey {
    /// The counter's public name, as clone evidence reports it.
    pub fn nullifier(&self) -> CounterNullifier {
        self.cert_id.counter_nullifier(self.counter)
    }
}

/// Read access to the applied ledger state.
///
/// Contract: answers reflect exactly the state after the last applied log
/// entry (never a partially applied one), and are the same on every replica
/// that applied the same log. Iteration results are in key order.
pub trait LedgerRead {
    fn accepted(&self, tx_id: &TxId) -> Result<Option<AcceptedPayment>, StoreError>;
    fn held_payment(&self, tx_id: &TxId) -> Result<Option<Payment>, StoreError>;
    fn nullifier(&self, nullifier: &Nullifier) -> Result<Option<NullifierRecord>, StoreError>;
    fn counter(&self, counter: &CounterKey) -> Result<Option<TxId>, StoreError>;
    fn certificate(&self, cert_id: &CertId) -> Result<Option<CertRecord>, StoreError>;
    fn settlement(&self, cert_id: &CertId) -> Result<Option<CertificateSettlement>, StoreError>;
    /// The counters recorded under a certificate, ascending.
    fn counters_of(&self, cert_id: &CertId) -> Result<Vec<u64>, StoreError>;
    fn revocation(&self, sequence: u64) -> Result<Option<Revocation>, StoreError>;
    /// The highest revocation sequence so far (0 = none).
    fn last_revocation_sequence(&self) -> Result<u64, StoreError>;
    /// The trusted issuer keys, by key id.
    fn issuer_keys(&self) -> Result<BTreeMap<String, IssuerKey>, StoreError>;
    /// The largest entry stamp applied so far (0 = none): time never goes back.
    fn last_stamp_ms(&self) -> Result<u64, StoreError>;

    // Batched forms of the point reads, for the group of payments apply is
    // about to judge (see `ReadAhead`): one answer per key, in the order of
    // `keys`, each exactly what the single read answers. A store that can
    // look keys up together (RocksDB's MultiGet) overrides them; these
    // defaults read one key at a time.

    fn accepted_batch(&self, keys: &[TxId]) -> Result<Vec<Option<AcceptedPayment>>, StoreError> {
        keys.iter().map(|k| self.accepted(k)).collect()
    }
    fn nullifier_batch(
        &self,
        keys: &[Nullifier],
    ) -> Result<Vec<Option<NullifierRecord>>, StoreError> {
        keys.iter().map(|k| self.nullifier(k)).collect()
    }
    fn counter_batch(&self, keys: &[CounterKey]) -> Result<Vec<Option<TxId>>, StoreError> {
        keys.iter().map(|k| self.counter(k)).collect()
    }
    fn certificate_batch(&self, keys: &[CertId]) -> Result<Vec<Option<CertRecord>>, StoreError> {
        keys.iter().map(|k| self.certificate(k)).collect()
    }
}
