//! Ordering 32-byte ids: what apply's read-ahead does with a group's keys
//! (sort, then binary searches), with the ids' own order against the
//! derived byte-array order it replaced (a `memcmp` call per comparison).
//!
//! Run: `cargo bench -p spentledger-protocol --bench ids`
//! Results and the machine they came from: docs/BENCHMARKS.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spentledger_protocol::{CertId, Nullifier};

/// Keys in one read-ahead group: 512 payments of 2 inputs (apply's
/// `READ_AHEAD_PAYMENTS`).
const KEYS: usize = 1_024;

/// Real nullifiers: token nullifiers of 512 certificates, two each.
fn keys() -> Vec<[u8; 32]> {
    (0..KEYS)
        .map(|n| {
            let mut cert = [0u8; 32];
            cert[..8].copy_from_slice(&(n as u64 / 2).to_le_bytes());
            CertId(cert).token_nullifier(n as u32 % 2).0
        })
        .collect()
}

/// Sorts `keys` and finds each of them again: one group's read-ahead.
fn sort_and_search<K: Ord + Copy>(keys: &[K]) -> usize {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    keys.iter()
        .filter(|k| sorted.binary_search(k).is_ok())
        .count()
}

fn ordering(c: &mut Criterion) {
    let bytes = keys();
    let ids: Vec<Nullifier> = bytes.iter().copied().map(Nullifier).collect();
    let mut group = c.benchmark_group("ids/sort_and_search");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_with_input(BenchmarkId::new("byte_arrays", KEYS), &bytes, |b, k| {
        b.iter(|| assert_eq!(sort_and_search(std::hint::black_box(k)), KEYS))
    });
    group.bench_with_input(BenchmarkId::new("ids", KEYS), &ids, |b, k| {
        b.iter(|| assert_eq!(sort_and_search(std::hint::black_box(k)), KEYS))
    });
    group.finish();
}

criterion_group!(benches, ordering);
criterion_main!(benches);
