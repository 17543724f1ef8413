//! Client-facing gRPC services.

mod admin;
mod coalescer;
mod forward;
mod ingress;
mod issuer;
mod raft_write;
mod raw_submit;
mod results;
mod settlement;

pub use admin::{AdminService, peer_status, peer_status_response};
pub use coalescer::{Coalescer, CoalescerLimits, RETRY_AFTER_HEADER, RETRY_PUSHBACK_HEADER};
pub use forward::Forwarder;
pub use forward::{FORWARD_HOPS_HEADER, FORWARD_HOPS_MAX};
pub use ingress::IngressCheck;
pub use issuer::IssuerService;
pub use raft_write::now_ms;
pub use raw_submit::{RawBatch, SettlementRoutes};
pub use settlement::{ApiLimits, SettlementService};

/// Metadata keys carrying the leader's identity on a redirect.
pub const LEADER_ID_HEADER: &str = "x-spentledger-leader-id";
pub const LEADER_ADDR_HEADER: &str = "x-spentledger-leader-addr";
/// Metadata key carrying a machine-readable reason on refusals.
pub const REASON_HEADER: &str = "x-spentledger-reason";
