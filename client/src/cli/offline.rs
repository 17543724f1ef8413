//! Issuer, wallet and merchant commands. Key generation, issuance, paying
//! and verifying at a terminal work offline; registering keys, settling
//! and revoking talk to the cluster.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer};
use spentledger_protocol::types::{Currency, IdText};
use spentledger_protocol::{CertId, Payment, ValidationContext, pb};

use super::{Cli, CliError, Output, connect};
use crate::files::{
    DeviceFile, IssuerKeyFile, PublicKeyEntry, TerminalFile, load_payment, random_32, save_payment,
};

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn id_text(field: &'static str, text: &str) -> Result<IdText, CliError> {
    IdText::new(field, text).map_err(|e| CliError::Usage(e.to_string()))
}

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Create an issuer signing key (secret file, mode 0600) and its public
    /// key list (for `cluster up --genesis-issuer-keys` or `issuer register-key`).
    Keygen {
        #[arg(long)]
        key_id: String,
        /// Secret key file to write.
        #[arg(long)]
        out: PathBuf,
        /// Public key list to write.
        #[arg(long)]
        public_out: PathBuf,
        /// Days the key may sign certificates.
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
    },
    /// Fund a device: a certificate and tokens for its balance plus credit
    /// line (capped by policy), written as a device file.
    Issue {
        /// Issuer secret key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        wallet_id: String,
        /// Balance in minor units.
        #[arg(long)]
        balance: u64,
        #[arg(long, default_value_t = 0)]
        credit_line: u64,
        /// ISO 4217 currency code.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Device file to write (holds the device's secret key).
        #[arg(long)]
        out: PathBuf,
    },
    /// Register the public keys in FILE with the ledger.
    RegisterKey {
        /// Public key list (JSON).
        file: PathBuf,
    },
    /// Settle a device's certificate: spent / held / refund figures.
    Settle {
        /// The device file whose certificate to settle.
        #[arg(long)]
        device: PathBuf,
        /// Settle before the certificate's settle time, for this reason.
        #[arg(long)]
        force: Option<String>,
    },
    /// Revoke a certificate (given by device file or by id).
    Revoke {
        #[arg(long, conflicts_with = "cert_id")]
        device: Option<PathBuf>,
        /// Certificate id, 64 hex digits.
        #[arg(long)]
        cert_id: Option<String>,
        #[arg(long, value_enum, default_value_t = RevokeReason::IssuerRequest)]
        reason: RevokeReason,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RevokeReason {
    LostOrStolen,
    IssuerRequest,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Pay a merchant offline: sign a payment of exactly AMOUNT to the
    /// merchant's challenge, update the device file, write the payment.
    Pay {
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        amount: u64,
        /// The merchant's payee id.
        #[arg(long)]
        payee: String,
        /// The challenge the merchant's terminal showed (64 hex digits).
        #[arg(long)]
        challenge: String,
        /// Payment file to write.
        #[arg(long)]
        out: PathBuf,
        /// Also show the payment as a QR code in the terminal.
        #[arg(long)]
        qr: bool,
        /// Also write the payment as a QR code PNG.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Balance, tokens and counter of a device file.
    Show {
        #[arg(long)]
        device: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Open a one-time challenge for the next payment (creates the terminal
    /// file with --payee-id on first use).
    Challenge {
        /// Terminal state file.
        #[arg(long)]
        terminal: PathBuf,
        #[arg(long)]
        payee_id: Option<String>,
    },
    /// Verify a payment offline, as a terminal does: payee, open challenge,
    /// certificate and device signatures, token proofs, time.
    Verify {
        #[arg(long)]
        terminal: PathBuf,
        /// Issuer public keys the terminal trusts (JSON list).
        #[arg(long)]
        issuer_keys: PathBuf,
        /// Payment file.
        payment: PathBuf,
    },
}

pub async fn issuer(command: &IssuerCommand, cli: &Cli, out: &Output) -> Result<(), CliError> {
    match command {
        IssuerCommand::Keygen {
            key_id,
            out: path,
            public_out,
            valid_days,
        } => {
            id_text("key_id", key_id)?;
            if path.exists() {
                return Err(CliError::Usage(format!(
                    "{} exists; not overwriting a secret key",
                    path.display()
                )));
            }
            let seed = random_32()?;
            let valid_from_ms = now_ms() - DAY_MS;
            let valid_until_ms = now_ms() + valid_days.saturating_mul(DAY_MS);
            let file = IssuerKeyFile {
                key_id: key_id.clone(),
                secret_seed_hex: hex::encode(seed),
                valid_from_ms,
                valid_until_ms,
            };
            file.save(path)?;
            let issuer = IssuerKeyFile::load(path)?;
            let public = PublicKeyEntry::from_key(&issuer.issuer_key());
            PublicKeyEntry::save_all(std::slice::from_ref(&public), public_out)?;
            out.fields(vec![
                ("key id", serde_json::json!(public.key_id)),
                ("public key", serde_json::json!(public.public_key_hex)),
                (
                    "secret key file",
                    serde_json::json!(path.display().to_string()),
                ),
                (
                    "public key file",
                    serde_json::json!(public_out.display().to_string()),
                ),
            ]);
            Ok(())
        }
        IssuerCommand::Issue {
            key,
            wallet_id,
            balance,
            credit_line,
            currency,
            out: path,
        } => {
            let issuer: Issuer = IssuerKeyFile::load(key)?;
            let seed = random_32()?;
            let currency =
                Currency::new("currency", currency).map_err(|e| CliError::Usage(e.to_string()))?;
            let funding = Funding::new(
                id_text("wallet_id", wallet_id)?,
                currency,
                *balance,
                now_ms(),
            )
            .with_credit_line(*credit_line);
            let wallet = issuer
                .fund_device(&IssuancePolicy::default(), seed, &funding)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            DeviceFile::from_wallet(seed, &wallet).save(path)?;
            let cert = wallet.certificate();
            out.fields(vec![
                ("cert id", serde_json::json!(hex::encode(cert.cert_id().0))),
                ("wallet id", serde_json::json!(cert.wallet_id.as_str())),
                ("offline limit", serde_json::json!(cert.total_value)),
                ("tokens", serde_json::json!(cert.token_count)),
                ("spend until (ms)", serde_json::json!(cert.spend_until_ms)),
                ("device file", serde_json::json!(path.display().to_string())),
            ]);
            Ok(())
        }
        IssuerCommand::RegisterKey { file } => {
            let entries = PublicKeyEntry::load_all(file)?;
            let mut client =
                pb::issuer_client::IssuerClient::new(connect::leader(&cli.endpoints()?).await?);
            let mut rows = Vec::new();
            for entry in &entries {
                let reply = client
                    .register_issuer_key(pb::RegisterIssuerKeyRequest {
                        key: Some(entry.to_wire(file)?),
                    })
                    .await;
                let outcome = match reply {
                    Ok(_) => "registered".to_owned(),
                    Err(s) if s.code() == tonic::Code::AlreadyExists => {
                        format!("refused: {}", s.message())
                    }
                    Err(s) => return Err(s.into()),
                };
                rows.push(vec![entry.key_id.clone(), outcome]);
            }
            let json = serde_json::json!(
                rows.iter()
                    .map(|r| serde_json::json!({"key_id": r[0], "outcome": r[1]}))
                    .collect::<Vec<_>>()
            );
            out.table(&["key id", "outcome"], rows, json);
            Ok(())
        }
        IssuerCommand::Settle { device, force } => {
            let (wallet, _) = DeviceFile::load(device)?;
            let settlement =
                pb::issuer_client::IssuerClient::new(connect::leader(&cli.endpoints()?).await?)
                    .settle_certificate(pb::SettleCertificateRequest {
                        certificate: Some(wallet.certificate().into()),
                        force: force.is_some(),
                        force_reason: force.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner()
                    .settlement
                    .ok_or_else(|| CliError::Usage("the ledger returned no settlement".into()))?;
            out.fields(settlement_fields(&settlement));
            Ok(())
        }
        IssuerCommand::Revoke {
            device,
            cert_id,
            reason,
        } => {
            let cert_id = match (device, cert_id) {
                (Some(d), _) => DeviceFile::load(d)?.0.certificate().cert_id(),
                (None, Some(text)) => hex::decode(text)
                    .ok()
                    .and_then(|b| CertId::from_field("cert_id", &b).ok())
                    .ok_or_else(|| CliError::Usage("--cert-id: expected 64 hex digits".into()))?,
                (None, None) => {
                    return Err(CliError::Usage("give --device or --cert-id".into()));
                }
            };
            let reason = match reason {
                RevokeReason::LostOrStolen => pb::RevocationReason::LostOrStolen,
                RevokeReason::IssuerRequest => pb::RevocationReason::IssuerRequest,
            };
            let revocation =
                pb::issuer_client::IssuerClient::new(connect::leader(&cli.endpoints()?).await?)
                    .revoke_certificate(pb::RevokeCertificateRequest {
                        cert_id: cert_id.0.to_vec(),
                        reason: reason as i32,
                    })
                    .await?
                    .into_inner()
                    .revocation
                    .unwrap_or_default();
            out.fields(vec![
                (
                    "cert id",
                    serde_json::json!(hex::encode(&revocation.cert_id)),
                ),
                ("sequence", serde_json::json!(revocation.sequence)),
                (
                    "reason",
                    serde_json::json!(
                        pb::RevocationReason::try_from(revocation.reason)
                            .map(|r| r.as_str_name())
                            .unwrap_or("UNKNOWN")
                    ),
                ),
            ]);
            Ok(())
        }
    }
}

pub fn settlement_fields(s: &pb::CertificateSettlement) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("cert id", serde_json::json!(hex::encode(&s.cert_id))),
        ("wallet id", serde_json::json!(s.wallet_id)),
        ("total", serde_json::json!(s.total_value)),
        ("spent", serde_json::json!(s.spent_value)),
        ("held", serde_json::json!(s.held_value)),
        ("refund (unspent)", serde_json::json!(s.unspent_value)),
        ("payments", serde_json::json!(s.payment_count)),
        (
            "double spend detected",
            serde_json::json!(s.double_spend_detected),
        ),
        ("forced", serde_json::json!(s.forced)),
        ("log index", serde_json::json!(s.log_index)),
    ]
}

fn challenge_bytes(text: &str) -> Result<[u8; 32], CliError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| CliError::Usage("--challenge: expected 64 hex digits".into()))
}

pub fn wallet(command: &WalletCommand, out: &Output) -> Result<(), CliError> {
    match command {
        WalletCommand::Pay {
            device,
            amount,
            payee,
            challenge,
            out: path,
            qr,
            png,
        } => {
            let (mut wallet, seed) = DeviceFile::load(device)?;
            let payment: Payment = wallet
                .pay(
                    *amount,
                    &id_text("payee", payee)?,
                    challenge_bytes(challenge)?,
                    now_ms(),
                )
                .map_err(|e| CliError::Usage(e.to_string()))?;
            // The device remembers what it spent before the payment leaves it.
            DeviceFile::from_wallet(seed, &wallet).save(device)?;
            save_payment(&payment, path)?;
            if *qr || png.is_some() {
                let text = crate::files::payment_to_text(&payment);
                let code = crate::qr::encode(&text)?;
                if *qr {
                    out.note(&crate::qr::to_terminal(&code));
                }
                if let Some(png) = png {
                    crate::qr::write_png(&code, png)?;
                }
            }
            out.fields(vec![
                ("tx id", serde_json::json!(hex::encode(payment.tx_id().0))),
                ("amount", serde_json::json!(payment.amount)),
                ("payee", serde_json::json!(payment.payee_id.as_str())),
                ("counter", serde_json::json!(payment.counter)),
                ("tokens", serde_json::json!(payment.inputs.len())),
                ("balance left", serde_json::json!(wallet.balance())),
                (
                    "payment file",
                    serde_json::json!(path.display().to_string()),
                ),
            ]);
            Ok(())
        }
        WalletCommand::Show { device } => {
            let (wallet, _) = DeviceFile::load(device)?;
            let cert = wallet.certificate();
            out.fields(vec![
                ("cert id", serde_json::json!(hex::encode(cert.cert_id().0))),
                ("wallet id", serde_json::json!(cert.wallet_id.as_str())),
                ("offline limit", serde_json::json!(cert.total_value)),
                ("balance", serde_json::json!(wallet.balance())),
                ("tokens spent", serde_json::json!(wallet.spent().count())),
                ("next counter", serde_json::json!(wallet.next_counter())),
            ]);
            Ok(())
        }
    }
}

pub fn merchant(command: &MerchantCommand, out: &Output) -> Result<(), CliError> {
    match command {
        MerchantCommand::Challenge { terminal, payee_id } => {
            let mut t = if terminal.exists() {
                TerminalFile::load(terminal)?
            } else {
                let payee = payee_id.as_deref().ok_or_else(|| {
                    CliError::Usage(format!(
                        "{} does not exist: give --payee-id to create it",
                        terminal.display()
                    ))
                })?;
                spentledger_protocol::sim::MerchantTerminal::new(id_text("payee_id", payee)?)
            };
            let challenge = t.challenge(random_32()?);
            TerminalFile::save(&t, terminal)?;
            out.fields(vec![
                ("payee", serde_json::json!(t.payee_id().as_str())),
                ("challenge", serde_json::json!(hex::encode(challenge))),
            ]);
            Ok(())
        }
        MerchantCommand::Verify {
            terminal,
            issuer_keys,
            payment,
        } => {
            let mut t = TerminalFile::load(terminal)?;
            let keys = PublicKeyEntry::load_all(issuer_keys)?
                .iter()
                .map(|e| {
                    spentledger_protocol::IssuerKey::try_from(&e.to_wire(issuer_keys)?)
                        .map_err(|err| CliError::Usage(format!("{}: {err}", issuer_keys.display())))
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            let wire = load_payment(payment)?;
            let parsed = Payment::try_from(&wire)
                .map_err(|e| CliError::Usage(format!("{}: {e}", payment.display())))?;
            let ctx = ValidationContext::new(
                now_ms(),
                spentledger_protocol::limits::CLOCK_SKEW_MS_DEFAULT,
                &keys,
            );
            match t.verify(&parsed, &ctx) {
                Ok(checked) => {
                    TerminalFile::save(&t, terminal)?;
                    out.fields(vec![
                        ("verdict", serde_json::json!("accepted offline")),
                        ("tx id", serde_json::json!(hex::encode(checked.tx_id.0))),
                        ("amount", serde_json::json!(parsed.amount)),
                    ]);
                    Ok(())
                }
                Err(e) => Err(CliError::Usage(format!("payment refused: {e}"))),
            }
        }
    }
}
