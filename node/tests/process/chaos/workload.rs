//! The chaos workload: concurrent gateways submit batches of fresh
//! payments, and alongside each batch a double spend of one of its tokens
//! sent to a node on another side of the current fault. A request that gets
//! no answer (timeout, unavailable) is retried with the same payments on
//! another node. Every request and answer is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spentledger_chaos::history::{Answer, Outcome, PaymentRef, Recorder};
use spentledger_protocol::{Payment, pb};
use tonic::transport::Channel;

use super::super::{id, now_ms, test_issuer, wallet_from_seed};
use super::Rng;
use super::cluster::{Net, hex};

/// Who is a member, which nodes are down, and the sides of the current
/// partition (empty when there is none): where the workload sends.
pub(crate) struct Topology {
    state: Mutex<TopologyState>,
}

struct TopologyState {
    members: Vec<u64>,
    sides: Vec<Vec<u64>>,
    down: BTreeSet<u64>,
}

impl Topology {
    pub(crate) fn new(members: Vec<u64>) -> Topology {
        Topology {
            state: Mutex::new(TopologyState {
                members,
                sides: Vec::new(),
                down: BTreeSet::new(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut TopologyState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn set_members(&self, members: Vec<u64>) {
        self.with(|s| s.members = members);
    }

    pub(crate) fn set_sides(&self, sides: Vec<Vec<u64>>) {
        self.with(|s| s.sides = sides);
    }

    pub(crate) fn set_down(&self, node: u64) {
        self.with(|s| {
            s.down.insert(node);
        });
    }

    /// No partition, nobody down.
    pub(crate) fn heal(&self) {
        self.with(|s| {
            s.sides.clear();
            s.down.clear();
        });
    }

    /// A node for a batch, and one for its double spend: on another side of
    /// the partition when there is one.
    fn pick_pair(&self, rng: &mut Rng) -> (u64, u64) {
        self.with(|s| {
            let up: Vec<u64> = s
                .members
                .iter()
                .copied()
                .filter(|m| !s.down.contains(m))
                .collect();
            let up = if up.is_empty() { s.members.clone() } else { up };
            let first = rng.pick(&up);
            let elsewhere: Vec<u64> = s
                .sides
                .iter()
                .filter(|side| !side.contains(&first))
                .flatten()
                .copied()
                .filter(|m| up.contains(m))
                .collect();
            let others: Vec<u64> = up.iter().copied().filter(|m| *m != first).collect();
            let second = if !elsewhere.is_empty() {
                rng.pick(&elsewhere)
            } else if !others.is_empty() {
                rng.pick(&others)
            } else {
                first
            };
            (first, second)
        })
    }

    /// Another member than `node` to retry on.
    fn another(&self, node: u64, rng: &mut Rng) -> u64 {
        self.with(|s| {
            let others: Vec<u64> = s.members.iter().copied().filter(|m| *m != node).collect();
            if others.is_empty() {
                node
            } else {
                rng.pick(&others)
            }
        })
    }
}

/// The workload's size and patience.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkloadLimits {
    pub gateways: u32,
    /// Fresh payments per batch (plus one double spend sent apart).
    pub batch_payments: usize,
    pub request_timeout: Duration,
    /// Tries per batch, the first included.
    pub attempts_max: u32,
    /// Requests per scenario, across gateways (a backstop; the fault
    /// window bounds a scenario).
    pub requests_max: u64,
    /// Shortest time a gateway takes per round, so fast refusals (a skewed
    /// clock) do not flood the history.
    pub round_min: Duration,
}

impl Default for WorkloadLimits {
    fn default() -> Self {
        WorkloadLimits {
            gateways: 4,
            batch_payments: 8,
            request_timeout: Duration::from_secs(3),
            attempts_max: 3,
            requests_max: 20_000,
            round_min: Duration::from_millis(25),
        }
    }
}

/// What the workload sent: every tx id (to read back from each node) and
/// every certificate (hex).
#[derive(Default)]
pub(crate) struct Sent {
    pub tx_ids: Vec<[u8; 32]>,
    pub cert_ids: BTreeSet<String>,
}

struct Ctx {
    channels: BTreeMap<u64, Channel>,
    recorder: Arc<Recorder>,
    topology: Arc<Topology>,
    stop: Arc<AtomicBool>,
    requests: AtomicU64,
    /// When (history ms) a request last got an answer that wrote something.
    last_write_ms: Arc<AtomicU64>,
    seed: u64,
    limits: WorkloadLimits,
}

/// Starts the gateways; they run until `stop` or the request cap.
pub(crate) fn spawn(
    net: &Net,
    recorder: Arc<Recorder>,
    topology: Arc<Topology>,
    stop: Arc<AtomicBool>,
    seed: u64,
    limits: WorkloadLimits,
    last_write_ms: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Sent> {
    let ctx = Arc::new(Ctx {
        channels: net
            .slots()
            .into_iter()
            .map(|id| (id, net.channel(id)))
            .collect(),
        recorder,
        topology,
        stop,
        requests: AtomicU64::new(0),
        last_write_ms,
        seed,
        limits,
    });
    tokio::spawn(async move {
        let gateways: Vec<_> = (0..limits.gateways)
            .map(|g| tokio::spawn(gateway(g, ctx.clone())))
            .collect();
        let mut all = Sent::default();
        for g in gateways {
            let sent = g.await.expect("a gateway task panicked");
            all.tx_ids.extend(sent.tx_ids);
            all.cert_ids.extend(sent.cert_ids);
        }
        all
    })
}

async fn gateway(g: u32, ctx: Arc<Ctx>) -> Sent {
    let issuer = test_issuer();
    let mut rng = Rng::new(ctx.seed ^ (u64::from(g) + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut sent = Sent::default();
    for k in 0u64.. {
        if ctx.stop.load(Ordering::Relaxed)
            || ctx.requests.load(Ordering::Relaxed) >= ctx.limits.requests_max
        {
            break;
        }
        // A fresh device per round: its certificate is revoked by the
        // round's double spend.
        let device_seed =
            *blake3::hash(format!("chaos {} {g} {k}", ctx.seed).as_bytes()).as_bytes();
        let mut wallet = wallet_from_seed(&issuer, device_seed, &format!("g{g}-{k}"), 1_000);
        let now = now_ms();
        let batch: Vec<Payment> = (0..ctx.limits.batch_payments)
            .map(|i| {
                let challenge = [u8::try_from(i).expect("small batches"); 32];
                wallet
                    .pay(20, &id("m"), challenge, now)
                    .expect("the wallet can pay")
            })
            .collect();
        let tokens: Vec<u32> = batch[0].inputs.iter().map(|i| i.leaf.index).collect();
        let twin = wallet
            .sign_payment(&tokens, 1_000_000 + k, &id("m-twin"), [0xEE; 32], now)
            .expect("a tampered device signs the same tokens again");
        sent.cert_ids.insert(twin.certificate.cert_id().to_hex());
        sent.tx_ids.extend(batch.iter().map(|p| p.tx_id().0));
        sent.tx_ids.push(twin.tx_id().0);
        let (a, b) = ctx.topology.pick_pair(&mut rng);
        let (retry_a, retry_b) = (rng.next(), rng.next());
        tokio::join!(
            send(&ctx, g, &batch, a, retry_a),
            send(&ctx, g, std::slice::from_ref(&twin), b, retry_b),
            tokio::time::sleep(ctx.limits.round_min)
        );
    }
    sent
}

/// Sends `payments` to `first`, and on no answer to other members, up to
/// the attempt cap; every attempt is an op in the history.
async fn send(ctx: &Ctx, g: u32, payments: &[Payment], first: u64, retry_seed: u64) {
    let refs: Vec<PaymentRef> = payments.iter().map(payment_ref).collect();
    let request = pb::SubmitBatchRequest {
        batch_id: 0,
        payments: payments.iter().map(pb::Payment::from).collect(),
    };
    let mut rng = Rng::new(retry_seed);
    let mut node = first;
    for attempt in 0..ctx.limits.attempts_max {
        if attempt > 0 {
            node = ctx.topology.another(node, &mut rng);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ctx.requests.fetch_add(1, Ordering::Relaxed);
        let op = ctx.recorder.invoke(g, &format!("n{node}"), refs.clone());
        let mut client = pb::settlement_client::SettlementClient::new(ctx.channels[&node].clone());
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(ctx.limits.request_timeout);
        let outcome = match tokio::time::timeout(
            ctx.limits.request_timeout + Duration::from_millis(500),
            client.submit_batch(call),
        )
        .await
        {
            Ok(Ok(response)) => Outcome::Answered {
                answers: response.get_ref().results.iter().map(answer).collect(),
            },
            Ok(Err(status)) => Outcome::Failed {
                error: format!("{:?}: {}", status.code(), status.message()),
            },
            Err(_) => Outcome::Failed {
                error: "no answer within the deadline".to_owned(),
            },
        };
        let answered = matches!(outcome, Outcome::Answered { .. });
        if let Outcome::Answered { answers } = &outcome
            && answers.iter().any(|a| a.verdict != "REJECTED")
        {
            ctx.last_write_ms
                .fetch_max(ctx.recorder.t_ms(), Ordering::Relaxed);
        }
        ctx.recorder.complete(op, outcome);
        if answered {
            return;
        }
    }
}

fn payment_ref(p: &Payment) -> PaymentRef {
    PaymentRef {
        tx_id: p.tx_id().to_hex(),
        cert_id: p.certificate.cert_id().to_hex(),
        nullifiers: p.nullifiers().iter().map(|n| n.to_hex()).collect(),
    }
}

/// The ledger's answer as the history records it.
fn answer(r: &pb::PaymentResult) -> Answer {
    let verdict = match pb::Verdict::try_from(r.verdict) {
        Ok(pb::Verdict::Accepted) => "ACCEPTED",
        Ok(pb::Verdict::Duplicate) => "DUPLICATE",
        Ok(pb::Verdict::DoubleSpend) => "DOUBLE_SPEND",
        Ok(pb::Verdict::Rejected) => "REJECTED",
        _ => "UNSPECIFIED",
    };
    Answer {
        tx_id: hex(&r.tx_id),
        verdict: verdict.to_owned(),
        receipt_tx_id: r.receipt.as_ref().map(|x| hex(&x.tx_id)),
        conflict_tx_id: r
            .double_spend
            .as_ref()
            .and_then(|e| e.first_payment.as_ref())
            .and_then(|p| Payment::try_from(p).ok())
            .map(|p| p.tx_id().to_hex()),
        reason: (verdict == "REJECTED").then(|| {
            pb::RejectReason::try_from(r.reject_reason).map_or_else(
                |_| r.reject_reason.to_string(),
                |x| x.as_str_name().to_owned(),
            )
        }),
    }
}
