//! Following the revocation feed: merchants' terminals refuse revoked
//! certificates, so gateways relay the feed to them.

use std::time::Duration;

use spentledger_protocol::pb;

use crate::gateway::GatewayError;
use crate::tls::ClientTls;

/// Back-off between reconnection attempts, doubling up to the maximum.
const RECONNECT_INITIAL_MS: u64 = 100;
const RECONNECT_MAX_MS: u64 = 5_000;

/// Yields every revocation after a starting sequence number, in order, each
/// once: on a lost stream it reconnects (to the next endpoint) and resumes
/// after the last sequence it yielded.
pub struct RevocationWatcher {
    endpoints: Vec<String>,
    next_endpoint: usize,
    last_sequence: u64,
    stream: Option<tonic::Streaming<pb::Revocation>>,
    backoff_ms: u64,
    tls: Option<ClientTls>,
}

impl RevocationWatcher {
    pub fn new(endpoints: Vec<String>, after_sequence: u64) -> Self {
        RevocationWatcher {
            endpoints,
            next_endpoint: 0,
            last_sequence: after_sequence,
            stream: None,
            backoff_ms: RECONNECT_INITIAL_MS,
            tls: None,
        }
    }

    /// Connects with TLS, presenting `tls` (a `gateway` identity).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The sequence number of the last revocation yielded (persist it to
    /// resume after a restart).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    async fn connect(&mut self) -> Result<tonic::Streaming<pb::Revocation>, tonic::Status> {
        if self.endpoints.is_empty() {
            return Err(tonic::Status::invalid_argument("no endpoints"));
        }
        let addr = &self.endpoints[self.next_endpoint % self.endpoints.len()];
        self.next_endpoint += 1;
        // No call deadline: the watch stream lives as long as the watcher.
        let channel = crate::connect::dial(addr, None, self.tls.as_ref()).await?;
        Ok(pb::settlement_client::SettlementClient::new(channel)
            .watch_revocations(pb::WatchRevocationsRequest {
                after_sequence: self.last_sequence,
            })
            .await?
            .into_inner())
    }

    /// The next revocation, waiting for one if needed.
    pub async fn next(&mut self) -> Result<pb::Revocation, GatewayError> {
        loop {
            let stream = match self.stream.as_mut() {
                Some(s) => s,
                None => match self.connect().await {
                    Ok(s) => self.stream.insert(s),
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        return Err(GatewayError::Refused(status));
                    }
                    Err(status) => {
                        tracing::debug!(%status, "revocation watch: reconnecting");
                        tokio::time::sleep(Duration::from_millis(self.backoff_ms)).await;
                        self.backoff_ms = (self.backoff_ms * 2).min(RECONNECT_MAX_MS);
                        continue;
                    }
                },
            };
            match stream.message().await {
                Ok(Some(r)) if r.sequence <= self.last_sequence => {} // already yielded
                Ok(Some(r)) => {
                    self.last_sequence = r.sequence;
                    self.backoff_ms = RECONNECT_INITIAL_MS;
                    return Ok(r);
                }
                Ok(None) | Err(_) => self.stream = None, // node stopped: resume elsewhere
            }
        }
    }
}
