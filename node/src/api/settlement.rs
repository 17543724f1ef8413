use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use spentledger_protocol::pb::settlement_server::Settlement;
use spentledger_protocol::{Payment, TxId, ValidationContext, ValidationMode, Validator, pb};
use tonic::{Request, Response, Status};

use super::results::{payment_result, rejected};
use super::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};
use crate::consensus::{ClientRequest, StateHandle};
use crate::ledger_node::LedgerRaft;
use crate::state_machine::{CommandOutcome, LedgerRead, PaymentOutcome};

/// Request limits of the client API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    pub batch_payments_max: usize,
    /// Allowance for device clock error in ingress checks (apply uses the protocol's).
    pub skew_ms: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            batch_payments_max: 1_000,
            skew_ms: spentledger_protocol::limits::CLOCK_SKEW_MS_DEFAULT,
        }
    }
}

/// The Settlement API for gateways.
#[derive(Clone)]
pub struct SettlementService {
    raft: LedgerRaft,
    state: StateHandle,
    validator: Arc<Validator>,
    limits: ApiLimits,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl SettlementService {
    pub fn new(
        raft: LedgerRaft,
        state: StateHandle,
        validator: Arc<Validator>,
        limits: ApiLimits,
    ) -> Self {
        SettlementService {
            raft,
            state,
            validator,
            limits,
        }
    }

    /// UNAVAILABLE with the leader's id and address when known, so clients can redirect.
    fn not_leader(&self, hint: Option<(u64, Option<String>)>) -> Status {
        let mut status = Status::unavailable("this node is not the leader; retry on the leader");
        if let Some((id, addr)) = hint {
            if let Ok(v) = id.to_string().parse() {
                status.metadata_mut().insert(LEADER_ID_HEADER, v);
            }
            if let Some(Ok(v)) = addr.map(|a| a.parse()) {
                status.metadata_mut().insert(LEADER_ADDR_HEADER, v);
            }
        }
        status
    }
}

/// One payment's route through ingress.
enum Ingress {
    /// Answered at once (malformed, invalid, or a retry of a recorded payment).
    Answered(Box<pb::PaymentResult>),
    /// Valid: proposed at this position of the command.
    Proposed(usize),
}

#[tonic::async_trait]
impl Settlement for SettlementService {
    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let batch = request.into_inner();
        if batch.payments.len() > self.limits.batch_payments_max {
            return Err(Status::invalid_argument(format!(
                "payments: {} in one batch, at most {}",
                batch.payments.len(),
                self.limits.batch_payments_max
            )));
        }
        // Stateless checks first (ingress mode): never propose an invalid payment.
        let store = self.state.current();
        let validator = self.validator.clone();
        let skew_ms = self.limits.skew_ms;
        let stamp_ms = now_ms();
        let wire = batch.payments;
        let (routes, proposed) = tokio::task::spawn_blocking(move || -> Result<_, Status> {
            let keys = store.issuer_keys().map_err(internal)?;
            let ctx = ValidationContext::new(stamp_ms, skew_ms, &keys);
            let verdicts = validator.validate_wire_batch(&wire, &ctx, ValidationMode::Ingress);
            let mut routes = Vec::with_capacity(wire.len());
            let mut proposed = Vec::new();
            for (payment, verdict) in wire.into_iter().zip(verdicts) {
                match verdict {
                    Ok(_) => {
                        routes.push(Ingress::Proposed(proposed.len()));
                        proposed.push(payment);
                    }
                    Err((reason, decode_error)) => {
                        let tx_id: Option<TxId> =
                            Payment::try_from(&payment).ok().map(|p| p.tx_id());
                        // A retry of a recorded payment is DUPLICATE even after its windows closed.
                        let recorded = match tx_id {
                            Some(t) => store.accepted(&t).map_err(internal)?,
                            None => None,
                        };
                        let answer = match recorded {
                            Some(a) => {
                                payment_result(&PaymentOutcome::Duplicate { receipt: a.receipt })
                            }
                            None => rejected(tx_id, reason, decode_error.map(|e| e.to_string())),
                        };
                        routes.push(Ingress::Answered(Box::new(answer)));
                    }
                }
            }
            Ok((routes, proposed))
        })
        .await
        .map_err(internal)??;

        let mut outcomes = Vec::new();
        let mut log_index = 0;
        if !proposed.is_empty() {
            let command = pb::Command {
                stamp_ms,
                kind: Some(pb::command::Kind::Submit(pb::SubmitPayments {
                    payments: proposed,
                })),
            };
            match self.raft.client_write(ClientRequest(command)).await {
                Ok(response) => {
                    log_index = response.log_id.index;
                    match response.data {
                        CommandOutcome::Submitted(o) => outcomes = o,
                        other => return Err(internal(format!("unexpected outcome {other:?}"))),
                    }
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(
                        self.not_leader(f.leader_id.map(|id| (id, f.leader_node.map(|n| n.addr))))
                    );
                }
                Err(e) => return Err(Status::unavailable(format!("raft: {e}"))),
            }
        }
        let results = routes
            .into_iter()
            .map(|route| match route {
                Ingress::Answered(r) => Ok(*r),
                Ingress::Proposed(i) => outcomes
                    .get(i)
                    .map(payment_result)
                    .ok_or_else(|| internal("fewer outcomes than proposed payments")),
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(pb::SubmitBatchResponse {
            batch_id: batch.batch_id,
            results,
            log_index,
        }))
    }

    type SubmitStreamStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::SubmitBatchResponse, Status>> + Send + 'static>,
    >;

    async fn submit_stream(
        &self,
        _request: Request<tonic::Streaming<pb::SubmitBatchRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        Err(Status::unimplemented(
            "SubmitStream is not available yet; use SubmitBatch",
        ))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let req = request.into_inner();
        let tx_id = TxId::from_field("tx_id", &req.tx_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.consistency != pb::ReadConsistency::Stale as i32 {
            // Linearizable by default: confirm leadership and wait until applied (read index).
            self.raft
                .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
                .await
                .map_err(|e| match e {
                    RaftError::APIError(
                        openraft::error::LinearizableReadError::ForwardToLeader(f),
                    ) => self.not_leader(f.leader_id.map(|id| (id, f.leader_node.map(|n| n.addr)))),
                    other => Status::unavailable(format!("raft: {other}")),
                })?;
        }
        let store = self.state.current();
        let found = tokio::task::spawn_blocking(move || store.accepted(&tx_id))
            .await
            .map_err(internal)?
            .map_err(internal)?;
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
        _request: Request<pb::CheckNullifiersRequest>,
    ) -> Result<Response<pb::CheckNullifiersResponse>, Status> {
        Err(Status::unimplemented(
            "CheckNullifiers is not available yet",
        ))
    }

    async fn get_certificate(
        &self,
        _request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::GetCertificateResponse>, Status> {
        Err(Status::unimplemented("GetCertificate is not available yet"))
    }

    async fn list_revocations(
        &self,
        _request: Request<pb::ListRevocationsRequest>,
    ) -> Result<Response<pb::ListRevocationsResponse>, Status> {
        Err(Status::unimplemented(
            "ListRevocations is not available yet",
        ))
    }

    type WatchRevocationsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::Revocation, Status>> + Send + 'static>,
    >;

    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Err(Status::unimplemented(
            "WatchRevocations is not available yet",
        ))
    }

    async fn get_settlement(
        &self,
        _request: Request<pb::GetSettlementRequest>,
    ) -> Result<Response<pb::GetSettlementResponse>, Status> {
        Err(Status::unimplemented("GetSettlement is not available yet"))
    }
}
