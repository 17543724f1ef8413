//! Dialling one cluster member, in plaintext or with TLS.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::tls::ClientTls;

/// How long dialling may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `host:port` (or a URL) as the URL tonic dials: `https` with TLS.
pub fn url(addr: &str, tls: bool) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for `addr`, TLS when `tls` is given (the node's
/// certificate must name the host: a DNS name or IP address).
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, tonic::Status> {
    let bad = |e: &dyn std::fmt::Display| {
        tonic::Status::invalid_argument(format!("endpoint {addr:?}: {e}"))
    };
    let endpoint = Endpoint::from_shared(url(addr, tls.is_some()))
        .map_err(|e| bad(&e))?
        .connect_timeout(CONNECT_TIMEOUT);
    match tls {
        Some(tls) => endpoint.tls_config(tls.config()).map_err(|e| bad(&e)),
        None => Ok(endpoint),
    }
}

/// Connects to `addr` now. `call_timeout` bounds every call on the channel
/// (`None` for long-lived streams). A bad address is INVALID_ARGUMENT, an
/// unreachable node (or a failed TLS handshake) UNAVAILABLE.
pub async fn dial(
    addr: &str,
    call_timeout: Option<Duration>,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::Status> {
    let mut endpoint = endpoint(addr, tls)?;
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    endpoint.connect().await.map_err(|e| {
        use std::error::Error;
        // The transport error alone says only "transport error"; the cause
        // (refused, certificate unknown, ...) is what an operator needs.
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        tonic::Status::unavailable(format!("{addr}: {text}"))
    })
}
