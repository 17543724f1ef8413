//! The CLI end to end: cluster up (mutual TLS with development
//! certificates), issue, pay offline, verify at a terminal, submit (a
//! double spend caught), queries, settle, cluster down. Every command
//! presents its own role's certificate, found through the cluster dir.

use std::path::Path;
use std::time::Duration;

use super::{CLI, Command, must_node_binary, processes_mentioning};

/// Runs `spentledger --json ARGS` in `dir` and returns its JSON output.
fn must_run(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(CLI)
        .current_dir(dir)
        .arg("--json")
        .args(args)
        .env("SPENTLEDGER_NODE_BIN", must_node_binary())
        .env("SPENTLEDGER_CLUSTER_DIR", dir.join("cluster"))
        .env_remove("SPENTLEDGER_ENDPOINTS")
        .output()
        .expect("run spentledger");
    assert!(
        out.status.success(),
        "spentledger {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("spentledger {args:?} printed no JSON ({e}): {text}"))
}

/// The endpoints the cluster directory's manifest records, in node order.
fn manifest_endpoints(dir: &Path) -> serde_json::Value {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("cluster/cluster.json")).expect("the manifest"),
    )
    .expect("manifest JSON");
    let addrs: Vec<&str> = manifest["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["addr"].as_str().expect("addr"))
        .collect();
    serde_json::Value::String(addrs.join(","))
}

/// Runs a command expected to fail; returns its stderr.
fn must_fail(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(CLI)
        .current_dir(dir)
        .args(args)
        .env("SPENTLEDGER_CLUSTER_DIR", dir.join("cluster"))
        .output()
        .expect("run spentledger");
    assert_eq!(
        out.status.code(),
        Some(1),
        "spentledger {args:?} should fail"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_issue_pay_verify_submit_catch_a_double_spend_settle_and_tear_down() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();

    eprintln!("--- an issuer key; a TLS cluster that trusts it");
    must_run(
        dir,
        &[
            "issuer",
            "keygen",
            "--key-id",
            "bank-a",
            "--out",
            "bank.key.json",
            "--public-out",
            "bank.pub.json",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("bank.key.json"))
        .expect("secret key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    let up = must_run(
        dir,
        &[
            "cluster",
            "up",
            "--dir",
            "cluster",
            "--genesis-issuer-keys",
            "bank.pub.json",
            "--tls",
        ],
    );
    assert_eq!(up["nodes"].as_array().map(Vec::len), Some(3));
    for key in ["ca", "node", "gateway", "issuer", "admin"] {
        let path = dir.join("cluster/certs").join(format!("{key}.key"));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}.key is private");
    }
    eprintln!("--- the nodes share this machine's cores for their followers' validation");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = spentledger_client::local_cluster::apply_validation_threads(3, cores);
    for node in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("cluster/node-{node}/node.log")))
            .expect("node log");
        assert!(
            log.contains(&format!("apply_validation_threads={share}")),
            "node {node} should validate followers' entries with {share} threads: {log}"
        );
    }

    eprintln!("--- a device is funded; its secure element is cloned");
    let issued = must_run(
        dir,
        &[
            "issuer",
            "issue",
            "--key",
            "bank.key.json",
            "--wallet-id",
            "alice",
            "--balance",
            "5000",
            "--out",
            "alice.json",
        ],
    );
    assert_eq!(issued["offline limit"], 5000);
    std::fs::copy(dir.join("alice.json"), dir.join("alice-clone.json")).expect("clone");

    eprintln!("--- offline: the device pays a terminal, which verifies; the clone pays again");
    let c1 = must_run(
        dir,
        &[
            "merchant",
            "challenge",
            "--terminal",
            "shop.json",
            "--payee-id",
            "shop-1",
        ],
    );
    let c1 = c1["challenge"].as_str().expect("challenge").to_owned();
    let paid = must_run(
        dir,
        &[
            "wallet",
            "pay",
            "--device",
            "alice.json",
            "--amount",
            "120",
            "--payee",
            "shop-1",
            "--challenge",
            &c1,
            "--out",
            "p1.payment",
            "--png",
            "p1.png",
        ],
    );
    assert_eq!(
        paid["balance left"], 4880,
        "the device file remembers what it spent"
    );
    let png = std::fs::read(dir.join("p1.png")).expect("QR png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let verified = must_run(
        dir,
        &[
            "merchant",
            "verify",
            "--terminal",
            "shop.json",
            "--issuer-keys",
            "bank.pub.json",
            "p1.payment",
        ],
    );
    assert_eq!(verified["verdict"], "accepted offline");
    let again = must_fail(
        dir,
        &[
            "merchant",
            "verify",
            "--terminal",
            "shop.json",
            "--issuer-keys",
            "bank.pub.json",
            "p1.payment",
        ],
    );
    assert!(
        again.contains("payment refused"),
        "a challenge is used once: {again}"
    );
    let c2 = must_run(dir, &["merchant", "challenge", "--terminal", "shop.json"]);
    let c2 = c2["challenge"].as_str().expect("challenge").to_owned();
    must_run(
        dir,
        &[
            "wallet",
            "pay",
            "--device",
            "alice-clone.json",
            "--amount",
            "120",
            "--payee",
            "shop-1",
            "--challenge",
            &c2,
            "--out",
            "p2.payment",
        ],
    );

    eprintln!("--- the admin certificate may not submit payments");
    let refused = must_fail(
        dir,
        &[
            "--ca-cert",
            "cluster/certs/ca.pem",
            "--cert",
            "cluster/certs/admin.pem",
            "--key",
            "cluster/certs/admin.key",
            "submit",
            "p1.payment",
        ],
    );
    assert!(refused.contains("role admin may not call"), "{refused}");

    eprintln!("--- the gateway submits both: the second spend of the same tokens is caught");
    let submitted = must_run(dir, &["submit", "p1.payment", "p2.payment"]);
    let results = submitted["results"].as_array().expect("results");
    assert_eq!(results[0]["verdict"], "ACCEPTED");
    assert_eq!(results[1]["verdict"], "DOUBLE_SPEND");
    assert!(results[1]["double_spend"]["nullifier"].is_string());
    let tx = results[0]["tx_id"].as_str().expect("tx id").to_owned();
    let retried = must_run(dir, &["submit", "p1.payment"]);
    assert_eq!(retried["results"][0]["verdict"], "DUPLICATE");

    eprintln!("--- the contested token's nullifier is spent, by the first payment");
    let nullifier = submitted["results"][1]["double_spend"]["nullifier"]
        .as_str()
        .expect("nullifier")
        .to_owned();
    let checked = must_run(dir, &["nullifier", "check", &nullifier]);
    assert_eq!(checked[0]["spent"], true);
    assert_eq!(checked[0]["tx_id"], tx.as_str());

    eprintln!("--- queries");
    let got = must_run(dir, &["payment", "get", &tx]);
    assert_eq!(got["amount"], 120);
    let revoked = must_run(dir, &["revocations", "list"]);
    assert_eq!(revoked["revocations"][0]["reason"], "DOUBLE_SPEND");
    let cert = revoked["revocations"][0]["cert_id"]
        .as_str()
        .expect("cert")
        .to_owned();
    let watched = must_run(
        dir,
        &["revocations", "watch", "--after", "0", "--count", "1"],
    );
    assert_eq!(watched["sequence"], 1);
    let state = must_run(dir, &["certificate", "get", &cert]);
    assert_eq!(state["revoked"], true);

    eprintln!("--- the issuer settles the certificate early (its nullifiers are compacted)");
    let settled = must_run(
        dir,
        &[
            "issuer",
            "settle",
            "--device",
            "alice.json",
            "--force",
            "lost phone",
        ],
    );
    assert_eq!(settled["spent"], 120);
    assert_eq!(
        settled["total"].as_u64(),
        Some(
            settled["spent"].as_u64().unwrap_or(0)
                + settled["held"].as_u64().unwrap_or(0)
                + settled["refund (unspent)"].as_u64().unwrap_or(0)
        )
    );

    let compacted = must_run(dir, &["nullifier", "check", &nullifier]);
    assert_eq!(
        compacted[0]["spent"], false,
        "a settled certificate's nullifiers are compacted (later payments under it are refused anyway)"
    );

    eprintln!("--- a second issuer key is registered; a device under it is revoked");
    must_run(
        dir,
        &[
            "issuer",
            "keygen",
            "--key-id",
            "bank-b",
            "--out",
            "b.key.json",
            "--public-out",
            "b.pub.json",
        ],
    );
    let registered = must_run(dir, &["issuer", "register-key", "b.pub.json"]);
    assert_eq!(registered[0]["outcome"], "registered");
    must_run(
        dir,
        &[
            "issuer",
            "issue",
            "--key",
            "b.key.json",
            "--wallet-id",
            "bob",
            "--balance",
            "100",
            "--out",
            "bob.json",
        ],
    );
    let revocation = must_run(
        dir,
        &[
            "issuer",
            "revoke",
            "--device",
            "bob.json",
            "--reason",
            "lost-or-stolen",
        ],
    );
    assert_eq!(revocation["reason"], "REVOCATION_REASON_LOST_OR_STOLEN");
    assert_eq!(revocation["sequence"], 2);

    eprintln!("--- operators: snapshot, leadership transfer, remove and re-add a member");
    must_run(dir, &["snapshot"]);
    let before = must_run(dir, &["status"]);
    let leader = before["nodes"][0]["leader_id"].as_u64().expect("leader");
    let target = if leader == 3 { 2 } else { 3 };
    must_run(dir, &["leader", "transfer", &target.to_string()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = must_run(dir, &["status"]);
        if now["nodes"][0]["leader_id"].as_u64() == Some(target) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leadership never moved to {target}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let removable = if target == 1 { 2 } else { 1 };
    let address = before["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == removable)
        .and_then(|n| n["address"].as_str())
        .expect("address")
        .to_owned();
    let removed = must_run(dir, &["members", "remove", &removable.to_string()]);
    assert!(
        !removed["members"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{removable}=")),
        "{removed}"
    );
    must_run(dir, &["members", "add", &removable.to_string(), &address]);
    let promoted = must_run(dir, &["members", "promote", &removable.to_string()]);
    assert!(
        promoted["members"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{removable}={address}")),
        "{promoted}"
    );

    eprintln!("--- the demo runs against this running cluster");
    let demo = must_run(dir, &["demo", "--devices", "60", "--conflict-every", "20"]);
    assert_eq!(demo["double_spends"], demo["planned_double_spends"]);
    assert_eq!(demo["digests_equal"], true);
    assert!(
        demo["leader_killed"].is_null(),
        "never kills what it did not start"
    );

    eprintln!("--- every node at the same index and digest; then down, nothing left running");
    let status = must_run(dir, &["status"]);
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    let digests: std::collections::BTreeSet<String> = nodes
        .iter()
        .map(|n| format!("{}/{}", n["applied_index"], n["state_digest"]))
        .collect();
    assert_eq!(digests.len(), 1, "{status}");
    let down = must_run(dir, &["cluster", "down", "--dir", "cluster"]);
    assert_eq!(down["stopped"], 3);
    let left = processes_mentioning(&dir.join("cluster").display().to_string());
    assert!(left.is_empty(), "nodes left running: {left:?}");
    let err = must_fail(dir, &["status"]);
    assert!(
        err.contains("is stopped") && err.contains("cluster up"),
        "{err}"
    );

    eprintln!("--- up again: the same nodes on the same addresses, with everything recorded");
    let err = must_fail(dir, &["cluster", "up", "--dir", "cluster", "--nodes", "5"]);
    assert!(err.contains("has 3 nodes"), "{err}");
    let stopped_at = manifest_endpoints(dir);
    let restarted = must_run(dir, &["cluster", "up", "--dir", "cluster"]);
    assert_eq!(
        restarted["endpoints"], stopped_at,
        "the addresses the nodes' membership names"
    );
    let err = must_fail(dir, &["cluster", "up", "--dir", "cluster"]);
    assert!(err.contains("already has a running cluster"), "{err}");
    let retried = must_run(dir, &["submit", "p1.payment"]);
    assert_eq!(retried["results"][0]["verdict"], "DUPLICATE");
    assert_eq!(must_run(dir, &["payment", "get", &tx])["amount"], 120);
    let after = must_run(dir, &["status"]);
    let after_nodes = after["nodes"].as_array().expect("nodes");
    assert_eq!(after_nodes.len(), 3, "{after}");
    assert!(
        after_nodes
            .iter()
            .all(|n| n["applied_index"].as_u64() >= nodes[0]["applied_index"].as_u64()),
        "every node holds what it held before the restart: {after}"
    );
    let down = must_run(dir, &["cluster", "down", "--dir", "cluster"]);
    assert_eq!(down["stopped"], 3);
    let left = processes_mentioning(&dir.join("cluster").display().to_string());
    assert!(left.is_empty(), "nodes left running: {left:?}");

    eprintln!("--- node data without the record of its addresses is not started on new ones");
    std::fs::remove_file(dir.join("cluster/cluster.json")).expect("remove the manifest");
    let err = must_fail(dir, &["cluster", "up", "--dir", "cluster"]);
    assert!(err.contains("holds node data"), "{err}");

    eprintln!("--- the node logs hold no key material and no payment bytes");
    let payment_hex = std::fs::read_to_string(dir.join("p1.payment")).expect("payment file");
    let issuer_key: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("bank.key.json")).expect("issuer key file"),
    )
    .expect("issuer key JSON");
    let tls_key = std::fs::read_to_string(dir.join("cluster/certs/node.key")).expect("TLS key");
    let tls_key_body = tls_key
        .lines()
        .find(|l| !l.starts_with("-----"))
        .expect("PEM body")
        .to_owned();
    let mut secrets = vec![
        payment_hex.trim().to_owned(),
        issuer_key["secret_seed_hex"]
            .as_str()
            .expect("seed")
            .to_owned(),
        tls_key_body,
    ];
    // A payment's signature alone is long and unique enough to spot.
    secrets.push(payment_hex.trim()[payment_hex.trim().len() - 128..].to_owned());
    for n in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("cluster/node-{n}/node.log")))
            .expect("node log");
        assert!(log.len() > 100, "node {n} logged something");
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "node {n}'s log contains secret or payment material"
            );
        }
    }
}
