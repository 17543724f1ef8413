//! The RocksDB stores: openraft's storage test suite, durability across
//! restarts, snapshot transfer and atomic install.

use std::sync::Arc;

use futures::stream;
use openraft::entry::RaftEntry;
use openraft::storage::{
    IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::leader_id_std::CommittedLeaderId;
use openraft::{EntryPayload, StorageError};
use spentledger_node::consensus::{
    ClientRequest, Entry, LedgerStateMachine, LogId, TypeConfig, Vote,
};
use spentledger_node::state_machine::{CounterKey, Ledger, LedgerConfig, LedgerRead};
use spentledger_node::storage::LogStore;
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{CertId, Payment, TxId, pb};
use tempfile::TempDir;

const T0_MS: u64 = 1_767_225_600_000;

fn ledger() -> Arc<Ledger> {
    Arc::new(
        Ledger::new(LedgerConfig {
            validation_threads: 1,
            certificate_cache_entries: 256,
            ..LedgerConfig::default()
        })
        .expect("validator thread"),
    )
}

/// Builds our stores; `read_bytes_max` bounds the log's replication reads
/// (`None`: the production bound).
struct Builder {
    read_bytes_max: Option<usize>,
}

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, LedgerStateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = LogStore::open(&dir.path().join("log")).expect("open log store");
        if let Some(bytes_max) = self.read_bytes_max {
            log = log.with_read_bytes_max(bytes_max);
        }
        // The suite applies 1.3 and then 1.5 to one state machine, which
        // openraft itself never does; nodes refuse such gaps.
        let sm = LedgerStateMachine::open(&dir.path().join("state"), ledger())
            .expect("open state machine")
            .allowing_gaps();
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_our_stores() {
    Suite::test_all(Builder {
        read_bytes_max: None,
    })
    .await
    .expect("openraft storage suite");
}

/// With a one-byte budget every replication read returns a single entry:
/// the suite's contract for `limited_get_log_entries` (a non-empty prefix)
/// still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_with_one_entry_per_replication_read() {
    Suite::test_all(Builder {
        read_bytes_max: Some(1),
    })
    .await
    .expect("openraft storage suite, one entry per read");
}

/// Replication reads stop at the byte budget, from the in-memory newest
/// entries and from RocksDB alike, and never return nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_reads_are_bounded_by_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Entries 1..=6 of about 10, 10, 10, 50, 10, 10 KB; a 35 KB budget.
    let sizes_kb = [10usize, 10, 10, 50, 10, 10];
    let budget = 35 << 10;
    let expect = [(1, vec![1, 2, 3]), (4, vec![4]), (5, vec![5, 6])];
    let indexes =
        |entries: Vec<Entry>| entries.iter().map(|e| e.log_id.index()).collect::<Vec<_>>();
    {
        let mut log = LogStore::open(dir.path())
            .expect("open")
            .with_read_bytes_max(budget);
        let mut waiters = Vec::new();
        for (i, kb) in sizes_kb.iter().enumerate() {
            let entry = Entry {
                log_id: lid(1, i as u64 + 1),
                payload: EntryPayload::Normal(ClientRequest::new(junk_command(*kb << 10))),
            };
            let (tx, rx) = TypeConfig::oneshot();
            log.append(vec![entry], IOFlushed::signal(tx))
                .await
                .expect("append");
            waiters.push(rx);
        }
        for rx in waiters {
            rx.await.expect("flusher answered").expect("fsync ok");
        }
        for (start, want) in &expect {
            let got = log.limited_get_log_entries(*start, 7).await.expect("read");
            assert_eq!(&indexes(got), want, "from memory, starting at {start}");
        }
        let all = log.try_get_log_entries(1..7).await.expect("read");
        assert_eq!(indexes(all).len(), 6, "unlimited reads are not bounded");
    }
    let mut log = LogStore::open(dir.path())
        .expect("reopen")
        .with_read_bytes_max(budget);
    for (start, want) in &expect {
        let got = log.limited_get_log_entries(*start, 7).await.expect("read");
        assert_eq!(&indexes(got), want, "from RocksDB, starting at {start}");
    }
    let got = log.limited_get_log_entries(2, 3).await.expect("read");
    assert_eq!(indexes(got), [2], "the range's end still bounds the read");
}

/// A command whose encoding is about `bytes` long (one junk payment).
fn junk_command(bytes: usize) -> pb::Command {
    pb::Command {
        stamp_ms: T0_MS,
        kind: Some(pb::command::Kind::Submit(pb::SubmitPayments {
            payments: vec![pb::Payment {
                payee_id: "x".repeat(bytes),
                ..Default::default()
            }],
        })),
    }
}

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term), index)
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("valid id")
}

fn issuer() -> Issuer {
    Issuer::from_seed(id("bank"), [3; 32], 0, u64::MAX)
}

fn wallet(n: u8) -> Wallet {
    issuer()
        .fund_device(
            &IssuancePolicy::default(),
            [n; 32],
            &Funding::eur(id(&format!("w{n}")), 2_000, T0_MS),
        )
        .expect("issue")
}

fn normal(index: u64, command: pb::command::Kind) -> Entry {
    Entry::new(
        lid(1, index),
        EntryPayload::Normal(ClientRequest::new(pb::Command {
            stamp_ms: T0_MS + 3_600_000,
            kind: Some(command),
        })),
    )
}

/// A short log: register the issuer key, then payments with a double spend.
fn workload() -> (Vec<Entry>, Vec<Payment>) {
    let register = normal(
        1,
        pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand {
            key: Some((&issuer().issuer_key()).into()),
        }),
    );
    let mut payments = Vec::new();
    for n in 1..=20u8 {
        let mut w = wallet(n);
        let p = w
            .pay(10 + u64::from(n), &id("m"), [n; 32], T0_MS + 60_000)
            .expect("pay");
        if n % 5 == 0 {
            let tokens: Vec<u32> = p.inputs.iter().map(|i| i.leaf.index).collect();
            payments.push(
                w.sign_payment(&tokens, 50, &id("m2"), [0; 32], T0_MS)
                    .expect("sign"),
            );
        }
        payments.push(p);
    }
    let submit = |index, ps: &[Payment]| {
        normal(
            index,
            pb::command::Kind::Submit(pb::SubmitPayments {
                payments: ps.iter().map(pb::Payment::from).collect(),
            }),
        )
    };
    let entries = vec![
        register,
        submit(2, &payments[..10]),
        Entry::new(lid(1, 3), EntryPayload::Blank),
        submit(4, &payments[10..]),
    ];
    (entries, payments)
}

async fn apply(sm: &mut LedgerStateMachine, entries: Vec<Entry>) {
    let items: Vec<std::io::Result<_>> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.expect("apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entries, payments) = workload();
    let (digest, applied) = {
        let mut sm = LedgerStateMachine::open(dir.path(), ledger()).expect("open");
        apply(&mut sm, entries[..2].to_vec()).await;
        apply(&mut sm, entries[2..].to_vec()).await;
        (sm.applied().digest, sm.applied().applied)
    };
    eprintln!("--- reopen the same directory");
    let mut sm = LedgerStateMachine::open(dir.path(), ledger()).expect("reopen");
    assert_eq!(sm.applied().applied, applied);
    assert_eq!(applied, Some(lid(1, 4)));
    assert_eq!(sm.applied().digest, digest);
    let (last, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(last, Some(lid(1, 4)));
    let store = sm.state().current();
    let accepted = payments
        .iter()
        .filter(|p| store.accepted(&p.tx_id()).expect("read").is_some())
        .count();
    assert_eq!(
        accepted, 20,
        "one payment per device accepted, the 4 double spends not"
    );
    assert_eq!(store.last_revocation_sequence().expect("read"), 4);
    eprintln!("--- the double-spend evidence is persisted and verifies offline");
    let mut evidence_count = 0;
    for p in &payments {
        for e in store
            .evidence(&p.certificate.cert_id())
            .expect("read evidence")
        {
            let spentledger_node::state_machine::Evidence::DoubleSpend(d) = e else {
                panic!("only double spends in this workload");
            };
            d.verify(&issuer().issuer_key().public_key)
                .expect("stored evidence verifies");
            evidence_count += 1;
        }
    }
    // Each double-spending certificate appears twice in `payments` (both spends).
    assert_eq!(evidence_count, 8);
}

/// openraft applies what it reads back from the log store and does not
/// check it in release builds: a store that handed over the wrong entries
/// would fork this replica silently. Apply refuses them instead, changing
/// nothing, and the journal shows what was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_entries_that_do_not_continue_the_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entries, _) = workload();
    let mut sm = LedgerStateMachine::open(dir.path(), ledger()).expect("open");
    apply(&mut sm, entries[..2].to_vec()).await;
    let before = (sm.applied().applied, sm.applied().digest);
    assert_eq!(before.0, Some(lid(1, 2)));
    let refused = |entry: Entry| {
        let items: Vec<std::io::Result<_>> = vec![Ok((entry, None))];
        stream::iter(items)
    };
    eprintln!("--- a gap (index 4 after 2), a repeat (2 again), a lower term (0-3)");
    for (what, entry) in [
        ("gap", entries[3].clone()),
        ("repeat", entries[1].clone()),
        ("lower term", Entry::new(lid(0, 3), EntryPayload::Blank)),
    ] {
        let err = sm
            .apply(refused(entry))
            .await
            .expect_err(&format!("a {what} is refused"));
        assert!(
            err.to_string().contains("must continue the applied log"),
            "{what}: {err}"
        );
        assert_eq!(
            (sm.applied().applied, sm.applied().digest),
            before,
            "{what}: nothing changed"
        );
    }
    eprintln!("--- the next entry applies; the journal holds each step");
    apply(&mut sm, entries[2..].to_vec()).await;
    let journal: Vec<String> = sm
        .journal()
        .recent(usize::MAX)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(journal.len(), 5, "{journal:#?}");
    assert!(journal[0].starts_with("none opened"), "{journal:#?}");
    assert!(
        journal[1].starts_with("1-1 command") && journal[1].contains("register-key ok"),
        "{journal:#?}"
    );
    assert!(
        journal[2].contains("submit accepted=9 duplicate=0 double_spend=1 rejected=0"),
        "{journal:#?}"
    );
    assert!(journal[3].starts_with("1-3 blank"), "{journal:#?}");
    assert!(journal[4].starts_with("1-4 command"), "{journal:#?}");
    assert!(journal[4].ends_with(&sm.applied().digest.to_hex()[..16]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_reads_answer_exactly_what_single_reads_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entries, payments) = workload();
    let mut sm = LedgerStateMachine::open(dir.path(), ledger()).expect("open");
    apply(&mut sm, entries[..2].to_vec()).await;
    eprintln!("--- half the state in table files, half in the memtables");
    sm.state().current().compact_all().expect("compact");
    apply(&mut sm, entries[2..].to_vec()).await;
    let store = sm.state().current();

    // Keys that hit and keys that miss, interleaved, out of order, one twice.
    let mut tx_ids = Vec::new();
    let mut nullifiers = Vec::new();
    let mut counters = Vec::new();
    let mut cert_ids = Vec::new();
    for (n, p) in payments.iter().enumerate().rev() {
        let cert_id = p.certificate.cert_id();
        tx_ids.extend([p.tx_id(), TxId([n as u8; 32])]);
        nullifiers.extend(
            p.inputs
                .iter()
                .map(|i| cert_id.token_nullifier(i.leaf.index)),
        );
        nullifiers.push(cert_id.token_nullifier(999));
        counters.extend([p.counter, p.counter + 1].map(|counter| CounterKey { cert_id, counter }));
        cert_ids.extend([cert_id, CertId([n as u8; 32])]);
    }
    tx_ids.push(tx_ids[0]);

    let single_accepted: Vec<_> = tx_ids
        .iter()
        .map(|k| store.accepted(k).expect("read"))
        .collect();
    let single_nullifiers: Vec<_> = nullifiers
        .iter()
        .map(|k| store.nullifier(k).expect("read"))
        .collect();
    let single_counters: Vec<_> = counters
        .iter()
        .map(|k| store.counter(k).expect("read"))
        .collect();
    let single_certs: Vec<_> = cert_ids
        .iter()
        .map(|k| store.certificate(k).expect("read"))
        .collect();
    // Both kinds of answer occur, so a batch answering all-missing (or
    // all-found) fails below.
    for (what, found, total) in [
        (
            "accepted",
            single_accepted.iter().flatten().count(),
            tx_ids.len(),
        ),
        (
            "nullifiers",
            single_nullifiers.iter().flatten().count(),
            nullifiers.len(),
        ),
        (
            "counters",
            single_counters.iter().flatten().count(),
            counters.len(),
        ),
        (
            "certificates",
            single_certs.iter().flatten().count(),
            cert_ids.len(),
        ),
    ] {
        assert!(
            0 < found && found < total,
            "{what}: {found} of {total} found"
        );
    }
    assert_eq!(
        store.accepted_batch(&tx_ids).expect("batch"),
        single_accepted
    );
    assert_eq!(
        store.nullifier_batch(&nullifiers).expect("batch"),
        single_nullifiers
    );
    assert_eq!(
        store.counter_batch(&counters).expect("batch"),
        single_counters
    );
    assert_eq!(
        store.certificate_batch(&cert_ids).expect("batch"),
        single_certs
    );
    assert_eq!(store.nullifier_batch(&[]).expect("empty batch"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_installs_atomically_and_a_corrupt_one_changes_nothing() {
    let (entries, payments) = workload();
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let mut leader = LedgerStateMachine::open(leader_dir.path(), ledger()).expect("open");
    apply(&mut leader, entries.clone()).await;
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    assert_eq!(snapshot.meta.last_log_id, Some(lid(1, 4)));

    eprintln!("--- a wiped follower installs it");
    let follower_dir = tempfile::tempdir().expect("temp dir");
    let mut follower = LedgerStateMachine::open(follower_dir.path(), ledger()).expect("open");
    follower
        .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
        .await
        .expect("install");
    assert_eq!(follower.applied(), leader.applied());
    let store = follower.state().current();
    for p in &payments {
        assert_eq!(
            store.accepted(&p.tx_id()).expect("read"),
            leader.state().current().accepted(&p.tx_id()).expect("read"),
        );
    }
    let current = std::fs::read_to_string(follower_dir.path().join("CURRENT")).expect("CURRENT");
    assert_eq!(current.trim(), "gen-000002");
    assert!(
        !follower_dir.path().join("gen-000001").exists(),
        "old generation removed"
    );
    let (kept, _) = (
        follower
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("kept"),
        (),
    );
    assert_eq!(kept.meta, snapshot.meta);

    eprintln!("--- the follower keeps applying after the snapshot");
    let mut w = wallet(99);
    let p = w.pay(5, &id("m"), [1; 32], T0_MS + 60_000).expect("pay");
    apply(
        &mut follower,
        vec![normal(
            5,
            pb::command::Kind::Submit(pb::SubmitPayments {
                payments: vec![(&p).into()],
            }),
        )],
    )
    .await;
    assert!(
        follower
            .state()
            .current()
            .accepted(&p.tx_id())
            .expect("read")
            .is_some()
    );

    eprintln!("--- a corrupted snapshot is refused and the live state stays");
    let before = follower.applied().clone();
    let bad_path = follower_dir.path().join("corrupt.snap");
    let mut bytes = std::fs::read(&snapshot.snapshot.path).expect("read snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&bad_path, bytes).expect("write");
    let err = follower
        .install_snapshot(
            &snapshot.meta,
            spentledger_node::storage::SnapshotFile { path: bad_path },
        )
        .await
        .expect_err("corrupt snapshot must fail");
    eprintln!("refused: {err}");
    assert_eq!(follower.applied(), &before);
    assert!(
        follower
            .state()
            .current()
            .accepted(&p.tx_id())
            .expect("read")
            .is_some()
    );
    assert_eq!(
        std::fs::read_to_string(follower_dir.path().join("CURRENT"))
            .expect("CURRENT")
            .trim(),
        "gen-000002"
    );
    drop(store);
    drop(follower);
    let reopened = LedgerStateMachine::open(follower_dir.path(), ledger()).expect("reopen");
    assert_eq!(reopened.applied(), &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_keeps_votes_and_entries_across_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        log.save_vote(&Vote::new_committed(3, 2))
            .await
            .expect("vote");
        let (entries, _) = workload();
        let mut waiters = Vec::new();
        for chunk in entries.chunks(1) {
            let (tx, rx) = TypeConfig::oneshot();
            log.append(chunk.to_vec(), IOFlushed::signal(tx))
                .await
                .expect("append");
            waiters.push(rx);
        }
        for rx in waiters {
            rx.await.expect("flusher answered").expect("fsync ok");
        }
    }
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(
        log.read_vote().await.expect("read"),
        Some(Vote::new_committed(3, 2))
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(lid(1, 4)));
    let got = log.try_get_log_entries(2..4).await.expect("read");
    assert_eq!(
        got.iter().map(|e| e.log_id.index()).collect::<Vec<_>>(),
        vec![2, 3]
    );
    log.purge(lid(1, 2)).await.expect("purge");
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(lid(1, 2)));
    assert!(
        log.try_get_log_entries(0..3)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_an_install_reopens_at_a_whole_state() {
    let (entries, _) = workload();
    let dir = tempfile::tempdir().expect("temp dir");
    let applied = {
        let mut sm = LedgerStateMachine::open(dir.path(), ledger()).expect("open");
        apply(&mut sm, entries.clone()).await;
        sm.applied().clone()
    };
    eprintln!("--- crash while loading: a half-written gen-000002.tmp is left behind");
    let tmp = dir.path().join("gen-000002.tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    std::fs::write(tmp.join("000001.sst"), b"half a table").expect("write");
    eprintln!(
        "--- crash after the rename, before CURRENT moved: gen-000003 exists but is not current"
    );
    let orphan = dir.path().join("gen-000003");
    std::fs::create_dir_all(&orphan).expect("mkdir");
    std::fs::write(orphan.join("CURRENT"), b"junk").expect("write");
    let sm = LedgerStateMachine::open(dir.path(), ledger()).expect("reopen after crash");
    assert_eq!(sm.applied(), &applied, "state is the last whole one");
    assert!(
        !tmp.exists() && !orphan.exists(),
        "leftovers removed at open"
    );
    drop(sm);
    eprintln!("--- a damaged CURRENT file is a clear error, not a silent empty ledger");
    std::fs::write(dir.path().join("CURRENT"), b"gen-zz\n").expect("write");
    let err = LedgerStateMachine::open(dir.path(), ledger())
        .err()
        .expect("damaged CURRENT must not open");
    assert!(err.to_string().contains("bad CURRENT"), "{err}");
}

/// The applied index and the digest a node reports (Admin.Status, and so
/// the digest audit that quarantines a node) come from one state: never the
/// index of one apply call with the digest of the next. A torn pair once made
/// a healthy follower quarantine itself in a benchmark (docs/BENCHMARKS.md,
/// sixth round).
#[test]
fn the_applied_index_and_digest_are_read_together() {
    use spentledger_node::state_machine::{StateDigest, WriteSet};
    use spentledger_node::storage::StateStore;
    use spentledger_node::storage::state_store::AppliedState;

    fn digest_of(index: u64) -> StateDigest {
        StateDigest(*blake3::hash(&index.to_le_bytes()).as_bytes())
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(StateStore::open(dir.path()).expect("open state store"));
    let commits = 20_000u64;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for index in 1..=commits {
                let state = AppliedState {
                    applied: Some(lid(1, index)),
                    membership: Default::default(),
                    digest: digest_of(index),
                };
                store.commit(&WriteSet::default(), &state).expect("commit");
            }
        })
    };
    let mut reads = 0u64;
    while !writer.is_finished() {
        let state = store.applied_state().expect("applied state");
        if let Some(applied) = state.applied {
            assert_eq!(
                state.digest,
                digest_of(applied.index),
                "read {reads}: index {} with another commit's digest",
                applied.index
            );
        }
        reads += 1;
    }
    writer.join().expect("writer");
    assert!(
        reads > 100,
        "the reader ran alongside the writer ({reads} reads)"
    );
}
