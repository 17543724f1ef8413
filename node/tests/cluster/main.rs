//! In-process clusters over real gRPC on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::type_config::async_runtime::WatchReceiver;
use spentledger_node::consensus::ClientRequest;
use spentledger_node::ledger_node::{LedgerNode, NodeOptions, RaftTimings};
use spentledger_node::state_machine::{CommandOutcome, LedgerConfig, PaymentOutcome};
use spentledger_protocol::sim::{IssuancePolicy, IssuanceRequest, Issuer, Wallet};
use spentledger_protocol::types::{Currency, IdText};
use spentledger_protocol::{Payment, Verdict, pb};
use tokio::net::TcpListener;

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
    LedgerNode::start(NodeOptions {
        node_id: id,
        data_dir: dir,
        listener,
        timings: timings(),
        ledger: LedgerConfig {
            validation_threads: 1,
            certificate_cache_entries: 1_024,
        },
    })
    .await
    .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"))
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
            cluster
                .nodes
                .insert(id, start_node(id, dir, listener).await);
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
                .client_write(ClientRequest(cmd.clone()))
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
        let target = self.nodes[&leader]
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .expect("leader applied something")
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
                for (id, d) in &digests {
                    assert_eq!(
                        d, &first,
                        "node {id} diverged at the same index: {digests:?}"
                    );
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
        node.shutdown().await;
    }
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("valid id")
}

fn issuer() -> Issuer {
    Issuer::from_seed(id("bank"), [9; 32], 0, u64::MAX)
}

fn wallet(n: u8) -> Wallet {
    let seed = [n; 32];
    let issued = issuer()
        .issue(
            &IssuancePolicy::default(),
            &IssuanceRequest {
                wallet_id: id(&format!("w{n}")),
                device_key: Wallet::device_key_for(&seed),
                currency: Currency::new("c", "EUR").expect("EUR"),
                balance: 3_000,
                credit_line: 0,
                issued_at_ms: T0_MS,
            },
        )
        .expect("issue");
    Wallet::new(seed, issued.certificate, issued.tokens).expect("wallet")
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
    std::fs::remove_dir_all(&cluster.dirs[&victim]).expect("wipe");
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
