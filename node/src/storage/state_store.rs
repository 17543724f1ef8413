use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use spentledger_protocol::types::Revocation;
use spentledger_protocol::{
    CertId, CertificateSettlement, CertificateState, CloneEvidence, DoubleSpendEvidence, IssuerKey,
    Nullifier, Payment, TxId, pb,
};

use super::accepted_record;
use super::background_work;
use super::io_err;
use super::keys::{u64_from_key, u64_key};
use super::memory_budget;
use crate::consensus::{
    LogId, StoredMembership, decode_log_id, decode_membership, encode_log_id, encode_membership,
};
use crate::state_machine::{
    AcceptedPayment, CertRecord, CounterKey, Evidence, LedgerRead, NullifierRecord, StateDigest,
    StoreError, WriteSet,
};

pub(crate) const CF_NULLIFIERS: &str = "nullifiers";
pub(crate) const CF_COUNTERS: &str = "counters";
pub(crate) const CF_ACCEPTED: &str = "accepted";
pub(crate) const CF_HELD: &str = "held";
pub(crate) const CF_CERTIFICATES: &str = "certificates";
pub(crate) const CF_SETTLEMENTS: &str = "settlements";
/// Legacy: per certificate, the keys to delete at settlement. Settlement now
/// derives them (token nullifiers from the token count, counters as one key
/// range), so nothing writes here; [`StateStore::open`] empties it when it
/// migrates an older database. Kept in [`COLUMN_FAMILIES`] because snapshot
/// files number the families.
pub(crate) const CF_CERT_INDEX: &str = "cert_index";
pub(crate) const CF_REVOCATIONS: &str = "revocations";
pub(crate) const CF_EVIDENCE: &str = "evidence";
pub(crate) const CF_ISSUER_KEYS: &str = "issuer_keys";
pub(crate) const CF_META: &str = "meta";
/// Each certificate's signed body, once: accepted payments are stored
/// without it (it was two thirds of a 2-input payment's non-path bytes, and
/// a device pays many times under one certificate).
pub(crate) const CF_CERT_BODIES: &str = "cert_bodies";

/// Every column family, in a fixed order (the snapshot format numbers them
/// so: new ones go last, so older snapshot files still load).
pub(crate) const COLUMN_FAMILIES: [&str; 12] = [
    CF_NULLIFIERS,
    CF_COUNTERS,
    CF_ACCEPTED,
    CF_HELD,
    CF_CERTIFICATES,
    CF_SETTLEMENTS,
    CF_CERT_INDEX,
    CF_REVOCATIONS,
    CF_EVIDENCE,
    CF_ISSUER_KEYS,
    CF_META,
    CF_CERT_BODIES,
];

/// Records every commit writes to the meta family (applied, membership,
/// digest, last stamp).
const META_RECORDS: usize = 4;
/// A key of the archive (a payment's tx_id).
const TX_ID_BYTES: usize = 32;
/// Key and value of a nullifier, counter or certificate record, rounded up:
/// only sizes the batch (`commit`), a short estimate costs one regrowth.
const SMALL_RECORD_BYTES_ESTIMATE: usize = 128;
const META_APPLIED: &[u8] = b"applied";
const META_MEMBERSHIP: &[u8] = b"membership";
const META_DIGEST: &[u8] = b"digest";
const META_LAST_STAMP: &[u8] = b"last_stamp";

/// Where the state machine stands after the last applied entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedState {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub digest: StateDigest,
}

/// The state machine's RocksDB database.
///
/// Contract: every [`StateStore::commit`] is one atomic write batch holding
/// the ledger writes of one apply call *and* the applied log id, membership
/// and digest, so after a crash the database is at an entry boundary. A
/// commit skips the WAL and is not fsynced: durability comes from the Raft
/// log, from which openraft re-applies whatever a crash took back (a killed
/// process loses the commits since the last flush, at most the memtable
/// budget; all families flush atomically, so what survives is a whole
/// prefix of commits; tested below). Closing the database flushes it.
pub struct StateStore {
    db: DB,
    dir: PathBuf,
    /// Declared after `db`: set once it is closed.
    closed: super::CloseSignal,
}

fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn store_err(e: rocksdb::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

pub(crate) fn open_options() -> io::Result<Options> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Commits skip the WAL (see `commit`), so the table files are the only
    // copy of the state: all families must flush together, or a crash could
    // leave one family holding writes of entries the applied log id (in
    // `meta`) does not cover.
    opts.set_atomic_flush(true);
    memory_budget::STATE_STORE.apply_to_db(&mut opts);
    background_work::apply_to_db(&mut opts).map_err(io_err)?;
    Ok(opts)
}

fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut opts = Options::default();
    // Point look-ups dominate these: a bloom filter spares disk reads for
    // nullifiers that were never spent (the common case).
    let point_lookups = [CF_NULLIFIERS, CF_COUNTERS, CF_ACCEPTED, CF_CERT_BODIES].contains(&name);
    opts.set_block_based_table_factory(&memory_budget::table_options(cache, point_lookups));
    if MEMTABLE_BLOOM_FAMILIES.contains(&name) {
        // The same for the memtable: without it every miss walks the skip
        // list (the profile's largest RocksDB cost under load).
        opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
        opts.set_memtable_whole_key_filtering(true);
    }
    opts.set_compression_per_level(&COMPRESSION_PER_LEVEL);
    opts
}

/// The families whose memtables keep a bloom filter: those apply looks up
/// on every payment, nearly always missing. Not the payment archive
/// (`accepted`): apply reads it only when a payment's other reads cannot
/// prove it unrecorded (a retry, a double spend, a settled certificate;
/// `state_machine/read_ahead.rs`), mostly hits, so its filter cost a hash
/// and a cache miss per insert for little: without it, node CPU per payment
/// was 1.6 µs lower and payments/s 1.6% higher in 8 alternated pairs
/// (docs/BENCHMARKS.md, twenty-second round). Its table files keep theirs.
const MEMTABLE_BLOOM_FAMILIES: [&str; 3] = [CF_NULLIFIERS, CF_COUNTERS, CF_CERT_BODIES];

/// The memtable bloom filter's size as a share of a family's write buffer
/// (RocksDB's per-family `write_buffer_size`, 64 MiB by default). RocksDB
/// allocates and zeroes a new filter with every memtable: at 0.1 that was
/// 6.4 MiB per family at each switch, about 65 bits per key. At 0.02
/// (1.3 MiB) a full memtable of the smallest records still gets more than 12
/// bits per key: a few false positives per thousand misses
/// (tested below). Measured: 1.8-6.2 µs less node CPU per payment in three
/// alternated runs (docs/BENCHMARKS.md, tenth round).
const MEMTABLE_BLOOM_RATIO: f64 = 0.02;

/// The smallest memtable entry of a point-lookup family: a nullifier (32-byte
/// key, 33-byte value), RocksDB's 8-byte sequence trailer and the skip
/// list's node header.
#[cfg(test)]
const MEMTABLE_ENTRY_BYTES_MIN: f64 = 32.0 + 33.0 + 8.0 + 8.0;

/// No compression for the files a flush writes (level 0), LZ4 below. A
/// flush's output is read back and rewritten by the first compaction
/// anyway, so compressing it was paid twice; LZ4 at flush was 2.5% of all
/// CPU under load (docs/BENCHMARKS.md, seventh round). Everything that
/// stays, and everything the storage report measures after compacting,
/// is still LZ4 compressed. (With RocksDB's dynamic level sizes, entry 1
/// applies to whatever level level-0 files are compacted into.)
const COMPRESSION_PER_LEVEL: [rocksdb::DBCompressionType; 7] = [
    rocksdb::DBCompressionType::None,
    rocksdb::DBCompressionType::Lz4,
    rocksdb::DBCompressionType::Lz4,
    rocksdb::DBCompressionType::Lz4,
    rocksdb::DBCompressionType::Lz4,
    rocksdb::DBCompressionType::Lz4,
    rocksdb::DBCompressionType::Lz4,
];

impl StateStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, open_options()?)
    }

    fn open_with(dir: &Path, options: Options) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let cache = memory_budget::STATE_STORE.block_cache();
        let cfs =
            COLUMN_FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, cf_options(name, &cache)));
        let db = DB::open_cf_descriptors(&options, dir, cfs).map_err(io_err)?;
        let store = StateStore {
            db,
            dir: dir.to_owned(),
            closed: super::CloseSignal::default(),
        };
        store.migrate_counters()?;
        Ok(store)
    }

    /// Brings a database of the first counters format (keyed by counter
    /// nullifier, with a `cert_index` family listing what to delete at
    /// settlement) to the current one (keyed by certificate and counter, no
    /// index). Does nothing on a current database: two seeks.
    ///
    /// Crash-safe: old keys are replaced in fsynced batches, and
    /// `cert_index` is emptied only in the last one, so while any old key
    /// may remain, `cert_index` is not empty and the next open resumes.
    fn migrate_counters(&self) -> io::Result<()> {
        let index = self.cf(CF_CERT_INDEX);
        let index_empty = self
            .db
            .iterator_cf(index, IteratorMode::Start)
            .next()
            .transpose()
            .map_err(io_err)?
            .is_none();
        let first_counter = self
            .db
            .iterator_cf(self.cf(CF_COUNTERS), IteratorMode::Start)
            .next()
            .transpose()
            .map_err(io_err)?;
        let old_counters =
            first_counter.is_some_and(|(k, _)| k.len() == COUNTER_KEY_BYTES_FIRST_FORMAT);
        if index_empty && !old_counters {
            return Ok(());
        }
        tracing::info!(dir = %self.dir.display(), "migrating the counters to keys by certificate; the certificate index goes");
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let mut batch = WriteBatch::default();
        let mut migrated = 0u64;
        for item in self
            .db
            .iterator_cf(self.cf(CF_COUNTERS), IteratorMode::Start)
        {
            let (k, v) = item.map_err(io_err)?;
            if k.len() != COUNTER_KEY_BYTES_FIRST_FORMAT {
                continue; // already migrated (a resumed migration)
            }
            let tx_id = decode_tx_id("counter", &v)?;
            let accepted = self
                .accepted(&tx_id)?
                .ok_or_else(|| corrupt("counter", "it names a payment that is not recorded"))?;
            let key = CounterKey {
                cert_id: accepted.receipt.cert_id,
                counter: accepted.payment.counter,
            };
            if key.nullifier().0 != *k {
                return Err(corrupt("counter", "its payment has another counter").into());
            }
            batch.put_cf(self.cf(CF_COUNTERS), counter_key(&key), tx_id.0);
            batch.delete_cf(self.cf(CF_COUNTERS), &k);
            migrated += 1;
            if migrated.is_multiple_of(MIGRATION_BATCH_RECORDS) {
                self.db
                    .write_opt(std::mem::take(&mut batch), &sync)
                    .map_err(io_err)?;
                tracing::info!(migrated, "migrating counters");
            }
        }
        // Every index key is 65 bytes; this range holds them all.
        batch.delete_range_cf(index, &[0u8][..], &[0xffu8; 66][..]);
        self.db.write_opt(batch, &sync).map_err(io_err)?;
        tracing::info!(migrated, "counters migrated");
        Ok(())
    }

    /// A probe that turns true once this store is dropped and its database
    /// closed. Holds no reference itself.
    pub fn closed_probe(&self) -> impl Fn() -> bool + Send + Sync + use<> {
        self.closed.probe()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Estimated on-disk and in-memory size, for metrics.
    pub fn disk_bytes(&self) -> super::DiskBytes {
        super::disk_bytes(&self.db, &COLUMN_FAMILIES)
    }

    /// Offline: compacts every column family completely; each family's
    /// table bytes, in [`COLUMN_FAMILIES`] order.
    pub fn compact_all(&self) -> io::Result<Vec<(String, u64)>> {
        super::compact_all(&self.db, &COLUMN_FAMILIES)
    }

    /// Each column family's table-file bytes, in [`COLUMN_FAMILIES`] order.
    pub fn sst_bytes_per_family(&self) -> io::Result<Vec<(String, u64)>> {
        super::sst_bytes_per_family(&self.db, &COLUMN_FAMILIES)
    }

    /// Spent-token records (accepted and held): the live nullifiers.
    pub fn nullifier_count(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self
            .db
            .iterator_cf(self.cf(CF_NULLIFIERS), IteratorMode::Start)
        {
            item.map_err(store_err)?;
            n += 1;
        }
        Ok(n)
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf), key).map_err(store_err)
    }

    /// One batched lookup (RocksDB's MultiGet) of `keys` in `cf`, each found
    /// value decoded with its position: one answer per key, in order.
    fn get_batch<'k, K, V>(
        &self,
        cf: &str,
        keys: impl IntoIterator<Item = &'k K>,
        mut decode: impl FnMut(usize, &[u8]) -> Result<V, StoreError>,
    ) -> Result<Vec<Option<V>>, StoreError>
    where
        K: AsRef<[u8]> + 'k + ?Sized,
    {
        self.db
            .batched_multi_get_cf(self.cf(cf), keys, false)
            .into_iter()
            .enumerate()
            .map(|(i, found)| match found.map_err(store_err)? {
                Some(value) => decode(i, &value).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    pub fn applied_state(&self) -> io::Result<AppliedState> {
        // Read as of one point in time: separate reads could pair one
        // commit's applied index with the next commit's digest, and the
        // digest audit would take that for a divergence.
        self.applied_state_at(&self.db.snapshot())
    }

    /// The applied state as of a RocksDB snapshot (consistent with its data).
    pub(crate) fn applied_state_at(
        &self,
        snapshot: &rocksdb::Snapshot<'_>,
    ) -> io::Result<AppliedState> {
        applied_state_from(|key| snapshot.get_cf(self.cf(CF_META), key).map_err(store_err))
    }

    /// Persists one apply call: the ledger writes and where it ended, in one
    /// atomic write batch (not fsynced: see the comment at the write).
    pub fn commit(&self, writes: &WriteSet, state: &AppliedState) -> Result<(), StoreError> {
        // The archive's records are most of the batch: encoded first, so the
        // batch is sized once (`sized_write_batch`).
        let sorted_accepted = writes.accepted.sorted();
        let accepted: Vec<Vec<u8>> = sorted_accepted
            .iter()
            .map(|(_, a)| accepted_record::encode(a))
            .collect();
        let small_records = writes.nullifiers.len()
            + writes.counters.len()
            + writes.certificates.len()
            + writes.held_payments.len()
            + writes.evidence.len()
            + META_RECORDS;
        let mut b = super::sized_write_batch(
            accepted.len() + small_records,
            accepted
                .iter()
                .map(|v| TX_ID_BYTES + v.len())
                .sum::<usize>()
                + small_records * SMALL_RECORD_BYTES_ESTIMATE,
        );
        let mut bodies: BTreeMap<CertId, &spentledger_protocol::OfflineCertificate> =
            BTreeMap::new();
        for ((tx_id, accepted), value) in sorted_accepted.into_iter().zip(accepted) {
            b.put_cf(self.cf(CF_ACCEPTED), tx_id.0, value);
            bodies
                .entry(accepted.receipt.cert_id)
                .or_insert(&accepted.payment.certificate);
        }
        // Written once per certificate: the body never changes (its id is
        // its hash), so a present one is left alone. Presence is looked up
        // for all of them at once (one MultiGet, as apply's reads).
        let present = self.get_batch(CF_CERT_BODIES, bodies.keys().map(|k| &k.0), |_, _| Ok(()))?;
        for ((cert_id, certificate), present) in bodies.into_iter().zip(present) {
            if present.is_none() {
                b.put_cf(
                    self.cf(CF_CERT_BODIES),
                    cert_id.0,
                    pb::OfflineCertificate::from(certificate).encode_to_vec(),
                );
            }
        }
        for (tx_id, payment) in &writes.held_payments {
            b.put_cf(
                self.cf(CF_HELD),
                tx_id.0,
                pb::Payment::from(payment).encode_to_vec(),
            );
        }
        for (n, record) in writes.nullifiers.sorted() {
            match record {
                Some(r) => b.put_cf(self.cf(CF_NULLIFIERS), n.0, encode_nullifier(r)),
                None => b.delete_cf(self.cf(CF_NULLIFIERS), n.0),
            }
        }
        for (c, tx) in &writes.counters {
            match tx {
                Some(tx) => b.put_cf(self.cf(CF_COUNTERS), counter_key(c), tx.0),
                None => b.delete_cf(self.cf(CF_COUNTERS), counter_key(c)),
            }
        }
        for (cert_id, record) in &writes.certificates {
            b.put_cf(
                self.cf(CF_CERTIFICATES),
                cert_id.0,
                encode_cert_record(record),
            );
        }
        for (cert_id, s) in &writes.settlements {
            b.put_cf(
                self.cf(CF_SETTLEMENTS),
                cert_id.0,
                pb::CertificateSettlement::from(s).encode_to_vec(),
            );
        }
        for (seq, r) in &writes.revocations {
            b.put_cf(
                self.cf(CF_REVOCATIONS),
                u64_key(*seq),
                pb::Revocation::from(r).encode_to_vec(),
            );
        }
        for ((cert_id, log_index, pos), e) in &writes.evidence {
            let mut k = cert_id.0.to_vec();
            k.extend_from_slice(&u64_key(*log_index));
            k.extend_from_slice(&pos.to_be_bytes());
            b.put_cf(self.cf(CF_EVIDENCE), k, encode_evidence(e));
        }
        for (key_id, key) in &writes.issuer_keys {
            b.put_cf(
                self.cf(CF_ISSUER_KEYS),
                key_id.as_bytes(),
                pb::IssuerKey::from(key).encode_to_vec(),
            );
        }
        if let Some(stamp) = writes.last_stamp_ms {
            b.put_cf(self.cf(CF_META), META_LAST_STAMP, stamp.to_be_bytes());
        }
        let meta = self.cf(CF_META);
        match &state.applied {
            Some(id) => b.put_cf(meta, META_APPLIED, encode_log_id(id)),
            None => b.delete_cf(meta, META_APPLIED),
        }
        b.put_cf(meta, META_MEMBERSHIP, encode_membership(&state.membership));
        b.put_cf(meta, META_DIGEST, state.digest.0);
        // Neither fsynced nor written to the WAL: the Raft log is the durable
        // record. After a crash or a power loss the state comes back at the
        // entry boundary of its last (atomic) flush, and openraft applies the
        // committed entries after it again at start-up, or installs the
        // newest snapshot first when the log before it was purged. With the
        // fsync, the leader's apply took 34 ms on average for an entry of
        // 1,000 payments at 8,000/s; without it, 28 ms (docs/BENCHMARKS.md,
        // sixth round). The WAL's write was 2% of all CPU per node (kernel
        // copies into the page cache); without it, node CPU per payment was
        // lower in 8 of 12 alternated pairs, by 2.4 µs on average, and
        // payments/s until every node applied 2.4% higher (eighteenth
        // round).
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        opts.disable_wal(true);
        self.db.write_opt(b, &opts).map_err(store_err)
    }

    /// Evidence recorded for a certificate, in detection order.
    pub fn evidence(&self, cert_id: &CertId) -> Result<Vec<Evidence>, StoreError> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_EVIDENCE),
            IteratorMode::From(&cert_id.0, Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(store_err)?;
            if !k.starts_with(&cert_id.0) {
                break;
            }
            out.push(decode_evidence(&v)?);
        }
        Ok(out)
    }

    /// Revocations after `after_sequence`, at most `limit`.
    pub fn revocations_after(
        &self,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>, StoreError> {
        let start = u64_key(after_sequence.saturating_add(1));
        self.db
            .iterator_cf(
                self.cf(CF_REVOCATIONS),
                IteratorMode::From(&start, Direction::Forward),
            )
            .take(limit)
            .map(|item| {
                let (_, v) = item.map_err(store_err)?;
                decode_revocation(&v)
            })
            .collect()
    }
}

fn applied_state_from(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
) -> io::Result<AppliedState> {
    let applied = get(META_APPLIED)?.map(|b| decode_log_id(&b)).transpose()?;
    let membership = get(META_MEMBERSHIP)?
        .map(|b| decode_membership(&b))
        .transpose()?
        .unwrap_or_default();
    let digest = match get(META_DIGEST)? {
        Some(b) => StateDigest(b.try_into().map_err(|_| io_err("digest is not 32 bytes"))?),
        None => StateDigest::default(),
    };
    Ok(AppliedState {
        applied,
        membership,
        digest,
    })
}

fn encode_nullifier(r: &NullifierRecord) -> [u8; 33] {
    let mut v = [0u8; 33];
    v[..32].copy_from_slice(&r.tx_id.0);
    v[32] = u8::from(r.held);
    v
}

fn decode_tx_id(what: &'static str, v: &[u8]) -> Result<TxId, StoreError> {
    v.try_into()
        .map(TxId)
        .map_err(|_| corrupt(what, format!("tx id of {} bytes", v.len())))
}

fn decode_nullifier(v: &[u8]) -> Result<NullifierRecord, StoreError> {
    if v.len() != 33 || v[32] > 1 {
        return Err(corrupt("nullifier", format!("{} bytes", v.len())));
    }
    Ok(NullifierRecord {
        tx_id: TxId(v[..32].try_into().expect("length checked")),
        held: v[32] == 1,
    })
}

fn decode_payment(v: &[u8]) -> Result<Payment, StoreError> {
    let wire = pb::Payment::decode(v).map_err(|e| corrupt("payment", e))?;
    Payment::try_from(&wire).map_err(|e| corrupt("payment", e))
}

fn encode_cert_record(r: &CertRecord) -> Vec<u8> {
    let mut v = vec![u8::from(r.double_spend_detected)];
    v.extend_from_slice(&r.revocation_sequence.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(&pb::CertificateState::from(&r.state).encode_to_vec());
    v
}

fn decode_cert_record(v: &[u8]) -> Result<CertRecord, StoreError> {
    if v.len() < 9 || v[0] > 1 {
        return Err(corrupt("certificate", "short record"));
    }
    let sequence = u64::from_be_bytes(v[1..9].try_into().expect("8 bytes"));
    let state = pb::CertificateState::decode(&v[9..])
        .map_err(|e| corrupt("certificate", e))
        .and_then(|s| CertificateState::try_from(&s).map_err(|e| corrupt("certificate", e)))?;
    Ok(CertRecord {
        state,
        double_spend_detected: v[0] == 1,
        revocation_sequence: (sequence != 0).then_some(sequence),
    })
}

/// Counters are keyed certificate first, so a certificate's counters are
/// one key range (RocksDB also stores the shared 32-byte prefix of
/// neighbouring keys once).
fn counter_key(c: &CounterKey) -> [u8; COUNTER_KEY_BYTES] {
    let mut k = [0u8; COUNTER_KEY_BYTES];
    k[..32].copy_from_slice(&c.cert_id.0);
    k[32..].copy_from_slice(&c.counter.to_be_bytes());
    k
}

const COUNTER_KEY_BYTES: usize = 32 + 8;
/// Counter records re-keyed per fsynced batch when migrating.
const MIGRATION_BATCH_RECORDS: u64 = 10_000;
/// Keys of the first counters format: the counter nullifier.
const COUNTER_KEY_BYTES_FIRST_FORMAT: usize = 32;

fn encode_evidence(e: &Evidence) -> Vec<u8> {
    match e {
        Evidence::DoubleSpend(d) => {
            let mut v = vec![1u8];
            v.extend(pb::DoubleSpendEvidence::from(d).encode_to_vec());
            v
        }
        Evidence::Clone(c) => {
            let mut v = vec![2u8];
            v.extend(pb::CloneEvidence::from(c).encode_to_vec());
            v
        }
    }
}

fn decode_evidence(v: &[u8]) -> Result<Evidence, StoreError> {
    match v.first() {
        Some(1) => pb::DoubleSpendEvidence::decode(&v[1..])
            .map_err(|e| corrupt("evidence", e))
            .and_then(|w| DoubleSpendEvidence::try_from(&w).map_err(|e| corrupt("evidence", e)))
            .map(Evidence::DoubleSpend),
        Some(2) => pb::CloneEvidence::decode(&v[1..])
            .map_err(|e| corrupt("evidence", e))
            .and_then(|w| CloneEvidence::try_from(&w).map_err(|e| corrupt("evidence", e)))
            .map(Evidence::Clone),
        _ => Err(corrupt("evidence", "unknown kind")),
    }
}

fn decode_revocation(v: &[u8]) -> Result<Revocation, StoreError> {
    pb::Revocation::decode(v)
        .map_err(|e| corrupt("revocation", e))
        .and_then(|r| Revocation::try_from(&r).map_err(|e| corrupt("revocation", e)))
}

impl LedgerRead for StateStore {
    fn accepted(&self, tx_id: &TxId) -> Result<Option<AcceptedPayment>, StoreError> {
        self.get(CF_ACCEPTED, &tx_id.0)?
            .map(|v| accepted_record::decode(tx_id, &v, |c| self.get(CF_CERT_BODIES, &c.0)))
            .transpose()
    }

    fn held_payment(&self, tx_id: &TxId) -> Result<Option<Payment>, StoreError> {
        self.get(CF_HELD, &tx_id.0)?
            .map(|v| decode_payment(&v))
            .transpose()
    }

    fn nullifier(&self, n: &Nullifier) -> Result<Option<NullifierRecord>, StoreError> {
        self.get(CF_NULLIFIERS, &n.0)?
            .map(|v| decode_nullifier(&v))
            .transpose()
    }

    fn counter(&self, c: &CounterKey) -> Result<Option<TxId>, StoreError> {
        self.get(CF_COUNTERS, &counter_key(c))?
            .map(|v| decode_tx_id("counter", &v))
            .transpose()
    }

    fn certificate(&self, cert_id: &CertId) -> Result<Option<CertRecord>, StoreError> {
        self.get(CF_CERTIFICATES, &cert_id.0)?
            .map(|v| decode_cert_record(&v))
            .transpose()
    }

    fn settlement(&self, cert_id: &CertId) -> Result<Option<CertificateSettlement>, StoreError> {
        self.get(CF_SETTLEMENTS, &cert_id.0)?
            .map(|v| {
                pb::CertificateSettlement::decode(v.as_slice())
                    .map_err(|e| corrupt("settlement", e))
                    .and_then(|s| {
                        CertificateSettlement::try_from(&s).map_err(|e| corrupt("settlement", e))
                    })
            })
            .transpose()
    }

    fn counters_of(&self, cert_id: &CertId) -> Result<Vec<u64>, StoreError> {
        let mut counters = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_COUNTERS),
            IteratorMode::From(&cert_id.0, Direction::Forward),
        );
        for item in it {
            let (k, _) = item.map_err(store_err)?;
            if !k.starts_with(&cert_id.0) {
                break;
            }
            let counter = k
                .get(32..)
                .and_then(u64_from_key)
                .ok_or_else(|| corrupt("counter", format!("key of {} bytes", k.len())))?;
            counters.push(counter);
        }
        Ok(counters)
    }

    fn revocation(&self, sequence: u64) -> Result<Option<Revocation>, StoreError> {
        self.get(CF_REVOCATIONS, &u64_key(sequence))?
            .map(|v| decode_revocation(&v))
            .transpose()
    }

    fn last_revocation_sequence(&self) -> Result<u64, StoreError> {
        let mut it = self
            .db
            .iterator_cf(self.cf(CF_REVOCATIONS), IteratorMode::End);
        match it.next() {
            None => Ok(0),
            Some(item) => {
                let (k, _) = item.map_err(store_err)?;
                u64_from_key(&k).ok_or_else(|| corrupt("revocation", "key is not 8 bytes"))
            }
        }
    }

    fn issuer_keys(&self) -> Result<BTreeMap<String, IssuerKey>, StoreError> {
        let mut keys = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_ISSUER_KEYS), IteratorMode::Start)
        {
            let (_, v) = item.map_err(store_err)?;
            let key = pb::IssuerKey::decode(v.as_ref())
                .map_err(|e| corrupt("issuer key", e))
                .and_then(|k| IssuerKey::try_from(&k).map_err(|e| corrupt("issuer key", e)))?;
            keys.insert(key.key_id.as_str().to_owned(), key);
        }
        Ok(keys)
    }

    fn accepted_batch(&self, keys: &[TxId]) -> Result<Vec<Option<AcceptedPayment>>, StoreError> {
        self.get_batch(CF_ACCEPTED, keys.iter().map(|k| &k.0), |i, v| {
            accepted_record::decode(&keys[i], v, |c| self.get(CF_CERT_BODIES, &c.0))
        })
    }

    fn nullifier_batch(
        &self,
        keys: &[Nullifier],
    ) -> Result<Vec<Option<NullifierRecord>>, StoreError> {
        self.get_batch(CF_NULLIFIERS, keys.iter().map(|k| &k.0), |_, v| {
            decode_nullifier(v)
        })
    }

    fn counter_batch(&self, keys: &[CounterKey]) -> Result<Vec<Option<TxId>>, StoreError> {
        let encoded: Vec<_> = keys.iter().map(counter_key).collect();
        self.get_batch(CF_COUNTERS, &encoded, |_, v| decode_tx_id("counter", v))
    }

    fn certificate_batch(&self, keys: &[CertId]) -> Result<Vec<Option<CertRecord>>, StoreError> {
        self.get_batch(CF_CERTIFICATES, keys.iter().map(|k| &k.0), |_, v| {
            decode_cert_record(v)
        })
    }

    fn last_stamp_ms(&self) -> Result<u64, StoreError> {
        Ok(match self.get(CF_META, META_LAST_STAMP)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| corrupt("last stamp", "not 8 bytes"))?,
            ),
            None => 0,
        })
    }
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        io::Error::other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{accepted_as, id, wallet};

    /// Each family's `memtable_prefix_bloom_size_ratio`, from the options
    /// file RocksDB writes when it opens a database in `dir`.
    fn memtable_bloom_ratios(dir: &Path) -> BTreeMap<String, f64> {
        let options_file = std::fs::read_dir(dir)
            .expect("the store's directory")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("OPTIONS-"))
            })
            .max()
            .expect("RocksDB writes an options file on open");
        let text = std::fs::read_to_string(options_file).expect("readable");
        let mut family = None;
        let mut ratios = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("[CFOptions \"") {
                family = name.strip_suffix("\"]").map(str::to_string);
            } else if let Some(ratio) = line.strip_prefix("memtable_prefix_bloom_size_ratio=") {
                let family = family.clone().expect("a ratio belongs to a family");
                ratios.insert(family, ratio.parse().expect("a number"));
            }
        }
        ratios
    }

    #[test]
    fn memtable_blooms_serve_the_families_apply_misses_in_and_not_the_archive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let ratios = memtable_bloom_ratios(store.db().path());
        for family in [CF_NULLIFIERS, CF_COUNTERS, CF_CERT_BODIES] {
            assert_eq!(
                ratios.get(family),
                Some(&MEMTABLE_BLOOM_RATIO),
                "{family}: {ratios:?}"
            );
        }
        for family in [CF_ACCEPTED, CF_CERTIFICATES, CF_META] {
            assert_eq!(ratios.get(family), Some(&0.0), "{family}: {ratios:?}");
        }
    }

    #[test]
    fn the_memtable_bloom_is_small_and_still_selective() {
        // RocksDB's default per-family write buffer, which these families keep.
        let write_buffer_bytes = 64.0 * 1024.0 * 1024.0;
        let filter_bytes = MEMTABLE_BLOOM_RATIO * write_buffer_bytes;
        let keys_max = write_buffer_bytes / MEMTABLE_ENTRY_BYTES_MIN;
        let bits_per_key = filter_bytes * 8.0 / keys_max;
        assert!(
            bits_per_key >= 12.0,
            "{bits_per_key:.1} bits per key in a full memtable"
        );
        assert!(
            filter_bytes <= 2.0 * 1024.0 * 1024.0,
            "{filter_bytes} bytes zeroed with every new memtable"
        );
    }

    /// `count` payments of one device, as the ledger would record them.
    fn accepted_payments(device: u8, count: u64) -> Vec<AcceptedPayment> {
        let mut wallet = wallet(device, 2_000);
        (0..count)
            .map(|k| {
                let payment = wallet
                    .pay(5, &id("shop"), [k as u8; 32], 2_000)
                    .expect("pay");
                accepted_as(payment, 10 + k, 3_000 + k, u32::from(k == 1))
            })
            .collect()
    }

    fn commit(store: &StateStore, payments: &[AcceptedPayment]) {
        let mut writes = WriteSet::default();
        for a in payments {
            writes.accepted.insert(a.receipt.tx_id, a.clone());
        }
        store
            .commit(&writes, &store.applied_state().expect("applied state"))
            .expect("commit");
    }

    /// One family's table-file bytes from a per-family listing.
    fn family_bytes(sizes: Vec<(String, u64)>, family: &str) -> u64 {
        sizes
            .into_iter()
            .find(|(name, _)| name == family)
            .expect("every family is listed")
            .1
    }

    fn cert_bodies(store: &StateStore) -> usize {
        store
            .db()
            .iterator_cf(store.cf(CF_CERT_BODIES), IteratorMode::Start)
            .count()
    }

    #[test]
    fn flushed_files_are_left_uncompressed_and_compacted_ones_are_compressed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let cf = store.cf(CF_ACCEPTED);
        // 4 MiB of very compressible values.
        for k in 0u32..4_096 {
            store
                .db()
                .put_cf(cf, k.to_be_bytes(), [7u8; 1_024])
                .expect("put");
        }
        store.db().flush_cf(cf).expect("flush");
        let flushed = family_bytes(store.sst_bytes_per_family().expect("sizes"), CF_ACCEPTED);
        assert!(
            flushed >= 4 << 20,
            "the flush wrote {flushed} bytes: it was compressed"
        );
        let compacted = family_bytes(store.compact_all().expect("compact"), CF_ACCEPTED);
        assert!(
            compacted < flushed / 8,
            "compaction left {compacted} of {flushed} bytes: it did not compress"
        );
    }

    #[test]
    fn accepted_payments_read_back_whole_with_the_certificate_stored_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let first = accepted_payments(1, 3);
        let second = accepted_payments(2, 2);
        commit(&store, &first[..2]);
        commit(&store, &first[2..]);
        commit(&store, &second);
        for a in first.iter().chain(&second) {
            let read = store.accepted(&a.receipt.tx_id).expect("read");
            assert_eq!(read.as_ref(), Some(a), "read back as recorded");
        }
        assert_eq!(cert_bodies(&store), 2, "one body per certificate");
        let record = store
            .get(CF_ACCEPTED, &first[0].receipt.tx_id.0)
            .expect("read")
            .expect("present");
        let whole = pb::Payment::from(&first[0].payment).encoded_len()
            + pb::Receipt::from(&first[0].receipt).encoded_len();
        assert!(
            record.len() + 200 < whole,
            "the compact record ({} bytes) drops the certificate and the receipt's copies ({whole})",
            record.len()
        );
    }

    #[test]
    fn a_payment_as_recorded_is_stored_without_its_merkle_path_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let submitted = accepted_payments(4, 2);
        let recorded: Vec<_> = submitted
            .iter()
            .map(|a| AcceptedPayment {
                payment: a.payment.clone().into_recorded(),
                receipt: a.receipt.clone(),
            })
            .collect();
        commit(&store, &recorded[..1]);
        commit(&store, &submitted[1..]);
        for a in [&recorded[0], &submitted[1]] {
            let read = store.accepted(&a.receipt.tx_id).expect("read");
            assert_eq!(read.as_ref(), Some(a), "either form reads back as written");
        }
        let hashes: usize = submitted[0]
            .payment
            .inputs
            .iter()
            .map(|i| i.path.len())
            .sum();
        assert!(hashes > 0, "the test payment has Merkle paths");
        let (full, lean) = (
            accepted_record::encode(&submitted[0]),
            accepted_record::encode(&recorded[0]),
        );
        assert!(
            lean.len() + 32 * hashes <= full.len(),
            "{} path hashes should leave the record: {} bytes against {}",
            hashes,
            lean.len(),
            full.len()
        );
    }

    #[test]
    fn records_of_older_formats_still_read_through_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let payments = accepted_payments(3, 3);
        // The packed format writes the certificate body the older formats'
        // records below need (the compact one reads it from there too).
        commit(&store, &payments[..1]);
        for (a, old) in [
            (
                &payments[1],
                accepted_record::older_formats::first(&payments[1]),
            ),
            (
                &payments[2],
                accepted_record::older_formats::compact(&payments[2]),
            ),
        ] {
            store
                .db()
                .put_cf(store.cf(CF_ACCEPTED), a.receipt.tx_id.0, &old)
                .expect("put");
        }
        for a in &payments {
            assert_eq!(
                store.accepted(&a.receipt.tx_id).expect("read").as_ref(),
                Some(a)
            );
        }
        let keys: Vec<TxId> = payments.iter().map(|a| a.receipt.tx_id).collect();
        let batch = store.accepted_batch(&keys).expect("batch read");
        assert_eq!(
            batch,
            payments.iter().cloned().map(Some).collect::<Vec<_>>()
        );
    }

    /// Writes counters and certificate-index entries the way the first
    /// counters format did, for `payments`.
    fn put_first_format_counters(store: &StateStore, payments: &[AcceptedPayment]) {
        for a in payments {
            let cert_id = a.receipt.cert_id;
            let old_key = cert_id.counter_nullifier(a.payment.counter);
            let db = store.db();
            db.put_cf(store.cf(CF_COUNTERS), old_key.0, a.receipt.tx_id.0)
                .expect("put");
            let mut index_key = cert_id.0.to_vec();
            index_key.push(2);
            index_key.extend_from_slice(&old_key.0);
            db.put_cf(store.cf(CF_CERT_INDEX), &index_key, [])
                .expect("put");
        }
    }

    fn family_keys(store: &StateStore, cf: &str) -> Vec<Vec<u8>> {
        store
            .db()
            .iterator_cf(store.cf(cf), IteratorMode::Start)
            .map(|item| item.expect("read").0.to_vec())
            .collect()
    }

    #[test]
    fn a_database_of_the_first_counters_format_is_migrated_at_open_even_after_a_crash() {
        let dir = tempfile::tempdir().expect("temp dir");
        let payments = accepted_payments(4, 3);
        {
            let store = StateStore::open(dir.path()).expect("open");
            commit(&store, &payments);
            put_first_format_counters(&store, &payments);
            // A migration that crashed after its first batch: one counter
            // already re-keyed, the index not yet emptied.
            let done = &payments[0];
            let key = CounterKey {
                cert_id: done.receipt.cert_id,
                counter: done.payment.counter,
            };
            store
                .db()
                .delete_cf(store.cf(CF_COUNTERS), key.nullifier().0)
                .expect("delete");
            store
                .db()
                .put_cf(
                    store.cf(CF_COUNTERS),
                    counter_key(&key),
                    done.receipt.tx_id.0,
                )
                .expect("put");
        }
        let store = StateStore::open(dir.path()).expect("reopen migrates");
        let cert_id = payments[0].receipt.cert_id;
        let mut expected: Vec<u64> = payments.iter().map(|a| a.payment.counter).collect();
        expected.sort_unstable();
        assert_eq!(store.counters_of(&cert_id).expect("read"), expected);
        for a in &payments {
            let key = CounterKey {
                cert_id,
                counter: a.payment.counter,
            };
            assert_eq!(store.counter(&key).expect("read"), Some(a.receipt.tx_id));
        }
        assert!(
            family_keys(&store, CF_COUNTERS)
                .iter()
                .all(|k| k.len() == COUNTER_KEY_BYTES),
            "no key of the first format is left"
        );
        assert!(family_keys(&store, CF_CERT_INDEX).is_empty());
    }

    #[test]
    fn a_first_format_counter_naming_no_payment_stops_the_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let payments = accepted_payments(5, 1);
        {
            let store = StateStore::open(dir.path()).expect("open");
            // The counter and the index entry, but not the payment.
            put_first_format_counters(&store, &payments);
        }
        let err = match StateStore::open(dir.path()) {
            Err(e) => e,
            Ok(_) => panic!("a counter without its payment opened"),
        };
        assert!(err.to_string().contains("not recorded"), "{err}");
    }

    #[test]
    fn counters_are_one_range_per_certificate_and_deleted_by_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let (a, b) = (CertId([1; 32]), CertId([2; 32]));
        let mut writes = WriteSet::default();
        for (cert_id, counter) in [(a, 7), (a, 3), (b, 1), (a, u64::MAX)] {
            writes.counters.insert(
                CounterKey { cert_id, counter },
                Some(TxId([counter as u8; 32])),
            );
        }
        let state = store.applied_state().expect("applied state");
        store.commit(&writes, &state).expect("commit");
        assert_eq!(store.counters_of(&a).expect("read"), vec![3, 7, u64::MAX]);
        assert_eq!(store.counters_of(&b).expect("read"), vec![1]);
        assert_eq!(
            store
                .counter(&CounterKey {
                    cert_id: a,
                    counter: 7
                })
                .expect("read"),
            Some(TxId([7; 32]))
        );
        let mut deletes = WriteSet::default();
        for counter in [3, 7, u64::MAX] {
            deletes.counters.insert(
                CounterKey {
                    cert_id: a,
                    counter,
                },
                None,
            );
        }
        store.commit(&deletes, &state).expect("commit");
        assert_eq!(store.counters_of(&a).expect("read"), Vec::<u64>::new());
        assert_eq!(
            store.counters_of(&b).expect("read"),
            vec![1],
            "the other certificate kept"
        );
    }

    /// Set in the child process of the crash test: where it writes before it
    /// kills itself.
    const CRASH_DIR_ENV: &str = "SPENTLEDGER_TEST_CRASH_DIR";
    const CRASH_COMMITS: u64 = 300;
    const CRASH_NULLIFIERS_PER_COMMIT: u64 = 200;

    /// A store whose memtables hold only 256 KiB, so a few hundred commits
    /// make RocksDB flush several times on its own.
    fn small_memtable_store(dir: &Path) -> StateStore {
        let mut options = open_options().expect("options");
        options.set_db_write_buffer_size(256 << 10);
        StateStore::open_with(dir, options).expect("open")
    }

    fn crash_nullifier(commit: u64, k: u64) -> Nullifier {
        let mut n = [0u8; 32];
        n[..8].copy_from_slice(&k.to_be_bytes());
        n[8..16].copy_from_slice(&commit.to_be_bytes());
        Nullifier(n)
    }

    /// What `kill -9` leaves: the child process commits entry after entry,
    /// while RocksDB flushes on its own, and kills itself with SIGKILL (no
    /// close, no last flush). Commits skip the WAL, so the ones since the last
    /// flush are lost; what comes back is the state of one whole commit: an
    /// applied index k and exactly the nullifiers of commits 1..=k.
    /// Fails without atomic flushes: a family could hold writes of a commit
    /// the applied log id does not cover (measured: 48,000 nullifiers under
    /// an applied index of 246, which covers 49,200).
    /// Commits entry `commit` (applied index `commit`) holding
    /// `nullifiers` nullifiers named by [`crash_nullifier`].
    fn must_commit_numbered(
        store: &StateStore,
        state: &mut AppliedState,
        commit: u64,
        nullifiers: u64,
    ) {
        let mut writes = WriteSet::default();
        for k in 0..nullifiers {
            writes.nullifiers.insert(
                crash_nullifier(commit, k),
                Some(NullifierRecord {
                    tx_id: TxId([commit as u8; 32]),
                    held: false,
                }),
            );
        }
        state.applied = Some(LogId::new(
            openraft::vote::leader_id_std::CommittedLeaderId::new(1),
            commit,
        ));
        store
            .commit(&writes, state)
            .unwrap_or_else(|e| panic!("commit {commit}: {e}"));
    }

    #[test]
    fn a_crash_leaves_the_state_of_one_whole_commit() {
        if let Some(dir) = std::env::var_os(CRASH_DIR_ENV) {
            let store = small_memtable_store(Path::new(&dir));
            let mut state = store.applied_state().expect("applied state");
            for commit in 1..=CRASH_COMMITS {
                must_commit_numbered(&store, &mut state, commit, CRASH_NULLIFIERS_PER_COMMIT);
            }
            // RocksDB flushed on its own, so the crash leaves table files
            // and unflushed memtables (a panic here fails the parent's
            // signal check).
            let nullifier_table_bytes =
                family_bytes(store.sst_bytes_per_family().expect("sizes"), CF_NULLIFIERS);
            assert!(nullifier_table_bytes > 0, "no flush before the crash");
            // SIGKILL, as `kill -9`: no destructor, no close, no core file.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            unreachable!("SIGKILL ends this process");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let module = module_path!().split_once("::").expect("a crate path").1;
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                &format!("{module}::a_crash_leaves_the_state_of_one_whole_commit"),
                "--exact",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the child");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the child was to flush, then kill itself: {status}"
        );
        let store = small_memtable_store(dir.path());
        let applied = store
            .applied_state()
            .expect("applied state")
            .applied
            .expect("the flushed commits survive the crash")
            .index();
        assert!(
            (1..=CRASH_COMMITS).contains(&applied),
            "applied index {applied} after {CRASH_COMMITS} commits"
        );
        assert_eq!(
            store.nullifier_count().expect("count"),
            applied * CRASH_NULLIFIERS_PER_COMMIT,
            "the nullifiers are not those of commits 1..={applied}"
        );
        for commit in [1, applied] {
            for k in [0, CRASH_NULLIFIERS_PER_COMMIT - 1] {
                assert!(
                    store
                        .nullifier(&crash_nullifier(commit, k))
                        .expect("read")
                        .is_some(),
                    "nullifier {k} of commit {commit} lost"
                );
            }
        }
        assert!(
            store
                .nullifier(&crash_nullifier(applied + 1, 0))
                .expect("read")
                .is_none(),
            "a nullifier of commit {} without its applied index",
            applied + 1
        );
    }

    /// Commits skip the WAL, so only a flush makes them durable: closing the
    /// database must flush, or every clean restart would re-apply from the
    /// Raft log. Fails if the last commits are missing after a close.
    #[test]
    fn a_closed_store_keeps_every_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let commits = 20u64;
        {
            let store = StateStore::open(dir.path()).expect("open");
            let mut state = store.applied_state().expect("applied state");
            for commit in 1..=commits {
                must_commit_numbered(&store, &mut state, commit, 1);
            }
        }
        let store = StateStore::open(dir.path()).expect("reopen");
        let applied = store.applied_state().expect("applied state").applied;
        assert_eq!(
            applied.map(|id| id.index()),
            Some(commits),
            "commits lost at close"
        );
        assert_eq!(store.nullifier_count().expect("count"), commits);
    }

    /// A snapshot larger than its write-back step (8 MiB, started while
    /// the file is written) loads back whole, with the same applied id.
    #[test]
    fn a_snapshot_of_many_write_back_steps_loads_back_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(&dir.path().join("from")).expect("open");
        let mut state = store.applied_state().expect("applied state");
        // About 74 bytes per nullifier record in the file: 3 steps or more.
        let (commits, per_commit) = (30u64, 12_000u64);
        for commit in 1..=commits {
            must_commit_numbered(&store, &mut state, commit, per_commit);
        }
        let path = dir.path().join("state.snap");
        let (bytes, applied) = crate::storage::snapshot_file::write(&store, &path).expect("write");
        assert!(
            bytes > 3 * (8 << 20),
            "snapshot of {bytes} bytes is too small for the test"
        );
        assert_eq!(applied.applied.map(|id| id.index()), Some(commits));

        let loaded = StateStore::open(&dir.path().join("to")).expect("open");
        crate::storage::snapshot_file::load(&path, &loaded).expect("load");
        assert_eq!(
            loaded.nullifier_count().expect("count"),
            commits * per_commit
        );
        assert_eq!(
            loaded.applied_state().expect("applied").applied,
            applied.applied
        );
    }

    /// Compactions run at the lowest CPU priority (`background_work`): on
    /// the machine the nodes share, a round of compactions must not take the
    /// CPU from apply. RocksDB lowers a pool thread when it picks up its next
    /// job, so a compaction is run first.
    #[cfg(target_os = "linux")]
    #[test]
    fn compactions_run_at_the_lowest_cpu_priority() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("open");
        let mut state = store.applied_state().expect("applied state");
        for commit in 1..=4 {
            must_commit_numbered(&store, &mut state, commit, 100);
        }
        store.compact_all().expect("compact");
        let nices = must_read_thread_nices("rocksdb:low");
        let lowest = i64::from(crate::ops::thread_priority::NICE_LOWEST);
        assert!(
            nices.contains(&lowest),
            "no compaction thread at nice {lowest} after a compaction: {nices:?}"
        );
    }

    /// The nice values of this process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn must_read_thread_nices(name: &str) -> Vec<i64> {
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let task = task.expect("task entry").path();
            let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
                continue; // the thread ended meanwhile
            };
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.join("stat")).expect("task stat");
            // Fields after the command's closing parenthesis: the nice value
            // is field 19 of stat, the 17th after it.
            let after = &stat[stat.rfind(')').expect("stat has a command") + 2..];
            let nice = after
                .split(' ')
                .nth(16)
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("no nice value in {stat:?}"));
            nices.push(nice);
        }
        assert!(!nices.is_empty(), "no thread named {name} in this process");
        nices
    }
}
