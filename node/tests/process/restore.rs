//! Backup and restore of a whole cluster: a snapshot file copied off one
//! node restores every member's (new, empty) data directory, and the
//! restored cluster elects a leader, holds every payment the snapshot
//! covers, and keeps settling. A restore refuses a directory with state.

use super::faults::must_converge;
use super::*;

/// The newest snapshot (`.snap` with its `.meta`) in node `id`'s data dir.
fn must_find_snapshot(dir: &Path, id: u64) -> Option<PathBuf> {
    let snapshots = dir.join(format!("node-{id}/state/snapshots"));
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("meta"))
        .filter(|p| p.with_extension("snap").is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .map(|p| p.with_extension("snap"))
}

/// Runs the node's restore mode for `id` with `snapshot`; returns its exit code.
fn restore(id: u64, addrs: &[SocketAddr], dir: &Path, keys: &Path, snapshot: &Path) -> i32 {
    let mut child = spawn_with(
        id,
        addrs,
        dir,
        false,
        keys,
        &[
            "--restore-from-snapshot",
            snapshot.to_str().expect("UTF-8 path"),
        ],
    );
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "restore of node {id} did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn must_find_payment(addr: SocketAddr, payment: &Payment) -> bool {
    let ch = channel(addr).await.expect("connect");
    pb::settlement_client::SettlementClient::new(ch)
        .get_payment(pb::GetPaymentRequest {
            tx_id: payment.tx_id().0.to_vec(),
            consistency: pb::ReadConsistency::Stale as i32,
        })
        .await
        .expect("get payment")
        .into_inner()
        .found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_is_restored_from_one_snapshot_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    eprintln!("--- three nodes settle payments");
    let (issuer, keys, addrs, mut procs) = must_start_three(dir.path(), &[]).await;
    let mut wallet = test_wallet(&issuer, 31, 2_000);
    let before: Vec<Payment> = (0..6u8)
        .map(|k| wallet.pay(50, &id("m"), [k; 32], now_ms()).expect("pay"))
        .collect();
    let response = must_submit(&addrs, 1, &before).await;
    assert!(
        response
            .results
            .iter()
            .all(|r| r.verdict == pb::Verdict::Accepted as i32),
        "{response:?}"
    );
    must_converge(&addrs).await;

    eprintln!("--- back up: node 1 snapshots; its newest .snap and .meta are copied off");
    let ch = channel(addrs[0]).await.expect("connect");
    pb::admin_client::AdminClient::new(ch)
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .expect("trigger snapshot");
    let deadline = Instant::now() + WAIT;
    let snapshot = loop {
        if let Some(s) = must_find_snapshot(dir.path(), 1) {
            break s;
        }
        assert!(Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let backup = dir.path().join("backup");
    std::fs::create_dir_all(&backup).expect("backup dir");
    let backup_snap = backup.join("ledger.snap");
    std::fs::copy(&snapshot, &backup_snap).expect("copy .snap");
    std::fs::copy(snapshot.with_extension("meta"), backup.join("ledger.meta")).expect("copy .meta");

    eprintln!("--- a payment after the backup (the restore's recovery point excludes it)");
    let after = wallet.pay(40, &id("m"), [99; 32], now_ms()).expect("pay");
    must_submit(&addrs, 2, std::slice::from_ref(&after)).await;

    eprintln!("--- restoring into a directory that holds state is refused");
    let code = restore(2, &addrs, dir.path(), &keys, &backup_snap);
    assert_eq!(code, 1, "a live data directory must not be overwritten");

    eprintln!("--- the cluster is lost: every node stopped, every data directory gone");
    for child in &mut procs.0 {
        must_stop_gracefully(child);
    }
    for n in 1..=3 {
        std::fs::remove_dir_all(dir.path().join(format!("node-{n}"))).expect("wipe");
    }

    eprintln!("--- each member is restored from the one backup, then started as usual");
    for n in 1..=3u64 {
        let code = restore(n, &addrs, dir.path(), &keys, &backup_snap);
        assert_eq!(code, 0, "restore of node {n}");
    }
    let _procs = Procs(
        (1..=3)
            .map(|n| spawn(n, &addrs, dir.path(), n == 1, &keys))
            .collect(),
    );
    for a in &addrs {
        must_be_ready(*a).await;
    }
    for addr in &addrs {
        for p in &before {
            assert!(
                must_find_payment(*addr, p).await,
                "{addr} lost a backed-up payment"
            );
        }
        assert!(
            !must_find_payment(*addr, &after).await,
            "{addr} has a payment made after the backup"
        );
    }

    eprintln!("--- the restored cluster settles: a spent token stays spent, new payments pass");
    let again = must_submit(&addrs, 3, &before[..1]).await;
    assert_eq!(again.results[0].verdict, pb::Verdict::Duplicate as i32);
    let mut fresh_wallet = test_wallet(&issuer, 32, 500);
    let fresh = fresh_wallet
        .pay(70, &id("m"), [7; 32], now_ms())
        .expect("pay");
    let response = must_submit(&addrs, 4, std::slice::from_ref(&fresh)).await;
    assert_eq!(
        response.results[0].verdict,
        pb::Verdict::Accepted as i32,
        "{:?}",
        response.results[0]
    );
    must_converge(&addrs).await;
}
