//! The `spentledger` CLI and the gateway SDK against real node processes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use spentledger_client::gateway::{Gateway, GatewayConfig, GatewayError};
use spentledger_client::local_cluster::LocalCluster;
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, Verdict, pb};

const CLI: &str = env!("CARGO_BIN_EXE_spentledger");

mod commands;
mod outbox;
mod sweep;

/// `spentledger-node`, built beside the CLI by `cargo test --workspace`.
fn must_node_binary() -> PathBuf {
    let path = PathBuf::from(CLI)
        .parent()
        .expect("the CLI lives in a directory")
        .join("spentledger-node");
    assert!(
        path.is_file(),
        "{} missing: run the workspace tests (`bash tests/run`) or `cargo build --release -p spentledger-node`",
        path.display()
    );
    path
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("procfs").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && !text.contains(CLI) {
                found.push(text);
            }
        }
    }
    found
}

#[test]
fn demo_catches_every_planted_conflict_survives_the_leader_kill_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("demo");
    let out = Command::new(CLI)
        .args([
            "--json",
            "demo",
            "--devices",
            "150",
            "--conflict-every",
            "15",
            "--batch-payments",
            "25",
        ])
        .arg("--dir")
        .arg(&data)
        .env("SPENTLEDGER_NODE_BIN", must_node_binary())
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    eprintln!("{summary:#}");
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert_eq!(n("planned_double_spends"), 10);
    assert_eq!(n("double_spends"), 10, "every planted double spend caught");
    assert_eq!(n("rejected"), 0);
    assert_eq!(
        n("accepted") + n("duplicates") + n("double_spends"),
        n("payments_submitted"),
        "every payment answered once"
    );
    assert!(
        n("revocations") >= n("planned_double_spends") + n("planned_clones"),
        "double spenders and clones revoked"
    );
    assert_eq!(n("settlements"), 7, "five forced, two expired");
    assert_eq!(n("expired_settled"), 2);
    assert!(
        n("settled_held") > 0,
        "a losing payment's fresh token is held"
    );
    assert!(
        summary["leader_killed"].is_u64(),
        "the leader was killed part-way"
    );
    assert_eq!(summary["digests_equal"], serde_json::Value::Bool(true));
    assert!(
        data.join("node-1/node.log").is_file(),
        "--dir keeps node data and logs"
    );
    let left = processes_mentioning(&data.display().to_string());
    assert!(left.is_empty(), "nodes left running: {left:?}");
}

#[test]
fn demo_refuses_bad_options_and_a_missing_node_binary() {
    let out = Command::new(CLI)
        .args(["demo", "--devices", "0"])
        .env("SPENTLEDGER_NODE_BIN", must_node_binary())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("devices 1..=100000"));
    let out = Command::new(CLI)
        .args(["demo", "--node-bin", "/nonexistent/spentledger-node"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spentledger-node not found"));
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("valid id")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn payments(issuer: &Issuer, devices: std::ops::Range<u32>) -> Vec<Payment> {
    devices
        .map(|d| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&d.to_le_bytes());
            issuer
                .fund_device(
                    &IssuancePolicy::default(),
                    seed,
                    &Funding::eur(id(&format!("w{d}")), 1_000, now_ms() - 60_000),
                )
                .expect("issue")
                .pay(10, &id("m"), [7; 32], now_ms())
                .expect("pay")
        })
        .collect()
}

fn test_issuer() -> Issuer {
    Issuer::from_seed(id("bank-sdk"), [3; 32], 0, u64::MAX)
}

/// A ready 3-node cluster of real processes trusting `issuer`, and its endpoints.
async fn must_start_cluster(dir: &std::path::Path, issuer: &Issuer) -> (LocalCluster, Vec<String>) {
    let public_hex: String = issuer
        .issuer_key()
        .public_key
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key_id = issuer.issuer_key().key_id.as_str().to_owned();
    let genesis = format!(
        r#"[{{"key_id": "{key_id}", "public_key_hex": "{public_hex}", "valid_from_ms": 0, "valid_until_ms": 18446744073709551615}}]"#
    );
    let mut cluster =
        LocalCluster::start(must_node_binary(), dir, 3, &genesis).expect("start cluster");
    for i in 0..3 {
        cluster
            .wait_ready(i, Duration::from_secs(60))
            .await
            .expect("ready");
    }
    let endpoints = cluster.addrs.iter().map(|a| a.to_string()).collect();
    (cluster, endpoints)
}

async fn must_wait_for_genesis_key(gateway: &Gateway, issuer: &Issuer) {
    gateway
        .wait_for_issuer_key(issuer, Duration::from_secs(30))
        .await
        .expect("the genesis issuer key is applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_settles_every_payment_exactly_once_across_a_leader_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let issuer = test_issuer();
    let (mut cluster, endpoints) = must_start_cluster(dir.path(), &issuer).await;

    eprintln!("--- the SDK refuses bad settings with typed errors");
    assert!(matches!(
        Gateway::new(GatewayConfig::new(vec![])),
        Err(GatewayError::NoEndpoints)
    ));
    assert!(matches!(
        Gateway::new(GatewayConfig::new(vec!["bad host:port".into()])),
        Err(GatewayError::BadEndpoint { .. })
    ));
    let mut config = GatewayConfig::new(endpoints.clone());
    config.batch_payments_max = 20;
    let gateway = Gateway::new(config).expect("gateway");

    must_wait_for_genesis_key(&gateway, &issuer).await;

    eprintln!("--- 200 payments in batches of 20, the leader killed after the first half");
    let all = payments(&issuer, 1..201);
    let first = gateway.submit(&all[..100]).await.expect("first half");
    let leader = cluster.leader().await.expect("a leader");
    cluster.kill(leader).expect("SIGKILL the leader");
    let second = gateway.submit(&all[100..]).await.expect("second half");
    let verdicts: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(verdicts.len(), all.len());
    for (v, p) in verdicts.iter().zip(&all) {
        assert!(v.is_settled(), "{:?}", v.verdict);
        assert_eq!(v.result.tx_id, p.tx_id().0.to_vec(), "verdicts in order");
    }

    eprintln!("--- every payment recorded exactly once (linearizable reads on the new leader)");
    let new_leader = cluster.leader().await.expect("a new leader");
    assert_ne!(new_leader, leader);
    let ch =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addrs[new_leader]))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
    let mut client = pb::settlement_client::SettlementClient::new(ch);
    let mut receipts = std::collections::BTreeSet::new();
    for p in &all {
        let got = client
            .get_payment(pb::GetPaymentRequest {
                tx_id: p.tx_id().0.to_vec(),
                consistency: pb::ReadConsistency::Linearizable as i32,
            })
            .await
            .expect("get payment")
            .into_inner();
        assert!(got.found);
        receipts.insert(got.receipt.expect("receipt").tx_id);
    }
    assert_eq!(receipts.len(), all.len());

    eprintln!("--- a batch beyond the server's limit is refused, not retried");
    let mut config = GatewayConfig::new(endpoints);
    config.batch_payments_max = 1_001;
    let oversized = Gateway::new(config).expect("gateway");
    let many: Vec<Payment> = std::iter::repeat_n(all[0].clone(), 1_001).collect();
    match oversized.submit(&many).await {
        Err(GatewayError::Refused(status)) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let resubmitted = gateway.submit(&all[..5]).await.expect("resubmit");
    assert!(
        resubmitted.iter().all(|v| v.verdict == Verdict::Duplicate),
        "a resubmission is DUPLICATE with the original receipt"
    );
    cluster.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_watcher_resumes_after_losing_its_node_missing_and_repeating_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let issuer = test_issuer();
    let (mut cluster, endpoints) = must_start_cluster(dir.path(), &issuer).await;
    let gateway = Gateway::new(GatewayConfig::new(endpoints.clone())).expect("gateway");
    must_wait_for_genesis_key(&gateway, &issuer).await;
    // Revokes through any node, retrying while leadership moves.
    let revoke = |n: u8| {
        let endpoints = endpoints.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                for addr in &endpoints {
                    let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                        .expect("uri")
                        .connect()
                        .await
                    else {
                        continue;
                    };
                    let reply = pb::issuer_client::IssuerClient::new(ch)
                        .revoke_certificate(pb::RevokeCertificateRequest {
                            cert_id: vec![n; 32],
                            reason: pb::RevocationReason::LostOrStolen as i32,
                        })
                        .await;
                    if reply.is_ok() {
                        return;
                    }
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "could not revoke certificate {n}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    eprintln!("--- two revocations; the watcher (connected to node 1) sees both");
    revoke(1).await;
    revoke(2).await;
    let mut watcher = spentledger_client::revocations::RevocationWatcher::new(endpoints.clone(), 0);
    let a = watcher.next().await.expect("first");
    let b = watcher.next().await.expect("second");
    assert_eq!((a.sequence, b.sequence), (1, 2));

    eprintln!("--- node 1 dies; a third revocation on the survivors reaches the watcher once");
    cluster.kill(0).expect("kill node 1");
    revoke(3).await;
    let c = tokio::time::timeout(Duration::from_secs(30), watcher.next())
        .await
        .expect("the watcher resumes on another node")
        .expect("third");
    assert_eq!(
        c.sequence, 3,
        "resumed after the last sequence: nothing missed or repeated"
    );
    assert_eq!(c.cert_id, vec![3u8; 32]);
    assert_eq!(watcher.last_sequence(), 3);
    cluster.stop();
}

#[test]
fn bench_measures_a_local_cluster_and_writes_csv() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("bench.csv");
    for mode in [["--mode", "closed"], ["--mode", "rate"]] {
        let out = Command::new(CLI)
            .args(["--json", "bench"])
            .args(mode)
            .args([
                "--rate",
                "2000",
                "--payments",
                "600",
                "--devices",
                "60",
                "--gateways",
                "4",
                "--batch",
                "50",
                "--double-spend-share",
                "0.1",
            ])
            .arg("--csv")
            .arg(&csv)
            .env("SPENTLEDGER_NODE_BIN", must_node_binary())
            .output()
            .expect("run bench");
        assert!(
            out.status.success(),
            "bench {mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        eprintln!("{report}");
        assert_eq!(report["payments"], 600, "every payment answered");
        assert_eq!(report["failed_batches"], 0);
        // Every 10th payment from the 10th re-spends its predecessor's tokens.
        assert_eq!(report["verdicts"]["DOUBLE_SPEND"], 59);
        assert_eq!(report["verdicts"]["ACCEPTED"], 541);
        assert!(report["crypto_limit_per_s"].as_f64().unwrap_or(0.0) > 0.0);
        // Measured twice, before and after the load; the rate is the higher.
        let samples: Vec<f64> = report["signatures_per_s_samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| s.as_f64().expect("a rate"))
            .collect();
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(
            report["signatures_per_s_all_cores"].as_f64(),
            samples.iter().copied().reduce(f64::max)
        );
        // The limit is measured in the batches the nodes verify in.
        assert_eq!(
            report["signatures_per_batch"],
            spentledger_protocol::limits::DETERMINISTIC_CHUNK_SIGNATURES
        );
        assert!(
            report["p99_ms"].as_f64().unwrap_or(0.0) >= report["p50_ms"].as_f64().unwrap_or(0.0)
        );
        // Resources: a memory series per node (sampled at the load's start at
        // least), and the data on disk per nullifier: 1,082 live nullifiers
        // (541 accepted × 2 inputs) cost at least their 32-byte keys.
        let series = report["node_rss_series_mib"].as_array().expect("series");
        assert_eq!(series.len(), 3, "one series per node: {series:?}");
        for s in series {
            let first = &s["samples"][0];
            assert!(first[1].as_f64().unwrap_or(0.0) > 1.0, "a node's RSS: {s}");
        }
        assert!(report["node_rss_max_mib"].as_f64().unwrap_or(0.0) > 1.0);
        // Every node checked each payment's signature at least once: ~14 µs
        // each with batches, so the cluster's CPU per payment is at least that.
        let cpu_us = report["node_cpu_us_per_payment"].as_f64().unwrap_or(0.0);
        assert!(
            (14.0..1_000_000.0).contains(&cpu_us),
            "node CPU per payment: {cpu_us} µs"
        );
        let per_nullifier = report["disk_bytes_per_nullifier"].as_f64().unwrap_or(0.0);
        assert!(
            (32.0..1_000_000.0).contains(&per_nullifier),
            "disk per nullifier: {per_nullifier}"
        );
        // The largest node's storage after compaction: every spent token
        // counted (the 1,082 accepted ones, plus the one token of the
        // gateway's issuer-key probe payment; the twins re-spend exactly
        // their originals' tokens, so nothing is held), each costing at
        // least its key and tx id.
        let storage = &report["storage_compacted"];
        assert_eq!(storage["compacted"], true, "{storage}");
        assert_eq!(storage["live_nullifiers"], 1_083, "{storage}");
        let index = storage["nullifier_index_bytes_per_nullifier"]
            .as_f64()
            .unwrap_or(0.0);
        let state = storage["state_bytes_per_nullifier"].as_f64().unwrap_or(0.0);
        assert!(index >= 64.0 && state > index, "{storage}");
        assert!(
            storage["state_sst_bytes"]["cert_bodies"]
                .as_u64()
                .unwrap_or(0)
                > 0
        );
    }
    eprintln!("--- storage-report refuses a directory where no node ran");
    let out = Command::new(must_node_binary())
        .args(["storage-report", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run storage-report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && stderr.contains("no state database"),
        "{:?}: {stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&csv).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one row per run: {text}");
    assert_eq!(lines[0], spentledger_client::bench::BenchReport::CSV_HEADER);
    assert!(
        lines[1].starts_with(",Closed,3,3,60,0.100,4,50,2,600,"),
        "{}",
        lines[1]
    );
}
