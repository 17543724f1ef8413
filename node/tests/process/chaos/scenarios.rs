//! The nemeses. Each scenario injects its fault in rounds for the fault
//! window: inject, hold for 1.5-3.5 s, heal, let the cluster recover for a
//! second; every start and every heal is recorded in the history.

use std::time::{Duration, Instant};

use spentledger_chaos::history::{Event, Recorder};
use spentledger_chaos::packet_filter::LinkRules;
use spentledger_node::network::fault_control::FaultControl;
use spentledger_protocol::pb;

use super::cluster::ChaosCluster;
use super::workload::Topology;
use super::{Rng, VOTERS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    Halves,
    IsolateLeader,
    MajoritiesRing,
    Bridge,
    OneWay,
    LossAndDelay,
    Pause,
    Kill,
    ClockSkew,
    Membership,
}

/// How long the cluster runs fault-free between rounds.
const BETWEEN_ROUNDS: Duration = Duration::from_secs(1);
/// Packet loss between nodes in the loss scenario, per thousand.
const LOSS_PER_MILLE: u32 = 200;
/// Delay on every Raft RPC in the loss scenario.
const RAFT_DELAY_MS: u64 = 30;

impl Scenario {
    pub(crate) const ALL: [Scenario; 10] = [
        Scenario::Halves,
        Scenario::IsolateLeader,
        Scenario::MajoritiesRing,
        Scenario::Bridge,
        Scenario::OneWay,
        Scenario::LossAndDelay,
        Scenario::Pause,
        Scenario::Kill,
        Scenario::ClockSkew,
        Scenario::Membership,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Halves => "halves",
            Scenario::IsolateLeader => "isolate-leader",
            Scenario::MajoritiesRing => "majorities-ring",
            Scenario::Bridge => "bridge",
            Scenario::OneWay => "one-way",
            Scenario::LossAndDelay => "loss-and-delay",
            Scenario::Pause => "pause",
            Scenario::Kill => "kill",
            Scenario::ClockSkew => "clock-skew",
            Scenario::Membership => "membership",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// One line for the log and the docs.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Scenario::Halves => "random 2 | 3 partitions",
            Scenario::IsolateLeader => "the current leader cut off from the other four",
            Scenario::MajoritiesRing => {
                "each node reaches only its two ring neighbours (five overlapping majorities)"
            }
            Scenario::Bridge => "two pairs that cannot reach each other, one node reaching both",
            Scenario::OneWay => "the leader's outgoing packets dropped, its incoming delivered",
            Scenario::LossAndDelay => "20% packet loss between nodes and 30 ms on every Raft RPC",
            Scenario::Pause => "the leader or a random node frozen with SIGSTOP, then SIGCONT",
            Scenario::Kill => "kill -9 of the leader or a random node, then a restart",
            Scenario::ClockSkew => "the leader's clock 10 minutes behind or 2 minutes ahead",
            Scenario::Membership => {
                "a sixth node joins and a voter is removed while a node is partitioned away"
            }
        }
    }

    /// Injects faults in rounds for `window`, then heals for good.
    pub(crate) async fn run(
        self,
        cluster: &mut ChaosCluster<'_>,
        recorder: &Recorder,
        topology: &Topology,
        rng: &mut Rng,
        window: Duration,
    ) {
        if self == Scenario::Membership {
            return membership(cluster, recorder, topology, rng).await;
        }
        let end = Instant::now() + window;
        for round in 0u64.. {
            if Instant::now() >= end {
                break;
            }
            let action = self.inject(cluster, topology, rng, round).await;
            announce(recorder, &action);
            tokio::time::sleep(rng.millis(1_500, 3_500)).await;
            heal(cluster, recorder, topology).await;
            tokio::time::sleep(BETWEEN_ROUNDS).await;
        }
    }

    /// Starts one fault; returns its description.
    async fn inject(
        self,
        cluster: &mut ChaosCluster<'_>,
        topology: &Topology,
        rng: &mut Rng,
        round: u64,
    ) -> String {
        let mut nodes: Vec<u64> = (1..=VOTERS).collect();
        rng.shuffle(&mut nodes);
        match self {
            Scenario::Halves => {
                let sides = vec![nodes[..2].to_vec(), nodes[2..].to_vec()];
                cluster.net().apply(&LinkRules::partition(&sides));
                topology.set_sides(sides.clone());
                format!("partition {:?} | {:?}", sides[0], sides[1])
            }
            Scenario::IsolateLeader => {
                let leader = cluster.must_leader().await;
                isolate(cluster, topology, leader);
                format!("isolate leader n{leader}")
            }
            Scenario::MajoritiesRing => {
                cluster.net().apply(&LinkRules::ring(&nodes));
                // Opposite sides for double spends: nodes that cannot talk.
                topology.set_sides(vec![vec![nodes[0]], vec![nodes[2], nodes[3]]]);
                format!("majorities ring {nodes:?}")
            }
            Scenario::Bridge => {
                let (left, bridge, right) = (&nodes[..2], nodes[2], &nodes[3..]);
                cluster.net().apply(&LinkRules::bridge(left, right));
                topology.set_sides(vec![left.to_vec(), right.to_vec()]);
                format!("bridge {left:?} - n{bridge} - {right:?}")
            }
            Scenario::OneWay => {
                let leader = cluster.must_leader().await;
                let rest = all_but(cluster, leader);
                cluster.net().apply(&LinkRules::one_way(leader, &rest));
                topology.set_sides(vec![vec![leader], rest]);
                format!("drop every packet from leader n{leader} to the others")
            }
            Scenario::LossAndDelay => {
                cluster.net().apply(&LinkRules::loss(LOSS_PER_MILLE));
                for id in 1..=VOTERS {
                    cluster
                        .set_control(
                            id,
                            FaultControl {
                                delay_ms: RAFT_DELAY_MS,
                                ..FaultControl::default()
                            },
                        )
                        .await;
                }
                format!(
                    "{}% loss between nodes, {RAFT_DELAY_MS} ms delay on Raft RPCs",
                    LOSS_PER_MILLE / 10
                )
            }
            Scenario::Pause => {
                let victim = if rng.below(2) == 0 {
                    cluster.must_leader().await
                } else {
                    nodes[0]
                };
                cluster.pause(victim);
                topology.set_down(victim);
                format!("SIGSTOP n{victim}")
            }
            Scenario::Kill => {
                let victim = if rng.below(2) == 0 {
                    cluster.must_leader().await
                } else {
                    nodes[0]
                };
                cluster.kill(victim);
                topology.set_down(victim);
                format!("kill -9 n{victim}")
            }
            Scenario::ClockSkew => {
                let leader = cluster.must_leader().await;
                // Behind and ahead in turn.
                let offset_ms: i64 = if round.is_multiple_of(2) {
                    -600_000
                } else {
                    120_000
                };
                cluster
                    .set_control(
                        leader,
                        FaultControl {
                            clock_offset_ms: offset_ms,
                            ..FaultControl::default()
                        },
                    )
                    .await;
                format!("clock of leader n{leader} off by {offset_ms} ms")
            }
            Scenario::Membership => unreachable!("membership runs its own schedule"),
        }
    }
}

/// Records a fault and says it in the test's log.
fn announce(recorder: &Recorder, action: &str) {
    recorder.nemesis(action);
    eprintln!("    nemesis: {action}");
}

/// Every node slot but `node`.
fn all_but(cluster: &ChaosCluster<'_>, node: u64) -> Vec<u64> {
    cluster
        .net()
        .slots()
        .into_iter()
        .filter(|n| *n != node)
        .collect()
}

/// Cuts `node` off from every other node.
fn isolate(cluster: &ChaosCluster<'_>, topology: &Topology, node: u64) {
    let sides = vec![vec![node], all_but(cluster, node)];
    cluster.net().apply(&LinkRules::partition(&sides));
    topology.set_sides(sides);
}

/// Ends every fault and records the heal.
async fn heal(cluster: &mut ChaosCluster<'_>, recorder: &Recorder, topology: &Topology) {
    cluster.heal().await;
    topology.heal();
    recorder.nemesis(Event::HEAL);
}

/// A sixth node joins while a follower is partitioned away, then a voter
/// is removed while another one is; the cluster must end with five voters
/// in one state.
async fn membership(
    cluster: &mut ChaosCluster<'_>,
    recorder: &Recorder,
    topology: &Topology,
    rng: &mut Rng,
) {
    let leader = cluster.must_leader().await;
    let followers: Vec<u64> = (1..=VOTERS).filter(|n| *n != leader).collect();
    let cut = rng.pick(&followers);
    announce(recorder, &format!("isolate n{cut}; node 6 joins"));
    isolate(cluster, topology, cut);
    cluster.spawn(6, true);
    cluster.must_be_ready(6).await;
    must_see_voter(cluster, 6, true).await;
    topology.set_members(vec![1, 2, 3, 4, 5, 6]);
    heal(cluster, recorder, topology).await;
    tokio::time::sleep(BETWEEN_ROUNDS).await;

    let leader = cluster.must_leader().await;
    let candidates: Vec<u64> = (1..=VOTERS).filter(|n| *n != leader).collect();
    let removed = rng.pick(&candidates);
    let others: Vec<u64> = (1..=6).filter(|n| *n != leader && *n != removed).collect();
    let cut = rng.pick(&others);
    announce(
        recorder,
        &format!("isolate n{cut}; remove voter n{removed}"),
    );
    isolate(cluster, topology, cut);
    must_remove(cluster, removed).await;
    must_see_voter(cluster, removed, false).await;
    topology.set_members((1..=6).filter(|n| *n != removed).collect());
    cluster.retire(removed);
    heal(cluster, recorder, topology).await;
}

/// Waits until the leader lists `node` as a voter (or, `false`, no longer).
async fn must_see_voter(cluster: &ChaosCluster<'_>, node: u64, voter: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cluster.must_voters().await.contains(&node) == voter {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {node} voter={voter} not reached within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks the leader to remove `node`, retrying while leadership moves.
async fn must_remove(cluster: &ChaosCluster<'_>, node: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = cluster.must_leader().await;
        let mut admin = pb::admin_client::AdminClient::new(cluster.net().channel(leader));
        match tokio::time::timeout(
            Duration::from_secs(10),
            admin.remove_node(pb::RemoveNodeRequest { node_id: node }),
        )
        .await
        {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => eprintln!("    remove n{node} via n{leader}: {e}"),
            Err(_) => eprintln!("    remove n{node} via n{leader}: timed out"),
        }
        assert!(
            Instant::now() < deadline,
            "node {node} not removed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
