//! The cluster a Raft message belongs to.
//!
//! Raft's votes and log ids are small integers: node 2's term 4 in one
//! cluster is the same value as node 2's term 4 in another. A node that
//! receives another cluster's AppendEntries, vote or snapshot takes it for
//! its own cluster's: it adopts the foreign vote, truncates its log where
//! the foreign one conflicts, appends and applies foreign entries. That can
//! happen whenever an address moves between clusters while a member still
//! dials it: a Kubernetes pod's IP reused by another cluster's pod, a port
//! reused on a shared host, a peer list copied from another environment.
//! Every Raft request therefore carries its sender's cluster id in the
//! `x-spentledger-cluster` header, and a node refuses, before Raft sees it,
//! any request whose id is missing or not its own (as etcd does with its
//! cluster id header).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The header that carries the sender's cluster id on every Raft request.
pub const CLUSTER_HEADER: &str = "x-spentledger-cluster";
/// The id a node uses when none is configured.
pub const CLUSTER_ID_DEFAULT: &str = "spentledger";
/// Longest cluster id.
pub const CLUSTER_ID_BYTES_MAX: usize = 63;
/// Shortest interval between two warnings about refused requests.
const REFUSAL_WARN_INTERVAL_MS: u64 = 10_000;

/// A cluster's id: 1 to 63 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterId(String);

impl ClusterId {
    pub fn new(text: &str) -> Result<Self, String> {
        let valid_chars = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if text.is_empty() || text.len() > CLUSTER_ID_BYTES_MAX || !valid_chars {
            return Err(format!(
                "{text:?} is not a cluster id: 1 to {CLUSTER_ID_BYTES_MAX} characters of A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(ClusterId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn header_value(&self) -> MetadataValue<Ascii> {
        MetadataValue::try_from(self.0.as_str()).expect("a cluster id is valid header text")
    }

    /// The interceptor that stamps this id on outgoing Raft requests.
    pub fn stamp(&self) -> ClusterStamp {
        ClusterStamp(self.header_value())
    }

    /// The gate that admits only this cluster's Raft requests.
    pub fn gate(&self) -> ClusterGate {
        ClusterGate {
            own: self.clone(),
            last_warned_ms: Arc::new(AtomicU64::new(0)),
            started: std::time::Instant::now(),
        }
    }
}

impl Default for ClusterId {
    fn default() -> Self {
        ClusterId(CLUSTER_ID_DEFAULT.to_owned())
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Adds the cluster id header to every request of a Raft client.
#[derive(Clone)]
pub struct ClusterStamp(MetadataValue<Ascii>);

impl Interceptor for ClusterStamp {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(CLUSTER_HEADER, self.0.clone());
        Ok(request)
    }
}

/// Checks the cluster id header of incoming Raft requests.
#[derive(Clone)]
pub struct ClusterGate {
    own: ClusterId,
    last_warned_ms: Arc<AtomicU64>,
    started: std::time::Instant,
}

impl ClusterGate {
    /// `Ok` for a request of this node's cluster; FAILED_PRECONDITION with
    /// `x-spentledger-reason: wrong-cluster` otherwise (the sender's Raft
    /// sees a network error and keeps retrying, harmlessly).
    pub fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let theirs = request
            .metadata()
            .get(CLUSTER_HEADER)
            .and_then(|v| v.to_str().ok());
        if theirs == Some(self.own.as_str()) {
            return Ok(());
        }
        let theirs = theirs.unwrap_or("(none)");
        self.warn_now_and_then(theirs, request.remote_addr());
        let mut status = Status::failed_precondition(format!(
            "this node belongs to cluster {:?}, not to {theirs:?}: refusing its Raft message",
            self.own.as_str()
        ));
        status.metadata_mut().insert(
            crate::api::REASON_HEADER,
            MetadataValue::from_static("wrong-cluster"),
        );
        Err(status)
    }

    /// A refused sender retries every heartbeat: one warning per interval.
    fn warn_now_and_then(&self, theirs: &str, from: Option<std::net::SocketAddr>) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= REFUSAL_WARN_INTERVAL_MS;
        if due
            && self
                .last_warned_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                own_cluster = self.own.as_str(),
                their_cluster = theirs,
                from = ?from,
                "refused a Raft message from another cluster (or from a node without a cluster id); an address of this cluster may be in use elsewhere"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(id: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(id) = id {
            request
                .metadata_mut()
                .insert(CLUSTER_HEADER, id.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn ids_are_short_plain_text() {
        assert!(ClusterId::new("prod-eu.1_a").is_ok());
        for bad in ["", "has space", "é", "a/b", &"x".repeat(64)] {
            assert!(ClusterId::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ClusterId::default().as_str(), CLUSTER_ID_DEFAULT);
    }

    #[test]
    fn the_gate_admits_its_own_cluster_only() {
        let own = ClusterId::new("alpha").expect("id");
        let gate = own.gate();
        let stamped = own.stamp().call(request_with(None)).expect("stamp");
        assert!(gate.admit(&stamped).is_ok());
        for theirs in [Some("beta"), Some("alph"), None] {
            let refused = gate.admit(&request_with(theirs)).expect_err("refused");
            assert_eq!(
                refused.code(),
                tonic::Code::FailedPrecondition,
                "{theirs:?}"
            );
            assert_eq!(
                refused
                    .metadata()
                    .get(crate::api::REASON_HEADER)
                    .and_then(|v| v.to_str().ok()),
                Some("wrong-cluster")
            );
        }
    }
}
