//! TLS on the client side: the cluster CA to trust and the certificate (and
//! with it the role) to present; and the development PKI behind
//! `spentledger certs init`.
//!
//! A certificates directory holds `ca.pem`, and for each identity
//! `<name>.pem` with `<name>.key` (mode 0600): `node` (role peer, for every
//! node), `gateway`, `issuer` and `admin`. The CA's key `ca.key` signs more
//! certificates later; keep it offline in production.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::files::{FileError, read_secret_text, write_text};

pub use spentledger_protocol::access::ROLE_URI_PREFIX;
/// The CA certificate in a certificates directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key in a certificates directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The identity every node presents (role `peer`).
pub const NODE_IDENTITY: &str = "node";

/// A role a client certificate can carry (the node's `peer` is separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientRole {
    /// Submit payments and query the ledger.
    Gateway,
    /// Settle and revoke certificates, manage issuer keys.
    Issuer,
    /// Membership, leadership, snapshots.
    Admin,
}

impl ClientRole {
    pub fn name(self) -> &'static str {
        match self {
            ClientRole::Gateway => "gateway",
            ClientRole::Issuer => "issuer",
            ClientRole::Admin => "admin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {problem}")]
    Read { path: String, problem: String },
    #[error("invalid TLS material: {0}")]
    Invalid(String),
    #[error("generating certificates: {0}")]
    Generate(String),
    #[error("{0} exists; pass --force to replace the certificates in that directory")]
    Exists(String),
}

fn read_public(path: &Path) -> Result<String, TlsSetupError> {
    std::fs::read_to_string(path).map_err(|e| TlsSetupError::Read {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// What a client presents and trusts.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: ClientTlsConfig,
}

impl ClientTls {
    /// From PEM files; the key file must not be readable by group or others.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<ClientTls, TlsSetupError> {
        let key_pem = read_secret_text(key)?;
        ClientTls::from_pem(&read_public(ca)?, &read_public(cert)?, &key_pem)
    }

    /// `ca.pem` and `<identity>.pem`/`.key` from a certificates directory.
    pub fn from_dir(dir: &Path, identity: &str) -> Result<ClientTls, TlsSetupError> {
        ClientTls::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(format!("{identity}.pem")),
            &dir.join(format!("{identity}.key")),
        )
    }

    /// From PEM text; fails now when the material is unusable.
    pub fn from_pem(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<ClientTls, TlsSetupError> {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(cert_pem, key_pem))
            .timeout(std::time::Duration::from_secs(10));
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(config.clone())
            .map_err(|e| TlsSetupError::Invalid(e.to_string()))?;
        Ok(ClientTls { config })
    }

    pub fn config(&self) -> ClientTlsConfig {
        self.config.clone()
    }
}

/// One client identity per role, from a certificates directory (for tools
/// that act in several roles, like the demo and local clusters).
#[derive(Clone, Debug)]
pub struct RoleIdentities {
    pub dir: PathBuf,
    pub gateway: ClientTls,
    pub issuer: ClientTls,
    pub admin: ClientTls,
}

impl RoleIdentities {
    pub fn from_dir(dir: &Path) -> Result<RoleIdentities, TlsSetupError> {
        Ok(RoleIdentities {
            dir: dir.to_owned(),
            gateway: ClientTls::from_dir(dir, ClientRole::Gateway.name())?,
            issuer: ClientTls::from_dir(dir, ClientRole::Issuer.name())?,
            admin: ClientTls::from_dir(dir, ClientRole::Admin.name())?,
        })
    }

    pub fn get(&self, role: ClientRole) -> &ClientTls {
        match role {
            ClientRole::Gateway => &self.gateway,
            ClientRole::Issuer => &self.issuer,
            ClientRole::Admin => &self.admin,
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// When a certificate is valid, in seconds relative to now.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub from_secs: i64,
    pub until_secs: i64,
}

impl Validity {
    /// From an hour ago (clock skew) for `days`.
    pub fn days(days: u32) -> Validity {
        Validity {
            from_secs: -3_600,
            until_secs: i64::from(days) * 86_400,
        }
    }
}

/// A development certificate authority.
pub struct DevCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn generate_error(e: rcgen::Error) -> TlsSetupError {
    TlsSetupError::Generate(e.to_string())
}

fn set_validity(params: &mut rcgen::CertificateParams, validity: Validity) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(validity.from_secs);
    params.not_after = now + time::Duration::seconds(validity.until_secs);
}

impl DevCa {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str, validity: Validity) -> Result<DevCa, TlsSetupError> {
        let key = rcgen::KeyPair::generate().map_err(generate_error)?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, validity);
        let cert_pem = params.self_signed(&key).map_err(generate_error)?.pem();
        let key_pem = key.serialize_pem();
        Ok(DevCa {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// The CA saved by [`DevCa::save`].
    pub fn load(dir: &Path) -> Result<DevCa, TlsSetupError> {
        let cert_pem = read_public(&dir.join(CA_CERT_FILE))?;
        let key_pem = read_secret_text(&dir.join(CA_KEY_FILE))?;
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(generate_error)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key).map_err(generate_error)?;
        Ok(DevCa {
            issuer,
            cert_pem,
            key_pem,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `common_name` naming `roles` (SAN URIs), the host
    /// names or IP addresses in `hosts`, usable for client and server auth.
    pub fn issue(
        &self,
        common_name: &str,
        roles: &[&str],
        hosts: &[String],
        validity: Validity,
    ) -> Result<IssuedCert, TlsSetupError> {
        let key = rcgen::KeyPair::generate().map_err(generate_error)?;
        let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(generate_error)?;
        for role in roles {
            let uri = rcgen::string::Ia5String::try_from(format!("{ROLE_URI_PREFIX}{role}"))
                .map_err(|e| TlsSetupError::Generate(e.to_string()))?;
            params.subject_alt_names.push(rcgen::SanType::URI(uri));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, validity);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem` and `ca.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TlsSetupError> {
        write_text(&dir.join(CA_CERT_FILE), &self.cert_pem, 0o644)?;
        write_text(&dir.join(CA_KEY_FILE), &self.key_pem, 0o600)?;
        Ok(())
    }
}

/// Writes `<name>.pem` and `<name>.key` (0600) into `dir`.
pub fn save_issued(dir: &Path, name: &str, cert: &IssuedCert) -> Result<(), TlsSetupError> {
    write_text(&dir.join(format!("{name}.pem")), &cert.cert_pem, 0o644)?;
    write_text(&dir.join(format!("{name}.key")), &cert.key_pem, 0o600)?;
    Ok(())
}

/// What `certs init` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertsSummary {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub node_hosts: Vec<String>,
    pub valid_days: u32,
}

/// The development PKI: a CA, one node certificate (role `peer`) for the
/// host names in `node_hosts` plus localhost and 127.0.0.1, and one client
/// certificate per role. Refuses to overwrite an existing CA unless `force`.
pub fn init_dev_pki(
    dir: &Path,
    node_hosts: &[String],
    valid_days: u32,
    force: bool,
) -> Result<CertsSummary, TlsSetupError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsSetupError::Read {
        path: dir.display().to_string(),
        problem: e.to_string(),
    })?;
    let ca_path = dir.join(CA_CERT_FILE);
    if ca_path.exists() && !force {
        return Err(TlsSetupError::Exists(ca_path.display().to_string()));
    }
    let validity = Validity::days(valid_days);
    let ca = DevCa::new("spentledger development CA", validity)?;
    ca.save(dir)?;
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for h in node_hosts {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    let node = ca.issue("spentledger node", &["peer"], &hosts, validity)?;
    save_issued(dir, NODE_IDENTITY, &node)?;
    let mut files = vec![
        CA_CERT_FILE.to_owned(),
        CA_KEY_FILE.to_owned(),
        format!("{NODE_IDENTITY}.pem"),
        format!("{NODE_IDENTITY}.key"),
    ];
    for role in [ClientRole::Gateway, ClientRole::Issuer, ClientRole::Admin] {
        let name = role.name();
        let cert = ca.issue(&format!("spentledger {name}"), &[name], &[], validity)?;
        save_issued(dir, name, &cert)?;
        files.push(format!("{name}.pem"));
        files.push(format!("{name}.key"));
    }
    Ok(CertsSummary {
        dir: dir.to_owned(),
        files,
        node_hosts: hosts,
        valid_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_usable_pki_with_private_keys_0600_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let summary =
            init_dev_pki(dir.path(), &["ledger.example".into()], 30, false).expect("init");
        assert!(summary.node_hosts.contains(&"ledger.example".to_owned()));
        for file in &summary.files {
            let mode = std::fs::metadata(dir.path().join(file))
                .expect("written")
                .permissions()
                .mode()
                & 0o777;
            if file.ends_with(".key") {
                assert_eq!(mode, 0o600, "{file}");
            }
        }
        for role in [ClientRole::Gateway, ClientRole::Issuer, ClientRole::Admin] {
            ClientTls::from_dir(dir.path(), role.name()).expect("usable client identity");
        }
        assert!(matches!(
            init_dev_pki(dir.path(), &[], 30, false),
            Err(TlsSetupError::Exists(_))
        ));
        init_dev_pki(dir.path(), &[], 30, true).expect("--force replaces");
        // A CA loaded back signs further certificates.
        let ca = DevCa::load(dir.path()).expect("load CA");
        ca.issue("extra", &["gateway"], &[], Validity::days(1))
            .expect("issue");
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        init_dev_pki(dir.path(), &[], 30, false).expect("init");
        let key = dir.path().join("gateway.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = ClientTls::from_dir(dir.path(), "gateway").expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
