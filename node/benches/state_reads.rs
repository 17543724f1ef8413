//! The state machine's point reads: one lookup per key, as apply made them
//! before, against one batched lookup (RocksDB MultiGet) per column family
//! for a group of payments, as apply's read-ahead makes them now.
//!
//! Run: `cargo bench -p spentledger-node --bench state_reads`
//! Results and the machine they came from: docs/BENCHMARKS.md.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spentledger_node::state_machine::{
    CertRecord, CounterKey, LedgerRead, NullifierRecord, StateDigest, WriteSet,
};
use spentledger_node::storage::StateStore;
use spentledger_node::storage::state_store::AppliedState;
use spentledger_protocol::{CertId, CertificateState, Nullifier, TxId};

/// Records in the store before reading: a node some minutes into a load.
const NULLIFIERS: u64 = 400_000;
const CERTIFICATES: u64 = 20_000;
/// Payments in one read-ahead group (apply's `READ_AHEAD_PAYMENTS`).
const GROUP: u64 = 512;
const COMMIT_RECORDS: u64 = 20_000;

/// 32 pseudo-random bytes for `n` in the key space `space` (splitmix64):
/// hashes spread like nullifiers and ids do.
fn key(space: u64, n: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = space.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn populated_store(dir: &std::path::Path) -> StateStore {
    let store = StateStore::open(dir).expect("open the state store");
    let state = AppliedState {
        applied: None,
        membership: Default::default(),
        digest: StateDigest::default(),
    };
    let mut writes = WriteSet::default();
    for n in 0..NULLIFIERS {
        writes.nullifiers.insert(
            Nullifier(key(1, n)),
            Some(NullifierRecord {
                tx_id: TxId(key(2, n / 2)),
                held: false,
            }),
        );
        if n < CERTIFICATES {
            let cert_id = CertId(key(3, n));
            writes.certificates.insert(
                cert_id,
                CertRecord {
                    state: CertificateState::new(cert_id),
                    double_spend_detected: false,
                    revocation_sequence: None,
                },
            );
        }
        if (n + 1) % COMMIT_RECORDS == 0 {
            store
                .commit(&std::mem::take(&mut writes), &state)
                .expect("commit");
        }
    }
    store.compact_all().expect("compact");
    store
}

/// The keys one group of fresh payments reads: its receipt, its
/// certificate's record (known), its counter and two nullifiers (new).
struct GroupKeys {
    accepted: Vec<TxId>,
    certificates: Vec<CertId>,
    counters: Vec<CounterKey>,
    nullifiers: Vec<Nullifier>,
}

fn group_keys(round: u64) -> GroupKeys {
    let payments = (round * GROUP)..((round + 1) * GROUP);
    GroupKeys {
        accepted: payments.clone().map(|p| TxId(key(4, p))).collect(),
        certificates: payments
            .clone()
            .map(|p| CertId(key(3, p % CERTIFICATES)))
            .collect(),
        counters: payments
            .clone()
            .map(|p| CounterKey {
                cert_id: CertId(key(3, p % CERTIFICATES)),
                counter: 1_000 + p,
            })
            .collect(),
        nullifiers: payments
            .flat_map(|p| [Nullifier(key(5, 2 * p)), Nullifier(key(5, 2 * p + 1))])
            .collect(),
    }
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = populated_store(dir.path());
    let groups: Vec<GroupKeys> = (0..64).map(group_keys).collect();
    let mut g = c.benchmark_group("state_reads");
    g.throughput(Throughput::Elements(GROUP));
    g.measurement_time(Duration::from_secs(8));
    let mut round = 0;
    g.bench_function("one_lookup_per_key", |b| {
        b.iter(|| {
            let k = &groups[round % groups.len()];
            round += 1;
            let mut found = 0;
            for i in 0..k.accepted.len() {
                found += usize::from(store.accepted(&k.accepted[i]).expect("read").is_some());
                found += usize::from(
                    store
                        .certificate(&k.certificates[i])
                        .expect("read")
                        .is_some(),
                );
                found += usize::from(store.counter(&k.counters[i]).expect("read").is_some());
            }
            for n in &k.nullifiers {
                found += usize::from(store.nullifier(n).expect("read").is_some());
            }
            found
        })
    });
    g.bench_function("batched_per_column_family", |b| {
        b.iter(|| {
            let k = &groups[round % groups.len()];
            round += 1;
            let mut found = 0;
            found += store
                .accepted_batch(&k.accepted)
                .expect("read")
                .iter()
                .flatten()
                .count();
            found += store
                .certificate_batch(&k.certificates)
                .expect("read")
                .iter()
                .flatten()
                .count();
            found += store
                .counter_batch(&k.counters)
                .expect("read")
                .iter()
                .flatten()
                .count();
            found += store
                .nullifier_batch(&k.nullifiers)
                .expect("read")
                .iter()
                .flatten()
                .count();
            found
        })
    });
    g.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
