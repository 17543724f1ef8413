//! Roles of callers, read from their TLS client certificates, and which
//! roles may call which RPC. This table is the whole access policy.
//!
//! A certificate names its roles as subject-alternative-name URIs
//! `urn:spentledger:role:<role>` (one per role; `spentledger certs init`
//! writes them). Anything else in the certificate is ignored for access.

use std::fmt;

pub use spentledger_protocol::access::ROLE_URI_PREFIX;

/// What a caller is allowed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Settlement gateways: submit payments and query the ledger.
    Gateway,
    /// Issuers: settle and revoke certificates, manage issuer keys.
    Issuer,
    /// Operators: membership, leadership, snapshots.
    Admin,
    /// Other nodes: the Raft service, and relaying what a node accepted.
    Peer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Issuer, Role::Admin, Role::Peer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Issuer => "issuer",
            Role::Admin => "admin",
            Role::Peer => "peer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The SAN URI naming this role.
    pub fn uri(self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.as_str())
    }

    const fn bit(self) -> u8 {
        match self {
            Role::Gateway => 1,
            Role::Issuer => 2,
            Role::Admin => 4,
            Role::Peer => 8,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    pub const EVERY: Roles = Roles(15);

    pub const fn of(roles: &[Role]) -> Roles {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= roles[i].bit();
            i += 1;
        }
        Roles(bits)
    }

    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn intersects(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.contains(*r))
            .map(Role::as_str)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateRoleError {
    #[error("the client certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("the client certificate names no spentledger role (a SAN URI {ROLE_URI_PREFIX}<role>)")]
    NoRole,
    #[error("the client certificate names an unknown role {0:?}")]
    UnknownRole(String),
}

/// The roles a DER-encoded certificate names.
pub fn roles_of_certificate(der: &[u8]) -> Result<Roles, CertificateRoleError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertificateRoleError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertificateRoleError::Unparsable(e.to_string()))?;
    let mut roles = Roles::NONE;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        if let GeneralName::URI(uri) = name
            && let Some(text) = uri.strip_prefix(ROLE_URI_PREFIX)
        {
            let role = Role::parse(text)
                .ok_or_else(|| CertificateRoleError::UnknownRole(text.to_owned()))?;
            roles = roles.with(role);
        }
    }
    if roles.is_empty() {
        return Err(CertificateRoleError::NoRole);
    }
    Ok(roles)
}

const EVERY: Roles = Roles::EVERY;
const GATEWAY: Roles = Roles::of(&[Role::Gateway]);
const ISSUER: Roles = Roles::of(&[Role::Issuer]);
const ADMIN: Roles = Roles::of(&[Role::Admin]);
const PEER: Roles = Roles::of(&[Role::Peer]);
const ADMIN_OR_PEER: Roles = Roles::of(&[Role::Admin, Role::Peer]);
const ISSUER_OR_PEER: Roles = Roles::of(&[Role::Issuer, Role::Peer]);

/// Path prefixes and who may call them; the first match decides.
const POLICY: &[(&str, Roles)] = &[
    // Probes and tooling: no ledger data.
    ("/grpc.health.v1.Health/", EVERY),
    ("/grpc.reflection.v1.ServerReflection/", EVERY),
    // Membership and leader, which every client needs to find the leader.
    ("/spentledger.v1.Admin/Status", EVERY),
    // A node started with --join adds itself as learner, then as voter.
    ("/spentledger.v1.Admin/AddLearner", ADMIN_OR_PEER),
    ("/spentledger.v1.Admin/ChangeMembership", ADMIN_OR_PEER),
    ("/spentledger.v1.Admin/", ADMIN),
    // The bootstrapping node registers the genesis issuer keys.
    ("/spentledger.v1.Issuer/RegisterIssuerKey", ISSUER_OR_PEER),
    ("/spentledger.v1.Issuer/", ISSUER),
    ("/spentledger.v1.Settlement/", GATEWAY),
    ("/spentledger.v1.Raft/", PEER),
];

/// The only RPC a follower relays to the leader for a caller it checked.
const RELAYED_PATH: &str = "/spentledger.v1.Settlement/SubmitBatch";

/// Who may call the RPC at `path` (`/package.Service/Method`). `relayed`:
/// the request says a follower forwarded it (the follower already checked
/// the original caller's role). Unknown paths: nobody.
pub fn allowed_roles(path: &str, relayed: bool) -> Roles {
    let allowed = POLICY
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or(Roles::NONE, |(_, roles)| *roles);
    if relayed && path == RELAYED_PATH {
        allowed.with(Role::Peer)
    } else {
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_reaches_only_its_own_api_group() {
        let submit = "/spentledger.v1.Settlement/SubmitBatch";
        let settle = "/spentledger.v1.Issuer/SettleCertificate";
        let remove = "/spentledger.v1.Admin/RemoveNode";
        let append = "/spentledger.v1.Raft/AppendEntries";
        let status = "/spentledger.v1.Admin/Status";
        assert_eq!(allowed_roles(submit, false), GATEWAY);
        assert_eq!(allowed_roles(settle, false), ISSUER);
        assert_eq!(allowed_roles(remove, false), ADMIN);
        assert_eq!(allowed_roles(append, false), PEER);
        assert_eq!(allowed_roles(status, false), EVERY);
        assert_eq!(
            allowed_roles("/spentledger.v1.Settlement/GetPayment", true),
            GATEWAY,
            "only submissions are relayed"
        );
        assert!(allowed_roles(submit, true).contains(Role::Peer));
        assert!(!allowed_roles(settle, true).contains(Role::Peer));
        assert_eq!(allowed_roles("/other.Service/Call", false), Roles::NONE);
    }

    #[test]
    fn role_names_round_trip_and_display() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(
            Roles::of(&[Role::Peer, Role::Gateway]).to_string(),
            "gateway, peer"
        );
        assert_eq!(Roles::NONE.to_string(), "none");
    }

    #[test]
    fn roles_are_read_from_san_uris_and_a_certificate_without_one_is_refused() {
        let make = |uris: &[&str]| {
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            for uri in uris {
                params.subject_alt_names.push(rcgen::SanType::URI(
                    rcgen::string::Ia5String::try_from(*uri).expect("ascii"),
                ));
            }
            let key = rcgen::KeyPair::generate().expect("key");
            params.self_signed(&key).expect("sign").der().to_vec()
        };
        let both = make(&["urn:spentledger:role:gateway", "urn:spentledger:role:admin"]);
        let roles = roles_of_certificate(&both).expect("roles");
        assert!(roles.contains(Role::Gateway) && roles.contains(Role::Admin));
        assert!(!roles.contains(Role::Peer));
        assert_eq!(
            roles_of_certificate(&make(&["https://example.com"])),
            Err(CertificateRoleError::NoRole)
        );
        assert_eq!(
            roles_of_certificate(&make(&["urn:spentledger:role:root"])),
            Err(CertificateRoleError::UnknownRole("root".into()))
        );
        assert!(matches!(
            roles_of_certificate(b"not a certificate"),
            Err(CertificateRoleError::Unparsable(_))
        ));
    }
}
