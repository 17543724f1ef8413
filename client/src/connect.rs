//! Dialling one cluster member.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// How long dialling may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `host:port` (or a URL) as the URL tonic dials.
pub fn url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Connects to `addr` now. `call_timeout` bounds every call on the channel
/// (`None` for long-lived streams). A bad address is INVALID_ARGUMENT, an
/// unreachable node UNAVAILABLE.
pub async fn dial(addr: &str, call_timeout: Option<Duration>) -> Result<Channel, tonic::Status> {
    let mut endpoint = Endpoint::from_shared(url(addr))
        .map_err(|e| tonic::Status::invalid_argument(format!("endpoint {addr:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{addr}: {e}")))
}
