//! Mutual TLS with roles: a TLS cluster settles end to end (forwarding
//! between nodes included), each role is refused outside its API group, and
//! connections with a wrong CA, an expired certificate or no TLS fail.

use spentledger_client::connect::dial;
use spentledger_client::tls::{ClientTls, DevCa, IssuedCert, Validity};
use spentledger_node::api::REASON_HEADER;
use spentledger_node::security::node_tls::TLS_HANDSHAKE_TIMEOUT;
use spentledger_node::security::role_guard::ROLE_NOT_ALLOWED;

use super::*;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct Pki {
    ca: DevCa,
    node: IssuedCert,
}

impl Pki {
    fn must_new() -> Pki {
        let ca = DevCa::new("test cluster CA", Validity::days(1)).expect("CA");
        let node = ca
            .issue(
                "node",
                &["peer"],
                &["127.0.0.1".to_owned(), "localhost".to_owned()],
                Validity::days(1),
            )
            .expect("node certificate");
        Pki { ca, node }
    }

    fn node_tls(&self) -> NodeTls {
        NodeTls::from_pem(
            self.node.cert_pem.as_bytes(),
            self.node.key_pem.as_bytes(),
            self.ca.cert_pem().as_bytes(),
        )
        .expect("node TLS material")
    }

    /// A client identity signed by this CA, naming `roles`.
    fn must_client(&self, roles: &[&str], validity: Validity) -> ClientTls {
        let cert = self
            .ca
            .issue(&roles.join("+"), roles, &[], validity)
            .expect("client certificate");
        ClientTls::from_pem(self.ca.cert_pem(), &cert.cert_pem, &cert.key_pem).expect("client TLS")
    }

    /// The node's own identity, as a client (role `peer`).
    fn peer_client(&self) -> ClientTls {
        ClientTls::from_pem(self.ca.cert_pem(), &self.node.cert_pem, &self.node.key_pem)
            .expect("peer TLS")
    }
}

async fn must_dial(addr: SocketAddr, tls: &ClientTls) -> tonic::transport::Channel {
    dial(&addr.to_string(), Some(CALL_TIMEOUT), Some(tls))
        .await
        .unwrap_or_else(|e| panic!("TLS connection to {addr}: {e}"))
}

/// The call was refused for its role, with the reason code.
fn must_deny<T: std::fmt::Debug>(what: &str, result: Result<tonic::Response<T>, tonic::Status>) {
    let status = match result {
        Ok(r) => panic!("{what}: allowed, answered {r:?}"),
        Err(s) => s,
    };
    assert_eq!(
        status.code(),
        tonic::Code::PermissionDenied,
        "{what}: {status:?}"
    );
    assert_eq!(
        status
            .metadata()
            .get(REASON_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(ROLE_NOT_ALLOWED),
        "{what}"
    );
}

/// No call gets through a connection made with `tls` (None: plaintext):
/// either the handshake fails or the first call does, never with an answer.
async fn must_refuse_connection(what: &str, addr: SocketAddr, tls: Option<&ClientTls>) {
    let Ok(channel) = dial(&addr.to_string(), Some(CALL_TIMEOUT), tls).await else {
        return;
    };
    let result = pb::admin_client::AdminClient::new(channel)
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await;
    match result {
        Ok(r) => panic!("{what}: the node answered {r:?}"),
        Err(s) => assert_ne!(
            s.code(),
            tonic::Code::PermissionDenied,
            "{what}: must fail in the handshake, not reach the role check: {s:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_settles_and_refuses_every_role_outside_its_api_group() {
    let pki = Pki::must_new();
    let cluster = Cluster::start_full(3, test_api_limits(), Some(pki.node_tls()), None).await;
    let leader = cluster.must_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let (leader_addr, follower_addr) = (cluster.addrs[&leader], cluster.addrs[&follower]);
    let day = Validity::days(1);
    let gateway = pki.must_client(&["gateway"], day);
    let issuer_id = pki.must_client(&["issuer"], day);
    let admin = pki.must_client(&["admin"], day);

    eprintln!("--- the issuer registers its key over TLS (Raft replicates it over TLS)");
    pb::issuer_client::IssuerClient::new(must_dial(leader_addr, &issuer_id).await)
        .register_issuer_key(pb::RegisterIssuerKeyRequest {
            key: Some((&issuer().issuer_key()).into()),
        })
        .await
        .expect("issuer registers a key");

    eprintln!("--- a gateway submits through a follower, which relays to the leader as a peer");
    let now = now_ms();
    let mut w = wallet_issued_at(61, now - 60_000);
    let payment = w.pay(75, &id("m"), [1; 32], now).expect("pay");
    let request = pb::SubmitBatchRequest {
        batch_id: 1,
        payments: vec![(&payment).into()],
    };
    let response =
        pb::settlement_client::SettlementClient::new(must_dial(follower_addr, &gateway).await)
            .submit_batch(request.clone())
            .await
            .expect("submit through the follower")
            .into_inner();
    assert_eq!(
        response.results[0].verdict,
        pb::Verdict::Accepted as i32,
        "{:?}",
        response.results[0]
    );

    eprintln!("--- every role may read the status; admin may snapshot");
    for tls in [&gateway, &issuer_id, &admin] {
        pb::admin_client::AdminClient::new(must_dial(leader_addr, tls).await)
            .status(pb::StatusRequest {
                include_peers: true,
            })
            .await
            .expect("status is open to every role");
    }
    pb::admin_client::AdminClient::new(must_dial(leader_addr, &admin).await)
        .trigger_snapshot(pb::TriggerSnapshotRequest::default())
        .await
        .expect("admin snapshots");

    eprintln!("--- each role is refused outside its group");
    let as_gateway = must_dial(leader_addr, &gateway).await;
    must_deny(
        "gateway settles a certificate",
        pb::issuer_client::IssuerClient::new(as_gateway.clone())
            .settle_certificate(pb::SettleCertificateRequest::default())
            .await,
    );
    must_deny(
        "gateway removes a node",
        pb::admin_client::AdminClient::new(as_gateway.clone())
            .remove_node(pb::RemoveNodeRequest::default())
            .await,
    );
    must_deny(
        "gateway snapshots",
        pb::admin_client::AdminClient::new(as_gateway.clone())
            .trigger_snapshot(pb::TriggerSnapshotRequest::default())
            .await,
    );
    must_deny(
        "gateway asks for a vote",
        pb::raft_client::RaftClient::new(as_gateway.clone())
            .vote(pb::VoteRequest::default())
            .await,
    );
    must_deny(
        "issuer submits payments",
        pb::settlement_client::SettlementClient::new(must_dial(leader_addr, &issuer_id).await)
            .submit_batch(request.clone())
            .await,
    );
    must_deny(
        "issuer changes membership",
        pb::admin_client::AdminClient::new(must_dial(leader_addr, &issuer_id).await)
            .change_membership(pb::ChangeMembershipRequest::default())
            .await,
    );
    must_deny(
        "admin reads a payment",
        pb::settlement_client::SettlementClient::new(must_dial(leader_addr, &admin).await)
            .get_payment(pb::GetPaymentRequest::default())
            .await,
    );
    must_deny(
        "admin revokes a certificate",
        pb::issuer_client::IssuerClient::new(must_dial(leader_addr, &admin).await)
            .revoke_certificate(pb::RevokeCertificateRequest::default())
            .await,
    );
    must_deny(
        "a node's certificate submits without being relayed",
        pb::settlement_client::SettlementClient::new(
            must_dial(leader_addr, &pki.peer_client()).await,
        )
        .submit_batch(request.clone())
        .await,
    );
    must_deny(
        "a node's certificate settles a certificate",
        pb::issuer_client::IssuerClient::new(must_dial(leader_addr, &pki.peer_client()).await)
            .settle_certificate(pb::SettleCertificateRequest::default())
            .await,
    );
    let no_role = pki.must_client(&[], day);
    must_deny(
        "a certificate naming no role reads the status",
        pb::admin_client::AdminClient::new(must_dial(leader_addr, &no_role).await)
            .status(pb::StatusRequest::default())
            .await,
    );
    // The refused calls changed nothing: the gateway still sees its payment.
    let got = pb::settlement_client::SettlementClient::new(as_gateway.clone())
        .get_payment(pb::GetPaymentRequest {
            tx_id: response.results[0].tx_id.clone(),
            ..Default::default()
        })
        .await
        .expect("gateway reads its payment")
        .into_inner();
    assert!(got.found, "{got:?}");

    eprintln!("--- a certificate from another CA, an expired one, and plaintext are refused");
    let rogue_ca = DevCa::new("rogue CA", day).expect("rogue CA");
    let rogue = rogue_ca
        .issue("rogue gateway", &["gateway"], &[], day)
        .expect("rogue certificate");
    let rogue_client =
        ClientTls::from_pem(pki.ca.cert_pem(), &rogue.cert_pem, &rogue.key_pem).expect("rogue TLS");
    must_refuse_connection(
        "client certificate from another CA",
        leader_addr,
        Some(&rogue_client),
    )
    .await;
    let trusts_rogue = ClientTls::from_pem(rogue_ca.cert_pem(), &rogue.cert_pem, &rogue.key_pem)
        .expect("TLS trusting the rogue CA");
    must_refuse_connection(
        "node certificate not trusted",
        leader_addr,
        Some(&trusts_rogue),
    )
    .await;
    let expired = pki.must_client(
        &["gateway"],
        Validity {
            from_secs: -2 * 86_400,
            until_secs: -86_400,
        },
    );
    must_refuse_connection("expired client certificate", leader_addr, Some(&expired)).await;
    let not_yet = pki.must_client(
        &["gateway"],
        Validity {
            from_secs: 86_400,
            until_secs: 2 * 86_400,
        },
    );
    must_refuse_connection(
        "client certificate not valid yet",
        leader_addr,
        Some(&not_yet),
    )
    .await;
    must_refuse_connection("plaintext client", leader_addr, None).await;

    eprintln!("--- a client that connects and never starts the handshake is dropped");
    let mut silent = tokio::net::TcpStream::connect(leader_addr)
        .await
        .expect("TCP connect");
    let connected = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut silent, &mut byte),
    )
    .await
    .expect("the node closes a silent connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the node sent data to a silent client: {read:?}"
    );
    assert!(
        connected.elapsed() + Duration::from_secs(1) >= TLS_HANDSHAKE_TIMEOUT,
        "closed after {:?}, before the handshake timeout",
        connected.elapsed()
    );

    eprintln!("--- probes get health in plaintext on the health port, and nothing else");
    let health_addr = cluster.nodes[&leader]
        .health_addr
        .expect("the test nodes serve health");
    let probe = connect(health_addr).await;
    let serving = tonic_health::pb::health_client::HealthClient::new(probe.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("plaintext health")
        .into_inner()
        .status;
    assert_eq!(
        serving,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let status = pb::settlement_client::SettlementClient::new(probe)
        .get_payment(pb::GetPaymentRequest::default())
        .await
        .expect_err("no ledger API on the health port");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    cluster.must_converge().await;
}
