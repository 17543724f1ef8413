use std::path::PathBuf;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use openraft::Raft;
use spentledger_protocol::pb;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::SNAPSHOT_BYTES_MAX;
use super::cluster_id::{ClusterGate, ClusterId};
use crate::consensus::rpc_codec::{
    append_request_from_pb, append_response_to_pb, transfer_request_from_pb,
    transfer_response_to_pb, vote_request_from_pb, vote_response_to_pb,
};
use crate::consensus::{
    LedgerStateMachine, TypeConfig, snapshot_meta_from_pb, vote_from_pb, vote_to_pb,
};
use crate::storage::SnapshotFile;

type LedgerRaft = Raft<TypeConfig, LedgerStateMachine>;

/// The node-to-node Raft gRPC service: hands peers' messages to openraft,
/// only those of this node's cluster (see [`super::cluster_id`]).
#[derive(Clone)]
pub struct RaftService {
    raft: LedgerRaft,
    /// Where incoming snapshots are written before install.
    incoming_dir: PathBuf,
    gate: ClusterGate,
}

impl RaftService {
    pub fn new(raft: LedgerRaft, incoming_dir: PathBuf, cluster: &ClusterId) -> Self {
        RaftService {
            raft,
            incoming_dir,
            gate: cluster.gate(),
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn raft_failed(e: impl std::fmt::Display) -> Status {
    // openraft answers errors only when it is shutting down or fatally failed.
    Status::unavailable(format!("raft: {e}"))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        self.gate.admit(&request)?;
        let req = vote_request_from_pb(request.into_inner()).map_err(invalid)?;
        let resp = self.raft.vote(req).await.map_err(raft_failed)?;
        Ok(Response::new(vote_response_to_pb(&resp)))
    }

    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        self.gate.admit(&request)?;
        let req = append_request_from_pb(request.into_inner()).map_err(invalid)?;
        let resp = self.raft.append_entries(req).await.map_err(raft_failed)?;
        Ok(Response::new(append_response_to_pb(&resp)))
    }

    type AppendEntriesStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::AppendEntriesResponse, Status>> + Send + 'static>>;

    async fn append_entries_stream(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendEntriesStreamStream>, Status> {
        self.gate.admit(&request)?;
        let raft = self.raft.clone();
        let responses = request.into_inner().then(move |item| {
            let raft = raft.clone();
            async move {
                let req = append_request_from_pb(item?).map_err(invalid)?;
                let resp = raft.append_entries(req).await.map_err(raft_failed)?;
                Ok(append_response_to_pb(&resp))
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::LeaderTransferRequest>,
    ) -> Result<Response<pb::LeaderTransferResponse>, Status> {
        self.gate.admit(&request)?;
        let req = transfer_request_from_pb(request.into_inner()).map_err(invalid)?;
        let resp = self
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(raft_failed)?;
        Ok(Response::new(transfer_response_to_pb(&resp)))
    }

    async fn applied(
        &self,
        request: Request<pb::AppliedRequest>,
    ) -> Result<Response<pb::AppliedResponse>, Status> {
        self.gate.admit(&request)?;
        use openraft::type_config::async_runtime::WatchReceiver;
        let applied_index = self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |id| id.index);
        Ok(Response::new(pb::AppliedResponse { applied_index }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        self.gate.admit(&request)?;
        let mut chunks = request.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| invalid("empty snapshot stream"))??;
        let vote = vote_from_pb(
            &first
                .vote
                .ok_or_else(|| invalid("first chunk without vote"))?,
        )
        .map_err(invalid)?;
        let meta = snapshot_meta_from_pb(
            &first
                .meta
                .ok_or_else(|| invalid("first chunk without meta"))?,
        )
        .map_err(invalid)?;
        let io = |e: std::io::Error| Status::internal(format!("writing the snapshot: {e}"));
        tokio::fs::create_dir_all(&self.incoming_dir)
            .await
            .map_err(io)?;
        let path = self.incoming_dir.join(format!(
            "{}.incoming",
            crate::consensus::snapshot_name(&meta)
        ));
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(&path).await.map_err(io)?);
        let mut hasher = blake3::Hasher::new();
        let mut received = 0u64;
        let mut complete = false;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if chunk.offset != received {
                return Err(invalid(format!(
                    "chunk at offset {} after {received} bytes",
                    chunk.offset
                )));
            }
            if chunk.done {
                if hasher.finalize().as_bytes().as_slice() != chunk.checksum.as_slice() {
                    return Err(Status::data_loss("snapshot checksum mismatch"));
                }
                complete = true;
                break;
            }
            received += chunk.data.len() as u64;
            if received > SNAPSHOT_BYTES_MAX {
                return Err(Status::resource_exhausted(format!(
                    "snapshot over {SNAPSHOT_BYTES_MAX} bytes"
                )));
            }
            hasher.update(&chunk.data);
            file.write_all(&chunk.data).await.map_err(io)?;
        }
        if !complete {
            return Err(invalid("snapshot stream ended before its final chunk"));
        }
        file.flush().await.map_err(io)?;
        file.into_inner().sync_all().await.map_err(io)?;
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path: path.clone() },
        };
        let result = self.raft.install_full_snapshot(vote, snapshot).await;
        let _ = tokio::fs::remove_file(&path).await;
        let resp = result.map_err(raft_failed)?;
        Ok(Response::new(pb::SnapshotResponse {
            vote: Some(vote_to_pb(&resp.vote)),
        }))
    }
}
