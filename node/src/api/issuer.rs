use spentledger_protocol::decode_error::field;
use spentledger_protocol::limits::REASON_TEXT_BYTES_MAX;
use spentledger_protocol::pb::issuer_server::Issuer;
use spentledger_protocol::types::IdText;
use spentledger_protocol::{CertId, IssuerKey, OfflineCertificate, pb};
use tonic::{Request, Response, Status};

use super::raft_write::{now_ms, write};
use crate::ledger_node::LedgerRaft;
use crate::state_machine::{CommandOutcome, IssuerOpError};

/// The Issuer API: settle and revoke certificates, manage trusted issuer keys.
/// Every operation is a replicated command; the answers are the state
/// machine's, identical on every replica.
#[derive(Clone)]
pub struct IssuerService {
    raft: LedgerRaft,
}

impl IssuerService {
    pub fn new(raft: LedgerRaft) -> Self {
        IssuerService { raft }
    }

    async fn run(&self, kind: pb::command::Kind) -> Result<CommandOutcome, Status> {
        let command = pb::Command {
            stamp_ms: now_ms(),
            kind: Some(kind),
        };
        let (_, outcome) = write(&self.raft, command).await?;
        Ok(outcome)
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Issuer-operation refusals as gRPC statuses.
fn op_status(e: IssuerOpError) -> Status {
    let message = e.to_string();
    match e {
        IssuerOpError::InvalidCertificate(_) | IssuerOpError::RetiredBeforeValid { .. } => {
            Status::invalid_argument(message)
        }
        IssuerOpError::NotYetSettleable { .. } | IssuerOpError::Inconsistent(_) => {
            Status::failed_precondition(message)
        }
        IssuerOpError::KeyConflict { .. } => Status::already_exists(message),
        IssuerOpError::UnknownKey { .. } => Status::not_found(message),
    }
}

fn unexpected(outcome: CommandOutcome) -> Status {
    match outcome {
        CommandOutcome::Malformed(detail) => Status::invalid_argument(detail),
        other => Status::internal(format!("unexpected outcome {other:?}")),
    }
}

#[tonic::async_trait]
impl Issuer for IssuerService {
    async fn settle_certificate(
        &self,
        request: Request<pb::SettleCertificateRequest>,
    ) -> Result<Response<pb::SettleCertificateResponse>, Status> {
        let req = request.into_inner();
        // Check the request here too, so a bad one never reaches the log.
        let cert = req
            .certificate
            .ok_or_else(|| invalid("certificate: missing"))?;
        OfflineCertificate::try_from(&cert).map_err(|e| invalid(e.within("certificate")))?;
        if req.force {
            field::free_text("force_reason", &req.force_reason, REASON_TEXT_BYTES_MAX)
                .map_err(invalid)?;
        }
        let kind = pb::command::Kind::Settle(pb::SettleCommand {
            certificate: Some(cert),
            force: req.force,
            force_reason: req.force_reason,
        });
        match self.run(kind).await? {
            CommandOutcome::Settled(Ok(s)) => Ok(Response::new(pb::SettleCertificateResponse {
                settlement: Some((&s).into()),
            })),
            CommandOutcome::Settled(Err(e)) => Err(op_status(e)),
            other => Err(unexpected(other)),
        }
    }

    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        let req = request.into_inner();
        CertId::from_field("cert_id", &req.cert_id).map_err(invalid)?;
        spentledger_protocol::RevocationReason::from_wire("reason", req.reason).map_err(invalid)?;
        let kind = pb::command::Kind::Revoke(pb::RevokeCommand {
            cert_id: req.cert_id,
            reason: req.reason,
        });
        match self.run(kind).await? {
            CommandOutcome::Revoked(Ok(r)) => Ok(Response::new(pb::RevokeCertificateResponse {
                revocation: Some((&r).into()),
            })),
            CommandOutcome::Revoked(Err(e)) => Err(op_status(e)),
            other => Err(unexpected(other)),
        }
    }

    async fn register_issuer_key(
        &self,
        request: Request<pb::RegisterIssuerKeyRequest>,
    ) -> Result<Response<pb::RegisterIssuerKeyResponse>, Status> {
        let key = request
            .into_inner()
            .key
            .ok_or_else(|| invalid("key: missing"))?;
        IssuerKey::try_from(&key).map_err(|e| invalid(e.within("key")))?;
        let kind = pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand { key: Some(key) });
        match self.run(kind).await? {
            CommandOutcome::KeyRegistered(Ok(k)) => {
                Ok(Response::new(pb::RegisterIssuerKeyResponse {
                    key: Some((&k).into()),
                }))
            }
            CommandOutcome::KeyRegistered(Err(e)) => Err(op_status(e)),
            other => Err(unexpected(other)),
        }
    }

    async fn retire_issuer_key(
        &self,
        request: Request<pb::RetireIssuerKeyRequest>,
    ) -> Result<Response<pb::RetireIssuerKeyResponse>, Status> {
        let req = request.into_inner();
        IdText::new("key_id", req.key_id.clone()).map_err(invalid)?;
        let kind = pb::command::Kind::RetireKey(pb::RetireIssuerKeyCommand {
            key_id: req.key_id,
            retired_at_ms: req.retired_at_ms,
        });
        match self.run(kind).await? {
            CommandOutcome::KeyRetired(Ok(k)) => Ok(Response::new(pb::RetireIssuerKeyResponse {
                key: Some((&k).into()),
            })),
            CommandOutcome::KeyRetired(Err(e)) => Err(op_status(e)),
            other => Err(unexpected(other)),
        }
    }
}
