//! In-process clusters over real gRPC on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::type_config::async_runtime::WatchReceiver;
use spentledger_node::api::{
    ApiLimits, FORWARD_HOPS_HEADER, FORWARD_HOPS_MAX, LEADER_ADDR_HEADER, LEADER_ID_HEADER,
};
use spentledger_node::consensus::ClientRequest;
use spentledger_node::ledger_node::{LedgerNode, NodeOptions, RaftTimings};
use spentledger_node::network::ClusterId;
use spentledger_node::network::fault_layer::FaultNetwork;
use spentledger_node::security::NodeTls;
use spentledger_node::state_machine::{CommandOutcome, LedgerConfig, PaymentOutcome};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, Verdict, pb};
use tokio::net::TcpListener;

mod apply_lag;
mod bootstrap;
mod divergence;
mod durability;
mod identity;
mod partitions;
mod tls;
mod write_path;

const T0_MS: u64 = 1_767_225_600_000;
const WAIT: Duration = Duration::from_secs(20);

fn timings() -> RaftTimings {
    RaftTimings {
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1_000,
        snapshot_after_entries: 8,
        logs_kept_after_snapshot: 2,
    }
}

struct Cluster {
    _root: tempfile::TempDir,
    dirs: BTreeMap<u64, PathBuf>,
    addrs: BTreeMap<u64, SocketAddr>,
    nodes: BTreeMap<u64, LedgerNode>,
}

async fn start_node(id: u64, dir: PathBuf, listener: TcpListener) -> LedgerNode {
    start_node_with(id, dir, listener, test_api_limits(), None, None).await
}

fn test_api_limits() -> ApiLimits {
    ApiLimits {
        batch_payments_max: 8,
        stream_batches_max: 3,
        ..ApiLimits::default()
    }
}

/// Starts a node with the given API limits, serving metrics on a loopback port.
async fn start_node_with(
    id: u64,
    dir: PathBuf,
    listener: TcpListener,
    api: ApiLimits,
    tls: Option<NodeTls>,
    faults: Option<FaultNetwork>,
) -> LedgerNode {
    let metrics_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback for metrics");
    let dir_for_id = dir.clone();
    LedgerNode::start(NodeOptions {
        node_id: id,
        data_dir: dir,
        listener,
        timings: timings(),
        ledger: LedgerConfig {
            validation_threads: 1,
            certificate_cache_entries: 1_024,
            ..LedgerConfig::default()
        },
        api,
        metrics_listener: Some(metrics_listener),
        health_listener: Some(
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback for health"),
        ),
        drain_timeout_ms: 5_000,
        digest_audit_interval_ms: 300,
        cluster_id: cluster_id_of(&dir_for_id),
        tls,
        faults,
    })
    .await
    .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"))
}

/// A test cluster's id: the name of its temporary directory (the parent of
/// its nodes' directories). Clusters of tests running side by side in this
/// process each have their own, so a port one of them freed and another
/// reused never carries one cluster's Raft messages into the other.
fn cluster_id_of(node_dir: &std::path::Path) -> ClusterId {
    let name = node_dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .expect("node directories live in the cluster's temporary directory");
    ClusterId::new(name).unwrap_or_else(|e| panic!("cluster id from {name:?}: {e}"))
}

/// Deletes a stopped node's data directory. Shutdown returns only once
/// the node's databases are closed and its snapshot builds finished, so
/// nothing writes there any more: a failure here is a failure of that
/// contract.
fn must_wipe(dir: &std::path::Path) {
    std::fs::remove_dir_all(dir)
        .unwrap_or_else(|e| panic!("wipe {} right after its node stopped: {e}", dir.display()));
}

/// Graceful shutdown, bounded: a node that does not stop fails the test.
async fn must_shut_down(node: LedgerNode) {
    let id = node.id;
    tokio::time::timeout(Duration::from_secs(60), node.shutdown())
        .await
        .unwrap_or_else(|_| panic!("node {id} did not shut down within 60 s"));
}

/// A gRPC channel to a node of the test cluster.
async fn connect(addr: SocketAddr) -> tonic::transport::Channel {
    // Every call gets a deadline: a stuck call fails the test with its
    // phase instead of hanging the suite.
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid address")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Logs to the test's output; `RUST_LOG` selects (default: warnings).
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl Cluster {
    async fn start(size: u64) -> Cluster {
        Cluster::start_with(size, test_api_limits()).await
    }

    async fn start_with(size: u64, api: ApiLimits) -> Cluster {
        Cluster::start_full(size, api, None, None).await
    }

    /// `tls`: every node serves mutual TLS with this material; `faults`:
    /// every node's Raft messages pass through this fault layer.
    async fn start_full(
        size: u64,
        api: ApiLimits,
        tls: Option<NodeTls>,
        faults: Option<FaultNetwork>,
    ) -> Cluster {
        init_logging();
        let root = tempfile::tempdir().expect("temp dir");
        let mut cluster = Cluster {
            dirs: BTreeMap::new(),
            addrs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            _root: root,
        };
        for id in 1..=size {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let dir = cluster._root.path().join(format!("node-{id}"));
            cluster
                .addrs
                .insert(id, listener.local_addr().expect("addr"));
            cluster.dirs.insert(id, dir.clone());
            cluster.nodes.insert(
                id,
                start_node_with(id, dir, listener, api, tls.clone(), faults.clone()).await,
            );
        }
        let members: BTreeMap<u64, BasicNode> = cluster
            .addrs
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.to_string())))
            .collect();
        cluster.nodes[&1]
            .raft
            .initialize(members)
            .await
            .expect("initialize");
        cluster
    }

    async fn must_leader(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            for node in self.nodes.values() {
                let m = node.raft.metrics().borrow_watched().clone();
                if m.current_leader == Some(node.id) {
                    return node.id;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes through the current leader, retrying while leadership moves
    /// (ForwardToLeader), as a client does: writes are idempotent by tx_id.
    async fn must_write(&self, kind: pb::command::Kind) -> CommandOutcome {
        let cmd = pb::Command {
            stamp_ms: T0_MS + 3_600_000,
            kind: Some(kind),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.must_leader().await;
            match self.nodes[&leader]
                .raft
                .client_write(ClientRequest::new(cmd.clone()))
                .await
            {
                Ok(response) => return response.data,
                Err(e) if e.forward_to_leader().is_some() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write on leader {leader}: {e}"),
            }
        }
    }

    async fn must_submit(&self, payments: &[Payment]) -> Vec<PaymentOutcome> {
        let kind = pb::command::Kind::Submit(pb::SubmitPayments {
            payments: payments.iter().map(pb::Payment::from).collect(),
        });
        match self.must_write(kind).await {
            CommandOutcome::Submitted(outcomes) => outcomes,
            other => panic!("submit gave {other:?}"),
        }
    }

    /// Every live node reaches the leader's applied index, and at the same
    /// applied index every node has the same digest.
    async fn must_converge(&self) -> (u64, String) {
        let leader = self.must_leader().await;
        // The leader's commit index, not its applied one: an answer leaves
        // before the apply call that produced it returns (docs/NODE.md), so
        // an acknowledged entry may be committed and not yet counted applied.
        let target = self.nodes[&leader]
            .raft
            .metrics()
            .borrow_watched()
            .local_committed
            .expect("leader committed something")
            .index;
        let deadline = Instant::now() + WAIT;
        loop {
            let mut digests = BTreeMap::new();
            for node in self.nodes.values() {
                let applied = node
                    .state
                    .current()
                    .applied_state()
                    .expect("read applied state");
                let index = applied.applied.map_or(0, |id| id.index);
                digests.insert(node.id, (index, applied.digest.to_hex()));
            }
            let indexes: std::collections::BTreeSet<u64> = digests.values().map(|d| d.0).collect();
            if indexes.len() == 1 && indexes.iter().all(|i| *i >= target) {
                let first = digests.values().next().expect("nodes").clone();
                if digests.values().any(|d| d != &first) {
                    // Which entry, and how: each node's last steps.
                    for node in self.nodes.values() {
                        eprintln!("--- node {} applied:\n{}", node.id, node.journal.render(64));
                    }
                    panic!("a node diverged at the same index: {digests:?}");
                }
                return first;
            }
            assert!(
                Instant::now() < deadline,
                "no convergence to {target} within {WAIT:?}: {digests:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("running node");
        must_shut_down(node).await;
    }
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("valid id")
}

fn issuer() -> Issuer {
    Issuer::from_seed(id("bank"), [9; 32], 0, u64::MAX)
}

fn wallet(n: u8) -> Wallet {
    wallet_issued_at(n, T0_MS)
}

/// The node's ingress checks use its real clock: certificates for gRPC tests
/// are issued a minute ago.
fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("millis fit u64")
}

fn wallet_issued_at(n: u8, issued_at_ms: u64) -> Wallet {
    issuer()
        .fund_device(
            &IssuancePolicy::default(),
            [n; 32],
            &Funding::eur(id(&format!("w{n}")), 3_000, issued_at_ms),
        )
        .expect("issue")
}

fn register_key() -> pb::command::Kind {
    pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand {
        key: Some((&issuer().issuer_key()).into()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_verdicts_and_keep_settling_without_their_leader() {
    let mut cluster = Cluster::start(3).await;
    eprintln!("--- a leader is elected");
    let leader = cluster.must_leader().await;
    assert!(matches!(
        cluster.must_write(register_key()).await,
        CommandOutcome::KeyRegistered(Ok(_))
    ));

    eprintln!("--- a batch with a double spend: every node gives the same verdicts");
    let mut w = wallet(1);
    let p = w.pay(120, &id("m"), [1; 32], T0_MS + 60_000).expect("pay");
    let tokens: Vec<u32> = p.inputs.iter().map(|i| i.leaf.index).collect();
    let again = w
        .sign_payment(&tokens, 7, &id("m2"), [2; 32], T0_MS + 60_000)
        .expect("sign");
    let outcomes = cluster.must_submit(&[p.clone(), again]).await;
    let verdicts: Vec<Verdict> = outcomes.iter().map(PaymentOutcome::verdict).collect();
    assert_eq!(verdicts, vec![Verdict::Accepted, Verdict::DoubleSpend]);
    let (index, digest) = cluster.must_converge().await;
    eprintln!("converged at {index} with digest {digest}");

    eprintln!(
        "--- the leader (node {leader}) stops; the other two elect a new one and keep settling"
    );
    cluster.stop(leader).await;
    let new_leader = cluster.must_leader().await;
    assert_ne!(new_leader, leader);
    let q = wallet(2)
        .pay(33, &id("m"), [3; 32], T0_MS + 60_000)
        .expect("pay");
    let outcomes = cluster.must_submit(&[q, p.clone()]).await;
    let verdicts: Vec<Verdict> = outcomes.iter().map(PaymentOutcome::verdict).collect();
    assert_eq!(
        verdicts,
        vec![Verdict::Accepted, Verdict::Duplicate],
        "nothing acknowledged was lost"
    );
    cluster.must_converge().await;
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;
    eprintln!("--- settle enough entries to snapshot and purge the logs");
    for n in 0..20u8 {
        let p = wallet(10 + n)
            .pay(5, &id("m"), [n; 32], T0_MS + 60_000)
            .expect("pay");
        let outcomes = cluster.must_submit(&[p]).await;
        assert_eq!(outcomes[0].verdict(), Verdict::Accepted);
    }
    let leader = cluster.must_leader().await;
    let deadline = Instant::now() + WAIT;
    while cluster.nodes[&leader]
        .raft
        .metrics()
        .borrow_watched()
        .purged
        .is_none()
    {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    eprintln!("--- node {victim} stops and loses its disk; settling goes on");
    cluster.stop(victim).await;
    must_wipe(&cluster.dirs[&victim]);
    for n in 20..24u8 {
        let p = wallet(10 + n)
            .pay(5, &id("m"), [n; 32], T0_MS + 60_000)
            .expect("pay");
        cluster.must_submit(&[p]).await;
    }

    // A node that lost its disk never comes back under its old id (its votes
    // and acknowledged entries are gone): it joins afresh as node 4.
    eprintln!(
        "--- the machine returns empty as node 4: learner, snapshot, then voter in place of {victim}"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = cluster._root.path().join("node-4");
    cluster.dirs.insert(4, dir.clone());
    cluster.addrs.insert(4, addr);
    cluster.nodes.insert(4, start_node(4, dir, listener).await);
    let raft = &cluster.nodes[&leader].raft;
    raft.add_learner(4, BasicNode::new(addr.to_string()), true)
        .await
        .expect("add learner");
    let voters: std::collections::BTreeSet<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    raft.change_membership(voters, false)
        .await
        .expect("replace the lost member");
    let p = wallet(99)
        .pay(5, &id("m"), [99; 32], T0_MS + 60_000)
        .expect("pay");
    cluster.must_submit(&[p]).await;
    let (index, _) = cluster.must_converge().await;
    assert!(index >= 26, "caught up to {index}");
    let metrics = cluster.nodes[&4].raft.metrics().borrow_watched().clone();
    assert!(
        metrics.snapshot.is_some(),
        "node 4 caught up by installing a snapshot"
    );
    let installed = std::fs::read_dir(cluster.dirs[&4].join("state/snapshots"))
        .expect("snapshots dir")
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "snap"));
    assert!(installed, "the installed snapshot is kept on disk");
    let membership = metrics
        .membership_config
        .membership()
        .voter_ids()
        .collect::<Vec<_>>();
    assert!(
        membership.contains(&4) && !membership.contains(&victim),
        "{membership:?}"
    );
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id).await;
    }
}

async fn settlement_client(
    addr: SocketAddr,
) -> pb::settlement_client::SettlementClient<tonic::transport::Channel> {
    pb::settlement_client::SettlementClient::new(connect(addr).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_submit_over_grpc_through_any_node() {
    let cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let now = now_ms();
    let mut w = wallet_issued_at(40, now - 60_000);
    let good = w.pay(75, &id("m"), [1; 32], now).expect("pay");
    let mut forged = w.pay(20, &id("m"), [2; 32], now).expect("pay");
    forged.amount += 1;
    let tokens: Vec<u32> = good.inputs.iter().map(|i| i.leaf.index).collect();
    let twice = w
        .sign_payment(&tokens, 9, &id("m2"), [3; 32], now)
        .expect("sign");
    let mut malformed = pb::Payment::from(&good);
    malformed.device_signature.truncate(5);
    let request = pb::SubmitBatchRequest {
        batch_id: 7,
        payments: vec![(&good).into(), (&forged).into(), (&twice).into(), malformed],
    };

    eprintln!(
        "--- a request that already used its forwarding hop is answered with the leader's identity"
    );
    let mut hopped = tonic::Request::new(request.clone());
    hopped.metadata_mut().insert(
        FORWARD_HOPS_HEADER,
        FORWARD_HOPS_MAX.to_string().parse().expect("ascii"),
    );
    let status = settlement_client(cluster.addrs[&follower])
        .await
        .submit_batch(hopped)
        .await
        .expect_err("no second hop");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status
            .metadata()
            .get(LEADER_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(leader.to_string().as_str())
    );
    assert_eq!(
        status
            .metadata()
            .get(LEADER_ADDR_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(cluster.addrs[&leader].to_string().as_str())
    );

    eprintln!("--- the leader gives per-item verdicts in order");
    let mut client = settlement_client(cluster.addrs[&leader]).await;
    let response = client
        .submit_batch(request.clone())
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(response.batch_id, 7);
    let verdicts: Vec<i32> = response.results.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        vec![
            pb::Verdict::Accepted as i32,
            pb::Verdict::Rejected as i32,
            pb::Verdict::DoubleSpend as i32,
            pb::Verdict::Rejected as i32,
        ]
    );
    assert_eq!(
        response.results[1].reject_reason,
        pb::RejectReason::AmountMismatch as i32
    );
    assert_eq!(
        response.results[3].reject_reason,
        pb::RejectReason::Malformed as i32
    );
    assert!(
        response.results[3].detail.contains("device_signature"),
        "{}",
        response.results[3].detail
    );
    let evidence = response.results[2].double_spend.as_ref().expect("evidence");
    spentledger_protocol::DoubleSpendEvidence::try_from(evidence)
        .expect("evidence decodes")
        .verify(&issuer().issuer_key().public_key)
        .expect("evidence verifies offline");

    eprintln!("--- a linearizable read right after the answer sees the payment");
    // Answers leave before the state write (docs/NODE.md, apply); a
    // linearizable read waits for the write all the same.
    let got = client
        .get_payment(pb::GetPaymentRequest {
            tx_id: good.tx_id().0.to_vec(),
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await
        .expect("get payment")
        .into_inner();
    assert!(got.found, "the answered payment is not readable yet");
    assert_eq!(got.receipt, response.results[0].receipt);
    let recorded = spentledger_protocol::Payment::try_from(got.payment.as_ref().expect("payment"))
        .expect("the recorded payment decodes");
    assert_eq!(
        recorded,
        good.clone().into_recorded(),
        "recorded as submitted, without Merkle paths (PROTOCOL.md §9.1)"
    );
    assert!(good.inputs.iter().all(|i| !i.path.is_empty()));

    eprintln!("--- a retry is a duplicate with the original receipt");
    let retry = client
        .submit_batch(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry.results[0].verdict, pb::Verdict::Duplicate as i32);
    assert_eq!(retry.results[0].receipt, response.results[0].receipt);

    eprintln!("--- a follower forwards a gateway's batch to the leader and relays the verdicts");
    let forwarded = settlement_client(cluster.addrs[&follower])
        .await
        .submit_batch(request.clone())
        .await
        .expect("forwarded by the follower")
        .into_inner();
    assert_eq!(forwarded.results[0].verdict, pb::Verdict::Duplicate as i32);
    assert_eq!(forwarded.results[0].receipt, response.results[0].receipt);
    let mut w3 = wallet_issued_at(43, now - 60_000);
    let fresh = w3.pay(15, &id("m"), [4; 32], now).expect("pay");
    let via_follower = settlement_client(cluster.addrs[&follower])
        .await
        .submit_batch(pb::SubmitBatchRequest {
            batch_id: 9,
            payments: vec![(&fresh).into()],
        })
        .await
        .expect("forwarded")
        .into_inner();
    assert_eq!(
        (via_follower.batch_id, via_follower.results[0].verdict),
        (9, pb::Verdict::Accepted as i32)
    );

    eprintln!("--- limits: an oversized batch is refused with a clear error");
    let too_many = pb::SubmitBatchRequest {
        batch_id: 8,
        payments: vec![pb::Payment::from(&good); 9],
    };
    let status = client
        .submit_batch(too_many)
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("at most 8"),
        "{}",
        status.message()
    );

    eprintln!("--- nullifiers, certificate state and the revocation feed reflect the double spend");
    let mut unknown = good.nullifiers()[0].0;
    unknown[0] ^= 0xff;
    let checks = client
        .check_nullifiers(pb::CheckNullifiersRequest {
            nullifiers: vec![good.nullifiers()[0].0.to_vec(), unknown.to_vec()],
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await
        .expect("check")
        .into_inner()
        .statuses;
    assert!(checks[0].spent && !checks[0].held && checks[0].tx_id == good.tx_id().0.to_vec());
    assert!(!checks[1].spent);
    let cert_id = good.certificate.cert_id();
    let state = client
        .get_certificate(pb::GetCertificateRequest {
            cert_id: cert_id.0.to_vec(),
            consistency: pb::ReadConsistency::Stale as i32,
        })
        .await
        .expect("certificate")
        .into_inner();
    let state = state.state.expect("found");
    assert_eq!((state.spent_value, state.revoked), (75, true));
    assert_eq!(
        state.revocation_reason,
        pb::RevocationReason::DoubleSpend as i32
    );
    let listed = client
        .list_revocations(pb::ListRevocationsRequest {
            after_sequence: 0,
            limit: 0,
            consistency: 0,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.last_sequence, 1);
    assert_eq!(listed.revocations[0].cert_id, cert_id.0.to_vec());

    eprintln!(
        "--- a terminal watching the feed sees the next revocation live, and resumes without gaps"
    );
    let mut watch = client
        .watch_revocations(pb::WatchRevocationsRequest { after_sequence: 0 })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("stream")
        .expect("revocation 1");
    assert_eq!(first.sequence, 1);
    let lost = wallet_issued_at(41, now - 60_000).certificate().cert_id();
    cluster
        .must_write(pb::command::Kind::Revoke(pb::RevokeCommand {
            cert_id: lost.0.to_vec(),
            reason: pb::RevocationReason::LostOrStolen as i32,
        }))
        .await;
    let second = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("live revocation within the wait")
        .expect("stream")
        .expect("revocation 2");
    assert_eq!(
        (second.sequence, second.cert_id.clone()),
        (2, lost.0.to_vec())
    );
    drop(watch);
    let mut resumed = client
        .watch_revocations(pb::WatchRevocationsRequest { after_sequence: 1 })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        resumed
            .message()
            .await
            .expect("stream")
            .expect("next")
            .sequence,
        2
    );

    eprintln!("--- settlement figures are readable once settled");
    let missing = client
        .get_settlement(pb::GetSettlementRequest {
            cert_id: cert_id.0.to_vec(),
            consistency: 0,
        })
        .await
        .expect("get settlement")
        .into_inner();
    assert!(!missing.found);
    cluster
        .must_write(pb::command::Kind::Settle(pb::SettleCommand {
            certificate: Some((&good.certificate).into()),
            force: true,
            force_reason: "fraud: device revoked".into(),
        }))
        .await;
    let settled = client
        .get_settlement(pb::GetSettlementRequest {
            cert_id: cert_id.0.to_vec(),
            consistency: 0,
        })
        .await
        .expect("get settlement")
        .into_inner()
        .settlement
        .expect("settled");
    assert_eq!(settled.spent_value, 75);
    assert!(settled.double_spend_detected);
    assert_eq!(
        settled.total_value,
        settled.spent_value + settled.held_value + settled.unspent_value
    );
    eprintln!("--- the settled certificate's spent tokens are compacted away (RocksDB)");
    let after = client
        .check_nullifiers(pb::CheckNullifiersRequest {
            nullifiers: good.nullifiers().iter().map(|n| n.0.to_vec()).collect(),
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await
        .expect("check")
        .into_inner()
        .statuses;
    assert!(
        after.iter().all(|s| !s.spent),
        "compacted at settlement: {after:?}"
    );

    eprintln!("--- a stream of batches is answered in order, up to the stream's limit");
    let mut w2 = wallet_issued_at(42, now - 60_000);
    let batches: Vec<pb::SubmitBatchRequest> = (0..4u64)
        .map(|b| pb::SubmitBatchRequest {
            batch_id: 100 + b,
            payments: vec![(&w2.pay(10 + b, &id("m"), [b as u8; 32], now).expect("pay")).into()],
        })
        .collect();
    let mut answers = client
        .submit_stream(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner();
    for b in 0..3u64 {
        let answer = answers.message().await.expect("stream").expect("answer");
        assert_eq!(answer.batch_id, 100 + b);
        assert_eq!(answer.results[0].verdict, pb::Verdict::Accepted as i32);
    }
    let beyond = answers
        .message()
        .await
        .expect_err("the fourth batch is over the limit");
    assert_eq!(beyond.code(), tonic::Code::ResourceExhausted, "{beyond:?}");
    cluster.must_converge().await;
}

async fn issuer_client(
    addr: SocketAddr,
) -> pb::issuer_client::IssuerClient<tonic::transport::Channel> {
    pb::issuer_client::IssuerClient::new(connect(addr).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issuers_manage_keys_revoke_and_settle_over_grpc() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.must_leader().await;
    let mut issuer_api = issuer_client(cluster.addrs[&leader]).await;

    eprintln!("--- register the issuer key; the same id with another key is refused");
    let key = pb::IssuerKey::from(&issuer().issuer_key());
    let registered = issuer_api
        .register_issuer_key(pb::RegisterIssuerKeyRequest {
            key: Some(key.clone()),
        })
        .await
        .expect("register")
        .into_inner();
    assert_eq!(registered.key, Some(key.clone()));
    let mut other = key.clone();
    other.public_key = Wallet::device_key_for(&[0x42; 32]).to_vec();
    let status = issuer_api
        .register_issuer_key(pb::RegisterIssuerKeyRequest { key: Some(other) })
        .await
        .expect_err("conflicting key");
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    let mut weak = key.clone();
    weak.public_key = vec![0; 32];
    let status = issuer_api
        .register_issuer_key(pb::RegisterIssuerKeyRequest { key: Some(weak) })
        .await
        .expect_err("weak key");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("key.public_key"),
        "{}",
        status.message()
    );
    let status = issuer_api
        .retire_issuer_key(pb::RetireIssuerKeyRequest {
            key_id: "nobody".into(),
            retired_at_ms: 0,
        })
        .await
        .expect_err("unknown key");
    assert_eq!(status.code(), tonic::Code::NotFound);

    eprintln!("--- revoke a lost device, idempotently");
    let now = now_ms();
    let mut w = wallet_issued_at(50, now - 60_000);
    let cert = w.certificate().clone();
    let revoke = pb::RevokeCertificateRequest {
        cert_id: cert.cert_id().0.to_vec(),
        reason: pb::RevocationReason::LostOrStolen as i32,
    };
    let first = issuer_api
        .revoke_certificate(revoke.clone())
        .await
        .expect("revoke")
        .into_inner();
    let again = issuer_api
        .revoke_certificate(revoke)
        .await
        .expect("revoke again")
        .into_inner();
    assert_eq!(first.revocation, again.revocation);
    assert_eq!(first.revocation.expect("revocation").sequence, 1);

    eprintln!("--- a payment accepted offline before the revocation still settles");
    let p = w.pay(300, &id("m"), [1; 32], now).expect("pay");
    let mut settlement_api = settlement_client(cluster.addrs[&leader]).await;
    let result = settlement_api
        .submit_batch(pb::SubmitBatchRequest {
            batch_id: 1,
            payments: vec![(&p).into()],
        })
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(result.results[0].verdict, pb::Verdict::Accepted as i32);

    eprintln!("--- settling early needs force; then spent, held and refund are reported");
    let settle = |force: bool| pb::SettleCertificateRequest {
        certificate: Some((&cert).into()),
        force,
        force_reason: if force {
            "device stolen, wallet closed".into()
        } else {
            String::new()
        },
    };
    let status = issuer_api
        .settle_certificate(settle(false))
        .await
        .expect_err("too early");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let settled = issuer_api
        .settle_certificate(settle(true))
        .await
        .expect("forced settlement")
        .into_inner()
        .settlement
        .expect("settlement");
    assert_eq!((settled.spent_value, settled.held_value), (300, 0));
    assert_eq!(settled.unspent_value, cert.total_value - 300);
    let mut forged = cert.clone();
    forged.total_value += 1;
    let status = issuer_api
        .settle_certificate(pb::SettleCertificateRequest {
            certificate: Some((&forged).into()),
            force: true,
            force_reason: "x".into(),
        })
        .await
        .expect_err("forged certificate");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("BAD_ISSUER_SIGNATURE"),
        "{}",
        status.message()
    );

    eprintln!("--- a follower names the leader for issuer writes too");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let status = issuer_client(cluster.addrs[&follower])
        .await
        .revoke_certificate(pb::RevokeCertificateRequest {
            cert_id: cert.cert_id().0.to_vec(),
            reason: pb::RevocationReason::IssuerRequest as i32,
        })
        .await
        .expect_err("follower");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.metadata().get(LEADER_ID_HEADER).is_some());
    cluster.must_converge().await;
}

async fn admin_client(
    addr: SocketAddr,
) -> pb::admin_client::AdminClient<tonic::transport::Channel> {
    pb::admin_client::AdminClient::new(connect(addr).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_see_status_and_change_membership_over_grpc() {
    let mut cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;
    cluster.must_converge().await;
    let mut admin = admin_client(cluster.addrs[&leader]).await;

    eprintln!("--- status shows every member with the same applied index and digest");
    let status = admin
        .status(pb::StatusRequest {
            include_peers: true,
        })
        .await
        .expect("status")
        .into_inner();
    let own = status.self_.expect("self");
    assert_eq!(
        (own.node_id, own.role),
        (leader, pb::NodeRole::Leader as i32)
    );
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter));
    assert_eq!(status.peers.len(), 2);
    for peer in &status.peers {
        assert!(peer.reachable, "{peer:?}");
        assert_eq!(peer.leader_id, leader);
        assert_eq!(peer.applied_index, own.applied_index);
        assert_eq!(peer.state_digest, own.state_digest);
        assert!(!peer.digest_mismatch);
    }

    eprintln!("--- add a learner, promote it, remove an old voter");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = cluster._root.path().join("node-4");
    cluster.nodes.insert(4, start_node(4, dir, listener).await);
    cluster.addrs.insert(4, addr);
    admin
        .add_learner(pb::AddLearnerRequest {
            node_id: 4,
            address: addr.to_string(),
            wait_caught_up: true,
        })
        .await
        .expect("add learner");
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let voters: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    let changed = admin
        .change_membership(pb::ChangeMembershipRequest {
            voters: voters.clone(),
            retain_removed_as_learners: true,
            add_voters: vec![],
        })
        .await
        .expect("change membership")
        .into_inner();
    let mut now_voters: Vec<u64> = changed
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    now_voters.sort_unstable();
    assert_eq!(now_voters, voters);
    let removed = admin
        .remove_node(pb::RemoveNodeRequest { node_id: victim })
        .await
        .expect("remove the retained learner")
        .into_inner();
    assert!(
        removed.members.iter().all(|m| m.node_id != victim),
        "{:?}",
        removed.members
    );
    cluster.stop(victim).await;
    let status = admin
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await
        .expect("status")
        .into_inner();
    assert!(status.members.iter().all(|m| m.node_id != victim));

    eprintln!("--- leadership moves on request");
    let target = *voters
        .iter()
        .find(|id| **id != leader)
        .expect("another voter");
    admin
        .transfer_leader(pb::TransferLeaderRequest { to_node_id: target })
        .await
        .expect("transfer");
    let deadline = Instant::now() + WAIT;
    while cluster.must_leader().await != target {
        assert!(
            Instant::now() < deadline,
            "leadership did not move to {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("--- a snapshot on request; bad requests are refused clearly");
    let mut admin = admin_client(cluster.addrs[&target]).await;
    admin
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .expect("snapshot");
    let status = admin
        .change_membership(pb::ChangeMembershipRequest {
            voters: vec![],
            retain_removed_as_learners: false,
            add_voters: vec![],
        })
        .await
        .expect_err("empty voter set");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    cluster.must_converge().await;
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id).await;
    }
}

async fn health(addr: SocketAddr, service: &str) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(connect(addr).await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_means_ready_and_reflection_lists_the_services() {
    use tonic_health::pb::health_check_response::ServingStatus;
    init_logging();
    eprintln!("--- a node without a cluster is alive but not ready");
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let node = start_node(1, dir.path().join("n1"), listener).await;
    assert_eq!(
        health(addr, "spentledger.liveness").await,
        ServingStatus::Serving as i32
    );
    assert_eq!(health(addr, "").await, ServingStatus::NotServing as i32);
    assert_eq!(
        health(addr, "spentledger.v1.Settlement").await,
        ServingStatus::NotServing as i32
    );

    eprintln!("--- once it leads a (single-node) cluster and has applied, it is ready");
    node.raft
        .initialize(BTreeMap::from([(1, BasicNode::new(addr.to_string()))]))
        .await
        .expect("initialize");
    let deadline = Instant::now() + WAIT;
    while health(addr, "").await != ServingStatus::Serving as i32 {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        health(addr, "spentledger.v1.Settlement").await,
        ServingStatus::Serving as i32
    );

    eprintln!("--- reflection lists the spentledger services");
    let channel = connect(addr).await;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("stream").expect("reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "spentledger.v1.Settlement",
        "spentledger.v1.Issuer",
        "spentledger.v1.Admin",
        "spentledger.v1.Raft",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    node.shutdown().await;
}
