//! How a TLS client certificate names its caller's roles: one subject
//! alternative name URI per role, `urn:spentledger:role:<role>`. The node
//! reads it (access control) and `spentledger certs init` writes it.

/// The URI prefix that marks a role in a certificate's SAN.
pub const ROLE_URI_PREFIX: &str = "urn:spentledger:role:";
