//! A test-only fault layer on the Raft network: before each outgoing RPC a
//! node asks it whether the message gets through (partitions, one-way
//! blocks, blocked RPC kinds, random loss) and how long it is delayed.
//! Compiled only with the `fault-injection` feature (integration tests);
//! production builds carry an empty hook that lets everything through.

/// The Raft RPCs a fault can single out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RpcKind {
    Vote,
    Append,
    Snapshot,
    TransferLeader,
    /// The leader's poll of a follower's applied index (flow control).
    Applied,
}

/// What the peer client consults before each RPC.
#[derive(Clone, Default)]
pub struct FaultHook {
    #[cfg(feature = "fault-injection")]
    network: Option<FaultNetwork>,
}

impl FaultHook {
    #[cfg(feature = "fault-injection")]
    pub fn new(network: Option<FaultNetwork>) -> Self {
        FaultHook { network }
    }

    /// `Err` when the message from `from` to `to` is lost.
    pub async fn before(&self, from: u64, to: u64, kind: RpcKind) -> Result<(), String> {
        #[cfg(feature = "fault-injection")]
        if let Some(network) = &self.network {
            return network.before(from, to, kind).await;
        }
        let _ = (from, to, kind);
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
pub use imp::FaultNetwork;

#[cfg(feature = "fault-injection")]
mod imp {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::RpcKind;

    #[derive(Default)]
    struct Rules {
        /// (from, to): messages from `from` to `to` are lost.
        blocked: BTreeSet<(u64, u64)>,
        /// (from, kind): this node's RPCs of this kind are lost.
        blocked_kinds: BTreeSet<(u64, RpcKind)>,
        drop_per_mille: u32,
        delay_ms: u64,
        /// node -> ms its state machine waits per entry before applying it:
        /// a node that validates and applies slowly (not a network fault,
        /// but a fault of the cluster's nodes all the same).
        apply_delay_ms: BTreeMap<u64, u64>,
        /// xorshift state: losses are reproducible from the seed.
        rng: u64,
    }

    /// The faults of one test cluster, shared by all its nodes.
    #[derive(Clone)]
    pub struct FaultNetwork {
        rules: Arc<Mutex<Rules>>,
    }

    impl FaultNetwork {
        pub fn new(seed: u64) -> Self {
            FaultNetwork {
                rules: Arc::new(Mutex::new(Rules {
                    rng: seed | 1,
                    ..Rules::default()
                })),
            }
        }

        fn with<T>(&self, f: impl FnOnce(&mut Rules) -> T) -> T {
            f(&mut self.rules.lock().unwrap_or_else(|p| p.into_inner()))
        }

        /// Nodes in different groups cannot reach each other, either way.
        pub fn partition(&self, groups: &[&[u64]]) {
            self.with(|r| {
                for (i, a) in groups.iter().enumerate() {
                    for b in groups.iter().skip(i + 1) {
                        for x in *a {
                            for y in *b {
                                r.blocked.insert((*x, *y));
                                r.blocked.insert((*y, *x));
                            }
                        }
                    }
                }
            });
        }

        /// `node` can neither reach nor be reached by `others`.
        pub fn isolate(&self, node: u64, others: &[u64]) {
            self.partition(&[&[node], others]);
        }

        /// Messages from `from` to each of `to` are lost; the other way works.
        pub fn block_one_way(&self, from: u64, to: &[u64]) {
            self.with(|r| {
                for t in to {
                    r.blocked.insert((from, *t));
                }
            });
        }

        /// `from`'s RPCs of `kind` are lost.
        pub fn block_kind(&self, from: u64, kind: RpcKind) {
            self.with(|r| {
                r.blocked_kinds.insert((from, kind));
            });
        }

        /// Each message is lost with probability `per_mille` / 1000.
        pub fn drop_per_mille(&self, per_mille: u32) {
            self.with(|r| r.drop_per_mille = per_mille.min(1_000));
        }

        /// Every message waits this long before it is sent.
        pub fn delay_ms(&self, ms: u64) {
            self.with(|r| r.delay_ms = ms);
        }

        /// `node`'s state machine waits `ms` per entry before applying it.
        pub fn apply_delay_ms(&self, node: u64, ms: u64) {
            self.with(|r| r.apply_delay_ms.insert(node, ms));
        }

        /// How long `node` waits before applying `entries` entries.
        pub fn apply_delay(&self, node: u64, entries: usize) -> Duration {
            let per_entry = self.with(|r| r.apply_delay_ms.get(&node).copied().unwrap_or(0));
            Duration::from_millis(per_entry.saturating_mul(entries as u64))
        }

        /// Ends every fault.
        pub fn heal(&self) {
            self.with(|r| {
                r.blocked.clear();
                r.blocked_kinds.clear();
                r.drop_per_mille = 0;
                r.delay_ms = 0;
                r.apply_delay_ms.clear();
            });
        }

        pub(super) async fn before(&self, from: u64, to: u64, kind: RpcKind) -> Result<(), String> {
            let (delay_ms, lost) = self.with(|r| {
                r.rng ^= r.rng << 13;
                r.rng ^= r.rng >> 7;
                r.rng ^= r.rng << 17;
                let dropped = r.drop_per_mille > 0 && (r.rng % 1_000) < u64::from(r.drop_per_mille);
                let lost = r.blocked.contains(&(from, to))
                    || r.blocked_kinds.contains(&(from, kind))
                    || dropped;
                (r.delay_ms, lost)
            });
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            if lost {
                Err(format!(
                    "fault injected: {kind:?} from node {from} to node {to} lost"
                ))
            } else {
                Ok(())
            }
        }
    }
}
