//! The CLI's files: issuer secret keys, public key lists, devices, merchant
//! terminals and payments. JSON with hex for bytes, except payments, which
//! are the protobuf encoding in hex (what the QR code carries).
//!
//! Secret-bearing files (issuer keys, devices, TLS private keys) are
//! written with mode 0600, and refused when group or others may read them:
//! a key another local user could have copied is no longer secret.

use std::path::Path;

use prost::Message;
use serde::{Deserialize, Serialize};
use spentledger_protocol::sim::{Issuer, MerchantTerminal, Wallet};
use spentledger_protocol::types::{IdText, TokenLeaf};
use spentledger_protocol::{IssuerKey, OfflineCertificate, Payment, pb};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {problem}")]
    Read { path: String, problem: String },
    #[error("{path}: {problem}")]
    Write { path: String, problem: String },
    #[error("{path}: {field}: {problem}")]
    Invalid {
        path: String,
        field: &'static str,
        problem: String,
    },
}

fn read_text(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// Reads a secret-bearing file, refusing it when its mode lets group or
/// others read or write it.
pub fn read_secret_text(path: &Path) -> Result<String, FileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| FileError::Read {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(FileError::Read {
            path: path.display().to_string(),
            problem: format!(
                "holds a secret but its mode is {:04o}; run chmod 600 on it",
                mode & 0o7777
            ),
        });
    }
    read_text(path)
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, FileError> {
    parse_json_text(path, &read_text(path)?)
}

fn parse_secret_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, FileError> {
    parse_json_text(path, &read_secret_text(path)?)
}

fn parse_json_text<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, FileError> {
    serde_json::from_str(text).map_err(|e| FileError::Read {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// Writes `text` atomically (temp file, fsync, rename) with `mode`.
pub fn write_text(path: &Path, text: &str, mode: u32) -> Result<(), FileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| FileError::Write {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), FileError> {
    let text = serde_json::to_string_pretty(value).expect("these types always serialize");
    write_text(path, &format!("{text}\n"), mode)
}

fn bytes32(path: &Path, field: &'static str, text: &str) -> Result<[u8; 32], FileError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| FileError::Invalid {
            path: path.display().to_string(),
            field,
            problem: "expected 64 hex digits".into(),
        })
}

/// 32 bytes from the operating system's CSPRNG.
pub fn random_32() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// An issuer's secret signing key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyFile {
    pub key_id: String,
    pub secret_seed_hex: String,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
}

impl IssuerKeyFile {
    pub fn load(path: &Path) -> Result<Issuer, FileError> {
        let f: IssuerKeyFile = parse_secret_json(path)?;
        let key_id = IdText::new("key_id", f.key_id).map_err(|e| FileError::Invalid {
            path: path.display().to_string(),
            field: "key_id",
            problem: e.to_string(),
        })?;
        let seed = bytes32(path, "secret_seed_hex", &f.secret_seed_hex)?;
        Ok(Issuer::from_seed(
            key_id,
            seed,
            f.valid_from_ms,
            f.valid_until_ms,
        ))
    }

    pub fn save(&self, path: &Path) -> Result<(), FileError> {
        write_json(path, self, 0o600)
    }
}

/// One public issuer key, in the node's genesis-keys format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyEntry {
    pub key_id: String,
    pub public_key_hex: String,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
}

impl PublicKeyEntry {
    pub fn from_key(key: &IssuerKey) -> Self {
        PublicKeyEntry {
            key_id: key.key_id.as_str().to_owned(),
            public_key_hex: hex::encode(key.public_key),
            valid_from_ms: key.valid_from_ms,
            valid_until_ms: key.valid_until_ms,
        }
    }

    pub fn to_wire(&self, path: &Path) -> Result<pb::IssuerKey, FileError> {
        Ok(pb::IssuerKey {
            key_id: self.key_id.clone(),
            public_key: bytes32(path, "public_key_hex", &self.public_key_hex)?.to_vec(),
            valid_from_ms: self.valid_from_ms,
            valid_until_ms: self.valid_until_ms,
        })
    }

    pub fn load_all(path: &Path) -> Result<Vec<PublicKeyEntry>, FileError> {
        parse_json(path)
    }

    pub fn save_all(entries: &[PublicKeyEntry], path: &Path) -> Result<(), FileError> {
        write_json(path, &entries, 0o644)
    }
}

/// A payer device: secret key, certificate, tokens, what it spent, its counter.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFile {
    pub device_seed_hex: String,
    /// The certificate, protobuf-encoded, in hex.
    pub certificate_hex: String,
    /// `[index, value]` of every token under the certificate.
    pub tokens: Vec<(u32, u64)>,
    pub spent: Vec<u32>,
    pub next_counter: u64,
}

impl DeviceFile {
    pub fn from_wallet(seed: [u8; 32], wallet: &Wallet) -> Self {
        DeviceFile {
            device_seed_hex: hex::encode(seed),
            certificate_hex: hex::encode(
                pb::OfflineCertificate::from(wallet.certificate()).encode_to_vec(),
            ),
            tokens: wallet.tokens().iter().map(|t| (t.index, t.value)).collect(),
            spent: wallet.spent().collect(),
            next_counter: wallet.next_counter(),
        }
    }

    /// The device's wallet and its seed.
    pub fn load(path: &Path) -> Result<(Wallet, [u8; 32]), FileError> {
        let f: DeviceFile = parse_secret_json(path)?;
        let invalid = |field: &'static str, problem: String| FileError::Invalid {
            path: path.display().to_string(),
            field,
            problem,
        };
        let seed = bytes32(path, "device_seed_hex", &f.device_seed_hex)?;
        let cert_bytes = hex::decode(&f.certificate_hex)
            .map_err(|e| invalid("certificate_hex", e.to_string()))?;
        let wire = pb::OfflineCertificate::decode(cert_bytes.as_slice())
            .map_err(|e| invalid("certificate_hex", e.to_string()))?;
        let certificate = OfflineCertificate::try_from(&wire)
            .map_err(|e| invalid("certificate_hex", e.to_string()))?;
        let tokens = f
            .tokens
            .iter()
            .map(|(index, value)| TokenLeaf {
                index: *index,
                value: *value,
            })
            .collect();
        let wallet = Wallet::restore(seed, certificate, tokens, f.spent, f.next_counter)
            .map_err(|e| invalid("tokens", e.to_string()))?;
        Ok((wallet, seed))
    }

    pub fn save(&self, path: &Path) -> Result<(), FileError> {
        write_json(path, self, 0o600)
    }
}

/// A merchant terminal: its payee id and its open challenges.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalFile {
    pub payee_id: String,
    pub open_challenges: Vec<String>,
}

impl TerminalFile {
    pub fn load(path: &Path) -> Result<MerchantTerminal, FileError> {
        let f: TerminalFile = parse_json(path)?;
        let payee = IdText::new("payee_id", f.payee_id).map_err(|e| FileError::Invalid {
            path: path.display().to_string(),
            field: "payee_id",
            problem: e.to_string(),
        })?;
        let challenges = f
            .open_challenges
            .iter()
            .map(|c| bytes32(path, "open_challenges", c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MerchantTerminal::restore(payee, challenges))
    }

    pub fn save(terminal: &MerchantTerminal, path: &Path) -> Result<(), FileError> {
        let f = TerminalFile {
            payee_id: terminal.payee_id().as_str().to_owned(),
            open_challenges: terminal.open_challenges().map(hex::encode).collect(),
        };
        write_json(path, &f, 0o644)
    }
}

/// A payment as hex of its protobuf encoding (one line).
pub fn payment_to_text(payment: &Payment) -> String {
    hex::encode(pb::Payment::from(payment).encode_to_vec())
}

pub fn save_payment(payment: &Payment, path: &Path) -> Result<(), FileError> {
    write_text(path, &format!("{}\n", payment_to_text(payment)), 0o644)
}

/// Reads a payment file in wire form (the ledger judges malformed ones).
pub fn load_payment(path: &Path) -> Result<pb::Payment, FileError> {
    let text = read_text(path)?;
    let bytes = hex::decode(text.trim()).map_err(|e| FileError::Invalid {
        path: path.display().to_string(),
        field: "payment",
        problem: format!("not hex: {e}"),
    })?;
    pb::Payment::decode(bytes.as_slice()).map_err(|e| FileError::Invalid {
        path: path.display().to_string(),
        field: "payment",
        problem: e.to_string(),
    })
}
