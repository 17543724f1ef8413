use spentledger_protocol::decode_error::DecodeError;
use spentledger_protocol::limits::REASON_TEXT_BYTES_MAX;
use spentledger_protocol::types::{IdText, RevocationReason};
use spentledger_protocol::{CertId, IssuerKey, OfflineCertificate, pb};

/// A log entry's command could not be decoded. An honest leader never
/// proposes one (the receiving node checks first), so this only answers a
/// faulty or malicious leader; the entry gets a `Malformed` outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command has no kind")]
    Empty,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A decoded state-machine command.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerCommand<'a> {
    /// Payments stay in wire form: each one is decoded on its own, so one
    /// malformed payment gets its own verdict without failing the batch.
    Submit(&'a [pb::Payment]),
    Settle {
        certificate: OfflineCertificate,
        force_reason: Option<String>,
    },
    Revoke {
        cert_id: CertId,
        reason: RevocationReason,
    },
    RegisterKey(IssuerKey),
    RetireKey {
        key_id: IdText,
        retired_at_ms: Option<u64>,
    },
}

impl<'a> LedgerCommand<'a> {
    pub fn decode(wire: &'a pb::Command) -> Result<Self, CommandError> {
        use pb::command::Kind;
        Ok(match wire.kind.as_ref().ok_or(CommandError::Empty)? {
            Kind::Submit(submit) => LedgerCommand::Submit(&submit.payments),
            Kind::Settle(settle) => {
                let cert = settle
                    .certificate
                    .as_ref()
                    .ok_or_else(|| DecodeError::missing("certificate"))?;
                let certificate =
                    OfflineCertificate::try_from(cert).map_err(|e| e.within("certificate"))?;
                let force_reason = if settle.force {
                    spentledger_protocol::decode_error::field::free_text(
                        "force_reason",
                        &settle.force_reason,
                        REASON_TEXT_BYTES_MAX,
                    )?;
                    Some(settle.force_reason.clone())
                } else {
                    None
                };
                LedgerCommand::Settle {
                    certificate,
                    force_reason,
                }
            }
            Kind::Revoke(revoke) => LedgerCommand::Revoke {
                cert_id: CertId::from_field("cert_id", &revoke.cert_id)?,
                reason: RevocationReason::from_wire("reason", revoke.reason)?,
            },
            Kind::RegisterKey(register) => LedgerCommand::RegisterKey(
                IssuerKey::try_from(
                    register
                        .key
                        .as_ref()
                        .ok_or_else(|| DecodeError::missing("key"))?,
                )
                .map_err(|e| e.within("key"))?,
            ),
            Kind::RetireKey(retire) => LedgerCommand::RetireKey {
                key_id: IdText::new("key_id", retire.key_id.clone())?,
                retired_at_ms: (retire.retired_at_ms != 0).then_some(retire.retired_at_ms),
            },
        })
    }
}
