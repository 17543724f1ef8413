//! Flow control between the leader's proposals and its followers' apply.
//!
//! Raft counts an entry committed once a majority holds it in its log, not
//! once they applied it. Under a load above what the followers can validate
//! and apply (every node validates every payment), the leader kept
//! answering at its own pace while the followers' applied index fell
//! behind without bound: after a 22 s burst they were 13 s behind
//! (docs/BENCHMARKS.md, ninth round). A leader lost then leaves a new leader
//! that must apply that backlog before it answers anything: the outage
//! grows with the burst.
//!
//! So the leader asks each voter for its applied index every `poll_ms`
//! (the `Raft.Applied` RPC) and measures how far the quorum is behind *in
//! time*: how long ago the leader itself had applied past the index that
//! the slowest member of the fastest majority has reached. While that
//! exceeds `lag_ms_max`, the leader holds new entries (the submission queue
//! fills, and callers beyond it get RESOURCE_EXHAUSTED with a retry hint);
//! it resumes once the lag is back under half of it.
//!
//! Only positive evidence holds entries: a peer that does not answer (down,
//! partitioned, an older version without the RPC) counts as unknown, and
//! with fewer known followers than a majority needs nothing is held. A
//! single lagging follower in a 3-node cluster does not hold anything, as
//! it does not hold commits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use openraft::type_config::async_runtime::WatchReceiver;
use tokio::sync::watch;

use crate::ledger_node::LedgerRaft;
use crate::network::PeerNetworkFactory;
use crate::ops::NodeMetrics;

/// Samples of the leader's own progress kept: at the default poll interval,
/// about 17 minutes of it. Older ones say only "longer ago than that".
const PROGRESS_SAMPLES_MAX: usize = 10_000;

/// How long one poll of a peer may take before it counts as unknown.
const POLL_TIMEOUT_MS_MIN: u64 = 200;

/// Bounds of the flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLagLimits {
    /// Largest lag of the quorum's apply behind the leader's before new
    /// entries wait; 0 turns the flow control off.
    pub lag_ms_max: u64,
    /// How often the leader asks its followers for their applied index.
    pub poll_ms: u64,
}

impl Default for ApplyLagLimits {
    fn default() -> Self {
        ApplyLagLimits {
            lag_ms_max: 1_000,
            poll_ms: 100,
        }
    }
}

/// Where the leader's own apply was when: `(applied index, first seen)`,
/// indexes strictly increasing.
#[derive(Debug, Default)]
pub struct LeaderProgress {
    samples: VecDeque<(u64, Instant)>,
}

impl LeaderProgress {
    /// Notes that the leader had applied up to `index` at `at`.
    pub fn record(&mut self, index: u64, at: Instant) {
        if self.samples.back().is_some_and(|(last, _)| *last >= index) {
            return;
        }
        if self.samples.len() == PROGRESS_SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((index, at));
    }

    /// Forgets everything (leadership lost or regained).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// How long ago the leader first had applied past `follower_applied`:
    /// zero when the follower is level with the newest sample.
    pub fn lag_of(&self, follower_applied: u64, now: Instant) -> Duration {
        // Indexes increase along the deque: the first one past the
        // follower is found by bisection.
        let first_past = self
            .samples
            .partition_point(|(index, _)| *index <= follower_applied);
        self.samples
            .get(first_past)
            .map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(*at))
    }
}

/// The lag that decides: among the followers' lags (`None` = unknown), the
/// one a majority of `voters` (the leader included) waits for, i.e. the
/// slowest of the fastest followers the majority needs. `None` when a
/// majority needs no follower (one voter) or too few are known.
pub fn quorum_lag(follower_lags: &[Option<Duration>], voters: usize) -> Option<Duration> {
    let needed = voters / 2; // a majority is voters / 2 + 1, the leader is one
    if needed == 0 {
        return None;
    }
    let mut known: Vec<Duration> = follower_lags.iter().flatten().copied().collect();
    known.sort_unstable();
    known.get(needed - 1).copied()
}

/// Whether new entries may be proposed, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateState {
    pub open: bool,
    /// The quorum's lag at the last poll, when known.
    pub lag_ms: Option<u64>,
}

/// The gate the submission path waits at; cheap to clone.
#[derive(Clone)]
pub struct ApplyLagGate {
    tx: std::sync::Arc<watch::Sender<GateState>>,
}

impl Default for ApplyLagGate {
    fn default() -> Self {
        ApplyLagGate {
            tx: std::sync::Arc::new(
                watch::channel(GateState {
                    open: true,
                    lag_ms: None,
                })
                .0,
            ),
        }
    }
}

impl ApplyLagGate {
    pub fn state(&self) -> GateState {
        *self.tx.borrow()
    }

    /// Returns at once when open; otherwise waits until it opens and
    /// returns how long it waited.
    pub async fn wait_open(&self) -> Duration {
        if self.state().open {
            return Duration::ZERO;
        }
        let started = Instant::now();
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = rx.wait_for(|s| s.open).await;
        started.elapsed()
    }

    fn set(&self, state: GateState) {
        self.tx.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }
}

/// The gate's next state from the quorum's lag: closes above `lag_ms_max`,
/// reopens at or below half of it (so it does not flap at the boundary).
pub fn next_gate(was_open: bool, lag: Option<Duration>, lag_ms_max: u64) -> GateState {
    let lag_ms = lag.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let open = match lag_ms {
        None => true,
        Some(_) if lag_ms_max == 0 => true,
        Some(ms) if was_open => ms <= lag_ms_max,
        Some(ms) => ms <= lag_ms_max / 2,
    };
    GateState { open, lag_ms }
}

/// Polls the followers while this node leads and keeps `gate` up to date,
/// until `stopping` turns true, when it opens the gate for good (what is
/// held then is drained like any request in flight). Off (the gate always
/// open) when `limits.lag_ms_max` is 0.
pub async fn run_apply_lag_monitor(
    raft: LedgerRaft,
    peers: PeerNetworkFactory,
    gate: ApplyLagGate,
    limits: ApplyLagLimits,
    metrics: NodeMetrics,
    mut stopping: watch::Receiver<bool>,
) {
    if limits.lag_ms_max == 0 {
        return;
    }
    let poll = Duration::from_millis(limits.poll_ms.max(1));
    let poll_timeout = Duration::from_millis(limits.poll_ms.max(POLL_TIMEOUT_MS_MIN));
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = LeaderProgress::default();
    let mut held_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => {
                // Entries held now are part of the drain: let them through.
                gate.set(GateState {
                    open: true,
                    lag_ms: None,
                });
                return;
            }
        }
        let m = raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(m.id) {
            progress.clear();
            gate.set(GateState {
                open: true,
                lag_ms: None,
            });
            held_since = None;
            metrics.apply_lag_quorum(0);
            continue;
        }
        let now = Instant::now();
        progress.record(m.last_applied.map_or(0, |id| id.index), now);
        let membership = m.membership_config.membership();
        let followers: Vec<(u64, String)> = membership
            .voter_ids()
            .filter(|id| *id != m.id)
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let voters = followers.len() + 1;
        let asks = followers.iter().map(|(id, addr)| {
            let peers = &peers;
            async move { (*id, peers.applied_index(*id, addr, poll_timeout).await) }
        });
        let answers = futures::future::join_all(asks).await;
        let now = Instant::now();
        let mut lags = Vec::with_capacity(answers.len());
        for (id, answer) in answers {
            let lag = match answer {
                Ok(applied) => Some(progress.lag_of(applied, now)),
                Err(reason) => {
                    tracing::debug!(peer = id, %reason, "applied index unknown");
                    None
                }
            };
            metrics.apply_lag_follower(id, lag);
            lags.push(lag);
        }
        let was_open = gate.state().open;
        let next = next_gate(was_open, quorum_lag(&lags, voters), limits.lag_ms_max);
        metrics.apply_lag_quorum(next.lag_ms.unwrap_or(0));
        match (was_open, next.open) {
            (true, false) => {
                held_since = Some(now);
                tracing::warn!(
                    lag_ms = next.lag_ms,
                    lag_ms_max = limits.lag_ms_max,
                    "a majority's apply is behind this leader's; holding new entries until it catches up"
                );
            }
            (false, true) => {
                let held_ms = held_since.take().map(|t| t.elapsed().as_millis());
                tracing::info!(
                    lag_ms = next.lag_ms,
                    held_ms,
                    "followers caught up; proposing again"
                );
            }
            _ => {}
        }
        gate.set(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn lag_is_how_long_ago_the_leader_passed_the_follower() {
        let t0 = Instant::now();
        let mut p = LeaderProgress::default();
        p.record(10, t0);
        p.record(20, t0 + ms(100));
        p.record(20, t0 + ms(200)); // no progress: the first sighting stays
        p.record(35, t0 + ms(300));
        let now = t0 + ms(1_000);
        assert_eq!(p.lag_of(35, now), Duration::ZERO, "level with the leader");
        assert_eq!(
            p.lag_of(40, now),
            Duration::ZERO,
            "ahead of the last sample"
        );
        assert_eq!(p.lag_of(20, now), ms(700), "leader passed 20 at +300 ms");
        assert_eq!(p.lag_of(19, now), ms(900), "leader passed 19 at +100 ms");
        assert_eq!(p.lag_of(0, now), ms(1_000), "behind everything sampled");
        p.clear();
        assert_eq!(p.lag_of(0, now), Duration::ZERO);
    }

    #[test]
    fn progress_keeps_a_bounded_history() {
        let t0 = Instant::now();
        let mut p = LeaderProgress::default();
        for i in 0..(PROGRESS_SAMPLES_MAX as u64 + 50) {
            p.record(i + 1, t0 + ms(i));
        }
        assert_eq!(p.samples.len(), PROGRESS_SAMPLES_MAX);
        // The oldest kept is at +50 ms: older positions report that bound.
        assert_eq!(p.lag_of(0, t0 + ms(20_000)), ms(20_000 - 50));
    }

    #[test]
    fn the_quorum_waits_for_the_fastest_followers_a_majority_needs() {
        let (a, b) = (Some(ms(100)), Some(ms(5_000)));
        // Three voters: the leader and the faster follower make a majority.
        assert_eq!(quorum_lag(&[b, a], 3), Some(ms(100)));
        // One follower unknown (down): the other one decides.
        assert_eq!(quorum_lag(&[None, b], 3), Some(ms(5_000)));
        // Nothing known: no evidence, nothing held.
        assert_eq!(quorum_lag(&[None, None], 3), None);
        // Five voters need two followers: the second fastest decides.
        let c = Some(ms(700));
        assert_eq!(quorum_lag(&[b, a, c, None], 5), Some(ms(700)));
        assert_eq!(quorum_lag(&[None, a, None, None], 5), None);
        // A single node has no followers to wait for.
        assert_eq!(quorum_lag(&[], 1), None);
        // Two voters: both must be in the majority.
        assert_eq!(quorum_lag(&[b], 2), Some(ms(5_000)));
    }

    #[test]
    fn the_gate_closes_above_the_limit_and_reopens_at_half_of_it() {
        let closed = next_gate(true, Some(ms(1_001)), 1_000);
        assert!(!closed.open);
        assert_eq!(closed.lag_ms, Some(1_001));
        assert!(next_gate(true, Some(ms(1_000)), 1_000).open);
        // Closed: 600 ms is under the limit but above half of it.
        assert!(!next_gate(false, Some(ms(600)), 1_000).open);
        assert!(next_gate(false, Some(ms(500)), 1_000).open);
        // Unknown lag or the control off: open.
        assert!(next_gate(false, None, 1_000).open);
        assert!(next_gate(false, Some(ms(60_000)), 0).open);
    }

    #[tokio::test]
    async fn waiting_at_the_gate_ends_when_it_opens() {
        let gate = ApplyLagGate::default();
        assert_eq!(gate.wait_open().await, Duration::ZERO);
        gate.set(GateState {
            open: false,
            lag_ms: Some(2_000),
        });
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_open().await }
        });
        tokio::time::sleep(ms(50)).await;
        assert!(!waiter.is_finished(), "a closed gate must hold the caller");
        gate.set(GateState {
            open: true,
            lag_ms: Some(100),
        });
        let waited = tokio::time::timeout(ms(5_000), waiter)
            .await
            .expect("the waiter returns once the gate opens")
            .expect("the waiter does not panic");
        assert!(waited >= ms(50), "waited {waited:?}");
    }
}
