//! Who may connect and what they may call: the node's TLS material
//! ([`node_tls`]), roles read from client certificates and the access
//! policy ([`roles`]), and the layer enforcing it on every RPC
//! ([`role_guard`]).

pub mod node_tls;
pub mod role_guard;
pub mod roles;

pub use node_tls::{NodeTls, TlsError};
pub use role_guard::RoleGuardLayer;
pub use roles::{Role, Roles};
