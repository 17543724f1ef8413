//! Forwarding gateway writes from a follower to the leader, one hop at most.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;
use spentledger_protocol::pb;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::raft_write::not_leader;
use super::raw_submit::{ForwardCodec, RawBatch, SUBMIT_BATCH_PATH};
use crate::ledger_node::LedgerRaft;
use crate::network::PeerDialer;

/// Metadata key counting how often a request was forwarded.
pub const FORWARD_HOPS_HEADER: &str = "x-spentledger-forward-hops";
/// Forwards allowed per request: a follower forwards to the leader it knows;
/// a node receiving an already forwarded request never forwards it again.
pub const FORWARD_HOPS_MAX: u32 = 1;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a write should go.
pub enum Route {
    /// This node is the leader (as far as it knows): handle it here.
    Local,
    /// Forward to the leader at this address.
    Forward(String),
}

/// One channel per leader address, reused across requests.
#[derive(Clone, Default)]
pub struct Forwarder {
    dialer: PeerDialer,
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
}

pub fn hops<T>(request: &Request<T>) -> u32 {
    request
        .metadata()
        .get(FORWARD_HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Forwarder {
    pub fn new(dialer: PeerDialer) -> Self {
        Forwarder {
            dialer,
            channels: Arc::default(),
        }
    }

    /// Decides where a write goes from this node's view of the leader.
    pub fn route(&self, raft: &LedgerRaft, hops: u32) -> Result<Route, Status> {
        let m = raft.metrics().borrow_watched().clone();
        match m.current_leader {
            Some(leader) if leader == m.id => Ok(Route::Local),
            Some(leader) => {
                let addr = m
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone());
                match addr {
                    Some(addr) if hops < FORWARD_HOPS_MAX => Ok(Route::Forward(addr)),
                    addr => Err(not_leader(Some((leader, addr)))),
                }
            }
            None => Err(not_leader(None)),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = self
                    .dialer
                    .endpoint(addr)
                    .map_err(|e| Status::internal(format!("leader address: {e}")))?
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(FORWARD_TIMEOUT)
                    .connect_lazy();
                channels.insert(addr.to_owned(), c.clone());
                c
            }
        };
        Ok(channel)
    }

    /// Sends a batch to the leader as its bytes (not decoded here), marking
    /// it as forwarded once more.
    pub async fn submit(
        &self,
        leader_addr: &str,
        batch: RawBatch,
        hops: u32,
    ) -> Result<pb::SubmitBatchResponse, Status> {
        let mut request = Request::new(batch);
        let next = (hops + 1).to_string();
        request.metadata_mut().insert(
            FORWARD_HOPS_HEADER,
            next.parse()
                .map_err(|_| Status::internal("hop count header"))?,
        );
        let mut grpc = tonic::client::Grpc::new(self.channel(leader_addr)?);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("leader {leader_addr}: {e}")))?;
        grpc.unary(
            request,
            PathAndQuery::from_static(SUBMIT_BATCH_PATH),
            ForwardCodec,
        )
        .await
        .map(tonic::Response::into_inner)
    }
}
