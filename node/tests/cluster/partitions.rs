//! Faults on the Raft network of an in-process cluster (the test-only fault
//! layer: partitions, one-way blocks, blocked RPC kinds, loss, delay): a
//! minority never settles, the majority keeps settling, and after healing
//! every node holds every acknowledged payment at the same digest.

use spentledger_node::network::fault_layer::RpcKind;
use spentledger_node::state_machine::LedgerRead;

use super::*;

/// How long a write on the minority side is given before it counts as
/// refused (the majority elects within a few election timeouts of 0.5-1 s).
const MINORITY_WAIT: Duration = Duration::from_secs(3);

fn submit_kind(payments: &[Payment]) -> pb::command::Kind {
    pb::command::Kind::Submit(pb::SubmitPayments {
        payments: payments.iter().map(pb::Payment::from).collect(),
    })
}

/// A write through node `id` as leader; `None` when it is not committed
/// within `wait` (no quorum) or the node is not the leader.
async fn try_write_on(
    cluster: &Cluster,
    id: u64,
    payments: &[Payment],
    wait: Duration,
) -> Option<Vec<PaymentOutcome>> {
    let cmd = pb::Command {
        stamp_ms: T0_MS + 3_600_000,
        kind: Some(submit_kind(payments)),
    };
    match tokio::time::timeout(
        wait,
        cluster.nodes[&id]
            .raft
            .client_write(ClientRequest::new(cmd)),
    )
    .await
    {
        Ok(Ok(response)) => match response.data {
            CommandOutcome::Submitted(outcomes) => Some(outcomes),
            other => panic!("submit gave {other:?}"),
        },
        _ => None,
    }
}

/// The leader among `ids`, as they see it (a leader elsewhere does not count).
async fn must_leader_among(cluster: &Cluster, ids: &[u64]) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        for id in ids {
            let m = cluster.nodes[id].raft.metrics().borrow_watched().clone();
            if m.current_leader == Some(*id) && m.state == openraft::ServerState::Leader {
                return *id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader among {ids:?} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A write the majority `ids` must commit (retrying while leadership moves).
async fn must_write_among(
    cluster: &Cluster,
    ids: &[u64],
    payments: &[Payment],
) -> Vec<PaymentOutcome> {
    let deadline = Instant::now() + WAIT;
    loop {
        let leader = must_leader_among(cluster, ids).await;
        if let Some(outcomes) =
            try_write_on(cluster, leader, payments, Duration::from_secs(5)).await
        {
            return outcomes;
        }
        assert!(
            Instant::now() < deadline,
            "the majority {ids:?} did not commit a write"
        );
    }
}

fn must_accept_all(outcomes: &[PaymentOutcome]) {
    for o in outcomes {
        assert!(matches!(o, PaymentOutcome::Accepted { .. }), "{o:?}");
    }
}

/// Whether node `id` holds the accepted payment.
fn holds(cluster: &Cluster, id: u64, payment: &Payment) -> bool {
    cluster.nodes[&id]
        .state
        .current()
        .accepted(&payment.tx_id())
        .expect("read")
        .is_some()
}

/// Every payment of `acknowledged` is recorded on node `id`.
fn must_hold_all<'a>(
    cluster: &Cluster,
    id: u64,
    acknowledged: impl IntoIterator<Item = &'a Payment>,
) {
    for p in acknowledged {
        assert!(
            holds(cluster, id, p),
            "node {id} lacks an acknowledged payment"
        );
    }
}

/// A cluster of `size` whose Raft messages pass through a fault network
/// (seeded with `seed`), with the test issuer's key registered.
async fn start_faulty(size: u64, seed: u64) -> (Cluster, FaultNetwork) {
    let faults = FaultNetwork::new(seed);
    let cluster = Cluster::start_full(size, test_api_limits(), None, Some(faults.clone())).await;
    cluster.must_write(register_key()).await;
    (cluster, faults)
}

fn payments(device: u8, n: u8) -> Vec<Payment> {
    let mut w = wallet(device);
    (0..n)
        .map(|k| w.pay(10, &id("m"), [k; 32], T0_MS + 600_000).expect("pay"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_leader_settles_nothing_while_the_majority_keeps_settling() {
    let (cluster, faults) = start_faulty(3, 7).await;
    let before = payments(60, 2);
    must_accept_all(&cluster.must_submit(&before).await);
    let old = cluster.must_leader().await;
    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();

    eprintln!("--- partition the leader (node {old}) away");
    faults.isolate(old, &others);
    let minority = payments(61, 1);
    assert!(
        try_write_on(&cluster, old, &minority, MINORITY_WAIT)
            .await
            .is_none(),
        "an isolated leader committed a write"
    );

    eprintln!("--- the majority elects a new leader and keeps settling");
    let during = payments(62, 2);
    must_accept_all(&must_write_among(&cluster, &others, &during).await);

    eprintln!("--- heal: one leader, every node converges, the minority write is gone");
    faults.heal();
    cluster.must_converge().await;
    for id in 1..=3 {
        must_hold_all(&cluster, id, before.iter().chain(&during));
        assert!(
            !holds(&cluster, id, &minority[0]),
            "node {id} holds the minority's write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_can_hear_but_not_speak_loses_leadership_and_nothing_else() {
    let (cluster, faults) = start_faulty(3, 11).await;
    let old = cluster.must_leader().await;
    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();

    eprintln!("--- one-way: node {old}'s messages are lost, messages to it arrive");
    faults.block_one_way(old, &others);
    let during = payments(63, 3);
    must_accept_all(&must_write_among(&cluster, &others, &during).await);

    eprintln!("--- heal and converge");
    faults.heal();
    cluster.must_converge().await;
    for id in 1..=3 {
        must_hold_all(&cluster, id, &during);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_split_two_three_settle_only_on_the_majority_side() {
    let (cluster, faults) = start_faulty(5, 13).await;
    let leader = cluster.must_leader().await;
    // The leader goes to the minority side, so leadership must move.
    let minority_side: Vec<u64> = vec![leader, if leader == 1 { 2 } else { 1 }];
    let majority_side: Vec<u64> = (1..=5).filter(|i| !minority_side.contains(i)).collect();

    eprintln!("--- partition {minority_side:?} | {majority_side:?}");
    faults.partition(&[&minority_side[..], &majority_side[..]]);
    let refused = payments(64, 1);
    assert!(
        try_write_on(&cluster, leader, &refused, MINORITY_WAIT)
            .await
            .is_none(),
        "the minority committed a write"
    );
    let settled = payments(65, 2);
    must_accept_all(&must_write_among(&cluster, &majority_side, &settled).await);

    eprintln!("--- heal and converge");
    faults.heal();
    cluster.must_converge().await;
    for id in 1..=5 {
        must_hold_all(&cluster, id, &settled);
        assert!(
            !holds(&cluster, id, &refused[0]),
            "node {id} holds the minority's write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_membership_change_completes_under_flapping_partitions_loss_and_delay() {
    let (mut cluster, faults) = start_faulty(3, 17).await;

    eprintln!("--- 10% loss, 5 ms delay, and node 3 may never ask for votes");
    faults.drop_per_mille(100);
    faults.delay_ms(5);
    faults.block_kind(3, RpcKind::Vote);

    eprintln!("--- node 3 flaps in and out of a partition every 300 ms");
    let flapping = {
        let faults = faults.clone();
        tokio::spawn(async move {
            for round in 0..12u32 {
                if round % 2 == 0 {
                    faults.isolate(3, &[1, 2]);
                } else {
                    faults.heal();
                    faults.drop_per_mille(100);
                    faults.delay_ms(5);
                    faults.block_kind(3, RpcKind::Vote);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    eprintln!("--- meanwhile node 4 joins as a learner and becomes a voter; payments keep coming");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = cluster._root.path().join("node-4");
    let node4 = start_node_with(
        4,
        dir.clone(),
        listener,
        test_api_limits(),
        None,
        Some(faults.clone()),
    )
    .await;
    cluster.addrs.insert(4, addr);
    cluster.dirs.insert(4, dir);
    cluster.nodes.insert(4, node4);
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let leader = must_leader_among(&cluster, &[1, 2]).await;
        let raft = &cluster.nodes[&leader].raft;
        let added = tokio::time::timeout(
            Duration::from_secs(5),
            raft.add_learner(4, BasicNode::new(addr.to_string()), true),
        )
        .await;
        if matches!(added, Ok(Ok(_))) {
            let voters = tokio::time::timeout(
                Duration::from_secs(5),
                raft.change_membership(openraft::ChangeMembers::AddVoterIds([4].into()), false),
            )
            .await;
            if matches!(voters, Ok(Ok(_))) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the membership change did not complete"
        );
    }
    for device in 66..69u8 {
        let batch = payments(device, 2);
        must_accept_all(&must_write_among(&cluster, &[1, 2], &batch).await);
        acknowledged.extend(batch);
    }
    flapping.await.expect("flapping task");

    eprintln!("--- heal: four voters, one state");
    faults.heal();
    cluster.must_converge().await;
    let voters: Vec<u64> = cluster.nodes[&1]
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1, 2, 3, 4]);
    for id in 1..=4 {
        must_hold_all(&cluster, id, &acknowledged);
    }
}

/// A submit entry of `count` payments of about 100 KB each that fail to
/// decode: cheap to apply, heavy to replicate.
fn heavy_entry(count: usize, salt: u8) -> pb::Command {
    let junk = pb::Payment {
        payee_id: format!("{salt}").repeat(100_000),
        ..Default::default()
    };
    pb::Command {
        stamp_ms: T0_MS + 3_600_000,
        kind: Some(pb::command::Kind::Submit(pb::SubmitPayments {
            payments: vec![junk; count],
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_many_big_entries_behind_catches_up() {
    let (cluster, faults) = start_faulty(3, 13).await;
    let leader = cluster.must_leader().await;
    let behind = (1..=3).find(|i| *i != leader).expect("a follower");
    let others: Vec<u64> = (1..=3).filter(|i| *i != behind).collect();

    // Ten entries of 12 MB and ten of 24 MB (the salt is one digit, then
    // two): 360 MB, far more than one Raft message may carry (64 MiB), and
    // some entries larger than half of a replication read. Counting entries
    // alone, the leader once built AppendEntries over the limit, the send
    // failed before a byte left, and the same range was retried forever.
    eprintln!("--- node {behind} is cut off while the majority commits 20 entries of 12-24 MB");
    faults.isolate(behind, &others);
    for salt in 0..20u8 {
        let written = tokio::time::timeout(
            WAIT,
            cluster.nodes[&leader]
                .raft
                .client_write(ClientRequest::new(heavy_entry(120, salt))),
        )
        .await;
        assert!(
            matches!(written, Ok(Ok(_))),
            "the majority did not commit heavy entry {salt}: {written:?}"
        );
    }

    eprintln!("--- heal: node {behind} receives the backlog and converges");
    faults.heal();
    cluster.must_converge().await;
}
