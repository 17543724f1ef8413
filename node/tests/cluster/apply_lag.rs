//! Flow control: a leader holds new entries while a majority of its
//! followers is too far behind in applying (docs/NODE.md, "Apply lag").

use spentledger_node::consensus::apply_lag::ApplyLagLimits;

use super::write_path::{fresh_payments, must_scrape, must_series};
use super::*;

/// Amounts a load wallet tries, smallest first: whichever it can still pay
/// exactly with its unspent tokens.
const AMOUNTS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000];

/// One gateway's load: single-payment batches from its own wallets (seeds
/// `first_wallet..`), as fast as the leader answers, until `until`.
/// Returns how many payments were accepted.
async fn must_submit_until(addr: SocketAddr, first_wallet: u8, until: Instant) -> usize {
    let mut client = settlement_client(addr).await;
    let now = now_ms();
    let mut wallet_seed = first_wallet;
    let mut wallet = wallet_issued_at(wallet_seed, now - 60_000);
    let mut accepted = 0;
    let mut n = 0u32;
    while Instant::now() < until {
        n += 1;
        let mut challenge = [0u8; 32];
        challenge[..4].copy_from_slice(&n.to_be_bytes());
        challenge[4] = first_wallet;
        let payment = match AMOUNTS
            .iter()
            .find_map(|a| wallet.pay(*a, &id("m"), challenge, now_ms()).ok())
        {
            Some(p) => p,
            None => {
                wallet_seed += 1;
                wallet = wallet_issued_at(wallet_seed, now - 60_000);
                continue;
            }
        };
        let response = client
            .submit_batch(pb::SubmitBatchRequest {
                batch_id: u64::from(n),
                payments: vec![pb::Payment::from(&payment)],
            })
            .await
            .unwrap_or_else(|e| panic!("gateway {first_wallet}, batch {n}: {e}"))
            .into_inner();
        assert_eq!(
            response.results[0].verdict,
            pb::Verdict::Accepted as i32,
            "gateway {first_wallet}, batch {n}: {:?}",
            response.results[0]
        );
        accepted += 1;
    }
    accepted
}

/// How long after now every node's applied index reaches the leader's
/// committed index of this moment.
async fn must_time_until_all_applied(cluster: &Cluster, leader: u64) -> Duration {
    let started = Instant::now();
    let target = cluster.nodes[&leader]
        .raft
        .metrics()
        .borrow_watched()
        .local_committed
        .expect("the leader committed entries")
        .index;
    let deadline = started + Duration::from_secs(30);
    loop {
        let behind: Vec<(u64, u64)> = cluster
            .nodes
            .values()
            .map(|n| {
                let applied = n.raft.metrics().borrow_watched().last_applied;
                (n.id, applied.map_or(0, |id| id.index))
            })
            .filter(|(_, applied)| *applied < target)
            .collect();
        if behind.is_empty() {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "nodes still behind index {target} after 30 s: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_holds_new_entries_while_its_followers_apply_too_slowly() {
    const LAG_MS_MAX: u64 = 300;
    const APPLY_DELAY_MS_PER_ENTRY: u64 = 100;
    let faults = FaultNetwork::new(11);
    let api = ApiLimits {
        apply_lag: ApplyLagLimits {
            lag_ms_max: LAG_MS_MAX,
            poll_ms: 50,
        },
        ..test_api_limits()
    };
    let cluster = Cluster::start_full(3, api, None, Some(faults.clone())).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    eprintln!(
        "--- both followers apply slowly ({APPLY_DELAY_MS_PER_ENTRY} ms per entry); four gateways submit for 3 s"
    );
    for f in &followers {
        faults.apply_delay_ms(*f, APPLY_DELAY_MS_PER_ENTRY);
    }
    let until = Instant::now() + Duration::from_secs(3);
    let gateways: Vec<_> = (0..4u8)
        .map(|g| {
            tokio::spawn(must_submit_until(
                cluster.addrs[&leader],
                10 + g * 60,
                until,
            ))
        })
        .collect();
    let mut accepted = 0;
    for g in gateways {
        accepted += g.await.expect("gateway task");
    }
    assert!(accepted > 0, "the load made no progress");

    eprintln!("--- every node applied everything soon after the last answer ({accepted} payments)");
    // Unchecked, the leader answers at its own pace and the followers end
    // up tens of seconds behind (100 ms for each of hundreds of entries).
    // Held, they are at most the limit plus the entries already in flight
    // when the gate closed (a few, 100 ms each) behind.
    let catch_up = must_time_until_all_applied(&cluster, leader).await;
    eprintln!("    all applied {catch_up:?} after the last answer");
    assert!(
        catch_up < Duration::from_secs(3),
        "followers finished applying {catch_up:?} after the last answer: the leader did not wait for them"
    );
    let text = must_scrape(&cluster.nodes[&leader]).await;
    assert!(
        must_series(&text, "spentledger_apply_lag_holds_total", &[]) >= 1.0,
        "the leader never held an entry:\n{text}"
    );
    for f in &followers {
        let peer = f.to_string();
        must_series(
            &text,
            "spentledger_apply_lag_follower_ms",
            &[("peer", peer.as_str())],
        );
    }

    eprintln!("--- with the followers healthy again, a batch is answered at once");
    faults.heal();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let payment = fresh_payments(250, 1);
    let mut client = settlement_client(cluster.addrs[&leader]).await;
    let started = Instant::now();
    let response = client
        .submit_batch(pb::SubmitBatchRequest {
            batch_id: 1,
            payments: payment.iter().map(pb::Payment::from).collect(),
        })
        .await
        .expect("a batch after the followers caught up")
        .into_inner();
    assert_eq!(response.results[0].verdict, pb::Verdict::Accepted as i32);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a batch took {:?} once the followers caught up",
        started.elapsed()
    );
    cluster.must_converge().await;
}
