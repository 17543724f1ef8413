//! The Kubernetes StatefulSet's pods as real processes: the `dev` overlay is
//! rendered with `kubectl kustomize`, and each "pod" runs the node binary
//! with exactly the container's arguments and environment (`$(POD_NAME)`
//! expanded, HOSTNAME set to the pod name, as the kubelet does), in its own
//! network namespace whose address the pod's peer DNS name resolves to
//! through the test's own /etc/hosts, with its own volume at the manifest's
//! paths. Checked: bootstrap by pod 0 only, a fourth pod joining as a voter,
//! a rolling restart one pod at a time (highest ordinal first) under
//! gateway load without losing an acknowledged payment, and scale-down
//! (member removed first, then the pod and its volume).
//!
//! Everything runs inside `unshare --pid --fork --kill-child --mount-proc
//! --net --mount`: the namespaces, mounts and processes vanish with it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spentledger_chaos::sandbox::{Bridge, rerun_sandboxed, run};
use spentledger_client::gateway::{Gateway, GatewayConfig};
use spentledger_protocol::{TxId, Verdict, pb};

use super::{BIN, id, now_ms, test_issuer, test_wallet, write_genesis_keys};

/// Set (to anything) in the sandboxed copy of this test binary.
const SANDBOX_ENV: &str = "SPENTLEDGER_STATEFULSET_SANDBOX";
const POD_READY_WAIT: Duration = Duration::from_secs(60);
/// The pods' subnet on the sandbox's bridge; pod N is .N+1.
const SUBNET: [u8; 3] = [10, 77, 0];

#[test]
fn the_statefulset_pods_bootstrap_join_roll_and_scale_down_losing_nothing() {
    let status = rerun_sandboxed("statefulset::in_sandbox", SANDBOX_ENV)
        .expect("unshare (util-linux) runs; the test needs root");
    assert!(status.success(), "the sandboxed run failed: {status}");
}

/// The container of the StatefulSet, as the manifest gives it.
struct PodTemplate {
    args: Vec<String>,
    /// Name and value; `None` for the pod's own name (fieldRef metadata.name).
    env: Vec<(String, Option<String>)>,
    replicas: usize,
    data_path: String,
    config_path: String,
    /// The mounted ConfigMap's files: name and content.
    config_files: Vec<(String, String)>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the node crate is in the repository")
        .to_owned()
}

/// Renders the overlay and reads the StatefulSet's pod template.
fn must_render(overlay: &str) -> PodTemplate {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_root().join("deploy/k8s/overlays").join(overlay))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML");
    let sts = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("StatefulSet"))
        .expect("a StatefulSet");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"]
        .as_vec()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect();
    let env = container["env"]
        .as_vec()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_owned();
            match e["value"].as_str() {
                Some(v) => (name, Some(v.to_owned())),
                None => {
                    assert_eq!(
                        e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                        Some("metadata.name"),
                        "env {name}: only the pod name is supported"
                    );
                    (name, None)
                }
            }
        })
        .collect();
    let mount = |volume: &str| {
        container["volumeMounts"]
            .as_vec()
            .expect("volume mounts")
            .iter()
            .find(|m| m["name"].as_str() == Some(volume))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("a mount of volume {volume}"))
            .to_owned()
    };
    let config_map = sts["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("config"))
        .and_then(|v| v["configMap"]["name"].as_str())
        .expect("the config volume is a ConfigMap");
    let config_files = docs
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("ConfigMap")
                && d["metadata"]["name"].as_str() == Some(config_map)
        })
        .and_then(|d| d["data"].as_hash())
        .expect("the ConfigMap the pods mount")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("file name").to_owned(),
                v.as_str().expect("file content").to_owned(),
            )
        })
        .collect();
    PodTemplate {
        args,
        env,
        replicas: sts["spec"]["replicas"].as_i64().expect("replicas") as usize,
        data_path: mount("data"),
        config_path: mount("config"),
        config_files,
    }
}

fn pod_name(ordinal: usize) -> String {
    format!("spentledger-{ordinal}")
}

/// Pod N on the sandbox's bridge is host N+1.
fn pod_host(ordinal: usize) -> u8 {
    u8::try_from(ordinal + 1).expect("a handful of pods")
}

/// The sandbox's network and name resolution: a bridge, a network
/// namespace per pod, and /etc/hosts naming each pod as the headless
/// service would.
fn must_set_up_sandbox(pods: usize, work: &Path) {
    let bridge = Bridge::create(SUBNET).expect("the sandbox's bridge");
    let mut hosts = Vec::new();
    for ordinal in 0..pods {
        let addr = bridge
            .add_namespace(&format!("pod{ordinal}"), pod_host(ordinal))
            .expect("the pod's network namespace");
        let name = pod_name(ordinal);
        hosts.push((
            addr,
            format!(
                "{name}.spentledger-peer {name}.spentledger-peer.spentledger-dev.svc.cluster.local {name}"
            ),
        ));
    }
    Bridge::bind_hosts(&hosts, work).expect("the sandbox's /etc/hosts");
}

/// A running pod: its process and its volume.
struct Pod {
    ordinal: usize,
    child: Option<Child>,
    volume: PathBuf,
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the pod's container: the manifest's arguments and environment,
/// its volume and config at the manifest's paths, in its own namespace.
fn must_start_pod(template: &PodTemplate, pod: &mut Pod, config_dir: &Path, work: &Path) {
    let name = pod_name(pod.ordinal);
    let args: Vec<String> = template
        .args
        .iter()
        .map(|a| a.replace("$(POD_NAME)", &name))
        .collect();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join(format!("{name}.log")))
        .expect("pod log");
    // Mount the volumes in a mount namespace of the pod's own, then enter
    // its network namespace and exec the node.
    let script = r#"mount --bind "$VOLUME" "$DATA_PATH" && mount --bind "$CONFIG" "$CONFIG_PATH" && exec ip netns exec "$NETNS" "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(BIN)
    .args(&args)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOSTNAME", &name)
    .env("VOLUME", &pod.volume)
    .env("DATA_PATH", &template.data_path)
    .env("CONFIG", config_dir)
    .env("CONFIG_PATH", &template.config_path)
    .env("NETNS", format!("pod{}", pod.ordinal))
    .stdin(Stdio::null())
    .stdout(Stdio::from(log.try_clone().expect("log handle")))
    .stderr(Stdio::from(log));
    for (key, value) in &template.env {
        cmd.env(key, value.clone().unwrap_or_else(|| name.clone()));
    }
    pod.child = Some(cmd.spawn().expect("start the pod"));
}

fn endpoint(ordinal: usize) -> String {
    format!("{}.spentledger-peer:7000", pod_name(ordinal))
}

/// The kubelet's readiness probe: gRPC health `""` on the health port.
async fn must_be_ready(pod: &mut Pod, work: &Path) {
    let deadline = Instant::now() + POD_READY_WAIT;
    let name = pod_name(pod.ordinal);
    loop {
        if let Some(child) = pod.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let log = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} exited ({status}); its log:\n{log}");
        }
        let probe = format!("{name}.spentledger-peer:7001");
        if let Ok(channel) =
            spentledger_client::connect::dial(&probe, Some(Duration::from_secs(2)), None).await
            && super::is_serving(channel).await
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not ready within {POD_READY_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM, as the kubelet stops a container; the node must exit 0.
fn must_terminate(pod: &mut Pod) {
    let mut child = pod.child.take().expect("a running pod");
    // The pod's process is `unshare`, which execs sh, which execs ip, which
    // execs the node: one process, so the signal reaches the node.
    run(
        "SIGTERM",
        Command::new("kill").args(["-TERM", &child.id().to_string()]),
    )
    .expect("signal the pod");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success(),
                "{} exited {status} on SIGTERM",
                pod_name(pod.ordinal)
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} ignored SIGTERM",
            pod_name(pod.ordinal)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn must_status(ordinal: usize) -> pb::StatusResponse {
    let channel =
        spentledger_client::connect::dial(&endpoint(ordinal), Some(Duration::from_secs(5)), None)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", pod_name(ordinal)));
    pb::admin_client::AdminClient::new(channel)
        .status(pb::StatusRequest {
            include_peers: true,
        })
        .await
        .unwrap_or_else(|e| panic!("status of {}: {e}", pod_name(ordinal)))
        .into_inner()
}

/// Waits until pod `ordinal` sees exactly `voters` as the voters.
async fn must_see_voters(ordinal: usize, voters: &[u64]) {
    let deadline = Instant::now() + POD_READY_WAIT;
    loop {
        let status = must_status(ordinal).await;
        let seen: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect();
        if seen == voters {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "voters {seen:?}, expected {voters:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every pod in `ordinals` reports the same applied index and digest.
async fn must_converge(ordinals: &[usize]) -> u64 {
    let deadline = Instant::now() + POD_READY_WAIT;
    loop {
        let mut seen = BTreeSet::new();
        for o in ordinals {
            let s = must_status(*o).await.self_.expect("own status");
            seen.insert((s.applied_index, s.state_digest));
        }
        if seen.len() == 1 {
            return seen.into_iter().next().expect("one").0;
        }
        assert!(Instant::now() < deadline, "pods disagree: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Gateway load until `stop`: batches of fresh payments; returns the tx ids
/// the ledger acknowledged ACCEPTED.
async fn gateway_load(gateway: Arc<Gateway>, stop: Arc<AtomicBool>) -> Vec<TxId> {
    let issuer = test_issuer();
    let mut acknowledged = Vec::new();
    let mut device = 100u8;
    while !stop.load(Ordering::Relaxed) {
        let mut wallet = test_wallet(&issuer, device, 1_000);
        device = device.wrapping_add(1);
        let payments: Vec<_> = (0..10u8)
            .map(|k| wallet.pay(20, &id("m"), [k; 32], now_ms()).expect("pay"))
            .collect();
        let verdicts = gateway
            .submit(&payments)
            .await
            .expect("the gateway SDK rides out pod restarts");
        for (p, v) in payments.iter().zip(&verdicts) {
            assert!(v.is_settled(), "{:?}", v.result);
            if v.verdict == Verdict::Accepted {
                acknowledged.push(p.tx_id());
            }
        }
    }
    acknowledged
}

#[test]
#[ignore = "runs inside the sandbox that the_statefulset_pods_... creates"]
fn in_sandbox() {
    assert!(
        std::env::var_os(SANDBOX_ENV).is_some(),
        "run through the_statefulset_pods_bootstrap_join_roll_and_scale_down_losing_nothing"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(sandboxed());
}

async fn sandboxed() {
    let started = Instant::now();
    let phase = |text: &str| eprintln!("--- [{:>5.1} s] {text}", started.elapsed().as_secs_f64());
    phase("render the dev overlay; give each pod a network namespace and a DNS name");
    let template = must_render("dev");
    assert_eq!(template.replicas, 3);
    let work = tempfile::tempdir().expect("work dir");
    let scale_up = template.replicas + 1;
    must_set_up_sandbox(scale_up, work.path());
    let mut created = Vec::new();
    for path in [&template.data_path, &template.config_path] {
        if !Path::new(path).exists() {
            std::fs::create_dir_all(path).expect("mount point");
            created.push(PathBuf::from(path));
        }
    }
    let config = work.path().join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    for (name, content) in &template.config_files {
        std::fs::write(config.join(name), content).expect("ConfigMap file");
    }
    assert!(
        template.config_files.iter().any(|(n, _)| n == "node.toml"),
        "the ConfigMap carries the node settings"
    );
    let issuer = test_issuer();
    // The ConfigMap's issuer keys are the operator's: here, this test's issuer.
    write_genesis_keys(&config, &issuer);
    let mut pods: Vec<Pod> = (0..scale_up)
        .map(|ordinal| {
            let volume = work.path().join(format!("data-{}", pod_name(ordinal)));
            std::fs::create_dir_all(&volume).expect("volume");
            Pod {
                ordinal,
                child: None,
                volume,
            }
        })
        .collect();

    phase("start the three pods at once (podManagementPolicy: Parallel)");
    for pod in pods.iter_mut().take(template.replicas) {
        must_start_pod(&template, pod, &config, work.path());
    }
    for pod in pods.iter_mut().take(template.replicas) {
        must_be_ready(pod, work.path()).await;
    }
    must_see_voters(0, &[1, 2, 3]).await;
    let endpoints: Vec<String> = (0..template.replicas).map(endpoint).collect();
    let mut config_sdk = GatewayConfig::new(endpoints);
    config_sdk.batch_payments_max = 10;
    let gateway = Arc::new(Gateway::new(config_sdk).expect("gateway"));
    gateway
        .wait_for_issuer_key(&issuer, POD_READY_WAIT)
        .await
        .expect("pod 0 bootstrapped and registered the ConfigMap's issuer key");
    let bootstrapped: Vec<String> = pods
        .iter()
        .take(template.replicas)
        .map(|p| {
            std::fs::read_to_string(work.path().join(format!("{}.log", pod_name(p.ordinal))))
                .expect("log")
        })
        .collect();
    assert!(
        bootstrapped[0].contains("cluster initialised")
            && !bootstrapped[1].contains("cluster initialised")
            && !bootstrapped[2].contains("cluster initialised"),
        "only pod 0 initialises the cluster"
    );

    phase("a gateway submits continuously from here on");
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(gateway_load(gateway.clone(), stop.clone()));

    phase("scale up: pod 3 starts with the same command and joins as a voter");
    must_start_pod(&template, &mut pods[3], &config, work.path());
    must_be_ready(&mut pods[3], work.path()).await;
    must_see_voters(0, &[1, 2, 3, 4]).await;

    phase("rolling restart, one pod at a time, highest ordinal first");
    for ordinal in (0..scale_up).rev() {
        eprintln!(
            "    {}: SIGTERM, then the same command on the same volume",
            pod_name(ordinal)
        );
        let t = Instant::now();
        must_terminate(&mut pods[ordinal]);
        let stopped = t.elapsed();
        must_start_pod(&template, &mut pods[ordinal], &config, work.path());
        must_be_ready(&mut pods[ordinal], work.path()).await;
        eprintln!(
            "    stopped in {:.1} s, ready again {:.1} s later",
            stopped.as_secs_f64(),
            (t.elapsed() - stopped).as_secs_f64()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = load.await.expect("load task");
    assert!(
        acknowledged.len() >= 50,
        "the gateway kept settling during the roll: {} payments",
        acknowledged.len()
    );

    phase(&format!(
        "every acknowledged payment ({}) is on every pod",
        acknowledged.len()
    ));
    let all: Vec<usize> = (0..scale_up).collect();
    must_converge(&all).await;
    for ordinal in all {
        let channel = spentledger_client::connect::dial(
            &endpoint(ordinal),
            Some(Duration::from_secs(5)),
            None,
        )
        .await
        .expect("connect");
        let mut client = pb::settlement_client::SettlementClient::new(channel);
        for tx in &acknowledged {
            let found = client
                .get_payment(pb::GetPaymentRequest {
                    tx_id: tx.0.to_vec(),
                    consistency: pb::ReadConsistency::Stale as i32,
                })
                .await
                .expect("read")
                .into_inner()
                .found;
            assert!(found, "{} lost an acknowledged payment", pod_name(ordinal));
        }
    }

    phase("scale down: remove member 4 first, then its pod and its volume");
    let leader_id = must_status(0).await.self_.expect("status").leader_id;
    let leader_ordinal = leader_id as usize - 1;
    let channel = spentledger_client::connect::dial(
        &endpoint(leader_ordinal),
        Some(Duration::from_secs(10)),
        None,
    )
    .await
    .expect("connect to the leader");
    pb::admin_client::AdminClient::new(channel)
        .remove_node(pb::RemoveNodeRequest { node_id: 4 })
        .await
        .expect("remove member 4");
    must_see_voters(0, &[1, 2, 3]).await;
    must_terminate(&mut pods[3]);
    std::fs::remove_dir_all(&pods[3].volume).expect("delete the volume");
    let mut wallet = test_wallet(&issuer, 250, 100);
    let last = wallet.pay(30, &id("m"), [9; 32], now_ms()).expect("pay");
    let verdicts = gateway
        .submit(std::slice::from_ref(&last))
        .await
        .expect("submit after scale-down");
    assert_eq!(
        verdicts[0].verdict,
        Verdict::Accepted,
        "{:?}",
        verdicts[0].result
    );
    must_converge(&[0, 1, 2]).await;

    drop(pods);
    for path in created {
        let _ = std::fs::remove_dir(path);
    }
}
