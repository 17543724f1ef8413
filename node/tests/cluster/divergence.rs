//! A replica whose state digest diverges stops serving (DESIGN.md, state
//! machine rule 5), visibly, while the others carry on.

use spentledger_node::api::REASON_HEADER;
use spentledger_node::state_machine::{StateDigest, WriteSet};
use spentledger_node::storage::state_store::AppliedState;
use tonic_health::pb::health_check_response::ServingStatus;

use super::write_path::{must_scrape, must_series};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_digest_diverges_stops_serving_and_the_others_carry_on() {
    let mut cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;
    let now = now_ms();
    let first = wallet_issued_at(160, now - 60_000)
        .pay(10, &id("m"), [1; 32], now)
        .expect("pay");
    cluster.must_submit(std::slice::from_ref(&first)).await;
    cluster.must_converge().await;

    let victim = cluster.must_leader().await;
    eprintln!("--- the leader's stored digest is corrupted (a stand-in for a nondeterminism bug)");
    let store = cluster.nodes[&victim].state.current();
    let applied = store.applied_state().expect("applied state");
    store
        .commit(
            &WriteSet::default(),
            &AppliedState {
                digest: StateDigest([0xAA; 32]),
                ..applied
            },
        )
        .expect("overwrite the digest");

    eprintln!(
        "--- its audit finds every peer disagreeing at the same index: it quarantines itself"
    );
    let deadline = Instant::now() + WAIT;
    while !cluster.nodes[&victim].quarantine.is_set() {
        assert!(
            Instant::now() < deadline,
            "node {victim} never noticed the divergence"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = cluster.nodes.remove(&victim).expect("victim");
    eprintln!("--- its journal (logged with the quarantine) ends at the entry it applied");
    let journal = bad.journal.recent(usize::MAX);
    let last = journal.last().expect("a journal record");
    assert_eq!(last.log_id, applied.applied, "{journal:#?}");
    assert_eq!(
        last.digest_after, applied.digest,
        "the digest apply computed, not the corrupted one"
    );
    let addr = cluster.addrs[&victim];
    assert_eq!(health(addr, "").await, ServingStatus::NotServing as i32);
    assert_eq!(
        health(addr, "spentledger.liveness").await,
        ServingStatus::Serving as i32,
        "alive, so an operator can look at it"
    );
    let now = now_ms();
    let second = wallet_issued_at(161, now - 60_000)
        .pay(10, &id("m"), [2; 32], now)
        .expect("pay");
    let refused = settlement_client(addr)
        .await
        .submit_batch(pb::SubmitBatchRequest {
            batch_id: 1,
            payments: vec![(&second).into()],
        })
        .await
        .expect_err("a quarantined node refuses the client API");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(
        refused
            .metadata()
            .get(REASON_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("state-digest-mismatch")
    );
    let status = pb::admin_client::AdminClient::new(connect(addr).await)
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await
        .expect("admin status stays available")
        .into_inner();
    assert!(status.self_.expect("self").digest_mismatch);
    let text = must_scrape(&bad).await;
    assert_eq!(
        must_series(&text, "spentledger_state_digest_mismatch", &[]),
        1.0
    );

    eprintln!("--- the other two elect a leader among themselves and keep settling");
    // As a gateway does, retry while leadership settles: under a loaded
    // test machine the survivors' first leader may step down again before
    // the batch reaches it (UNAVAILABLE, not the leader).
    let deadline = Instant::now() + WAIT;
    let response = loop {
        let leader = cluster.must_leader().await;
        assert_ne!(leader, victim);
        match settlement_client(cluster.addrs[&leader])
            .await
            .submit_batch(pb::SubmitBatchRequest {
                batch_id: 2,
                payments: vec![(&second).into()],
            })
            .await
        {
            Ok(response) => break response.into_inner(),
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                eprintln!("    node {leader} is not leading any more ({status}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("survivors serve: {status}"),
        }
    };
    assert_eq!(response.results[0].verdict, pb::Verdict::Accepted as i32);
    cluster.must_converge().await;
    for node in cluster.nodes.values() {
        assert!(
            !node.quarantine.is_set(),
            "node {} agrees with a peer",
            node.id
        );
        assert_eq!(health(node.addr, "").await, ServingStatus::Serving as i32);
    }
    must_shut_down(bad).await;
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id).await;
    }
}
