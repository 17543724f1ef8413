//! How a node dials other nodes (Raft, forwarded writes, status probes,
//! bootstrap and join): plaintext, or TLS presenting its own certificate.

use tonic::transport::{ClientTlsConfig, Endpoint};

/// Shared by every outgoing connection of one node.
#[derive(Clone, Debug, Default)]
pub struct PeerDialer {
    tls: Option<ClientTlsConfig>,
}

impl PeerDialer {
    /// `None`: plaintext (development only).
    pub fn new(tls: Option<ClientTlsConfig>) -> Self {
        PeerDialer { tls }
    }

    /// The endpoint for `addr` (`host:port`), TLS when configured. The
    /// certificate must name `host` (a DNS name or an IP address).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS for {addr}: {e}")),
            None => Ok(endpoint),
        }
    }
}
