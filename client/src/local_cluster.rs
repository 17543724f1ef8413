//! A local cluster of real `spentledger-node` processes on 127.0.0.1, for
//! development and the demo. Dropping it kills whatever is still running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spentledger_protocol::pb;

use crate::tls::{ClientTls, RoleIdentities};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "spentledger-node not found at {0} (build it with `cargo build --release -p spentledger-node`, or give --node-bin)"
    )]
    NodeBinaryMissing(PathBuf),
    #[error("cluster size must be 1..=9, got {0}")]
    BadSize(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("node {node} exited ({status}); its log ends:\n{log_tail}")]
    Exited {
        node: u64,
        status: String,
        log_tail: String,
    },
    #[error("node {node} not ready within {waited_ms} ms")]
    NotReady { node: u64, waited_ms: u64 },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error(
        "the cluster in {dir} is stopped; `spentledger cluster up --dir {dir}` starts it again",
        dir = .0.display()
    )]
    Stopped(PathBuf),
}

/// Finds `spentledger-node`: an explicit path, else next to this program.
pub fn find_node_binary(explicit: Option<PathBuf>) -> Result<PathBuf, ClusterError> {
    let path = match explicit {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("spentledger-node"))
            .unwrap_or_else(|| PathBuf::from("spentledger-node")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(ClusterError::NodeBinaryMissing(path))
    }
}

/// The own status of the node at `addr` (host:port), if it answers.
pub async fn node_status(addr: &str, tls: Option<&ClientTls>) -> Option<pb::NodeStatus> {
    let ch = crate::connect::dial(addr, Some(Duration::from_secs(2)), tls)
        .await
        .ok()?;
    pb::admin_client::AdminClient::new(ch)
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await
        .ok()?
        .into_inner()
        .self_
}

/// The position in `endpoints` of the node that says it leads.
pub async fn leader_among(endpoints: &[String], tls: Option<&ClientTls>) -> Option<usize> {
    for (i, addr) in endpoints.iter().enumerate() {
        if let Some(s) = node_status(addr, tls).await
            && s.role == pb::NodeRole::Leader as i32
        {
            return Some(i);
        }
    }
    None
}

/// Running nodes, numbered 1..=n.
pub struct LocalCluster {
    node_bin: PathBuf,
    dir: PathBuf,
    genesis_keys: PathBuf,
    pub addrs: Vec<SocketAddr>,
    pub metrics_addrs: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    /// Nodes in their own process group (they outlive this program).
    detached: bool,
    /// TLS: the certificates directory the nodes use (`node.pem`), and the
    /// identities this value talks to them with.
    tls: Option<RoleIdentities>,
}

/// What `cluster up` leaves in its directory for `cluster down|status`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub nodes: Vec<ManifestNode>,
    /// The certificates directory when the nodes serve TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs_dir: Option<PathBuf>,
    /// `cluster down` stopped the nodes; the addresses are kept, since the
    /// nodes' stored membership names them: `cluster up` restarts there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestNode {
    pub id: u64,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub pid: u32,
}

pub const MANIFEST_FILE: &str = "cluster.json";
/// The issuer keys a local cluster was founded with, in its directory.
const GENESIS_KEYS_FILE: &str = "genesis-issuer-keys.json";

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// Whether `pid` is a live process of our node binary (pids are reused).
fn running_node(pid: u32) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("spentledger-node"))
            .unwrap_or(false)
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest, ClusterError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ClusterError::Io(std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e} (is a cluster up in this directory?)",
                    path.display()
                ),
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ClusterError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            ))
        })
    }

    /// The manifest of a cluster that is up (not stopped by `cluster down`),
    /// for commands that talk to its nodes.
    pub fn load_running(dir: &Path) -> Result<Manifest, ClusterError> {
        let manifest = Manifest::load(dir)?;
        if manifest.stopped {
            return Err(ClusterError::Stopped(dir.to_owned()));
        }
        Ok(manifest)
    }

    /// Writes this manifest to `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ClusterError> {
        let text = serde_json::to_string_pretty(self).expect("the manifest serializes");
        std::fs::write(dir.join(MANIFEST_FILE), text)?;
        Ok(())
    }

    /// Whether any of its node processes still runs.
    pub fn any_running(&self) -> bool {
        self.nodes.iter().any(|n| running_node(n.pid))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.to_string()).collect()
    }

    /// SIGTERM every node still running, wait for each to exit, SIGKILL
    /// those still running after `timeout`. Returns how many were running.
    pub fn stop(&self, timeout: Duration) -> usize {
        // Only signal pids that still run our binary (pids can be reused).
        let ours: Vec<u32> = self
            .nodes
            .iter()
            .map(|n| n.pid)
            .filter(|pid| running_node(*pid))
            .collect();
        for pid in &ours {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let deadline = Instant::now() + timeout;
        while ours.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in ours.iter().filter(|p| alive(**p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for node in &self.nodes {
            crate::ports::release(node.addr);
            crate::ports::release(node.metrics_addr);
        }
        ours.len()
    }
}

impl LocalCluster {
    /// Starts `size` nodes with data under `dir`; node 1 bootstraps the
    /// cluster and registers the issuer keys in `genesis_keys_json`. The
    /// nodes die with this value.
    pub fn start(
        node_bin: PathBuf,
        dir: &Path,
        size: usize,
        genesis_keys_json: &str,
    ) -> Result<Self, ClusterError> {
        Self::launch(node_bin, dir, size, genesis_keys_json, false, None)
    }

    /// Like [`LocalCluster::start`] with mutual TLS: the nodes present
    /// `node.pem` from `certs_dir` (see `spentledger certs init`) and this
    /// value talks to them as `admin`.
    pub fn start_tls(
        node_bin: PathBuf,
        dir: &Path,
        size: usize,
        genesis_keys_json: &str,
        certs_dir: &Path,
    ) -> Result<Self, ClusterError> {
        let tls = RoleIdentities::from_dir(certs_dir).map_err(ClusterError::Tls)?;
        Self::launch(node_bin, dir, size, genesis_keys_json, false, Some(tls))
    }

    /// Like [`LocalCluster::start`], but the nodes run in their own process
    /// group, so they survive this program (and its terminal's Ctrl-C);
    /// follow with [`LocalCluster::detach`].
    pub fn start_detached(
        node_bin: PathBuf,
        dir: &Path,
        size: usize,
        genesis_keys_json: &str,
        certs_dir: Option<&Path>,
    ) -> Result<Self, ClusterError> {
        let tls = certs_dir
            .map(RoleIdentities::from_dir)
            .transpose()
            .map_err(ClusterError::Tls)?;
        Self::launch(node_bin, dir, size, genesis_keys_json, true, tls)
    }

    /// Starts again, detached, the nodes of a cluster `cluster down` stopped
    /// in `dir`: on the addresses its manifest records (the nodes' stored
    /// membership names them; new ports would leave each node calling its
    /// peers where nobody listens), with its TLS certificates, and with the
    /// genesis file it was founded with (an initialised node skips the
    /// bootstrap). Follow with [`LocalCluster::detach`].
    pub fn restart_detached(
        node_bin: PathBuf,
        dir: &Path,
        manifest: &Manifest,
    ) -> Result<Self, ClusterError> {
        let tls = manifest
            .certs_dir
            .as_deref()
            .map(RoleIdentities::from_dir)
            .transpose()
            .map_err(ClusterError::Tls)?;
        let size = manifest.nodes.len();
        if !(1..=9).contains(&size) {
            return Err(ClusterError::BadSize(size));
        }
        let addrs = manifest.nodes.iter().map(|n| n.addr).collect();
        let metrics_addrs = manifest.nodes.iter().map(|n| n.metrics_addr).collect();
        Self::spawn_all(node_bin, dir, (addrs, metrics_addrs), true, tls)
    }

    fn launch(
        node_bin: PathBuf,
        dir: &Path,
        size: usize,
        genesis_keys_json: &str,
        detached: bool,
        tls: Option<RoleIdentities>,
    ) -> Result<Self, ClusterError> {
        if !(1..=9).contains(&size) {
            return Err(ClusterError::BadSize(size));
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(GENESIS_KEYS_FILE), genesis_keys_json)?;
        let reserve = || {
            (0..size)
                .map(|_| crate::ports::reserve_loopback_addr())
                .collect::<Result<Vec<_>, _>>()
        };
        let addrs = (reserve()?, reserve()?);
        Self::spawn_all(node_bin, dir, addrs, detached, tls)
    }

    /// Spawns one node per address pair (gRPC, metrics), numbered from 1,
    /// with data under `dir`.
    fn spawn_all(
        node_bin: PathBuf,
        dir: &Path,
        (addrs, metrics_addrs): (Vec<SocketAddr>, Vec<SocketAddr>),
        detached: bool,
        tls: Option<RoleIdentities>,
    ) -> Result<Self, ClusterError> {
        let mut cluster = LocalCluster {
            node_bin,
            dir: dir.to_owned(),
            genesis_keys: dir.join(GENESIS_KEYS_FILE),
            children: addrs.iter().map(|_| None).collect(),
            addrs,
            metrics_addrs,
            detached,
            tls,
        };
        for i in 0..cluster.size() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Leaves the nodes running and writes the manifest `cluster down` uses.
    pub fn detach(mut self) -> Result<Manifest, ClusterError> {
        let nodes = self
            .children
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| {
                c.take().map(|child| ManifestNode {
                    id: i as u64 + 1,
                    addr: self.addrs[i],
                    metrics_addr: self.metrics_addrs[i],
                    pid: child.id(),
                })
            })
            .collect();
        let manifest = Manifest {
            nodes,
            certs_dir: self.tls.as_ref().map(|t| t.dir.clone()),
            stopped: false,
        };
        manifest.save(&self.dir)?;
        Ok(manifest)
    }

    /// The identity to call the nodes with as an operator, under TLS.
    pub fn admin_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref().map(|t| &t.admin)
    }

    /// Every role's identity, under TLS.
    pub fn identities(&self) -> Option<&RoleIdentities> {
        self.tls.as_ref()
    }

    pub fn size(&self) -> usize {
        self.addrs.len()
    }

    /// (node index, pid) of every node process this value runs.
    pub fn pids(&self) -> Vec<(usize, u32)> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c.id())))
            .collect()
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}", i + 1)).join("data")
    }

    fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let members: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(j, a)| format!("{}={a}", j + 1))
            .collect();
        let node_dir = self.dir.join(format!("node-{}", i + 1));
        std::fs::create_dir_all(&node_dir)?;
        // A restart may come long after the ports were reserved.
        crate::ports::refresh(self.addrs[i])?;
        crate::ports::refresh(self.metrics_addrs[i])?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("node.log"))?;
        let mut cmd = Command::new(&self.node_bin);
        match &self.tls {
            Some(tls) => {
                let node = crate::tls::NODE_IDENTITY;
                cmd.arg("--tls-cert")
                    .arg(tls.dir.join(format!("{node}.pem")))
                    .arg("--tls-key")
                    .arg(tls.dir.join(format!("{node}.key")))
                    .arg("--tls-ca")
                    .arg(tls.dir.join(crate::tls::CA_CERT_FILE));
            }
            None => {
                cmd.arg("--plaintext");
            }
        }
        cmd.arg("--node-id")
            .arg((i + 1).to_string())
            .arg("--cluster-id")
            .arg(cluster_id_for(&self.dir))
            .arg("--listen")
            .arg(self.addrs[i].to_string())
            .arg("--metrics-listen")
            .arg(self.metrics_addrs[i].to_string())
            .arg("--data-dir")
            .arg(node_dir.join("data"))
            .arg("--initial-members")
            .arg(members.join(","))
            .arg("--heartbeat-ms")
            .arg("100")
            .arg("--election-timeout-ms")
            .arg("500")
            .stdin(Stdio::null())
            // The node logs (tracing) to stdout and reports fatal errors on
            // stderr: both go to node.log.
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if self.detached {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        // An operator's own setting wins over the machine's share.
        if std::env::var_os("SPENTLEDGER_APPLY_VALIDATION_THREADS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cmd.arg("--apply-validation-threads")
                .arg(apply_validation_threads(self.addrs.len(), cores).to_string());
        }
        if i == 0 {
            cmd.arg("--bootstrap")
                .arg("--genesis-issuer-keys")
                .arg(&self.genesis_keys);
        }
        self.children[i] = Some(cmd.spawn()?);
        Ok(())
    }

    /// Waits until node `i` (0-based) reports SERVING on health.
    pub async fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.children[i].as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = self.dir.join(format!("node-{}", i + 1)).join("node.log");
                let tail: String = std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(ClusterError::Exited {
                    node: i as u64 + 1,
                    status: status.to_string(),
                    log_tail: tail,
                });
            }
            if let Ok(ch) = crate::connect::dial(
                &self.addrs[i].to_string(),
                Some(Duration::from_secs(2)),
                self.admin_tls(),
            )
            .await
            {
                let status = tonic_health::pb::health_client::HealthClient::new(ch)
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().status);
                if status.ok()
                    == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    node: i as u64 + 1,
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Node `i`'s own status, if it answers.
    pub async fn status(&self, i: usize) -> Option<pb::NodeStatus> {
        node_status(&self.addrs[i].to_string(), self.admin_tls()).await
    }

    /// The 0-based index of the running node that says it leads.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.size() {
            if self.children[i].is_some()
                && let Some(s) = self.status(i).await
                && s.role == pb::NodeRole::Leader as i32
            {
                return Some(i);
            }
        }
        None
    }

    /// SIGKILL node `i`: no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        if let Some(mut child) = self.children[i].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts node `i` again from its data directory.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// SIGTERM every node and waits for each to exit (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        for child in self.children.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for slot in &mut self.children {
            if let Some(mut child) = slot.take() {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.detached {
            for addr in self.addrs.iter().chain(&self.metrics_addrs) {
                crate::ports::release(*addr);
            }
        }
    }
}

/// A local cluster's id (the nodes' `--cluster-id`): `local-` and its
/// directory's name, with characters an id may not hold replaced by `-`, so
/// that two local clusters on one host never take each other's Raft
/// messages (a port one freed may be the other's next).
pub fn cluster_id_for(dir: &Path) -> String {
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_owned())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = format!("local-{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
}

/// Threads each node of a local cluster validates followers' entries with:
/// the machine's cores shared among its nodes, at least one. The nodes share
/// one machine; with every core each, the followers' validation of an entry
/// took the cores just when the leader applied it and answered, and the
/// answers' p50 rose by 3-7 ms (docs/BENCHMARKS.md, eighth round). Ingress
/// keeps every core: any node may lead.
pub fn apply_validation_threads(nodes: usize, cores: usize) -> usize {
    (cores / nodes.max(1)).max(1)
}

#[cfg(test)]
mod apply_threads_tests {
    use std::path::Path;

    use super::{apply_validation_threads, cluster_id_for};

    #[test]
    fn a_local_clusters_id_is_a_valid_id_named_after_its_directory() {
        assert_eq!(
            cluster_id_for(Path::new("/nonexistent/my demo")),
            "local-my-demo"
        );
        let long = format!("/nonexistent/{}", "é".repeat(80));
        let id = cluster_id_for(Path::new(&long));
        assert_eq!(id.len(), 63);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn each_node_gets_its_share_of_the_cores_and_at_least_one() {
        assert_eq!(apply_validation_threads(3, 2), 1);
        assert_eq!(apply_validation_threads(3, 8), 2);
        assert_eq!(apply_validation_threads(1, 2), 2);
        assert_eq!(apply_validation_threads(5, 4), 1);
        assert_eq!(apply_validation_threads(0, 4), 4);
    }
}
