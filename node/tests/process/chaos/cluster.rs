//! The chaos suite's cluster: node processes in their namespaces, how they
//! are faulted (packet filter, signals, the test-only control file), and
//! how their state is read back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use spentledger_chaos::history::Event;
use spentledger_chaos::packet_filter::{LinkRules, PacketFilter};
use spentledger_chaos::sandbox::{Bridge, command_in, run};
use spentledger_node::network::fault_control::{CONTROL_ENV, FaultControl, ack_path};
use spentledger_protocol::pb;
use spentledger_protocol::sim::Issuer;
use tonic::transport::Channel;

use super::super::{BIN, id, now_ms, test_issuer, wallet_from_seed, write_genesis_keys};

/// The nodes' subnet on the sandbox's bridge; node N is host N.
const SUBNET: [u8; 3] = [10, 78, 0];
const NODE_PORT: u16 = 7000;
/// Start-up, readiness and convergence waits.
const WAIT: Duration = Duration::from_secs(60);
/// One status or read call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Final-state reads in flight at once.
const READS_IN_FLIGHT: usize = 32;

/// The sandbox's network: a namespace and a client channel per node slot,
/// and the packet filter over them. Built once for the whole suite.
pub(crate) struct Net {
    filter: PacketFilter,
    addrs: BTreeMap<u64, SocketAddr>,
    channels: BTreeMap<u64, Channel>,
}

fn ns(id: u64) -> String {
    format!("n{id}")
}

impl Net {
    pub(crate) fn create(slots: u64) -> Net {
        let bridge = Bridge::create(SUBNET).expect("the sandbox's bridge");
        let mut filter = PacketFilter::default();
        let mut addrs = BTreeMap::new();
        let mut channels = BTreeMap::new();
        for id in 1..=slots {
            let host = u8::try_from(id).expect("a handful of nodes");
            let ip = bridge
                .add_namespace(&ns(id), host)
                .expect("the node's namespace");
            filter.add_node(id, &ns(id), ip);
            let addr = SocketAddr::from((ip, NODE_PORT));
            addrs.insert(id, addr);
            // Lazy: reconnects by itself after a node restarts.
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("valid URI")
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect_lazy();
            channels.insert(id, channel);
        }
        Net {
            filter,
            addrs,
            channels,
        }
    }

    pub(crate) fn channel(&self, id: u64) -> Channel {
        self.channels[&id].clone()
    }

    pub(crate) fn slots(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    /// Puts `rules` in force between the nodes.
    pub(crate) fn apply(&self, rules: &LinkRules) {
        self.filter.apply(rules).expect("nftables rules");
    }
}

/// One node's process and its state of health.
#[derive(Default)]
struct NodeProc {
    child: Option<Child>,
    paused: bool,
}

/// A fresh cluster for one scenario.
pub(crate) struct ChaosCluster<'n> {
    net: &'n Net,
    dir: PathBuf,
    keys: PathBuf,
    issuer: Issuer,
    /// The voters it started with: the seeds a joining node asks.
    seeds: Vec<u64>,
    procs: BTreeMap<u64, NodeProc>,
    /// Nodes whose control file is not empty.
    controlled: BTreeSet<u64>,
    /// Nodes removed from the membership and stopped for good.
    retired: BTreeSet<u64>,
}

impl Drop for ChaosCluster<'_> {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl<'n> ChaosCluster<'n> {
    /// Starts `voters` nodes (node 1 bootstraps with the test issuer's
    /// genesis key) and waits until a payment can be accepted.
    pub(crate) async fn start(net: &'n Net, dir: &Path, voters: u64) -> ChaosCluster<'n> {
        let issuer = test_issuer();
        let keys = write_genesis_keys(dir, &issuer);
        let mut cluster = ChaosCluster {
            net,
            dir: dir.to_owned(),
            keys,
            issuer,
            seeds: (1..=voters).collect(),
            procs: BTreeMap::new(),
            controlled: BTreeSet::new(),
            retired: BTreeSet::new(),
        };
        for id in 1..=voters {
            cluster.spawn(id, false);
        }
        for id in 1..=voters {
            cluster.must_be_ready(id).await;
        }
        cluster.must_accept_a_probe().await;
        cluster
    }

    pub(crate) fn net(&self) -> &'n Net {
        self.net
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn control_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("control-{id}"))
    }

    /// Starts node `id` (again) on its data directory; `join` asks the
    /// seeds to add it.
    pub(crate) fn spawn(&mut self, id: u64, join: bool) {
        let members: Vec<String> = self
            .seeds
            .iter()
            .map(|s| format!("{s}={}", self.net.addrs[s]))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))
            .expect("node log");
        let mut cmd = command_in(&ns(id), Path::new(BIN));
        cmd.arg("--plaintext")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &self.net.addrs[&id].to_string()])
            .arg("--data-dir")
            .arg(self.data_dir().join(format!("node-{id}")))
            .args(["--initial-members", &members.join(",")])
            .args(["--heartbeat-ms", "100", "--election-timeout-ms", "600"])
            .env("RUST_LOG", "info,openraft=warn")
            .env(CONTROL_ENV, self.control_path(id))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log));
        if id == 1 && !join {
            cmd.arg("--bootstrap")
                .arg("--genesis-issuer-keys")
                .arg(&self.keys);
        }
        if join {
            cmd.arg("--join");
        }
        let child = cmd.spawn().expect("start spentledger-node");
        self.procs.insert(
            id,
            NodeProc {
                child: Some(child),
                paused: false,
            },
        );
    }

    fn signal(&self, id: u64, signal: &str) {
        let child = self.procs[&id].child.as_ref().expect("a running node");
        run(
            &format!("kill -{signal} node {id}"),
            Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]),
        )
        .expect("signal the node");
    }

    /// SIGKILL: the process dies with whatever it had not synced.
    pub(crate) fn kill(&mut self, id: u64) {
        let proc = self.procs.get_mut(&id).expect("a started node");
        if let Some(mut child) = proc.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        proc.paused = false;
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub(crate) fn pause(&mut self, id: u64) {
        self.signal(id, "STOP");
        self.procs.get_mut(&id).expect("a started node").paused = true;
    }

    pub(crate) fn is_running(&self, id: u64) -> bool {
        self.procs
            .get(&id)
            .is_some_and(|p| p.child.is_some() && !p.paused)
    }

    /// Writes node `id`'s control file and waits until the node applied it.
    pub(crate) async fn set_control(&mut self, id: u64, control: FaultControl) {
        let path = self.control_path(id);
        let ack = ack_path(&path);
        let _ = std::fs::remove_file(&ack);
        std::fs::write(&path, control.render()).expect("write the control file");
        if control == FaultControl::default() {
            self.controlled.remove(&id);
        } else {
            self.controlled.insert(id);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&ack).ok().as_deref() != Some(&control.render()) {
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply {control:?} (is it a fault-injection build?)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends every fault: the packet filter cleared, paused nodes resumed,
    /// killed nodes restarted and ready, control files emptied.
    pub(crate) async fn heal(&mut self) {
        self.net.apply(&LinkRules::default());
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in &ids {
            if self.procs[id].paused {
                self.signal(*id, "CONT");
                self.procs.get_mut(id).expect("known").paused = false;
            }
        }
        for id in &ids {
            if self.procs[id].child.is_none() && !self.retired.contains(id) {
                self.spawn(*id, false);
                self.must_be_ready(*id).await;
            }
        }
        let controlled: Vec<u64> = self.controlled.iter().copied().collect();
        for id in controlled {
            self.set_control(id, FaultControl::default()).await;
        }
    }

    /// Stops node `id` for good: it was removed from the membership.
    pub(crate) fn retire(&mut self, id: u64) {
        self.kill(id);
        self.retired.insert(id);
    }

    pub(crate) async fn status(&self, id: u64) -> Option<pb::StatusResponse> {
        if !self.is_running(id) {
            return None;
        }
        let mut client = pb::admin_client::AdminClient::new(self.net.channel(id));
        tokio::time::timeout(
            CALL_TIMEOUT,
            client.status(pb::StatusRequest {
                include_peers: false,
            }),
        )
        .await
        .ok()?
        .ok()
        .map(tonic::Response::into_inner)
    }

    /// The node that leads in the highest term, as the nodes say.
    pub(crate) async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.net.slots() {
            if let Some(s) = self.status(id).await.and_then(|s| s.self_)
                && s.role == pb::NodeRole::Leader as i32
                && best.is_none_or(|(term, _)| s.term > term)
            {
                best = Some((s.term, id));
            }
        }
        best.map(|(_, id)| id)
    }

    pub(crate) async fn must_leader(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(id) = self.leader().await {
                return id;
            }
            assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The voters, as the leader's status lists them.
    pub(crate) async fn must_voters(&self) -> Vec<u64> {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.must_leader().await;
            if let Some(s) = self.status(leader).await {
                return s
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| m.node_id)
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "no leader status within {WAIT:?}"
            );
        }
    }

    /// Health `""` SERVING on node `id` (its process must not have exited).
    pub(crate) async fn must_be_ready(&mut self, id: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let proc = self.procs.get_mut(&id).expect("a started node");
            if let Some(child) = proc.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join(format!("node-{id}.log")))
                    .unwrap_or_default();
                panic!("node {id} exited ({status}); its log:\n{log}");
            }
            let serving =
                tokio::time::timeout(CALL_TIMEOUT, super::super::is_serving(self.net.channel(id)))
                    .await
                    .unwrap_or(false);
            if serving {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} not ready within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submits a probe payment until it is accepted: the bootstrapping node
    /// registers the genesis issuer key just after the first election.
    async fn must_accept_a_probe(&self) {
        let mut wallet = wallet_from_seed(&self.issuer, [0xA5; 32], "probe", 100);
        let probe = wallet.pay(10, &id("m"), [1; 32], now_ms()).expect("pay");
        let request = pb::SubmitBatchRequest {
            batch_id: 0,
            payments: vec![pb::Payment::from(&probe)],
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let mut client = pb::settlement_client::SettlementClient::new(self.net.channel(1));
            if let Ok(Ok(r)) =
                tokio::time::timeout(CALL_TIMEOUT, client.submit_batch(request.clone())).await
                && r.get_ref().results[0].verdict == pb::Verdict::Accepted as i32
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no payment accepted within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every node in `ids` reports the same applied index and
    /// state digest (the process tests' own check, on these addresses).
    pub(crate) async fn must_converge(&self, ids: &[u64]) {
        let addrs: Vec<SocketAddr> = ids.iter().map(|id| self.net.addrs[id]).collect();
        super::super::faults::must_converge(&addrs).await;
    }

    /// Records each node's final state: applied index, digest, which of
    /// `tx_ids` it holds as accepted, and which certificates it revoked
    /// (stale reads: the node's own state).
    pub(crate) async fn record_finals(
        &self,
        recorder: &spentledger_chaos::history::Recorder,
        ids: &[u64],
        tx_ids: &[[u8; 32]],
        cert_ids: &BTreeSet<String>,
    ) {
        for id in ids {
            let s = self
                .status(*id)
                .await
                .and_then(|s| s.self_)
                .unwrap_or_else(|| panic!("status of node {id}"));
            let channel = self.net.channel(*id);
            let accepted: Vec<String> = futures::stream::iter(tx_ids.iter().copied())
                .map(|tx| {
                    let mut client = pb::settlement_client::SettlementClient::new(channel.clone());
                    async move {
                        let found = tokio::time::timeout(
                            CALL_TIMEOUT,
                            client.get_payment(pb::GetPaymentRequest {
                                tx_id: tx.to_vec(),
                                consistency: pb::ReadConsistency::Stale as i32,
                            }),
                        )
                        .await
                        .unwrap_or_else(|_| panic!("read on node {id} timed out"))
                        .unwrap_or_else(|e| panic!("read on node {id}: {e}"))
                        .into_inner()
                        .found;
                        found.then(|| hex(&tx))
                    }
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .filter_map(|x| async move { x })
                .collect()
                .await;
            let revoked = self.must_revocations(*id).await;
            recorder.push(Event::Final {
                node: *id,
                applied_index: s.applied_index,
                digest: hex(&s.state_digest),
                accepted,
                revoked: revoked
                    .into_iter()
                    .filter(|c| cert_ids.contains(c))
                    .collect(),
            });
        }
    }

    /// Every certificate node `id` has revoked, paging through its feed.
    async fn must_revocations(&self, id: u64) -> Vec<String> {
        let mut client = pb::settlement_client::SettlementClient::new(self.net.channel(id));
        let mut after = 0;
        let mut out = Vec::new();
        loop {
            let page = client
                .list_revocations(pb::ListRevocationsRequest {
                    after_sequence: after,
                    limit: 0,
                    consistency: pb::ReadConsistency::Stale as i32,
                })
                .await
                .unwrap_or_else(|e| panic!("revocations of node {id}: {e}"))
                .into_inner();
            let Some(last) = page.revocations.last().map(|r| r.sequence) else {
                return out;
            };
            out.extend(page.revocations.iter().map(|r| hex(&r.cert_id)));
            after = last;
        }
    }

    /// SIGKILL for every node.
    pub(crate) fn stop_all(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }

    /// Deletes the data directories (the logs and history stay).
    pub(crate) fn remove_data(&self) {
        let _ = std::fs::remove_dir_all(self.data_dir());
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
