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
//! (the `Raft.Applied` RPC) and measures how far each follower is behind
//! *in time*: its backlog, in the leader's own apply time
//! ([`LeaderProgress`], a clock that stops while the leader holds), divided
//! by the follower's recent pace ([`FollowerPace`]), which is how long the
//! follower needs to apply what it lacks. The lag that decides is that of
//! the slowest member of the fastest majority. While it exceeds
//! `lag_ms_max`, the leader holds new entries (the submission queue fills,
//! and callers beyond it get RESOURCE_EXHAUSTED with a retry hint); it
//! resumes once the lag is back at 90% of it or less. Under a sustained
//! overload the gate so opens and closes every few hundred milliseconds:
//! the leader proposes at the pace its followers apply.
//!
//! Until the twentieth round the lag was how long ago, on the wall clock,
//! the leader had passed the follower's index. During a hold that figure
//! grows with the hold itself, so it fell only once the follower had caught
//! up completely: every hold lasted 1.3-1.5 s on the benchmark machine, and
//! every batch arriving meanwhile waited that long (docs/BENCHMARKS.md).
//!
//! Only positive evidence holds entries: a peer that does not answer (down,
//! partitioned, an older version without the RPC) counts as unknown, and
//! with fewer known followers than a majority needs nothing is held. A
//! single lagging follower in a 3-node cluster does not hold anything, as
//! it does not hold commits.

use std::collections::{BTreeMap, VecDeque};
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
    /// Largest lag (catch-up time, see the module docs) of the quorum's
    /// apply behind the leader's before new entries wait; 0 turns the flow
    /// control off.
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
/// indexes strictly increasing, times on a clock that stops while the
/// leader holds new entries.
///
/// A follower's backlog is measured on this clock: the leader's apply time
/// of what the follower still lacks. A hold adds nothing to that backlog,
/// so its time must not count.
#[derive(Debug, Default)]
pub struct LeaderProgress {
    samples: VecDeque<(u64, Duration)>,
    /// When the clock started: the first record or hold since the last clear.
    origin: Option<Instant>,
    /// Hold time already ended, taken off the clock.
    held: Duration,
    /// Start of the hold under way, if any.
    held_since: Option<Instant>,
    /// The poll interval: entries first seen at a poll were applied within
    /// the interval before it (zero: no interpolation, see `lag_of`).
    poll: Duration,
}

impl LeaderProgress {
    /// Progress sampled every `poll`.
    pub fn new(poll: Duration) -> Self {
        LeaderProgress {
            poll,
            ..LeaderProgress::default()
        }
    }

    /// The clock at `at`: time since `origin` without the holds.
    pub fn clock(&self, at: Instant) -> Duration {
        let Some(origin) = self.origin else {
            return Duration::ZERO;
        };
        let ongoing = self
            .held_since
            .map_or(Duration::ZERO, |since| at.saturating_duration_since(since));
        at.saturating_duration_since(origin)
            .saturating_sub(self.held + ongoing)
    }

    /// Notes that the leader had applied up to `index` at `at`.
    pub fn record(&mut self, index: u64, at: Instant) {
        self.origin.get_or_insert(at);
        if self.samples.back().is_some_and(|(last, _)| *last >= index) {
            return;
        }
        if self.samples.len() == PROGRESS_SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((index, self.clock(at)));
    }

    /// Stops the clock: the leader holds new entries from `at` on.
    pub fn hold(&mut self, at: Instant) {
        self.origin.get_or_insert(at);
        self.held_since.get_or_insert(at);
    }

    /// Restarts the clock: the leader proposes again from `at` on. Returns
    /// how long the hold lasted (zero when there was none).
    pub fn resume(&mut self, at: Instant) -> Duration {
        let Some(since) = self.held_since.take() else {
            return Duration::ZERO;
        };
        let hold = at.saturating_duration_since(since);
        self.held += hold;
        hold
    }

    /// Forgets everything (leadership lost or regained).
    pub fn clear(&mut self) {
        *self = LeaderProgress::new(self.poll);
    }

    /// Where `follower_applied` stands on the clock without holds: the
    /// clock's reading at `now` when the follower is level with the newest
    /// sample.
    ///
    /// Where the follower stands between two samples is interpolated over
    /// the poll before the later one (entries first seen at a poll were
    /// applied since the previous poll, or, after an idle spell, within the
    /// last interval), so its backlog shrinks with each entry it applies
    /// rather than in steps of a poll's worth of entries. With a zero poll,
    /// the position is the sample that first passed the follower.
    pub fn position_of(&self, follower_applied: u64, now: Instant) -> Duration {
        // Indexes increase along the deque: the first one past the
        // follower is found by bisection.
        let first_past = self
            .samples
            .partition_point(|(index, _)| *index <= follower_applied);
        let Some(&(index_past, at_past)) = self.samples.get(first_past) else {
            return self.clock(now);
        };
        match first_past.checked_sub(1).map(|i| self.samples[i]) {
            Some((index_before, at_before)) => {
                let start = at_before.max(at_past.saturating_sub(self.poll));
                // index_before <= follower_applied < index_past
                let done =
                    (follower_applied - index_before) as f64 / (index_past - index_before) as f64;
                start + at_past.saturating_sub(start).mul_f64(done)
            }
            None => at_past,
        }
    }

    /// How far `follower_applied` is behind the leader, on the clock
    /// without holds (see `position_of`): zero when level.
    pub fn lag_of(&self, follower_applied: u64, now: Instant) -> Duration {
        self.clock(now)
            .saturating_sub(self.position_of(follower_applied, now))
    }
}

/// How fast a follower applies, in the leader's apply time per second,
/// averaged over about [`PACE_WINDOW`]: what turns a backlog measured in the
/// leader's time into the follower's time to apply it.
///
/// The backlog alone is not enough: a follower validates every payment
/// that the leader validated once at ingress, so it applies more slowly
/// than the leader, and on a shared machine much more slowly while the
/// leader is busy. A follower 40 times slower than its leader (the cluster
/// test) has 40 s of work in 1 s of the leader's.
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowerPace {
    /// The last poll: when, where the follower was on the leader's clock,
    /// and whether it was behind then.
    last: Option<(Instant, Duration, bool)>,
    /// Leader's apply time the follower applies per second; `None` until
    /// measured once, and then assumed as fast as the leader.
    pace: Option<f64>,
}

/// Time over which a follower's pace is averaged.
const PACE_WINDOW: Duration = Duration::from_secs(1);
/// The slowest pace assumed: a follower that does not move at all has a
/// catch-up time of 100 times its backlog (still growing as that grows).
const PACE_MIN: f64 = 0.01;

impl FollowerPace {
    /// The follower's time to apply its backlog at its recent pace, from a
    /// poll at `now` finding it at `position` on the leader's clock,
    /// `backlog` behind the leader.
    ///
    /// Only an interval that starts with the follower behind measures its
    /// pace: level with the leader, it applies whatever it is given, and its
    /// movement then shows the leader's pace, not its own. The first such
    /// measurement is taken whole, so a follower much slower than the
    /// leader is known as such after two polls.
    pub fn catch_up_time(
        &mut self,
        now: Instant,
        position: Duration,
        backlog: Duration,
    ) -> Duration {
        if let Some((at, previous, true)) = self.last {
            let elapsed_s = now.saturating_duration_since(at).as_secs_f64();
            if elapsed_s > 0.0 {
                let moved_s = position.as_secs_f64() - previous.as_secs_f64();
                let instant = (moved_s / elapsed_s).max(0.0);
                let weight = (elapsed_s / PACE_WINDOW.as_secs_f64()).min(1.0);
                self.pace = Some(match self.pace {
                    None => instant,
                    Some(pace) => weight * instant + (1.0 - weight) * pace,
                });
            }
        }
        self.last = Some((now, position, !backlog.is_zero()));
        if backlog.is_zero() {
            return Duration::ZERO;
        }
        backlog.div_f64(self.pace.unwrap_or(1.0).max(PACE_MIN))
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
/// reopens at or below [`reopen_lag_ms`].
pub fn next_gate(was_open: bool, lag: Option<Duration>, lag_ms_max: u64) -> GateState {
    let lag_ms = lag.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let open = match lag_ms {
        None => true,
        Some(_) if lag_ms_max == 0 => true,
        Some(ms) if was_open => ms <= lag_ms_max,
        Some(ms) => ms <= reopen_lag_ms(lag_ms_max),
    };
    GateState { open, lag_ms }
}

/// The lag at which a closed gate reopens: 90% of `lag_ms_max`. A hold
/// lasts until the followers have worked off the difference, and every
/// batch arriving meanwhile waits for it. Measured on the benchmark machine
/// with the backlog in the leader's time (batches of 100 from 16 gateways,
/// closed loop): with the margin at half the limit holds lasted 0.6-0.7 s
/// and the p99 was 0.71-0.92 s; at 90% a hold lasts a poll or two and the
/// p99 was 0.35-0.44 s, at the same throughput. The margin keeps the gate
/// from changing at every poll.
pub fn reopen_lag_ms(lag_ms_max: u64) -> u64 {
    lag_ms_max - lag_ms_max / 10
}

/// How often the leader's log reports holds at most: under a sustained
/// overload the gate closes several times a second.
const HOLD_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The holds since the log last reported them.
#[derive(Debug, Default)]
struct HoldLog {
    last_report: Option<Instant>,
    holds: u64,
    held: Duration,
}

impl HoldLog {
    /// Counts a hold starting at `now`; reports it with the holds counted
    /// since the last report when that is `HOLD_LOG_INTERVAL` ago (returns
    /// whether it did).
    fn hold_started(&mut self, now: Instant, lag_ms: Option<u64>, lag_ms_max: u64) -> bool {
        self.holds += 1;
        if self
            .last_report
            .is_some_and(|at| now.saturating_duration_since(at) < HOLD_LOG_INTERVAL)
        {
            return false;
        }
        tracing::warn!(
            lag_ms,
            lag_ms_max,
            holds = self.holds,
            held_ms = u64::try_from(self.held.as_millis()).unwrap_or(u64::MAX),
            since_s = self
                .last_report
                .map(|at| now.saturating_duration_since(at).as_secs()),
            "a majority's apply is behind this leader's; holding new entries until it catches up \
             (holds and time held since the last report)"
        );
        self.last_report = Some(now);
        self.holds = 0;
        self.held = Duration::ZERO;
        true
    }

    fn hold_ended(&mut self, held: Duration, lag_ms: Option<u64>) {
        self.held += held;
        tracing::debug!(
            lag_ms,
            held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX),
            "followers caught up; proposing again"
        );
    }
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
    let mut progress = LeaderProgress::new(poll);
    let mut hold_log = HoldLog::default();
    let mut paces: BTreeMap<u64, FollowerPace> = BTreeMap::new();
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
            paces.clear();
            gate.set(GateState {
                open: true,
                lag_ms: None,
            });
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
        // A follower removed from the membership leaves no pace behind.
        paces.retain(|id, _| followers.iter().any(|(f, _)| f == id));
        let asks = followers.iter().map(|(id, addr)| {
            let peers = &peers;
            async move { (*id, peers.applied_index(*id, addr, poll_timeout).await) }
        });
        let answers = futures::future::join_all(asks).await;
        let now = Instant::now();
        let mut lags = Vec::with_capacity(answers.len());
        for (id, answer) in answers {
            let lag = match answer {
                Ok(applied) => {
                    let position = progress.position_of(applied, now);
                    let backlog = progress.clock(now).saturating_sub(position);
                    Some(
                        paces
                            .entry(id)
                            .or_default()
                            .catch_up_time(now, position, backlog),
                    )
                }
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
                progress.hold(now);
                let _reported = hold_log.hold_started(now, next.lag_ms, limits.lag_ms_max);
            }
            (false, true) => {
                let held = progress.resume(now);
                hold_log.hold_ended(held, next.lag_ms);
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
    fn time_the_leader_holds_entries_adds_no_lag() {
        let t0 = Instant::now();
        let mut p = LeaderProgress::default();
        p.record(10, t0);
        p.record(20, t0 + ms(100));
        p.record(30, t0 + ms(200));
        // The gate closes at +300 ms and stays closed for 2 s.
        p.hold(t0 + ms(300));
        for tick in 4..24 {
            p.record(30, t0 + ms(100 * tick));
        }
        let late = t0 + ms(2_300);
        // A follower at 10 stays 200 ms behind however long the hold
        // lasts (the leader passed 10 at +100 ms and worked until +300).
        assert_eq!(p.lag_of(10, t0 + ms(400)), ms(200));
        assert_eq!(p.lag_of(10, late), ms(200));
        assert_eq!(p.lag_of(20, late), ms(100));
        assert_eq!(p.lag_of(30, late), Duration::ZERO);
        // Proposing again, the clock runs on from where the hold stopped it.
        assert_eq!(p.resume(late), ms(2_000), "the hold's length");
        assert_eq!(p.resume(late), Duration::ZERO, "no hold under way");
        p.record(40, t0 + ms(2_400));
        assert_eq!(p.lag_of(10, t0 + ms(2_400)), ms(300));
        assert_eq!(p.lag_of(30, t0 + ms(2_500)), ms(100));
        // A second hold is taken off too.
        p.hold(t0 + ms(2_500));
        assert_eq!(p.resume(t0 + ms(3_500)), ms(1_000));
        assert_eq!(p.lag_of(30, t0 + ms(3_600)), ms(200));
        p.clear();
        assert_eq!(p.lag_of(0, t0 + ms(3_600)), Duration::ZERO);
    }

    /// Pace arithmetic is in floating point: equal to the microsecond.
    fn must_be_near(got: Duration, want: Duration) {
        let diff = got.abs_diff(want);
        assert!(
            diff < Duration::from_micros(1),
            "got {got:?}, want {want:?}"
        );
    }

    #[test]
    fn catch_up_time_is_the_backlog_at_the_followers_recent_pace() {
        let t0 = Instant::now();
        let mut pace = FollowerPace::default();
        // Polls one second apart: (at, position, backlog, catch-up time),
        // in ms, and why.
        let polls: [(u64, u64, u64, u64, &str); 10] = [
            (0, 1_000, 200, 200, "first sight: as fast as the leader"),
            (
                1_000,
                1_100,
                200,
                2_000,
                "moved 100 ms in 1 s: measured whole",
            ),
            (2_000, 1_200, 200, 2_000, "the same pace"),
            (3_000, 1_300, 200, 2_000, "the same pace"),
            (4_000, 1_400, 200, 2_000, "the same pace"),
            (5_000, 1_500, 200, 2_000, "the same pace"),
            (
                7_000,
                1_500,
                300,
                30_000,
                "stopped: the slowest pace assumed",
            ),
            (8_000, 1_500, 0, 0, "level: nothing to catch up"),
            (
                9_000,
                2_500,
                50,
                5_000,
                "an interval starting level measures nothing",
            ),
            (10_000, 3_500, 50, 50, "behind at both ends, 1 s in 1 s"),
        ];
        for (at, position, backlog, want, why) in polls {
            let got = pace.catch_up_time(t0 + ms(at), ms(position), ms(backlog));
            assert!(
                got.abs_diff(ms(want)) < Duration::from_micros(1),
                "at +{at} ms ({why}): {got:?}, want {want} ms"
            );
        }
    }

    #[test]
    fn a_pace_is_averaged_over_about_a_second() {
        let t0 = Instant::now();
        let mut pace = FollowerPace::default();
        pace.catch_up_time(t0, Duration::ZERO, ms(500));
        // Measured once: 20 ms in 100 ms, a pace of 0.2.
        must_be_near(pace.catch_up_time(t0 + ms(100), ms(20), ms(500)), ms(2_500));
        // 100 ms in the next 100 ms moves the average by a tenth of the
        // difference (0.2 -> 0.28).
        must_be_near(
            pace.catch_up_time(t0 + ms(200), ms(120), ms(500)),
            Duration::from_secs_f64(0.5 / 0.28),
        );
    }

    #[test]
    fn a_follower_between_samples_is_placed_by_interpolation() {
        let t0 = Instant::now();
        let mut p = LeaderProgress::new(ms(100));
        p.record(100, t0);
        // 20 entries applied in the poll before +100 ms.
        p.record(120, t0 + ms(100));
        // Idle for 2 s, then 10 entries in the poll before +2,200 ms.
        p.record(130, t0 + ms(2_200));
        let now = t0 + ms(2_200);
        // Halfway through the first 20 entries: +50 ms on the clock.
        must_be_near(p.lag_of(110, now), ms(2_150));
        must_be_near(p.lag_of(119, now), ms(2_105));
        // After the idle spell the 10 entries count within its last poll,
        // not spread over the 2 s.
        must_be_near(p.lag_of(125, now), ms(50));
        must_be_near(p.lag_of(120, now), ms(100));
        assert_eq!(p.lag_of(130, now), Duration::ZERO);
        // Without a poll interval: the first sample past the follower.
        let mut q = LeaderProgress::default();
        q.record(100, t0);
        q.record(120, t0 + ms(100));
        assert_eq!(q.lag_of(110, t0 + ms(100)), Duration::ZERO);
        assert_eq!(q.lag_of(99, t0 + ms(100)), ms(100));
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
    fn the_gate_closes_above_the_limit_and_reopens_at_nine_tenths_of_it() {
        let closed = next_gate(true, Some(ms(1_001)), 1_000);
        assert!(!closed.open);
        assert_eq!(closed.lag_ms, Some(1_001));
        assert!(next_gate(true, Some(ms(1_000)), 1_000).open);
        // Closed: 950 ms is under the limit but above 90% of it.
        assert!(!next_gate(false, Some(ms(950)), 1_000).open);
        assert!(!next_gate(false, Some(ms(901)), 1_000).open);
        assert!(next_gate(false, Some(ms(900)), 1_000).open);
        assert_eq!(reopen_lag_ms(1), 1, "a 1 ms limit still reopens");
        // Unknown lag or the control off: open.
        assert!(next_gate(false, None, 1_000).open);
        assert!(next_gate(false, Some(ms(60_000)), 0).open);
    }

    #[test]
    fn holds_are_reported_at_most_once_per_interval_with_what_was_counted() {
        let t0 = Instant::now();
        let mut log = HoldLog::default();
        assert!(
            log.hold_started(t0, Some(1_001), 1_000),
            "the first is reported"
        );
        log.hold_ended(ms(150), Some(900));
        for i in 1..=5 {
            assert!(!log.hold_started(t0 + ms(300 * i), Some(1_001), 1_000));
            log.hold_ended(ms(100), Some(900));
        }
        assert_eq!(log.holds, 5);
        assert_eq!(log.held, ms(650));
        let later = t0 + HOLD_LOG_INTERVAL;
        assert!(log.hold_started(later, Some(1_002), 1_000));
        assert_eq!((log.holds, log.held), (0, Duration::ZERO), "counted anew");
        assert!(!log.hold_started(later + ms(1), Some(1_002), 1_000));
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
