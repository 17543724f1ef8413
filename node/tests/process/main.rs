//! The `spentledger-node` binary as real processes on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, pb};

const BIN: &str = env!("CARGO_BIN_EXE_spentledger-node");
const WAIT: Duration = Duration::from_secs(30);

/// Children killed (SIGKILL) if a test fails before stopping them.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback address for a node process, reserved across every process
/// on this machine that starts nodes (see `spentledger_client::ports`).
fn free_addr() -> SocketAddr {
    spentledger_client::ports::reserve_loopback_addr().expect("a free loopback port")
}

/// Every thread of process `pid`: its name and nice value (from /proc).
fn must_thread_nices(pid: u32) -> Vec<(String, i32)> {
    let tasks = format!("/proc/{pid}/task");
    std::fs::read_dir(&tasks)
        .unwrap_or_else(|e| panic!("list {tasks}: {e}"))
        .map(|task| {
            let dir = task.expect("task entry").path();
            let name = std::fs::read_to_string(dir.join("comm")).expect("thread name");
            let stat = std::fs::read_to_string(dir.join("stat")).expect("thread stat");
            // Fields after the parenthesised name: state is field 3, nice 19.
            let after_name = stat.rsplit_once(')').expect("stat has a name").1;
            let nice = after_name
                .split_whitespace()
                .nth(16)
                .and_then(|f| f.parse::<i32>().ok())
                .unwrap_or_else(|| panic!("no nice value in {stat:?}"));
            (name.trim().to_owned(), nice)
        })
        .collect()
}

fn spawn(id: u64, addrs: &[SocketAddr], dir: &Path, bootstrap: bool, keys: &Path) -> Child {
    spawn_with(id, addrs, dir, bootstrap, keys, &[])
}

/// Starts node `id` of the cluster at `addrs`, with extra flags.
fn spawn_with(
    id: u64,
    addrs: &[SocketAddr],
    dir: &Path,
    bootstrap: bool,
    keys: &Path,
    extra: &[&str],
) -> Child {
    let members: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    // A restart may come long after the port was reserved.
    spentledger_client::ports::refresh(addrs[id as usize - 1]).expect("refresh the reservation");
    let mut cmd = Command::new(BIN);
    cmd.arg("--plaintext")
        .arg("--node-id")
        .arg(id.to_string())
        .arg("--cluster-id")
        .arg(spentledger_client::local_cluster::cluster_id_for(dir))
        .arg("--listen")
        .arg(addrs[id as usize - 1].to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("node-{id}")))
        .arg("--initial-members")
        .arg(members.join(","))
        .arg("--heartbeat-ms")
        .arg("100")
        .arg("--election-timeout-ms")
        .arg("500")
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if bootstrap {
        cmd.arg("--bootstrap")
            .arg("--genesis-issuer-keys")
            .arg(keys);
    }
    cmd.spawn().expect("spawn spentledger-node")
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("valid id")
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("fits")
}

async fn channel(addr: SocketAddr) -> Option<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()
}

fn test_issuer() -> Issuer {
    Issuer::from_seed(id("bank-p"), [5; 32], 0, u64::MAX)
}

/// The genesis key file naming `issuer`'s key, written under `dir`.
fn write_genesis_keys(dir: &Path, issuer: &Issuer) -> PathBuf {
    let key = issuer.issuer_key();
    let keys_file: PathBuf = dir.join("issuer-keys.json");
    let public_hex: String = key.public_key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        &keys_file,
        format!(r#"[{{"key_id": "bank-p", "public_key_hex": "{public_hex}", "valid_from_ms": 0, "valid_until_ms": 18446744073709551615}}]"#),
    )
    .expect("write keys");
    keys_file
}

/// A wallet whose certificate was issued a minute ago.
fn test_wallet(issuer: &Issuer, n: u8, balance: u64) -> Wallet {
    wallet_from_seed(issuer, [n; 32], &format!("w-{n}"), balance)
}

/// A wallet of device `seed`, wallet id `wallet_id`, issued a minute ago.
fn wallet_from_seed(issuer: &Issuer, seed: [u8; 32], wallet_id: &str, balance: u64) -> Wallet {
    issuer
        .fund_device(
            &IssuancePolicy::default(),
            seed,
            &Funding::eur(id(wallet_id), balance, now_ms() - 60_000),
        )
        .expect("issue")
}

/// Submits one batch as a gateway does: tries the nodes in turn, and
/// resubmits (payments are idempotent by tx_id) on UNAVAILABLE, on
/// RESOURCE_EXHAUSTED, and while the genesis issuer key is not yet applied
/// (the bootstrapping node registers it right after the first election; a
/// payment judged before that is rejected UNKNOWN_ISSUER_KEY with nothing
/// recorded: docs/NODE.md, "Running a node").
async fn must_submit(
    addrs: &[SocketAddr],
    batch_id: u64,
    payments: &[Payment],
) -> pb::SubmitBatchResponse {
    let deadline = Instant::now() + WAIT;
    let request = pb::SubmitBatchRequest {
        batch_id,
        payments: payments.iter().map(pb::Payment::from).collect(),
    };
    for attempt in 0.. {
        let addr = addrs[attempt % addrs.len()];
        let outcome = match channel(addr).await {
            Some(ch) => pb::settlement_client::SettlementClient::new(ch)
                .submit_batch(request.clone())
                .await
                .map(tonic::Response::into_inner),
            None => Err(tonic::Status::unavailable(format!(
                "cannot connect to {addr}"
            ))),
        };
        match outcome {
            Ok(r)
                if r.results
                    .iter()
                    .any(|x| x.reject_reason == pb::RejectReason::UnknownIssuerKey as i32)
                    && Instant::now() < deadline => {}
            Ok(r) => return r,
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Cancelled
                        | tonic::Code::Unknown
                ) && Instant::now() < deadline => {}
            Err(s) => panic!("submit batch {batch_id} to {addr}: {s}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("the retry loop returns or panics")
}

/// Three ready node processes under `dir` (node 1 bootstraps with the test
/// issuer's genesis key), with `extra` flags: the issuer, the key file, the
/// addresses and the processes.
async fn must_start_three(dir: &Path, extra: &[&str]) -> (Issuer, PathBuf, Vec<SocketAddr>, Procs) {
    let issuer = test_issuer();
    let keys = write_genesis_keys(dir, &issuer);
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let procs = Procs(
        (1..=3)
            .map(|n| spawn_with(n, &addrs, dir, n == 1, &keys, extra))
            .collect(),
    );
    for a in &addrs {
        must_be_ready(*a).await;
    }
    (issuer, keys, addrs, procs)
}

/// Whether the node behind `channel` answers gRPC health `""` with SERVING
/// (the readiness probe every suite here waits on).
async fn is_serving(channel: tonic::transport::Channel) -> bool {
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| {
            r.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        })
}

async fn must_be_ready(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(ch) = channel(addr).await
            && is_serving(ch).await
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node at {addr} not ready within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn must_stop_gracefully(child: &mut Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "node {pid} exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {pid} did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the node with `flags` then `paths`: it must exit 2 (invalid
/// configuration) and say `expected` on stderr.
fn must_refuse_config(flags: &[&str], paths: &[&Path], expected: &str) {
    let out = Command::new(BIN)
        .args(flags)
        .args(paths)
        .output()
        .expect("run spentledger-node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

#[test]
fn help_documents_every_setting_and_bad_config_writes_nothing() {
    let help = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--node-id",
        "--listen",
        "--data-dir",
        "--initial-members",
        "--bootstrap",
        "--genesis-issuer-keys",
        "SPENTLEDGER_DATA_DIR",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .arg("--plaintext")
        .args(["--node-id", "0", "--listen", "127.0.0.1:1", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id: must be at least 1"));
    assert!(
        !data.exists(),
        "nothing is written for an invalid configuration"
    );
    let out = Command::new(BIN)
        .arg("--plaintext")
        .args([
            "--node-id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--bootstrap",
            "--initial-members",
            "2=127.0.0.1:2",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must include this node"));

    // Plaintext only when asked for; TLS keys others can read are refused.
    let basic = ["--node-id", "1", "--listen", "127.0.0.1:1", "--data-dir"];
    must_refuse_config(&basic, &[&data], "TLS is required");
    let certs = dir.path().join("certs");
    spentledger_client::tls::init_dev_pki(&certs, &[], 1, false).expect("certificates");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            certs.join("node.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
    }
    let tls = [
        data.clone(),
        "--tls-cert".into(),
        certs.join("node.pem"),
        "--tls-key".into(),
        certs.join("node.key"),
        "--tls-ca".into(),
        certs.join("ca.pem"),
    ];
    let tls: Vec<&Path> = tls.iter().map(PathBuf::as_path).collect();
    must_refuse_config(&basic, &tls, "--tls-key: ");
    must_refuse_config(&basic, &tls, "chmod 600");
    assert!(
        !data.exists(),
        "nothing is written for an invalid configuration"
    );

    // A data directory belongs to one node id for good.
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("NODE_ID"), "5\n").expect("identity");
    must_refuse_config(
        &[
            "--plaintext",
            "--node-id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--data-dir",
        ],
        &[&data],
        "belongs to node 5, not node 1",
    );
    // StatefulSet pods take their id from the host name's ordinal: ordinal 4
    // is node 5, so the identity matches; the node then fails (exit 1) only
    // because its port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let out = Command::new(BIN)
        .arg("--plaintext")
        .args(["--node-id-from-hostname", "--listen"])
        .arg(taken.local_addr().expect("addr").to_string())
        .arg("--data-dir")
        .arg(&data)
        .env("HOSTNAME", "spentledger-4")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("belongs to node"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .arg("--plaintext")
        .args([
            "--node-id-from-hostname",
            "--listen",
            "127.0.0.1:1",
            "--data-dir",
        ])
        .arg(&data)
        .env("HOSTNAME", "ledger")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not end in -<ordinal>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_bootstrap_settle_stop_and_restart_with_state_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    eprintln!("--- start three processes; node 1 bootstraps with the genesis issuer key");
    let (issuer, keys_file, addrs, mut procs) = must_start_three(dir.path(), &[]).await;

    eprintln!("--- apply's validation threads run below normal priority, ingress's at it");
    for child in &procs.0 {
        let nices = must_thread_nices(child.id());
        let of = |prefix: &str| -> Vec<i32> {
            nices
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, nice)| *nice)
                .collect()
        };
        let (apply, ingress) = (of("apply-val-"), of("ingress-val-"));
        assert!(
            !apply.is_empty() && apply.iter().all(|n| *n == 10),
            "apply validation threads' nice values: {nices:?}"
        );
        assert!(
            !ingress.is_empty() && ingress.iter().all(|n| *n == 0),
            "ingress validation threads' nice values: {nices:?}"
        );
    }

    eprintln!("--- a gateway submits through node 2");
    let mut wallet = test_wallet(&issuer, 8, 1_000);
    let payment = wallet.pay(125, &id("m"), [1; 32], now_ms()).expect("pay");
    let response = must_submit(&[addrs[1]], 1, std::slice::from_ref(&payment)).await;
    assert_eq!(
        response.results[0].verdict,
        pb::Verdict::Accepted as i32,
        "{:?}",
        response.results[0]
    );

    eprintln!("--- kill -9 node 3 and start it again: it rejoins with its state");
    procs.0[2].kill().expect("SIGKILL");
    procs.0[2].wait().expect("reap");
    procs.0[2] = spawn(3, &addrs, dir.path(), false, &keys_file);
    must_be_ready(addrs[2]).await;

    eprintln!("--- SIGTERM: every process stops cleanly");
    for child in &mut procs.0 {
        must_stop_gracefully(child);
    }

    eprintln!(
        "--- restart from the same data directories: the payment is still there on every node"
    );
    let _procs = Procs(
        (1..=3)
            .map(|n| spawn(n, &addrs, dir.path(), n == 1, &keys_file))
            .collect(),
    );
    for a in &addrs {
        must_be_ready(*a).await;
    }
    for addr in &addrs {
        let deadline = Instant::now() + WAIT;
        loop {
            let ch = channel(*addr).await.expect("connect");
            let got = pb::settlement_client::SettlementClient::new(ch)
                .get_payment(pb::GetPaymentRequest {
                    tx_id: payment.tx_id().0.to_vec(),
                    consistency: pb::ReadConsistency::Stale as i32,
                })
                .await
                .expect("get payment")
                .into_inner();
            if got.found {
                assert_eq!(got.receipt, response.results[0].receipt);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "payment missing on {addr} after restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

mod chaos;
mod faults;
mod restore;
mod statefulset;
