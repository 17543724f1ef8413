use spentledger_protocol::pb::settlement_server::Settlement;
use spentledger_protocol::{CertId, Nullifier, TxId, pb};
use tonic::{Request, Response, Status};

use super::coalescer::{Coalescer, CoalescerLimits};
use super::forward::{Forwarder, Route, hops};
use super::raft_write::read_barrier;
use super::raw_submit::RawBatch;
use super::results::payment_result;
use crate::consensus::StateHandle;
use crate::consensus::apply_lag::ApplyLagLimits;
use crate::ledger_node::LedgerRaft;
use crate::ops::NodeMetrics;
use crate::state_machine::LedgerRead;

/// Request limits of the client API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    pub batch_payments_max: usize,
    /// Queue, entry and linger bounds of the write path.
    pub submit: CoalescerLimits,
    /// Batches one SubmitStream may carry; the next one ends the stream with
    /// RESOURCE_EXHAUSTED (the gateway opens a new stream).
    pub stream_batches_max: usize,
    /// Threads of the ingress validation pool (the leader checks every
    /// payment it proposes).
    pub ingress_validation_threads: usize,
    /// How far behind a majority's apply may fall before the leader holds
    /// new entries.
    pub apply_lag: ApplyLagLimits,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            batch_payments_max: 1_000,
            submit: CoalescerLimits::default(),
            stream_batches_max: 100_000,
            ingress_validation_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            apply_lag: ApplyLagLimits::default(),
        }
    }
}

/// The Settlement API for gateways.
#[derive(Clone)]
pub struct SettlementService {
    raft: LedgerRaft,
    forwarder: Forwarder,
    state: StateHandle,
    limits: ApiLimits,
    coalescer: Coalescer,
    metrics: NodeMetrics,
    /// Turns true when the node begins shutting down; ends open watches.
    stopping: tokio::sync::watch::Receiver<bool>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl SettlementService {
    pub fn new(
        raft: LedgerRaft,
        state: StateHandle,
        limits: ApiLimits,
        coalescer: Coalescer,
        metrics: NodeMetrics,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        SettlementService {
            raft,
            forwarder: Forwarder::default(),
            state,
            limits,
            coalescer,
            metrics,
            stopping,
        }
    }

    /// Forward writes through `forwarder` (whose dialer carries the node's
    /// TLS identity) instead of a plaintext one.
    pub fn with_forwarder(mut self, forwarder: Forwarder) -> Self {
        self.forwarder = forwarder;
        self
    }
}

/// Revocations returned by one ListRevocations call when no limit is given, and at most.
const REVOCATIONS_PAGE_DEFAULT: usize = 1_000;
const REVOCATIONS_PAGE_MAX: usize = 10_000;
/// Nullifiers per CheckNullifiers call.
const NULLIFIERS_PER_CHECK_MAX: usize = 10_000;
/// How often a revocation watch looks for new entries.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// Batches a SubmitStream may have in flight before it stops reading.
const STREAM_BATCHES_IN_FLIGHT: usize = 4;

/// Resolves once the node begins shutting down (or its signal is gone).
async fn until_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        if stopping.changed().await.is_err() {
            return;
        }
    }
}

impl SettlementService {
    async fn read_barrier(&self, consistency: i32) -> Result<(), Status> {
        read_barrier(&self.raft, consistency).await
    }

    /// Runs a read against the live state database on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::storage::StateStore) -> Result<T, crate::state_machine::StoreError>
        + Send
        + 'static,
    ) -> Result<T, Status> {
        let store = self.state.current();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// A batch from a gateway or a forwarding follower: handled here on the
    /// leader, forwarded once from a follower that knows the leader,
    /// otherwise answered with the leader's identity.
    pub(super) async fn route_submit(
        &self,
        batch: RawBatch,
        hops: u32,
    ) -> Result<pb::SubmitBatchResponse, Status> {
        match self.forwarder.route(&self.raft, hops)? {
            Route::Local => self.submit(batch).await,
            Route::Forward(leader_addr) => self.forwarder.submit(&leader_addr, batch, hops).await,
        }
    }

    async fn submit(&self, batch: RawBatch) -> Result<pb::SubmitBatchResponse, Status> {
        if batch.payments.len() > self.limits.batch_payments_max {
            return Err(Status::invalid_argument(format!(
                "payments: {} in one batch, at most {}",
                batch.payments.len(),
                self.limits.batch_payments_max
            )));
        }
        // Admission before any work, held until the answer: bounded memory.
        let _admission = self.coalescer.admit(batch.payments.len())?;
        let admitted = std::time::Instant::now();
        self.metrics.batch_received(batch.payments.len());
        let batch_id = batch.batch_id;
        // Validated with the rest of its entry (ingress), then proposed.
        let (log_index, outcomes) = self.coalescer.submit(batch.payments).await?;
        self.metrics.submit_answered(admitted.elapsed());
        let results = outcomes.iter().map(payment_result).collect();
        Ok(pb::SubmitBatchResponse {
            batch_id,
            results,
            log_index,
        })
    }
}

#[tonic::async_trait]
impl Settlement for SettlementService {
    /// Reached only when the generated server is used without
    /// [`super::SettlementRoutes`] in front, which serves this method from
    /// the request's bytes; the node always puts it in front.
    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let hops = hops(&request);
        self.route_submit(RawBatch::from(request.into_inner()), hops)
            .await
            .map(Response::new)
    }

    type SubmitStreamStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::SubmitBatchResponse, Status>> + Send + 'static>,
    >;

    async fn submit_stream(
        &self,
        request: Request<tonic::Streaming<pb::SubmitBatchRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let service = self.clone();
        let hops = hops(&request);
        let limit = self.limits.stream_batches_max;
        // Batches are answered in the order they arrive; a bounded number are
        // in flight, so a fast gateway cannot queue unbounded work, and a
        // stream ends after `limit` batches, so none lives forever.
        let numbered = futures::StreamExt::take(
            futures::StreamExt::enumerate(request.into_inner()),
            limit.saturating_add(1),
        );
        let responses = futures::StreamExt::buffered(
            futures::StreamExt::map(numbered, move |(n, item)| {
                let service = service.clone();
                async move {
                    if n >= limit {
                        return Err(Status::resource_exhausted(format!(
                            "a SubmitStream carries at most {limit} batches; open a new stream"
                        )));
                    }
                    service.route_submit(RawBatch::from(item?), hops).await
                }
            }),
            STREAM_BATCHES_IN_FLIGHT,
        );
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let req = request.into_inner();
        let tx_id = TxId::from_field("tx_id", &req.tx_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.read_barrier(req.consistency).await?;
        let found = self.read(move |store| store.accepted(&tx_id)).await?;
        Ok(Response::new(match found {
            Some(a) => pb::GetPaymentResponse {
                found: true,
                payment: Some((&a.payment).into()),
                receipt: Some((&a.receipt).into()),
            },
            None => pb::GetPaymentResponse::default(),
        }))
    }

    async fn check_nullifiers(
        &self,
        request: Request<pb::CheckNullifiersRequest>,
    ) -> Result<Response<pb::CheckNullifiersResponse>, Status> {
        let req = request.into_inner();
        if req.nullifiers.len() > NULLIFIERS_PER_CHECK_MAX {
            return Err(Status::invalid_argument(format!(
                "nullifiers: {} in one call, at most {NULLIFIERS_PER_CHECK_MAX}",
                req.nullifiers.len()
            )));
        }
        let nullifiers = req
            .nullifiers
            .iter()
            .enumerate()
            .map(|(i, n)| Nullifier::from_field(&format!("nullifiers[{i}]"), n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.read_barrier(req.consistency).await?;
        let statuses = self
            .read(move |store| {
                nullifiers
                    .iter()
                    .map(|n| {
                        Ok(match store.nullifier(n)? {
                            Some(r) => pb::NullifierStatus {
                                nullifier: n.0.to_vec(),
                                spent: true,
                                tx_id: r.tx_id.0.to_vec(),
                                held: r.held,
                            },
                            None => pb::NullifierStatus {
                                nullifier: n.0.to_vec(),
                                ..Default::default()
                            },
                        })
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(pb::CheckNullifiersResponse { statuses }))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::GetCertificateResponse>, Status> {
        let req = request.into_inner();
        let cert_id = CertId::from_field("cert_id", &req.cert_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.read_barrier(req.consistency).await?;
        let record = self.read(move |store| store.certificate(&cert_id)).await?;
        Ok(Response::new(match record {
            Some(r) => pb::GetCertificateResponse {
                found: true,
                state: Some((&r.state).into()),
            },
            None => pb::GetCertificateResponse::default(),
        }))
    }

    async fn list_revocations(
        &self,
        request: Request<pb::ListRevocationsRequest>,
    ) -> Result<Response<pb::ListRevocationsResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => REVOCATIONS_PAGE_DEFAULT,
            n => n.min(REVOCATIONS_PAGE_MAX),
        };
        self.read_barrier(req.consistency).await?;
        let after = req.after_sequence;
        let (revocations, last_sequence) = self
            .read(move |store| {
                Ok((
                    store.revocations_after(after, limit)?,
                    store.last_revocation_sequence()?,
                ))
            })
            .await?;
        Ok(Response::new(pb::ListRevocationsResponse {
            revocations: revocations.iter().map(Into::into).collect(),
            last_sequence,
        }))
    }

    type WatchRevocationsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::Revocation, Status>> + Send + 'static>,
    >;

    /// Revocations after `after_sequence`, then new ones as they are applied.
    /// A watcher that reconnects with the last sequence it received misses
    /// nothing and gets nothing twice.
    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let state = self.state.clone();
        let mut stopping = self.stopping.clone();
        let start = request.into_inner().after_sequence;
        let (tx, rx) = tokio::sync::mpsc::channel(REVOCATIONS_PAGE_DEFAULT);
        tokio::spawn(async move {
            let mut after = start;
            loop {
                let store = state.current();
                let page = tokio::task::spawn_blocking(move || {
                    store.revocations_after(after, REVOCATIONS_PAGE_DEFAULT)
                })
                .await;
                let page = match page {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                };
                let caught_up = page.len() < REVOCATIONS_PAGE_DEFAULT;
                for r in &page {
                    after = r.sequence;
                    if tx.send(Ok(r.into())).await.is_err() {
                        return; // the watcher went away
                    }
                }
                if caught_up {
                    tokio::select! {
                        _ = tokio::time::sleep(WATCH_POLL) => {}
                        _ = tx.closed() => return,
                        // Shutting down: end the stream so the server can drain.
                        _ = until_stopping(&mut stopping) => {
                            let _ = tx.send(Err(Status::unavailable("node is shutting down; resume on another node"))).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_settlement(
        &self,
        request: Request<pb::GetSettlementRequest>,
    ) -> Result<Response<pb::GetSettlementResponse>, Status> {
        let req = request.into_inner();
        let cert_id = CertId::from_field("cert_id", &req.cert_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.read_barrier(req.consistency).await?;
        let settlement = self.read(move |store| store.settlement(&cert_id)).await?;
        Ok(Response::new(match settlement {
            Some(s) => pb::GetSettlementResponse {
                found: true,
                settlement: Some((&s).into()),
            },
            None => pb::GetSettlementResponse::default(),
        }))
    }
}
