//! A node's TLS material: its certificate and key (presented to clients and
//! to peers) and the cluster CA (which every caller's certificate, and
//! every peer's, must chain to).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// How long a TLS handshake may take before the connection is dropped, so
/// a client that connects and goes silent cannot hold a socket.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Kubernetes secret volumes are group-readable when the pod has an
    /// fsGroup, so only access by others is refused for the node's key.
    #[error(
        "{path}: the private key is accessible to other users (mode {mode:04o}); run chmod 600 on it"
    )]
    KeyExposed { path: String, mode: u32 },
    #[error("invalid TLS material: {0}")]
    Invalid(String),
}

/// Validated TLS settings of one node.
#[derive(Clone, Debug)]
pub struct NodeTls {
    identity: Identity,
    ca: Certificate,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl NodeTls {
    /// Reads PEM files: the node's certificate (chain), its private key and
    /// the CA certificate. Refuses a key file others may read.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<NodeTls, TlsError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key)
            .map_err(|source| TlsError::Read {
                path: key.display().to_string(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o007 != 0 {
            return Err(TlsError::KeyExposed {
                path: key.display().to_string(),
                mode: mode & 0o7777,
            });
        }
        NodeTls::from_pem(&read(cert)?, &read(key)?, &read(ca)?)
    }

    /// From PEM text; fails now, not at the first connection, when the
    /// material is unusable.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<NodeTls, TlsError> {
        let tls = NodeTls {
            identity: Identity::from_pem(cert_pem, key_pem),
            ca: Certificate::from_pem(ca_pem),
        };
        tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .map_err(|e| TlsError::Invalid(format!("server side: {e}")))?;
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(tls.client_config())
            .map_err(|e| TlsError::Invalid(format!("client side: {e}")))?;
        Ok(tls)
    }

    /// Serving: present the node certificate, require a client certificate
    /// from the cluster CA (mutual TLS).
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(false)
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }

    /// Dialling peers: trust only the cluster CA, present the node
    /// certificate (role `peer`).
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }
}
