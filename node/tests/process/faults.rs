//! Faults against real processes: a leader stopped with SIGTERM while a
//! batch is in flight, and a leader killed with SIGKILL under load.

use std::collections::BTreeSet;

use super::*;

async fn own_status(addr: SocketAddr) -> Option<pb::NodeStatus> {
    let ch = channel(addr).await?;
    pb::admin_client::AdminClient::new(ch)
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await
        .ok()?
        .into_inner()
        .self_
}

/// The position in `addrs` of the node that says it leads.
async fn must_leader(addrs: &[SocketAddr]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        for (i, addr) in addrs.iter().enumerate() {
            if let Some(s) = own_status(*addr).await
                && s.role == pb::NodeRole::Leader as i32
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every node in `addrs` reports the same applied index and state digest.
pub(crate) async fn must_converge(addrs: &[SocketAddr]) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen = Vec::new();
        for addr in addrs {
            seen.push(
                own_status(*addr)
                    .await
                    .map(|s| (s.applied_index, s.state_digest)),
            );
        }
        let distinct: BTreeSet<_> = seen.iter().collect();
        if distinct.len() == 1
            && let Some(Some((index, _))) = seen.first()
        {
            return *index;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge within {WAIT:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A recorded payment found on the node at `addr` (stale read: no leader needed).
async fn must_find(addr: SocketAddr, payments: &[Payment]) {
    let ch = channel(addr).await.expect("connect");
    let mut client = pb::settlement_client::SettlementClient::new(ch);
    for payment in payments {
        let got = client
            .get_payment(pb::GetPaymentRequest {
                tx_id: payment.tx_id().0.to_vec(),
                consistency: pb::ReadConsistency::Stale as i32,
            })
            .await
            .expect("get payment")
            .into_inner();
        assert!(got.found, "acknowledged payment missing on {addr}");
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_finishes_the_batch_in_flight() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A long linger keeps the batch in the leader's queue when SIGTERM lands.
    let (issuer, _, addrs, mut procs) =
        must_start_three(dir.path(), &["--submit-linger-ms", "800"]).await;
    let mut wallet = test_wallet(&issuer, 20, 1_000);
    let warm = wallet.pay(10, &id("m"), [1; 32], now_ms()).expect("pay");
    must_submit(&addrs, 1, &[warm]).await;

    let leader = must_leader(&addrs).await;
    eprintln!("--- a gateway submits to the leader (node {})", leader + 1);
    let payment = wallet.pay(30, &id("m"), [2; 32], now_ms()).expect("pay");
    let leader_addr = addrs[leader];
    let request = pb::SubmitBatchRequest {
        batch_id: 2,
        payments: vec![(&payment).into()],
    };
    let mut client =
        pb::settlement_client::SettlementClient::new(channel(leader_addr).await.expect("connect"));
    let in_flight = tokio::spawn(async move { client.submit_batch(request).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!in_flight.is_finished(), "the batch is still lingering");

    eprintln!("--- SIGTERM the leader while the batch is in flight");
    let stopped_at = Instant::now();
    signal(&procs.0[leader], "TERM");
    let response = in_flight
        .await
        .expect("gateway task")
        .expect("the in-flight batch is answered, not cut")
        .into_inner();
    assert_eq!(
        response.results[0].verdict,
        pb::Verdict::Accepted as i32,
        "{:?}",
        response.results[0]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = procs.0[leader].try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the leader did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status}");
    eprintln!("stopped in {:?}", stopped_at.elapsed());

    eprintln!("--- the others took over leadership and have the payment");
    let survivors: Vec<SocketAddr> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, a)| *a)
        .collect();
    must_leader(&survivors).await;
    must_converge(&survivors).await;
    for addr in &survivors {
        must_find(*addr, std::slice::from_ref(&payment)).await;
    }
    for (i, child) in procs.0.iter_mut().enumerate() {
        if i != leader {
            must_stop_gracefully(child);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_continue_on_a_new_leader_when_the_leader_is_killed_mid_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (issuer, keys, addrs, mut procs) = must_start_three(dir.path(), &[]).await;

    eprintln!("--- two gateways settle batches through every node");
    const BATCHES_PER_GATEWAY: u64 = 40;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, Payment)>::new()));
    let mut gateways = Vec::new();
    for g in 0..2u8 {
        let addrs = addrs.clone();
        let issuer = issuer.clone();
        let acknowledged = acknowledged.clone();
        gateways.push(tokio::spawn(async move {
            for b in 0..BATCHES_PER_GATEWAY {
                // A fresh device per batch; 3 payments it can make with exact change.
                let mut wallet = test_wallet(&issuer, 100 + 40 * g + b as u8, 1_000);
                let batch: Vec<Payment> = [5, 10, 20]
                    .into_iter()
                    .enumerate()
                    .map(|(k, amount)| {
                        wallet
                            .pay(amount, &id("m"), [k as u8; 32], now_ms())
                            .expect("pay")
                    })
                    .collect();
                // Rotate the entry node so followers forward too.
                let mut order = addrs.clone();
                order.rotate_left((b as usize + g as usize) % addrs.len());
                let response = must_submit(&order, b, &batch).await;
                for (result, payment) in response.results.iter().zip(&batch) {
                    // DUPLICATE: an earlier attempt was recorded but its
                    // answer was lost with the leader; the payment stands.
                    assert!(
                        result.verdict == pb::Verdict::Accepted as i32
                            || result.verdict == pb::Verdict::Duplicate as i32,
                        "gateway {g} batch {b}: {result:?}"
                    );
                    acknowledged
                        .lock()
                        .expect("lock")
                        .push((Instant::now(), payment.clone()));
                }
            }
        }));
    }
    let deadline = Instant::now() + WAIT;
    while acknowledged.lock().expect("lock").len() < 30 {
        assert!(Instant::now() < deadline, "load did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let leader = must_leader(&addrs).await;
    eprintln!("--- kill -9 the leader (node {}) mid-load", leader + 1);
    procs.0[leader].kill().expect("SIGKILL");
    procs.0[leader].wait().expect("reap");
    let killed_at = Instant::now();

    for g in gateways {
        g.await.expect("gateway finished every batch");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let after = acknowledged.iter().filter(|(t, _)| *t > killed_at).count();
    eprintln!(
        "acknowledged {} payments, {after} after the kill",
        acknowledged.len()
    );
    assert_eq!(acknowledged.len() as u64, 2 * BATCHES_PER_GATEWAY * 3);
    assert!(after > 0, "writes continued on the new leader");

    eprintln!("--- restart the killed node: it catches up, and every node has every payment");
    procs.0[leader] = spawn(leader as u64 + 1, &addrs, dir.path(), false, &keys);
    must_be_ready(addrs[leader]).await;
    let index = must_converge(&addrs).await;
    eprintln!("all nodes at applied index {index} with the same digest");
    let payments: Vec<Payment> = acknowledged.into_iter().map(|(_, p)| p).collect();
    for addr in &addrs {
        must_find(*addr, &payments).await;
    }
    for child in &mut procs.0 {
        must_stop_gracefully(child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_node_that_lost_its_volume_does_not_found_a_second_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (issuer, keys, addrs, mut procs) = must_start_three(dir.path(), &[]).await;
    let mut wallet = test_wallet(&issuer, 40, 1_000);
    let payment = wallet.pay(10, &id("m"), [1; 32], now_ms()).expect("pay");
    must_submit(&addrs, 1, std::slice::from_ref(&payment)).await;

    eprintln!("--- node 1 (the bootstrapper) loses its volume and restarts with --bootstrap");
    procs.0[0].kill().expect("SIGKILL");
    procs.0[0].wait().expect("reap");
    std::fs::remove_dir_all(dir.path().join("node-1")).expect("wipe");
    procs.0[0] = spawn(1, &addrs, dir.path(), true, &keys);
    // Had it founded a cluster of its own, it would lead it alone, with a
    // log and digest of its own. Instead it follows the existing leader and
    // converges with the others (it is still a voter of that cluster).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = must_leader(&addrs).await;
    assert_ne!(leader, 0, "node 1 does not lead a cluster of its own");
    let index = must_converge(&addrs).await;
    eprintln!("all three at applied index {index}, same digest");
    must_find(addrs[0], std::slice::from_ref(&payment)).await;

    eprintln!("--- the other two keep the cluster and its payments");
    let survivors = [addrs[1], addrs[2]];
    must_leader(&survivors).await;
    must_find(addrs[1], std::slice::from_ref(&payment)).await;
    let more = wallet.pay(20, &id("m"), [2; 32], now_ms()).expect("pay");
    let response = must_submit(&survivors, 2, std::slice::from_ref(&more)).await;
    assert_eq!(response.results[0].verdict, pb::Verdict::Accepted as i32);
    for child in &mut procs.0 {
        must_stop_gracefully(child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_with_join_becomes_a_voter_and_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (issuer, keys, mut addrs, mut procs) = must_start_three(dir.path(), &[]).await;
    let mut wallet = test_wallet(&issuer, 50, 1_000);
    let first = wallet.pay(10, &id("m"), [1; 32], now_ms()).expect("pay");
    must_submit(&addrs, 1, std::slice::from_ref(&first)).await;

    eprintln!("--- node 4 starts empty with --join and the others as seeds");
    addrs.push(free_addr());
    procs
        .0
        .push(spawn_with(4, &addrs, dir.path(), false, &keys, &["--join"]));
    let deadline = Instant::now() + WAIT;
    loop {
        let ch = channel(addrs[0]).await.expect("connect node 1");
        let members = pb::admin_client::AdminClient::new(ch)
            .status(pb::StatusRequest {
                include_peers: false,
            })
            .await
            .expect("status")
            .into_inner()
            .members;
        if members.iter().any(|m| m.node_id == 4 && m.voter) {
            assert_eq!(members.iter().filter(|m| m.voter).count(), 4, "{members:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 never became a voter: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    eprintln!("--- it has the history, serves, and every node converges");
    must_be_ready(addrs[3]).await;
    must_find(addrs[3], std::slice::from_ref(&first)).await;
    let second = wallet.pay(20, &id("m"), [2; 32], now_ms()).expect("pay");
    let response = must_submit(&[addrs[3]], 2, std::slice::from_ref(&second)).await;
    assert_eq!(response.results[0].verdict, pb::Verdict::Accepted as i32);
    must_converge(&addrs).await;
    for child in &mut procs.0 {
        must_stop_gracefully(child);
    }
}
