//! The settlement-gateway SDK: submit payments to a cluster and get one
//! typed verdict per payment, surviving leader changes and overload.
//!
//! Retrying is safe because the ledger is idempotent by `tx_id`: a payment
//! whose first attempt was recorded but whose answer was lost comes back
//! DUPLICATE with the original receipt, which counts as settled.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spentledger_protocol::{Payment, RejectReason, Verdict, pb};
use tonic::transport::Channel;

use crate::encoded_batch::{EncodedBatch, EncodedBatchCodec};
use crate::tls::ClientTls;

/// Metadata a node sets when it redirects to the leader.
const LEADER_ADDR_HEADER: &str = "x-spentledger-leader-addr";
/// Back-off a node asks for when overloaded.
const RETRY_PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// How a gateway reaches the cluster.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `host:port` of any cluster members; the first is tried first.
    pub endpoints: Vec<String>,
    /// Deadline of one call.
    pub call_timeout_ms: u64,
    /// Attempts per batch before giving up.
    pub attempts_max: u32,
    /// First back-off between attempts; doubles up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Payments per SubmitBatch (the server's `--batch-payments-max` or less).
    pub batch_payments_max: usize,
    /// Mutual TLS with a `gateway` certificate; `None` for a plaintext
    /// (development) cluster.
    pub tls: Option<ClientTls>,
}

impl GatewayConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        GatewayConfig {
            endpoints,
            call_timeout_ms: 10_000,
            attempts_max: 60,
            backoff_initial_ms: 50,
            backoff_max_ms: 2_000,
            batch_payments_max: 500,
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("endpoint {endpoint:?}: {problem}")]
    BadEndpoint { endpoint: String, problem: String },
    #[error("batch_payments_max must be at least 1")]
    BadBatchSize,
    /// The cluster refused the request itself (not a transient condition).
    #[error("refused: {0}")]
    Refused(tonic::Status),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Exhausted { attempts: u32, last: tonic::Status },
    #[error("probe: {0}")]
    Probe(String),
    #[error("the cluster answered {got} results for {sent} payments")]
    ShortAnswer { sent: usize, got: usize },
}

/// The ledger's answer for one payment.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentVerdict {
    pub verdict: Verdict,
    /// The full wire result: receipt, evidence, detail.
    pub result: pb::PaymentResult,
    /// Log index of the Raft entry that recorded it (0: answered at ingress).
    pub log_index: u64,
}

impl PaymentVerdict {
    /// Accepted now or earlier (DUPLICATE carries the original receipt).
    pub fn is_settled(&self) -> bool {
        matches!(self.verdict, Verdict::Accepted | Verdict::Duplicate)
    }
}

struct Target {
    addr: String,
    channel: Channel,
}

/// A connection to the cluster for one gateway. Cheap to share behind an `Arc`.
pub struct Gateway {
    config: GatewayConfig,
    targets: Mutex<Vec<Target>>,
    /// Index of the target to try first (the last one that answered).
    preferred: AtomicUsize,
}

fn channel_for(
    addr: &str,
    timeout_ms: u64,
    tls: Option<&ClientTls>,
) -> Result<Channel, GatewayError> {
    Ok(crate::connect::endpoint(addr, tls)
        .map_err(|e| GatewayError::BadEndpoint {
            endpoint: addr.to_owned(),
            problem: e.message().to_owned(),
        })?
        .connect_timeout(Duration::from_millis(timeout_ms.min(2_000)))
        .timeout(Duration::from_millis(timeout_ms))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}

/// One `SubmitBatch` call with the batch's bytes as they are.
async fn send_encoded(
    channel: Channel,
    batch: &EncodedBatch,
) -> Result<tonic::Response<pb::SubmitBatchResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    // As the generated client reports a channel that is not ready.
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    grpc.unary(
        tonic::Request::new(batch.clone()),
        EncodedBatch::path(),
        EncodedBatchCodec,
    )
    .await
}

/// Transient conditions a gateway retries: no leader, node down or
/// restarting, overload, deadline, a connection lost under the call.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::ResourceExhausted
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Aborted
    ) || connection_lost(status)
}

/// Whether this client's transport made the status (the connection failed
/// under the call) rather than a node sending it. tonic reports an HTTP/2
/// GOAWAY as `Internal`, even the NO_ERROR one a node sends while it shuts
/// down gracefully, for the calls it did not take (a known mapping in gRPC
/// stacks; grpc-java maps it to UNAVAILABLE). A node's own `Internal` comes
/// in the grpc-status trailer and carries no transport error. Retrying is
/// safe: a batch is idempotent, and a payment already recorded comes back
/// DUPLICATE with its original receipt.
fn connection_lost(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Result<Self, GatewayError> {
        if config.endpoints.is_empty() {
            return Err(GatewayError::NoEndpoints);
        }
        if config.batch_payments_max == 0 {
            return Err(GatewayError::BadBatchSize);
        }
        let targets = config
            .endpoints
            .iter()
            .map(|a| {
                Ok(Target {
                    addr: a.clone(),
                    channel: channel_for(a, config.call_timeout_ms, config.tls.as_ref())?,
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        Ok(Gateway {
            config,
            targets: Mutex::new(targets),
            preferred: AtomicUsize::new(0),
        })
    }

    fn target(&self, attempt: usize) -> (usize, Channel) {
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let i = (self.preferred.load(Ordering::Relaxed) + attempt) % targets.len();
        (i, targets[i].channel.clone())
    }

    /// Prefers the node a redirect named, adding it if it is new.
    fn follow_redirect(&self, status: &tonic::Status) {
        let Some(addr) = status
            .metadata()
            .get(LEADER_ADDR_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let i = match targets.iter().position(|t| t.addr == addr) {
            Some(i) => i,
            None => {
                match channel_for(addr, self.config.call_timeout_ms, self.config.tls.as_ref()) {
                    Ok(channel) => {
                        targets.push(Target {
                            addr: addr.to_owned(),
                            channel,
                        });
                        targets.len() - 1
                    }
                    Err(_) => return,
                }
            }
        };
        self.preferred.store(i, Ordering::Relaxed);
    }

    /// Waits until the cluster accepts certificates signed by `issuer` (a new
    /// cluster registers its genesis keys right after the first election;
    /// until then payments are rejected UNKNOWN_ISSUER_KEY with nothing
    /// recorded). A probe device of the issuer's own pays 1 unit, retried.
    pub async fn wait_for_issuer_key(
        &self,
        issuer: &spentledger_protocol::sim::Issuer,
        timeout: Duration,
    ) -> Result<(), GatewayError> {
        use spentledger_protocol::sim::{Funding, IssuancePolicy};
        use spentledger_protocol::types::IdText;
        let probe_error = |e: String| GatewayError::Probe(e);
        let key_id = issuer.issuer_key().key_id;
        let mut seed = *blake3::Hasher::new_derive_key("spentledger gateway probe device")
            .update(key_id.as_str().as_bytes())
            .finalize()
            .as_bytes();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // A fresh probe device per call, so a probe never double-spends.
        seed[..8].copy_from_slice(&now_ms.to_le_bytes());
        let probe_id = IdText::new("wallet_id", "gateway-probe").expect("a valid id");
        let funding = Funding::eur(probe_id.clone(), 1, now_ms.saturating_sub(60_000));
        let payment = issuer
            .fund_device(&IssuancePolicy::default(), seed, &funding)
            .map_err(|e| probe_error(e.to_string()))?
            .pay(1, &probe_id, seed, now_ms)
            .map_err(|e| probe_error(e.to_string()))?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let verdict = self.submit(std::slice::from_ref(&payment)).await?;
            let last = verdict.first().map(|v| v.verdict);
            if verdict.first().is_some_and(PaymentVerdict::is_settled) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(probe_error(format!(
                    "the cluster does not accept {}'s certificates after {timeout:?}: {last:?}",
                    key_id.as_str()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submits `payments` in batches of at most `batch_payments_max`, and
    /// returns one verdict per payment, in order.
    pub async fn submit(&self, payments: &[Payment]) -> Result<Vec<PaymentVerdict>, GatewayError> {
        let mut verdicts = Vec::with_capacity(payments.len());
        for (n, chunk) in payments.chunks(self.config.batch_payments_max).enumerate() {
            let request = pb::SubmitBatchRequest {
                batch_id: n as u64,
                payments: chunk.iter().map(pb::Payment::from).collect(),
            };
            let response = self.submit_batch(request).await?;
            if response.results.len() != chunk.len() {
                return Err(GatewayError::ShortAnswer {
                    sent: chunk.len(),
                    got: response.results.len(),
                });
            }
            for result in response.results {
                let verdict = Verdict::from_wire(result.verdict, result.reject_reason)
                    .unwrap_or(Verdict::Rejected(RejectReason::Malformed));
                verdicts.push(PaymentVerdict {
                    verdict,
                    result,
                    log_index: response.log_index,
                });
            }
        }
        Ok(verdicts)
    }

    /// One batch, retried with back-off on transient errors, following
    /// leader redirects and rotating through the endpoints. Encodes the
    /// request once; see [`Gateway::submit_encoded`].
    pub async fn submit_batch(
        &self,
        request: pb::SubmitBatchRequest,
    ) -> Result<pb::SubmitBatchResponse, GatewayError> {
        self.submit_encoded(&EncodedBatch::new(&request)).await
    }

    /// As [`Gateway::submit_batch`], for a batch already encoded: every
    /// attempt sends the same bytes (a gateway that keeps batches, such as
    /// an outbox or a load generator, encodes each once).
    pub async fn submit_encoded(
        &self,
        batch: &EncodedBatch,
    ) -> Result<pb::SubmitBatchResponse, GatewayError> {
        let mut backoff_ms = self.config.backoff_initial_ms;
        let mut last = tonic::Status::unavailable("not attempted");
        let mut rotate = 0;
        for attempt in 1..=self.config.attempts_max {
            let (index, channel) = self.target(rotate);
            let call = send_encoded(channel, batch).await;
            match call {
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Err(status) if transient(&status) => {
                    let pushback = status
                        .metadata()
                        .get(RETRY_PUSHBACK_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if status.metadata().get(LEADER_ADDR_HEADER).is_some() {
                        self.follow_redirect(&status);
                        rotate = 0;
                    } else {
                        rotate += 1; // that node may be down: try the next
                    }
                    tracing::debug!(attempt, code = ?status.code(), "retrying batch");
                    last = status;
                    if attempt < self.config.attempts_max {
                        tokio::time::sleep(Duration::from_millis(pushback.unwrap_or(backoff_ms)))
                            .await;
                        backoff_ms = (backoff_ms * 2).min(self.config.backoff_max_ms);
                    }
                }
                Err(status) => return Err(GatewayError::Refused(status)),
            }
        }
        Err(GatewayError::Exhausted {
            attempts: self.config.attempts_max,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that reads the HTTP/2 preface and answers with an empty
    /// SETTINGS frame and a GOAWAY (NO_ERROR, last stream 0): what a node
    /// shutting down gracefully tells a call it will not take.
    async fn going_away_peer() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("the client connects");
            let mut preface = [0u8; 24];
            socket
                .read_exact(&mut preface)
                .await
                .expect("the client sends the preface");
            assert_eq!(&preface[..3], b"PRI", "an HTTP/2 preface");
            let settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
            let go_away = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            socket.write_all(&settings).await.expect("send SETTINGS");
            socket.write_all(&go_away).await.expect("send GOAWAY");
            // Keep the connection until the client has read both frames.
            let mut rest = [0u8; 1024];
            while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
        });
        addr
    }

    #[tokio::test]
    async fn a_call_a_node_refused_while_going_away_is_retried_but_a_nodes_internal_answer_is_not()
    {
        let addr = going_away_peer().await;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect_lazy();
        let status = pb::settlement_client::SettlementClient::new(channel)
            .submit_batch(pb::SubmitBatchRequest::default())
            .await
            .expect_err("the peer took no call");
        assert!(
            connection_lost(&status),
            "not seen as a lost connection: {status:?}"
        );
        assert!(transient(&status), "not retried: {status:?}");
        // The same code sent by a node (in the trailer, no transport error).
        let answered = tonic::Status::internal("state digest mismatch");
        assert!(!connection_lost(&answered));
        assert!(!transient(&answered), "a node's Internal answer is final");
    }
}
