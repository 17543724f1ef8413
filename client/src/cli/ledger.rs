//! Gateway and query commands: submit, payment, nullifier, certificate,
//! revocations.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use spentledger_protocol::{CertId, Nullifier, TxId, Verdict, pb};

use super::{CliError, Output, connect};
use crate::files::load_payment;
use crate::gateway::{Gateway, GatewayConfig};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Payment files (as `wallet pay` writes them).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Payments per SubmitBatch.
    #[arg(long, default_value_t = 500)]
    pub batch_payments: usize,
}

#[derive(Debug, Subcommand)]
pub enum PaymentCommand {
    /// A recorded payment and its receipt, by tx id (64 hex digits).
    Get {
        tx_id: String,
        /// Read this node's state without confirming leadership.
        #[arg(long)]
        stale: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NullifierCommand {
    /// Whether each nullifier (64 hex digits) is spent, and by which payment.
    Check { nullifiers: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Payments, spent value, double-spend flag, revocation and settlement
    /// of a certificate (64 hex digits).
    Get { cert_id: String },
}

#[derive(Debug, Subcommand)]
pub enum RevocationsCommand {
    /// Revocations after a sequence number.
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1_000)]
        limit: u32,
    },
    /// Follow revocations as they happen, from a sequence number; on a lost
    /// connection resume from the last one received (nothing missed or repeated).
    Watch {
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Stop after this many revocations (default: follow forever).
        #[arg(long)]
        count: Option<u64>,
    },
}

fn hex32<T>(
    field: &str,
    text: &str,
    make: impl Fn(&str, &[u8]) -> Result<T, spentledger_protocol::DecodeError>,
) -> Result<T, CliError> {
    let bytes = hex::decode(text).map_err(|e| CliError::Usage(format!("{field}: {e}")))?;
    make(field, &bytes).map_err(|e| CliError::Usage(e.to_string()))
}

fn consistency(stale: bool) -> i32 {
    if stale {
        pb::ReadConsistency::Stale as i32
    } else {
        pb::ReadConsistency::Linearizable as i32
    }
}

fn verdict_name(v: &Verdict) -> String {
    match v {
        Verdict::Accepted => "ACCEPTED".into(),
        Verdict::Duplicate => "DUPLICATE".into(),
        Verdict::DoubleSpend => "DOUBLE_SPEND".into(),
        Verdict::Rejected(r) => format!("REJECTED ({r:?})"),
    }
}

pub async fn submit(args: &SubmitArgs, endpoints: &[String], out: &Output) -> Result<(), CliError> {
    let payments = args
        .files
        .iter()
        .map(|f| load_payment(f))
        .collect::<Result<Vec<_>, _>>()?;
    // Files that do not decode into a payment go to the ledger as they are:
    // it answers them REJECTED with the field at fault.
    let mut config = GatewayConfig::new(endpoints.to_vec());
    config.batch_payments_max = args.batch_payments;
    config.tls = connect::tls().cloned();
    let gateway = Gateway::new(config)?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (chunk_files, chunk) in args
        .files
        .chunks(args.batch_payments.max(1))
        .zip(payments.chunks(args.batch_payments.max(1)))
    {
        let response = gateway
            .submit_batch(pb::SubmitBatchRequest {
                batch_id: 0,
                payments: chunk.to_vec(),
            })
            .await?;
        for (file, result) in chunk_files.iter().zip(&response.results) {
            let verdict = Verdict::from_wire(result.verdict, result.reject_reason)
                .map(|v| verdict_name(&v))
                .unwrap_or_else(|_| "UNKNOWN".into());
            *counts
                .entry(verdict.split(' ').next().unwrap_or_default().to_owned())
                .or_default() += 1;
            let detail = match (&result.receipt, &result.double_spend) {
                (Some(r), _) => format!("receipt at log index {}", r.log_index),
                (_, Some(e)) => format!(
                    "token {} already spent by {}",
                    hex::encode(&e.nullifier[..8]),
                    e.first_payment
                        .as_ref()
                        .map(|p| format!("a payment to {}", p.payee_id))
                        .unwrap_or_default()
                ),
                _ => result.detail.clone(),
            };
            json.push(serde_json::json!({
                "file": file.display().to_string(),
                "tx_id": hex::encode(&result.tx_id),
                "verdict": verdict,
                "log_index": response.log_index,
                "receipt_log_index": result.receipt.as_ref().map(|r| r.log_index),
                "double_spend": result.double_spend.as_ref().map(|e| serde_json::json!({
                    "nullifier": hex::encode(&e.nullifier),
                    "detected_log_index": e.detected_log_index,
                    "first_tx_id": e.first_receipt.as_ref().map(|r| hex::encode(&r.tx_id)),
                })),
                "detail": result.detail,
            }));
            rows.push(vec![
                file.display().to_string(),
                hex::encode(&result.tx_id[..result.tx_id.len().min(8)]),
                verdict,
                detail,
            ]);
        }
    }
    out.table(
        &["file", "tx id", "verdict", "detail"],
        rows,
        serde_json::json!({ "results": json, "summary": counts }),
    );
    if !out.json {
        let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{} payments: {}", args.files.len(), summary.join(", "));
    }
    Ok(())
}

pub async fn payment(
    command: &PaymentCommand,
    endpoints: &[String],
    out: &Output,
) -> Result<(), CliError> {
    let PaymentCommand::Get { tx_id, stale } = command;
    let tx_id = hex32("tx_id", tx_id, TxId::from_field)?;
    let ch = if *stale {
        connect::any(endpoints).await?.1
    } else {
        connect::leader(endpoints).await?
    };
    let got = pb::settlement_client::SettlementClient::new(ch)
        .get_payment(pb::GetPaymentRequest {
            tx_id: tx_id.0.to_vec(),
            consistency: consistency(*stale),
        })
        .await?
        .into_inner();
    if !got.found {
        return Err(CliError::Usage(format!(
            "payment {} is not recorded",
            hex::encode(tx_id.0)
        )));
    }
    let p = got.payment.unwrap_or_default();
    let r = got.receipt.unwrap_or_default();
    out.fields(vec![
        ("tx id", serde_json::json!(hex::encode(&r.tx_id))),
        ("amount", serde_json::json!(p.amount)),
        ("payee", serde_json::json!(p.payee_id)),
        ("counter", serde_json::json!(p.counter)),
        ("log index", serde_json::json!(r.log_index)),
        ("settled at (ms)", serde_json::json!(r.settled_at_ms)),
        ("cert id", serde_json::json!(hex::encode(&r.cert_id))),
        ("flags", serde_json::json!(r.flags)),
    ]);
    Ok(())
}

pub async fn nullifier(
    command: &NullifierCommand,
    endpoints: &[String],
    out: &Output,
) -> Result<(), CliError> {
    let NullifierCommand::Check { nullifiers } = command;
    let parsed = nullifiers
        .iter()
        .map(|n| hex32("nullifier", n, Nullifier::from_field))
        .collect::<Result<Vec<_>, _>>()?;
    let statuses = pb::settlement_client::SettlementClient::new(connect::leader(endpoints).await?)
        .check_nullifiers(pb::CheckNullifiersRequest {
            nullifiers: parsed.iter().map(|n| n.0.to_vec()).collect(),
            consistency: consistency(false),
        })
        .await?
        .into_inner()
        .statuses;
    let rows = statuses
        .iter()
        .map(|s| {
            vec![
                hex::encode(&s.nullifier),
                if s.spent { "spent" } else { "unspent" }.into(),
                hex::encode(&s.tx_id),
                if s.held { "held" } else { "" }.into(),
            ]
        })
        .collect();
    let json = serde_json::json!(
        statuses
            .iter()
            .map(|s| serde_json::json!({
                "nullifier": hex::encode(&s.nullifier), "spent": s.spent,
                "tx_id": hex::encode(&s.tx_id), "held": s.held,
            }))
            .collect::<Vec<_>>()
    );
    out.table(&["nullifier", "state", "by tx", ""], rows, json);
    Ok(())
}

pub async fn certificate(
    command: &CertificateCommand,
    endpoints: &[String],
    out: &Output,
) -> Result<(), CliError> {
    let CertificateCommand::Get { cert_id } = command;
    let cert_id = hex32("cert_id", cert_id, CertId::from_field)?;
    let got = pb::settlement_client::SettlementClient::new(connect::leader(endpoints).await?)
        .get_certificate(pb::GetCertificateRequest {
            cert_id: cert_id.0.to_vec(),
            consistency: consistency(false),
        })
        .await?
        .into_inner();
    if !got.found {
        return Err(CliError::Usage(format!(
            "certificate {} has no payments on the ledger",
            hex::encode(cert_id.0)
        )));
    }
    let s = got.state.unwrap_or_default();
    out.fields(vec![
        ("cert id", serde_json::json!(hex::encode(&s.cert_id))),
        ("payments", serde_json::json!(s.payment_count)),
        ("spent", serde_json::json!(s.spent_value)),
        ("held", serde_json::json!(s.held_value)),
        ("revoked", serde_json::json!(s.revoked)),
        (
            "revocation reason",
            serde_json::json!(
                pb::RevocationReason::try_from(s.revocation_reason)
                    .map(|r| r.as_str_name())
                    .unwrap_or("UNKNOWN")
            ),
        ),
        ("settled", serde_json::json!(s.settled)),
    ]);
    Ok(())
}

fn revocation_row(r: &pb::Revocation) -> Vec<String> {
    vec![
        r.sequence.to_string(),
        hex::encode(&r.cert_id),
        pb::RevocationReason::try_from(r.reason)
            .map(|x| {
                x.as_str_name()
                    .trim_start_matches("REVOCATION_REASON_")
                    .to_owned()
            })
            .unwrap_or_default(),
        r.log_index.to_string(),
    ]
}

fn revocation_json(r: &pb::Revocation) -> serde_json::Value {
    let row = revocation_row(r);
    serde_json::json!({
        "sequence": r.sequence, "cert_id": row[1], "reason": row[2], "log_index": r.log_index,
    })
}

pub async fn revocations(
    command: &RevocationsCommand,
    endpoints: &[String],
    out: &Output,
) -> Result<(), CliError> {
    match command {
        RevocationsCommand::List { after, limit } => {
            let reply =
                pb::settlement_client::SettlementClient::new(connect::leader(endpoints).await?)
                    .list_revocations(pb::ListRevocationsRequest {
                        after_sequence: *after,
                        limit: *limit,
                        consistency: consistency(false),
                    })
                    .await?
                    .into_inner();
            out.table(
                &["sequence", "cert id", "reason", "log index"],
                reply.revocations.iter().map(revocation_row).collect(),
                serde_json::json!({
                    "revocations": reply.revocations.iter().map(revocation_json).collect::<Vec<_>>(),
                    "last_sequence": reply.last_sequence,
                }),
            );
            Ok(())
        }
        RevocationsCommand::Watch { after, count } => {
            let mut watcher =
                crate::revocations::RevocationWatcher::new(endpoints.to_vec(), *after)
                    .with_tls(connect::tls().cloned());
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                let r = watcher.next().await?;
                seen += 1;
                if out.json {
                    out.json(&revocation_json(&r));
                } else {
                    println!("{}", revocation_row(&r).join("  "));
                }
            }
            Ok(())
        }
    }
}
