//! Leader-side coalescing of concurrent submissions into one Raft entry, and
//! admission control in front of it.
//!
//! Every gateway batch joins a bounded queue. One task takes the queue's
//! head with everything queued behind it (lingering for more only when
//! configured to), and hands what it gathered (bounded by payments and
//! bytes) to a second task, which validates it as one entry
//! (ingress, `ingress.rs`), answers the payments that fail, and proposes the
//! rest as a single entry, so many batches share one validation pass, one
//! log fsync and one state-machine write batch. Each caller gets back exactly
//! its own outcomes, in its own order.
//!
//! Admission is counted in payments, taken before validation and held until
//! the caller is answered, so the memory pinned by accepted-but-unfinished
//! work is bounded. When the budget is spent, callers get RESOURCE_EXHAUSTED
//! with a retry hint instead of waiting in an unbounded line.

use std::sync::Arc;
use std::time::Duration;

use openraft::impls::ProgressResponder;
use prost::bytes::Bytes;
use spentledger_protocol::direct;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::Status;

use super::ingress::{CheckedEntry, IngressCheck, Route};
use super::raft_write::{now_ms, write_error_status};
use super::results::payment_result;
use crate::consensus::ClientRequest;
use crate::consensus::apply_lag::ApplyLagGate;
use crate::ledger_node::LedgerRaft;
use crate::ops::NodeMetrics;
use crate::state_machine::{CommandOutcome, PaymentOutcome};

/// gRPC's standard trailer telling a client how long to back off, and our own
/// spelling of it for clients without retry policies.
pub const RETRY_PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";
pub const RETRY_AFTER_HEADER: &str = "x-spentledger-retry-after-ms";

/// Bounds of the submission path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescerLimits {
    /// Payments admitted (validating, queued or being written) at once.
    pub queue_payments_max: usize,
    /// Payments in one Raft entry.
    pub entry_payments_max: usize,
    /// Encoded payment bytes in one Raft entry (kept well under the Raft
    /// message limit so an entry always fits one AppendEntries).
    pub entry_bytes_max: usize,
    /// How long the first batch of an entry waits for company. 0 by
    /// default: the batches that queue while the previous group is being
    /// validated are gathered anyway, so under load entries fill without
    /// waiting, and an idle leader does not hold a lone batch back. Measured
    /// (docs/BENCHMARKS.md, eighth round): 2 ms lowered no case's throughput
    /// or latency and added about 2 ms to every answer at half the peak.
    pub linger_ms: u64,
    /// Entries proposed and not yet applied at once.
    pub entries_in_flight_max: usize,
    /// Back-off suggested to a caller refused for overload.
    pub retry_after_ms: u64,
}

impl Default for CoalescerLimits {
    fn default() -> Self {
        CoalescerLimits {
            queue_payments_max: 20_000,
            entry_payments_max: 4_096,
            entry_bytes_max: 8 << 20,
            linger_ms: 0,
            entries_in_flight_max: 4,
            retry_after_ms: 200,
        }
    }
}

/// What one caller gets back: the entry's log index and its own outcomes.
pub type Submitted = Result<(u64, Vec<PaymentOutcome>), Status>;

/// Admission for `n` payments: hold it until the caller has its answer.
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

struct Pending {
    /// Each payment's encoding, as the gateway sent it.
    payments: Vec<Bytes>,
    bytes: usize,
    reply: oneshot::Sender<Submitted>,
    queued: std::time::Instant,
}

/// Handle to the coalescing task; cheap to clone.
#[derive(Clone)]
pub struct Coalescer {
    queue: mpsc::Sender<Pending>,
    admission: Arc<Semaphore>,
    limits: CoalescerLimits,
    metrics: NodeMetrics,
}

impl Coalescer {
    /// Starts the coalescing task; it ends when every handle is dropped.
    pub fn start(
        raft: LedgerRaft,
        limits: CoalescerLimits,
        metrics: NodeMetrics,
        ingress: IngressCheck,
        gate: ApplyLagGate,
    ) -> Self {
        // Each queued item holds at least one admitted payment, so the
        // channel can never need more slots than that.
        let (queue, rx) = mpsc::channel(limits.queue_payments_max.max(1));
        tokio::spawn(run(raft, rx, limits, metrics.clone(), ingress, gate));
        Coalescer {
            queue,
            admission: Arc::new(Semaphore::new(limits.queue_payments_max)),
            limits,
            metrics,
        }
    }

    /// Reserves room for `payments` or refuses with RESOURCE_EXHAUSTED and a
    /// retry hint. Never waits.
    pub fn admit(&self, payments: usize) -> Result<Admission, Status> {
        let n = u32::try_from(payments.max(1)).unwrap_or(u32::MAX);
        match self.admission.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(Admission(permit)),
            Err(_) => {
                self.metrics.overload_refusal();
                Err(overloaded(
                    self.limits.retry_after_ms,
                    self.limits.queue_payments_max,
                ))
            }
        }
    }

    /// Payments currently admitted.
    pub fn queued(&self) -> usize {
        self.limits
            .queue_payments_max
            .saturating_sub(self.admission.available_permits())
    }

    /// Validates `payments` with the rest of the next entry, proposes those
    /// that pass, and waits for their outcomes: one per payment, in order
    /// (those refused at ingress included). Payments reach the log in the
    /// order they were queued. The log index is that of the last entry
    /// holding any of them; 0 when none was proposed.
    ///
    /// A batch larger than one entry (`entry_payments_max`,
    /// `entry_bytes_max`) is queued as consecutive parts, each its own
    /// entry, so no entry exceeds the bounds (a batch near the API's
    /// message limit would otherwise make one entry of twice
    /// `entry_bytes_max`). Parts did not lower latency when measured: the
    /// cores, not the order of the work, are the limit (docs/BENCHMARKS.md,
    /// seventh round). When any part fails (no leader, shutdown) the call
    /// fails as a whole; parts already settled answer DUPLICATE when the
    /// gateway retries.
    pub async fn submit(&self, payments: Vec<Bytes>) -> Submitted {
        let total = payments.len();
        let mut answers = Vec::with_capacity(1);
        for (part, bytes) in split_parts(payments, self.limits) {
            let (reply, answer) = oneshot::channel();
            self.queue
                .send(Pending {
                    payments: part,
                    bytes,
                    reply,
                    queued: std::time::Instant::now(),
                })
                .await
                .map_err(|_| Status::unavailable("node is shutting down"))?;
            answers.push(answer);
        }
        let mut index = 0;
        let mut outcomes = Vec::with_capacity(total);
        for answer in answers {
            let (part_index, part_outcomes) = answer
                .await
                .map_err(|_| Status::unavailable("node is shutting down"))??;
            index = index.max(part_index);
            outcomes.extend(part_outcomes);
        }
        Ok((index, outcomes))
    }
}

/// Cuts a batch into consecutive parts that each fit one entry, with their
/// encoded bytes. A single payment larger than `entry_bytes_max` goes alone
/// (the API's message limit bounds it).
fn split_parts(payments: Vec<Bytes>, limits: CoalescerLimits) -> Vec<(Vec<Bytes>, usize)> {
    let count_max = limits.entry_payments_max.max(1);
    let mut parts = Vec::with_capacity(payments.len().div_ceil(count_max));
    let mut part = Vec::with_capacity(payments.len().min(count_max));
    let mut bytes = 0;
    for payment in payments {
        let len = payment.len();
        if !part.is_empty() && (part.len() >= count_max || bytes + len > limits.entry_bytes_max) {
            parts.push((std::mem::take(&mut part), bytes));
            bytes = 0;
        }
        bytes += len;
        part.push(payment);
    }
    if !part.is_empty() || parts.is_empty() {
        parts.push((part, bytes));
    }
    parts
}

fn overloaded(retry_after_ms: u64, queue_payments_max: usize) -> Status {
    let mut status = Status::resource_exhausted(format!(
        "overloaded: {queue_payments_max} payments already in progress; retry after {retry_after_ms} ms"
    ));
    if let Ok(v) = retry_after_ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_PUSHBACK_HEADER, v);
    }
    if let Ok(v) = retry_after_ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER_HEADER, v);
    }
    status
}

/// Gathers pending batches into groups and hands each to the checking stage.
async fn run(
    raft: LedgerRaft,
    mut rx: mpsc::Receiver<Pending>,
    limits: CoalescerLimits,
    metrics: NodeMetrics,
    ingress: IngressCheck,
    gate: ApplyLagGate,
) {
    // One group waits while the previous one is checked: gathering goes on
    // during validation, and the next entry comes out as full as it can.
    let (groups, groups_rx) = mpsc::channel(1);
    tokio::spawn(check_and_propose(
        raft, groups_rx, limits, metrics, ingress, gate,
    ));
    let linger = Duration::from_millis(limits.linger_ms);
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut count = first.payments.len();
        let mut bytes = first.bytes;
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while count < limits.entry_payments_max && bytes < limits.entry_bytes_max {
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing by the deadline: lingered long enough.
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .unwrap_or(None)
                }
            };
            let Some(p) = next else { break };
            if count + p.payments.len() > limits.entry_payments_max
                || bytes + p.bytes > limits.entry_bytes_max
            {
                carried = Some(p); // starts the next entry
                break;
            }
            count += p.payments.len();
            bytes += p.bytes;
            group.push(p);
        }
        if groups.send(group).await.is_err() {
            return;
        }
    }
}

/// Gathered groups whose ingress check has started and whose proposal has
/// not: the serial parts of one check (decoding, routing) overlap the
/// parallel signature work of the next.
const CHECKS_AHEAD: usize = 1;

/// A group whose ingress check is running.
struct Checking {
    check: tokio::task::JoinHandle<Result<CheckedEntry, crate::state_machine::StoreError>>,
    callers: Vec<(usize, oneshot::Sender<Submitted>)>,
    batches: usize,
    /// Encoded bytes of the gathered payments (counted once, at submission).
    bytes: usize,
    started: std::time::Instant,
}

/// Starts each gathered group's ingress check, in order, stamping it first
/// (the stamp its entry will carry), so stamps never decrease along the log.
async fn check_and_propose(
    raft: LedgerRaft,
    mut groups: mpsc::Receiver<Vec<Pending>>,
    limits: CoalescerLimits,
    metrics: NodeMetrics,
    ingress: IngressCheck,
    gate: ApplyLagGate,
) {
    let (checking, checking_rx) = mpsc::channel(CHECKS_AHEAD);
    tokio::spawn(propose_checked(raft, checking_rx, limits, metrics.clone()));
    while let Some(group) = groups.recv().await {
        // Held here while a majority's apply is too far behind (flow
        // control, `consensus::apply_lag`): before validation, so a held
        // group costs no CPU, and before stamping, so its stamp is the time
        // it is really proposed. Meanwhile the queue fills and admission
        // refuses the excess with a retry hint.
        let held = gate.wait_open().await;
        if !held.is_zero() {
            metrics.apply_lag_hold(held);
        }
        let started = std::time::Instant::now();
        let batches = group.len();
        let bytes = group.iter().map(|p| p.bytes).sum();
        let mut wire = Vec::with_capacity(group.iter().map(|p| p.payments.len()).sum());
        let mut callers = Vec::with_capacity(group.len());
        for pending in group {
            metrics.submit_queued(started.duration_since(pending.queued));
            callers.push((pending.payments.len(), pending.reply));
            wire.extend(pending.payments);
        }
        let checker = ingress.clone();
        let stamp_ms = now_ms();
        let check = tokio::task::spawn_blocking(move || checker.check(wire, stamp_ms));
        let item = Checking {
            check,
            callers,
            batches,
            bytes,
            started,
        };
        if checking.send(item).await.is_err() {
            return;
        }
    }
}

/// Takes checked groups in order: answers what failed ingress and proposes
/// the rest with its verdicts.
async fn propose_checked(
    raft: LedgerRaft,
    mut checking: mpsc::Receiver<Checking>,
    limits: CoalescerLimits,
    metrics: NodeMetrics,
) {
    let in_flight = Arc::new(Semaphore::new(limits.entries_in_flight_max.max(1)));
    while let Some(item) = checking.recv().await {
        let checked = match item.check.await {
            Ok(result) => result.map_err(|store| store.to_string()),
            Err(task) => Err(task.to_string()),
        };
        let checked = match checked {
            Ok(checked) => checked,
            Err(why) => {
                answer_unrouted(item.callers, Status::internal(format!("ingress: {why}")));
                continue;
            }
        };
        metrics.ingress_validated(item.started.elapsed());
        for route in &checked.routes {
            if let Route::Answered(outcome) = route {
                metrics.ingress_verdict(&payment_result(outcome));
            }
        }
        let CheckedEntry {
            stamp_ms,
            routes,
            proposed,
            precheck,
        } = checked;
        let mut routes = routes.into_iter();
        let callers: Vec<Caller> = item
            .callers
            .into_iter()
            .map(|(n, reply)| Caller {
                routes: routes.by_ref().take(n).collect(),
                reply,
            })
            .collect();
        if proposed.is_empty() {
            answer_all(callers, Ok((0, Vec::new())));
            continue;
        }
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the in-flight semaphore is never closed");
        // The gathered bytes: payments refused at ingress are few, and
        // measuring the proposed ones again would cost a pass over the entry.
        metrics.entry_proposed(item.batches, proposed.len(), item.bytes);
        // The payments' bytes as they came, not encoded again.
        let command = Bytes::from(direct::encode_submit_command(stamp_ms, &proposed));
        // The slices pin the gateways' whole request buffers: let them go
        // now, not after Raft has taken the entry.
        drop(proposed);
        let request = match precheck {
            Some(precheck) => ClientRequest::encoded_prechecked(command, precheck),
            None => ClientRequest::from_encoded(command),
        };
        propose(&raft, request, callers, permit, metrics.clone()).await;
    }
}

/// One caller of a gathered entry: a route per payment it sent, and where
/// its answer goes.
struct Caller {
    routes: Vec<Route>,
    reply: oneshot::Sender<Submitted>,
}

/// Hands one checked entry to Raft and spawns the wait for its outcome.
///
/// Called from the checking stage one entry at a time, and it returns once
/// Raft has *queued* the entry (not applied it), so entries reach the log in
/// the order their batches were queued, and their leader stamps never
/// decrease along the log (DESIGN rule 1). Proposing from spawned tasks, as
/// before, let two entries overtake each other.
async fn propose(
    raft: &LedgerRaft,
    request: ClientRequest,
    callers: Vec<Caller>,
    in_flight: OwnedSemaphorePermit,
    metrics: NodeMetrics,
) {
    let proposed = std::time::Instant::now();
    let (responder, outcome) = ProgressResponder::complete_only();
    if let Err(fatal) = raft.write(request).responder(responder).await {
        answer_all(callers, Err(Status::unavailable(format!("raft: {fatal}"))));
        return;
    }
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let outcome = outcome.await;
        metrics.entry_outcome(proposed.elapsed());
        let result = match outcome {
            Ok(Ok(response)) => match response.data {
                CommandOutcome::Submitted(outcomes) => Ok((response.log_id.index, outcomes)),
                other => Err(Status::internal(format!(
                    "submit entry produced {other:?}, not payment outcomes"
                ))),
            },
            Ok(Err(e)) => Err(write_error_status(e)),
            Err(_) => Err(Status::unavailable(
                "raft stopped before the entry was applied",
            )),
        };
        answer_all(callers, result);
    });
}

/// Answers callers whose payments were never routed (ingress failed).
fn answer_unrouted(callers: Vec<(usize, oneshot::Sender<Submitted>)>, status: Status) {
    for (_, reply) in callers {
        let _ = reply.send(Err(status.clone())); // a caller that went away needs no answer
    }
}

/// Gives each caller its own outcomes in its own order: those answered at
/// ingress and its slice of the entry's. A caller with nothing in the entry
/// gets its answers even when the entry failed.
fn answer_all(callers: Vec<Caller>, result: Result<(u64, Vec<PaymentOutcome>), Status>) {
    let (index, mut entry): (u64, Result<Vec<Option<PaymentOutcome>>, Status>) = match result {
        Ok((index, outcomes)) => (index, Ok(outcomes.into_iter().map(Some).collect())),
        Err(status) => (0, Err(status)),
    };
    for caller in callers {
        let in_entry = caller
            .routes
            .iter()
            .any(|r| matches!(r, Route::Proposed(_)));
        let answer = match (&mut entry, in_entry) {
            (_, false) => Ok((0, answered_only(caller.routes))),
            (Err(status), true) => Err(status.clone()),
            (Ok(outcomes), true) => caller
                .routes
                .into_iter()
                .map(|route| match route {
                    Route::Answered(outcome) => Some(outcome),
                    Route::Proposed(i) => outcomes.get_mut(i).and_then(Option::take),
                })
                .collect::<Option<Vec<_>>>()
                .map(|mine| (index, mine))
                .ok_or_else(|| Status::internal("fewer outcomes than proposed payments")),
        };
        let _ = caller.reply.send(answer); // a caller that went away needs no answer
    }
}

fn answered_only(routes: Vec<Route>) -> Vec<PaymentOutcome> {
    routes
        .into_iter()
        .filter_map(|route| match route {
            Route::Answered(outcome) => Some(outcome),
            Route::Proposed(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use prost::Message;
    use spentledger_protocol::pb;

    /// A payment whose encoding is `1 + 1 + payee_bytes` bytes (field tag,
    /// length, text), with its position in the payee for order checks.
    fn payment(n: usize, payee_bytes: usize) -> Bytes {
        let mut payee_id = format!("{n:04}");
        payee_id.extend(std::iter::repeat_n('x', payee_bytes - 4));
        let payment = pb::Payment {
            payee_id,
            ..Default::default()
        };
        Bytes::from(payment.encode_to_vec())
    }

    fn limits(count_max: usize, bytes_max: usize) -> CoalescerLimits {
        CoalescerLimits {
            entry_payments_max: count_max,
            entry_bytes_max: bytes_max,
            ..CoalescerLimits::default()
        }
    }

    fn order(parts: &[(Vec<Bytes>, usize)]) -> Vec<String> {
        parts
            .iter()
            .flat_map(|(p, _)| {
                p.iter().map(|p| {
                    let payment = pb::Payment::decode(p.clone()).expect("a payment");
                    payment.payee_id[..4].to_owned()
                })
            })
            .collect()
    }

    #[test]
    fn a_batch_is_cut_into_consecutive_parts_by_count() {
        let batch: Vec<_> = (0..10).map(|n| payment(n, 10)).collect();
        let expected = order(&[(batch.clone(), 0)]);
        let parts = split_parts(batch, limits(4, 1 << 20));
        let sizes: Vec<usize> = parts.iter().map(|(p, _)| p.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(order(&parts), expected, "the batch's order is kept");
        assert!(parts.iter().all(|(p, bytes)| *bytes == p.len() * 12));
    }

    #[test]
    fn a_batch_is_cut_by_bytes_and_an_oversized_payment_goes_alone() {
        // 12-byte payments under a 30-byte bound: two per part; a 102-byte
        // one alone.
        let mut batch: Vec<_> = (0..3).map(|n| payment(n, 10)).collect();
        batch.push(payment(3, 100));
        batch.push(payment(4, 10));
        let parts = split_parts(batch, limits(100, 30));
        let sizes: Vec<(usize, usize)> = parts.iter().map(|(p, b)| (p.len(), *b)).collect();
        assert_eq!(sizes, [(2, 24), (1, 12), (1, 102), (1, 12)]);
        assert_eq!(order(&parts), ["0000", "0001", "0002", "0003", "0004"]);
    }

    #[test]
    fn a_batch_that_fits_stays_whole_and_an_empty_one_is_one_empty_part() {
        let batch: Vec<_> = (0..4).map(|n| payment(n, 10)).collect();
        assert_eq!(split_parts(batch, limits(4, 48)).len(), 1);
        let parts = split_parts(Vec::new(), limits(4, 48));
        assert_eq!(parts.len(), 1);
        assert!(parts[0].0.is_empty());
    }
}
