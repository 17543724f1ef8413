//! openraft RPC messages <-> protobuf (`spentledger.v1` raft.proto).

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderError, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use spentledger_protocol::pb;

use super::codec::{
    CodecError, entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, vote_from_pb, vote_to_pb,
};
use super::type_config::TypeConfig;

fn required<T>(what: &'static str, field: &'static str, value: Option<T>) -> Result<T, CodecError> {
    value.ok_or(CodecError::Missing { what, field })
}

pub fn append_request_to_pb(req: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: req.prev_log_id.as_ref().map(log_id_to_pb),
        entries: req.entries.iter().map(entry_to_pb).collect(),
        leader_commit: req.leader_commit.as_ref().map(log_id_to_pb),
    }
}

pub fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(&required("append entries", "vote", req.vote)?)?,
        prev_log_id: req.prev_log_id.as_ref().map(log_id_from_pb),
        entries: req
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: req.leader_commit.as_ref().map(log_id_from_pb),
    })
}

pub fn append_response_to_pb(
    resp: &AppendEntriesResponse<TypeConfig>,
) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(true),
        AppendEntriesResponse::PartialSuccess(id) => R::PartialSuccess(pb::OptionalLogId {
            log_id: id.as_ref().map(log_id_to_pb),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(true),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

pub fn append_response_from_pb(
    resp: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<TypeConfig>, CodecError> {
    use pb::append_entries_response::Result as R;
    Ok(
        match required("append entries response", "result", resp.result)? {
            R::Success(_) => AppendEntriesResponse::Success,
            R::PartialSuccess(id) => {
                AppendEntriesResponse::PartialSuccess(id.log_id.as_ref().map(log_id_from_pb))
            }
            R::Conflict(_) => AppendEntriesResponse::Conflict,
            R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(&v)?),
        },
    )
}

pub fn vote_request_to_pb(req: &VoteRequest<TypeConfig>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: req.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: req.leadership_transfer,
    }
}

pub fn vote_request_from_pb(req: pb::VoteRequest) -> Result<VoteRequest<TypeConfig>, CodecError> {
    let mut out = VoteRequest::new(
        vote_from_pb(&required("vote request", "vote", req.vote)?)?,
        req.last_log_id.as_ref().map(log_id_from_pb),
    );
    out.leadership_transfer = req.leadership_transfer;
    Ok(out)
}

pub fn vote_response_to_pb(resp: &VoteResponse<TypeConfig>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: resp.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_response_from_pb(
    resp: pb::VoteResponse,
) -> Result<VoteResponse<TypeConfig>, CodecError> {
    Ok(VoteResponse::new(
        vote_from_pb(&required("vote response", "vote", resp.vote)?)?,
        resp.last_log_id.as_ref().map(log_id_from_pb),
        resp.vote_granted,
    ))
}

pub fn transfer_request_to_pb(
    req: &TransferLeaderRequest<TypeConfig>,
) -> pb::LeaderTransferRequest {
    pb::LeaderTransferRequest {
        from_leader: Some(vote_to_pb(req.from_leader())),
        to_node_id: *req.to_node_id(),
        last_log_id: req.last_log_id().map(log_id_to_pb),
    }
}

pub fn transfer_request_from_pb(
    req: pb::LeaderTransferRequest,
) -> Result<TransferLeaderRequest<TypeConfig>, CodecError> {
    Ok(TransferLeaderRequest::new(
        vote_from_pb(&required(
            "leader transfer",
            "from_leader",
            req.from_leader,
        )?)?,
        req.to_node_id,
        req.last_log_id.as_ref().map(log_id_from_pb),
    ))
}

fn optional_log_id(id: &Option<crate::consensus::LogId>) -> pb::OptionalLogId {
    pb::OptionalLogId {
        log_id: id.as_ref().map(log_id_to_pb),
    }
}

pub fn transfer_response_to_pb(
    resp: &TransferLeaderResponse<TypeConfig>,
) -> pb::LeaderTransferResponse {
    use pb::leader_transfer_response::Result as R;
    let result = match resp {
        Ok(()) => R::Accepted(true),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => {
            R::VoteChanged(pb::VoteChangedRefusal {
                expected: Some(vote_to_pb(expected)),
                actual: Some(vote_to_pb(actual)),
            })
        }
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
            R::LogNotFlushed(pb::LogNotFlushedRefusal {
                expected: Some(optional_log_id(expected)),
                actual: Some(optional_log_id(actual)),
            })
        }
    };
    pb::LeaderTransferResponse {
        result: Some(result),
    }
}

pub fn transfer_response_from_pb(
    resp: pb::LeaderTransferResponse,
) -> Result<TransferLeaderResponse<TypeConfig>, CodecError> {
    use pb::leader_transfer_response::Result as R;
    let log = |o: Option<pb::OptionalLogId>| o.and_then(|o| o.log_id).as_ref().map(log_id_from_pb);
    Ok(
        match required("leader transfer response", "result", resp.result)? {
            R::Accepted(_) => Ok(()),
            R::VoteChanged(v) => Err(TransferLeaderError::VoteChanged {
                expected: vote_from_pb(&required("vote changed", "expected", v.expected)?)?,
                actual: vote_from_pb(&required("vote changed", "actual", v.actual)?)?,
            }),
            R::LogNotFlushed(l) => Err(TransferLeaderError::LogNotFlushed {
                expected: log(l.expected),
                actual: log(l.actual),
            }),
        },
    )
}
