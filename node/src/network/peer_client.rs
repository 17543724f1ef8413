use prost::Message;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use spentledger_protocol::pb;
use spentledger_protocol::pb::raft_client::RaftClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::PeerDialer;
use super::cluster_id::{ClusterId, ClusterStamp};
use super::fault_layer::{FaultHook, RpcKind};

use super::{RAFT_MESSAGE_BYTES_MAX, SNAPSHOT_CHUNK_BYTES};
use crate::consensus::rpc_codec::{
    append_request_to_pb, append_response_from_pb, transfer_request_to_pb,
    transfer_response_from_pb, vote_request_to_pb, vote_response_from_pb,
};
use crate::consensus::{NodeId, TypeConfig, Vote, snapshot_meta_to_pb, vote_from_pb, vote_to_pb};
use crate::storage::SnapshotFile;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A Raft client whose every request carries this node's cluster id.
type PeerClient = RaftClient<InterceptedService<Channel, ClusterStamp>>;

/// Creates peer clients, keeping one HTTP/2 channel per peer (re-created
/// only when the peer's address changes).
#[derive(Clone)]
pub struct PeerNetworkFactory {
    self_id: NodeId,
    dialer: PeerDialer,
    faults: FaultHook,
    stamp: ClusterStamp,
    channels: Arc<Mutex<BTreeMap<NodeId, (String, Channel)>>>,
}

impl PeerNetworkFactory {
    pub fn new(
        self_id: NodeId,
        dialer: PeerDialer,
        faults: FaultHook,
        cluster: &ClusterId,
    ) -> Self {
        PeerNetworkFactory {
            self_id,
            dialer,
            faults,
            stamp: cluster.stamp(),
            channels: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, channel)) = channels.get(&target)
            && known == addr
        {
            return Ok(channel.clone());
        }
        let endpoint = self
            .dialer
            .endpoint(addr)?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        // Lazy: dialing happens on first use, and a refused dial surfaces as
        // `Unreachable` so openraft backs off instead of spinning.
        let channel = endpoint.connect_lazy();
        channels.insert(target, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }

    /// Asks the peer `target` at `addr` for its applied log index, over the
    /// same channel as Raft's messages and through the same fault layer.
    /// Fails with a short reason when the peer does not answer within
    /// `timeout`, is unreachable, or does not know the call (an older
    /// version during a rolling upgrade).
    pub async fn applied_index(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<u64, String> {
        self.faults
            .before(self.self_id, target, RpcKind::Applied)
            .await?;
        let mut request = tonic::Request::new(pb::AppliedRequest {});
        request.set_timeout(timeout);
        let mut client =
            RaftClient::with_interceptor(self.channel(target, addr)?, self.stamp.clone());
        match tokio::time::timeout(timeout, client.applied(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner().applied_index),
            Ok(Err(status)) => Err(format!("node {target}: {status}")),
            Err(_) => Err(format!("node {target}: no answer within {timeout:?}")),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        let client = if target == self.self_id {
            Err("refusing to open a Raft connection to this node itself".to_owned())
        } else {
            self.channel(target, &node.addr).map(|channel| {
                RaftClient::with_interceptor(channel, self.stamp.clone())
                    .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            })
        };
        PeerNetwork {
            from: self.self_id,
            target,
            client,
            faults: self.faults.clone(),
        }
    }
}

/// A client for one peer's Raft service.
pub struct PeerNetwork {
    from: NodeId,
    target: NodeId,
    client: Result<PeerClient, String>,
    faults: FaultHook,
}

/// A transport failure: refused or unavailable peers are `Unreachable`
/// (openraft backs off), anything else a network error.
fn rpc_error(target: NodeId, status: &tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {status}")))
        }
        _ => RPCError::Network(NetworkError::from_string(format!(
            "node {target}: {status}"
        ))),
    }
}

fn decode_error(target: NodeId, e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "node {target} sent an invalid reply: {e}"
    )))
}

/// The slowest rate at which a follower is expected to receive, store and
/// fsync entries. openraft gives each AppendEntries the heartbeat interval
/// (`hard_ttl`); that is enough for a heartbeat or a small entry, not for
/// megabytes of them: a follower a few big entries behind would time out on
/// every retry of the same request.
const APPEND_BYTES_PER_S_MIN: u64 = 16 << 20;

/// The deadline of an AppendEntries of `bytes`: openraft's TTL plus the time
/// its payload may take at [`APPEND_BYTES_PER_S_MIN`].
fn append_timeout(option: &RPCOption, bytes: usize) -> std::time::Duration {
    let payload_ms = (bytes as u64).saturating_mul(1_000) / APPEND_BYTES_PER_S_MIN;
    option.hard_ttl() + std::time::Duration::from_millis(payload_ms)
}

impl PeerNetwork {
    /// The fault layer's verdict on this RPC (always through in production).
    async fn through(&self, kind: RpcKind) -> Result<(), RPCError<TypeConfig>> {
        self.faults
            .before(self.from, self.target, kind)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    fn client(&self) -> Result<PeerClient, RPCError<TypeConfig>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    fn request<T>(message: T, option: &RPCOption) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl());
        request
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.through(RpcKind::Append).await?;
        let message = append_request_to_pb(&rpc);
        let mut request = tonic::Request::new(message);
        let bytes = request.get_ref().encoded_len();
        if bytes > RAFT_MESSAGE_BYTES_MAX {
            // The encoder would refuse it and the peer would see only a reset
            // stream; say why instead. Replication reads are bounded so that
            // this cannot happen (`storage::log_store`).
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "AppendEntries to node {} of {bytes} bytes is over the {RAFT_MESSAGE_BYTES_MAX}-byte Raft message limit",
                self.target
            ))));
        }
        request.set_timeout(append_timeout(&option, bytes));
        let response = self
            .client()?
            .append_entries(request)
            .await
            .map_err(|s| rpc_error(self.target, &s))?;
        append_response_from_pb(response.into_inner()).map_err(|e| decode_error(self.target, e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.through(RpcKind::Vote).await?;
        let response = self
            .client()?
            .vote(Self::request(vote_request_to_pb(&rpc), &option))
            .await
            .map_err(|s| rpc_error(self.target, &s))?;
        vote_response_from_pb(response.into_inner()).map_err(|e| decode_error(self.target, e))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.through(RpcKind::TransferLeader).await?;
        let response = self
            .client()?
            .transfer_leader(Self::request(transfer_request_to_pb(&req), &option))
            .await
            .map_err(|s| rpc_error(self.target, &s))?;
        transfer_response_from_pb(response.into_inner()).map_err(|e| decode_error(self.target, e))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        if let Err(RPCError::Unreachable(u)) = self.through(RpcKind::Snapshot).await {
            return Err(StreamingError::Unreachable(u));
        }
        let mut client = self.client().map_err(|e| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        })?;
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES)
            .max(4096);
        // A bounded channel fed by a blocking reader: memory stays at a few
        // chunks whatever the snapshot's size.
        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_CHUNKS_IN_FLIGHT);
        let file = snapshot.snapshot.clone();
        let first = pb::SnapshotChunk {
            vote: Some(vote_to_pb(&vote)),
            meta: Some(snapshot_meta_to_pb(&snapshot.meta)),
            ..Default::default()
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send_chunks(&file, first, chunk_bytes, &tx) {
                // The receiver sees a stream without its final chunk and refuses it.
                tracing::warn!(path = %file.path.display(), error = %e, "snapshot upload stopped");
            }
        });
        let chunks = tokio_stream::wrappers::ReceiverStream::new(rx);
        let target = self.target;
        let send = async move {
            let response =
                client
                    .install_snapshot(chunks)
                    .await
                    .map_err(|s| match rpc_error(target, &s) {
                        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                        other => {
                            StreamingError::Network(NetworkError::from_string(other.to_string()))
                        }
                    })?;
            let vote_pb = response.into_inner().vote.ok_or_else(|| {
                StreamingError::Network(NetworkError::from_string("snapshot reply without vote"))
            })?;
            let vote = vote_from_pb(&vote_pb)
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            Ok(SnapshotResponse::new(vote))
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result,
        }
    }
}

/// Chunks of a snapshot upload queued at once.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;

/// Streams a snapshot file as protocol chunks: `first` (vote and meta), the
/// data, then a final chunk with the BLAKE3 checksum of all data.
fn send_chunks(
    file: &SnapshotFile,
    first: pb::SnapshotChunk,
    chunk_bytes: usize,
    tx: &tokio::sync::mpsc::Sender<pb::SnapshotChunk>,
) -> std::io::Result<()> {
    let closed = || std::io::Error::other("receiver closed");
    let mut reader = std::io::BufReader::new(std::fs::File::open(&file.path)?);
    let mut hasher = blake3::Hasher::new();
    tx.blocking_send(first).map_err(|_| closed())?;
    let mut offset = 0u64;
    loop {
        let mut data = vec![0u8; chunk_bytes];
        let mut filled = 0;
        while filled < chunk_bytes {
            let n = reader.read(&mut data[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        data.truncate(filled);
        hasher.update(&data);
        tx.blocking_send(pb::SnapshotChunk {
            offset,
            data,
            ..Default::default()
        })
        .map_err(|_| closed())?;
        offset += filled as u64;
    }
    tx.blocking_send(pb::SnapshotChunk {
        offset,
        done: true,
        checksum: hasher.finalize().as_bytes().to_vec(),
        ..Default::default()
    })
    .map_err(|_| closed())
}
