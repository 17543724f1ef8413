//! Channels to cluster members for single calls.

use std::time::Duration;

use spentledger_protocol::pb;
use tonic::transport::Channel;

use super::CliError;
use crate::tls::ClientTls;

/// Deadline of one CLI call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The identity this invocation presents: one command runs per process,
/// in one role, so it is chosen once, before the command runs.
static TLS: std::sync::OnceLock<Option<ClientTls>> = std::sync::OnceLock::new();

/// Sets the identity for this process's calls (first call wins).
pub fn set_tls(tls: Option<ClientTls>) {
    let _ = TLS.set(tls);
}

/// The identity set by [`set_tls`], if any.
pub fn tls() -> Option<&'static ClientTls> {
    TLS.get().and_then(Option::as_ref)
}

pub async fn channel(addr: &str) -> Result<Channel, CliError> {
    Ok(crate::connect::dial(addr, Some(CALL_TIMEOUT), tls()).await?)
}

/// The first endpoint that answers.
pub async fn any(endpoints: &[String]) -> Result<(String, Channel), CliError> {
    let mut last = None;
    for addr in endpoints {
        match channel(addr).await {
            Ok(ch) => return Ok((addr.clone(), ch)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| CliError::Usage("no endpoints".into())))
}

/// The leader, as the first answering member names it (reads are
/// linearizable on the leader; writes are forwarded anyway).
pub async fn leader(endpoints: &[String]) -> Result<Channel, CliError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (addr, ch) = any(endpoints).await?;
        let status = pb::admin_client::AdminClient::new(ch.clone())
            .status(pb::StatusRequest {
                include_peers: false,
            })
            .await?
            .into_inner();
        let leader_id = status.self_.as_ref().map_or(0, |s| s.leader_id);
        if let Some(m) = status.members.iter().find(|m| m.node_id == leader_id) {
            if m.address == addr {
                return Ok(ch);
            }
            return channel(&m.address).await;
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::Call(tonic::Status::unavailable(
                "the cluster has no leader",
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
