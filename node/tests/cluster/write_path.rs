//! The leader's write path: coalescing concurrent batches into shared Raft
//! entries, refusing overload with a retry hint, and the metrics it exports.

use std::collections::BTreeSet;
use std::sync::Arc;

use spentledger_node::api::{CoalescerLimits, RETRY_AFTER_HEADER, RETRY_PUSHBACK_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// `/metrics` of a node, as text.
pub(crate) async fn must_scrape(node: &LedgerNode) -> String {
    let addr = node.metrics_addr.expect("the test nodes serve metrics");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to metrics of node {}: {e}", node.id));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send scrape");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read scrape");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "scrape of node {} failed: {response}",
        node.id
    );
    response
}

/// The value of the series `name` whose labels include every `labels` pair;
/// `None` when there is no such series.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unparsable sample line {l:?}"))
        })
        .reduce(|a, b| a + b)
}

pub(crate) fn must_series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    series(text, name, labels)
        .unwrap_or_else(|| panic!("no series {name} with {labels:?} in:\n{text}"))
}

/// Payments from distinct fresh wallets (certificates issued a minute ago).
pub(crate) fn fresh_payments(first_wallet: u8, count: u8) -> Vec<Payment> {
    let now = now_ms();
    (0..count)
        .map(|k| {
            wallet_issued_at(first_wallet + k, now - 60_000)
                .pay(10, &id("m"), [first_wallet + k; 32], now)
                .expect("pay")
        })
        .collect()
}

/// Two payments of one fresh wallet spending the same tokens (to different
/// payees, with challenges `challenge` and `challenge + 1`): whichever the
/// log holds second is a double spend.
fn spent_twice(wallet: u8, challenge: u8) -> (Payment, Payment) {
    let now = now_ms();
    let mut w = wallet_issued_at(wallet, now - 60_000);
    let first = w.pay(40, &id("m"), [challenge; 32], now).expect("pay");
    let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let second = w
        .sign_payment(&tokens, 5, &id("m2"), [challenge + 1; 32], now)
        .expect("sign");
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_share_raft_entries_and_each_gets_its_own_verdicts() {
    let api = ApiLimits {
        batch_payments_max: 8,
        submit: CoalescerLimits {
            linger_ms: 300,
            entry_payments_max: 4,
            ..CoalescerLimits::default()
        },
        ..ApiLimits::default()
    };
    let cluster = Cluster::start_with(3, api).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;

    eprintln!("--- six gateways submit at once, two of them spending the same tokens");
    let (first, second) = spent_twice(120, 1);
    let mut batches: Vec<Vec<Payment>> = fresh_payments(121, 4)
        .into_iter()
        .map(|p| vec![p])
        .collect();
    batches.push(vec![first.clone()]);
    batches.push(vec![second.clone()]);
    let barrier = Arc::new(tokio::sync::Barrier::new(batches.len()));
    let mut tasks = Vec::new();
    for (n, batch) in batches.iter().enumerate() {
        let mut client = settlement_client(cluster.addrs[&leader]).await;
        let request = pb::SubmitBatchRequest {
            batch_id: n as u64,
            payments: batch.iter().map(pb::Payment::from).collect(),
        };
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .submit_batch(request)
                .await
                .unwrap_or_else(|e| panic!("batch {n}: {e}"))
                .into_inner()
        }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("gateway task"));
    }

    eprintln!("--- each gateway gets its own payments' verdicts, in its order");
    let mut verdict_of = BTreeMap::new();
    for (n, (response, batch)) in responses.iter().zip(&batches).enumerate() {
        assert_eq!(response.batch_id, n as u64);
        assert_eq!(response.results.len(), batch.len(), "batch {n}");
        for (result, payment) in response.results.iter().zip(batch) {
            assert_eq!(
                result.tx_id,
                payment.tx_id().0.to_vec(),
                "batch {n} got another gateway's result"
            );
            verdict_of.insert(payment.tx_id(), result.verdict);
        }
    }
    for p in batches.iter().flatten() {
        if p.tx_id() != first.tx_id() && p.tx_id() != second.tx_id() {
            assert_eq!(verdict_of[&p.tx_id()], pb::Verdict::Accepted as i32);
        }
    }
    let pair: BTreeSet<i32> = [verdict_of[&first.tx_id()], verdict_of[&second.tx_id()]]
        .into_iter()
        .collect();
    assert_eq!(
        pair,
        BTreeSet::from([
            pb::Verdict::Accepted as i32,
            pb::Verdict::DoubleSpend as i32
        ]),
        "exactly one of two conflicting payments wins, wherever they were coalesced"
    );

    eprintln!("--- six batches took fewer than six entries, and no entry exceeded 4 payments");
    let indexes: BTreeSet<u64> = responses.iter().map(|r| r.log_index).collect();
    assert!(
        indexes.len() < batches.len(),
        "batches were not coalesced: entries {indexes:?}"
    );
    assert!(
        indexes.len() >= 2,
        "6 payments with at most 4 per entry need two entries: {indexes:?}"
    );
    let text = must_scrape(&cluster.nodes[&leader]).await;
    let entries = must_series(&text, "spentledger_entry_payments_count", &[]);
    let payments = must_series(&text, "spentledger_entry_payments_sum", &[]);
    assert_eq!(payments, 6.0, "every proposed payment counted once");
    assert!(entries < 6.0, "entries proposed: {entries}");
    assert_eq!(
        must_series(&text, "spentledger_entry_payments_bucket", &[("le", "4")]),
        entries,
        "every entry holds at most 4 payments"
    );

    eprintln!("--- one batch of 7, larger than an entry, goes as consecutive entries of 4 and 3");
    let (spend, respend) = spent_twice(150, 3);
    // The spend lands in the first part and its double in the second: the
    // parts keep the batch's order on the log.
    let mut batch = fresh_payments(151, 2);
    batch.push(spend.clone());
    batch.extend(fresh_payments(153, 3));
    batch.push(respend.clone());
    let mut client = settlement_client(cluster.addrs[&leader]).await;
    let response = client
        .submit_batch(pb::SubmitBatchRequest {
            batch_id: 77,
            payments: batch.iter().map(pb::Payment::from).collect(),
        })
        .await
        .expect("a batch larger than an entry")
        .into_inner();
    assert_eq!(response.results.len(), batch.len());
    for (n, (result, payment)) in response.results.iter().zip(&batch).enumerate() {
        assert_eq!(
            result.tx_id,
            payment.tx_id().0.to_vec(),
            "result {n} out of order"
        );
        let expected = if payment.tx_id() == respend.tx_id() {
            pb::Verdict::DoubleSpend
        } else {
            pb::Verdict::Accepted
        };
        assert_eq!(result.verdict, expected as i32, "payment {n} of the batch");
    }
    let text = must_scrape(&cluster.nodes[&leader]).await;
    let entries_after = must_series(&text, "spentledger_entry_payments_count", &[]);
    assert_eq!(
        entries_after,
        entries + 2.0,
        "7 payments, 4 per entry: two entries"
    );
    assert_eq!(
        must_series(&text, "spentledger_entry_payments_sum", &[]),
        13.0
    );
    assert_eq!(
        must_series(&text, "spentledger_entry_payments_bucket", &[("le", "4")]),
        entries_after,
        "no part exceeded 4 payments"
    );
    assert!(
        response.log_index > *indexes.last().expect("an entry"),
        "the batch's log index is its last part's"
    );
    cluster.must_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_refused_with_a_retry_hint_and_drains() {
    let api = ApiLimits {
        batch_payments_max: 8,
        submit: CoalescerLimits {
            queue_payments_max: 8,
            linger_ms: 300,
            entries_in_flight_max: 1,
            retry_after_ms: 150,
            ..CoalescerLimits::default()
        },
        ..ApiLimits::default()
    };
    let cluster = Cluster::start_with(3, api).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;

    eprintln!("--- five gateways send 4 payments each at once; only 8 payments fit");
    let batches: Vec<Vec<Payment>> = (0..5u8).map(|k| fresh_payments(130 + 4 * k, 4)).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(batches.len()));
    let mut tasks = Vec::new();
    for (n, batch) in batches.iter().enumerate() {
        let mut client = settlement_client(cluster.addrs[&leader]).await;
        let request = pb::SubmitBatchRequest {
            batch_id: n as u64,
            payments: batch.iter().map(pb::Payment::from).collect(),
        };
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client.submit_batch(request).await
        }));
    }
    let mut refused = Vec::new();
    let mut served = 0;
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.expect("gateway task") {
            Ok(response) => {
                served += 1;
                assert!(
                    response
                        .get_ref()
                        .results
                        .iter()
                        .all(|r| r.verdict == pb::Verdict::Accepted as i32)
                );
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::ResourceExhausted,
                    "batch {n}: {status}"
                );
                for header in [RETRY_PUSHBACK_HEADER, RETRY_AFTER_HEADER] {
                    assert_eq!(
                        status.metadata().get(header).and_then(|v| v.to_str().ok()),
                        Some("150"),
                        "batch {n}: retry hint {header}"
                    );
                }
                refused.push(n);
            }
        }
    }
    assert!(served >= 1, "some batches are served");
    assert!(
        !refused.is_empty(),
        "20 payments against a budget of 8 must refuse some"
    );
    eprintln!("--- refused: {refused:?}; they retry after the hint and are served");
    for n in &refused {
        let request = pb::SubmitBatchRequest {
            batch_id: *n as u64,
            payments: batches[*n].iter().map(pb::Payment::from).collect(),
        };
        let deadline = Instant::now() + WAIT;
        let mut client = settlement_client(cluster.addrs[&leader]).await;
        loop {
            match client.submit_batch(request.clone()).await {
                Ok(response) => {
                    assert!(
                        response
                            .get_ref()
                            .results
                            .iter()
                            .all(|r| r.verdict == pb::Verdict::Accepted as i32)
                    );
                    break;
                }
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    assert!(Instant::now() < deadline, "batch {n} never admitted");
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                Err(status) => panic!("batch {n} retry: {status}"),
            }
        }
    }
    let text = must_scrape(&cluster.nodes[&leader]).await;
    assert!(must_series(&text, "spentledger_overload_refusals_total", &[]) >= refused.len() as f64);
    assert_eq!(
        must_series(&text, "spentledger_submit_queue_payments", &[]),
        0.0,
        "the admission budget is fully returned"
    );
    cluster.must_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_exports_verdicts_raft_progress_and_storage_sizes() {
    let cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;
    let now = now_ms();
    let mut w = wallet_issued_at(150, now - 60_000);
    let good = w.pay(10, &id("m"), [1; 32], now).expect("pay");
    let mut forged = w.pay(20, &id("m"), [2; 32], now).expect("pay");
    forged.amount += 1;
    let response = settlement_client(cluster.addrs[&leader])
        .await
        .submit_batch(pb::SubmitBatchRequest {
            batch_id: 1,
            payments: vec![(&good).into(), (&forged).into()],
        })
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(response.results[0].verdict, pb::Verdict::Accepted as i32);
    assert_eq!(response.results[1].verdict, pb::Verdict::Rejected as i32);
    let (applied, _) = cluster.must_converge().await;

    eprintln!("--- every node counts the applied verdict and reports Raft progress");
    for node in cluster.nodes.values() {
        let text = must_scrape(node).await;
        let me = node.id.to_string();
        let node_label = [("node_id", me.as_str())];
        assert_eq!(
            must_series(
                &text,
                "spentledger_verdicts_total",
                &[
                    ("node_id", me.as_str()),
                    ("stage", "apply"),
                    ("verdict", "VERDICT_ACCEPTED")
                ]
            ),
            1.0,
            "node {me}"
        );
        assert_eq!(
            must_series(&text, "spentledger_raft_applied_index", &node_label),
            applied as f64
        );
        assert_eq!(
            must_series(&text, "spentledger_raft_leader_id", &node_label),
            leader as f64
        );
        assert!(must_series(&text, "spentledger_raft_term", &node_label) >= 1.0);
        assert!(must_series(&text, "spentledger_apply_seconds_count", &node_label) >= 1.0);
        // The leader applies its own entry with the verdicts its ingress
        // computed (the forged payment was never proposed); followers validate.
        let prechecked = series(
            &text,
            "spentledger_apply_prechecked_payments_total",
            &node_label,
        )
        .unwrap_or(0.0);
        let expected = if node.id == leader { 1.0 } else { 0.0 };
        assert_eq!(prechecked, expected, "node {me}: prechecked payments");
        // Followers decode the entry's payment straight from its bytes.
        let direct = series(
            &text,
            "spentledger_apply_direct_decoded_payments_total",
            &node_label,
        )
        .unwrap_or(0.0);
        assert_eq!(
            direct,
            1.0 - expected,
            "node {me}: directly decoded payments"
        );
        // Where a submit's time went, on the node that answered it: one
        // batch queued, checked and proposed; its answer took at least as
        // long as its entry's outcome.
        let staged = [
            "spentledger_submit_seconds_count",
            "spentledger_submit_queue_seconds_count",
            "spentledger_entry_outcome_seconds_count",
        ]
        .map(|name| series(&text, name, &node_label).unwrap_or(0.0));
        assert_eq!(
            staged, [expected; 3],
            "node {me}: submit, queue and entry-outcome histograms"
        );
        if node.id == leader {
            let submit = must_series(&text, "spentledger_submit_seconds_sum", &node_label);
            let outcome = must_series(&text, "spentledger_entry_outcome_seconds_sum", &node_label);
            assert!(
                submit >= outcome && outcome > 0.0,
                "node {me}: answered after {submit} s, entry outcome after {outcome} s"
            );
        }
        let state_bytes = must_series(&text, "spentledger_rocksdb_sst_bytes", &[("db", "state")])
            + must_series(
                &text,
                "spentledger_rocksdb_memtable_bytes",
                &[("db", "state")],
            );
        assert!(state_bytes > 0.0, "node {me} state database size");
        for db in ["state", "raft_log"] {
            for memory in [
                "spentledger_rocksdb_table_readers_bytes",
                "spentledger_rocksdb_block_cache_bytes",
            ] {
                assert!(must_series(&text, memory, &[("db", db)]) >= 0.0);
            }
        }
        // The integration test binary links jemalloc too (the node crate
        // depends on it unprefixed), so the heap gauges are there.
        let heap_allocated = must_series(&text, "spentledger_heap_allocated_bytes", &[]);
        let heap_resident = must_series(&text, "spentledger_heap_resident_bytes", &[]);
        assert!(
            heap_allocated > 0.0 && heap_resident >= heap_allocated,
            "node {me}: heap allocated {heap_allocated} resident {heap_resident}"
        );
        let ingress_rejects = series(
            &text,
            "spentledger_verdicts_total",
            &[("stage", "ingress"), ("verdict", "VERDICT_REJECTED")],
        );
        if node.id == leader {
            assert_eq!(
                ingress_rejects,
                Some(1.0),
                "the receiving node counts its ingress reject"
            );
            for peer in cluster.nodes.keys().filter(|id| **id != leader) {
                let lag = must_series(
                    &text,
                    "spentledger_raft_replication_lag_entries",
                    &[("peer", peer.to_string().as_str())],
                );
                assert!(lag >= 0.0);
            }
        } else {
            assert_eq!(
                ingress_rejects, None,
                "node {me} never saw the forged payment"
            );
        }
    }
}
