//! `spentledger cluster up|down|status`: a local cluster of node processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use super::{CliError, Output};
use crate::local_cluster::{LocalCluster, Manifest, find_node_binary};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start N nodes on 127.0.0.1 with data under DIR; they keep running
    /// after this command returns (stop them with `cluster down`). On a
    /// directory `cluster down` stopped, start the same nodes again, on the
    /// same addresses.
    Up {
        /// Directory for node data, logs and the cluster manifest.
        #[arg(long)]
        dir: PathBuf,
        /// Number of nodes (1..=9).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Issuer public keys (JSON list, as `issuer keygen --public-out` writes)
        /// registered when the cluster starts.
        #[arg(long)]
        genesis_issuer_keys: Option<PathBuf>,
        /// Path of the spentledger-node binary (default: next to this program).
        #[arg(long, env = "SPENTLEDGER_NODE_BIN")]
        node_bin: Option<PathBuf>,
        /// Serve mutual TLS with certificates from --certs-dir, or, without
        /// it, from new development certificates in DIR/certs. Later
        /// commands given --cluster-dir DIR use them automatically.
        #[arg(long)]
        tls: bool,
    },
    /// Stop the nodes of the cluster in DIR (SIGTERM, then SIGKILL after 20 s);
    /// their data and addresses are kept for `cluster up`.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Status of the cluster in DIR.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub async fn run(
    command: &ClusterCommand,
    certs_dir: Option<&Path>,
    out: &Output,
) -> Result<(), CliError> {
    match command {
        ClusterCommand::Up {
            dir,
            nodes,
            genesis_issuer_keys,
            node_bin,
            tls,
        } => {
            let previous = if dir.join(crate::local_cluster::MANIFEST_FILE).exists() {
                Some(Manifest::load(dir)?)
            } else {
                None
            };
            if let Some(running) = previous.as_ref().filter(|m| m.any_running()) {
                return Err(CliError::Usage(format!(
                    "{} already has a running cluster ({} nodes); `spentledger cluster down --dir {}` first",
                    dir.display(),
                    running.nodes.len(),
                    dir.display()
                )));
            }
            let bin = find_node_binary(node_bin.clone())?;
            let cluster = match previous {
                Some(stopped) => {
                    restart_checks(dir, &stopped, *nodes, *tls, certs_dir)?;
                    if genesis_issuer_keys.is_some() {
                        out.note("--genesis-issuer-keys ignored: a restarted cluster keeps the keys its state holds");
                    }
                    restart_cluster(dir, &stopped, bin, out).await?
                }
                None => {
                    found_cluster(
                        dir,
                        *nodes,
                        genesis_issuer_keys.as_deref(),
                        bin,
                        *tls,
                        certs_dir,
                        out,
                    )
                    .await?
                }
            };
            let manifest = cluster.detach()?;
            let endpoints = manifest.endpoints().join(",");
            out.table(
                &["node", "address", "metrics", "pid"],
                manifest
                    .nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.id.to_string(),
                            n.addr.to_string(),
                            format!("http://{}/metrics", n.metrics_addr),
                            n.pid.to_string(),
                        ]
                    })
                    .collect(),
                serde_json::json!({
                    "endpoints": endpoints,
                    "nodes": manifest.nodes.iter().map(|n| serde_json::json!({
                        "id": n.id, "addr": n.addr.to_string(),
                        "metrics_addr": n.metrics_addr.to_string(), "pid": n.pid,
                    })).collect::<Vec<_>>(),
                }),
            );
            out.note(&format!("export SPENTLEDGER_ENDPOINTS={endpoints}"));
            Ok(())
        }
        ClusterCommand::Down { dir } => {
            let manifest = Manifest::load(dir)?;
            let stopped = manifest.stop(Duration::from_secs(20));
            Manifest {
                stopped: true,
                ..manifest
            }
            .save(dir)?;
            out.fields(vec![
                ("stopped", serde_json::json!(stopped)),
                ("data kept in", serde_json::json!(dir.display().to_string())),
            ]);
            out.note(&format!(
                "`spentledger cluster up --dir {}` starts the same nodes again, on the same addresses",
                dir.display()
            ));
            Ok(())
        }
        ClusterCommand::Status { dir } => {
            let manifest = Manifest::load_running(dir)?;
            if let Some(certs) = certs_dir.map(Path::to_owned).or(manifest.certs_dir.clone()) {
                super::connect::set_tls(Some(crate::tls::ClientTls::from_dir(
                    &certs,
                    crate::tls::ClientRole::Admin.name(),
                )?));
            }
            super::admin::status(&manifest.endpoints(), out).await
        }
    }
}

/// A restart must match what was stopped: the node count and whether the
/// nodes serve TLS are in their stored state and certificates.
fn restart_checks(
    dir: &Path,
    stopped: &Manifest,
    nodes: usize,
    tls: bool,
    certs_dir: Option<&Path>,
) -> Result<(), CliError> {
    if nodes != stopped.nodes.len() {
        return Err(CliError::Usage(format!(
            "the cluster in {} has {} nodes; restart it with --nodes {} (membership changes are `spentledger members`)",
            dir.display(),
            stopped.nodes.len(),
            stopped.nodes.len()
        )));
    }
    if (tls || certs_dir.is_some()) && stopped.certs_dir.is_none() {
        return Err(CliError::Usage(format!(
            "the cluster in {} was started without TLS; restart it without --tls",
            dir.display()
        )));
    }
    Ok(())
}

/// Starts the stopped cluster of `dir` again and waits until it has a
/// leader.
async fn restart_cluster(
    dir: &Path,
    stopped: &Manifest,
    bin: PathBuf,
    out: &Output,
) -> Result<LocalCluster, CliError> {
    out.note(&format!(
        "restarting the {} nodes of {} on their addresses",
        stopped.nodes.len(),
        dir.display()
    ));
    let mut cluster = LocalCluster::restart_detached(bin, dir, stopped)?;
    for i in 0..cluster.size() {
        cluster.wait_ready(i, Duration::from_secs(60)).await?;
    }
    // A restarted node re-applies its log before it serves; writes need a
    // leader.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.leader().await.is_none() {
        if std::time::Instant::now() > deadline {
            return Err(CliError::Usage(
                "the restarted nodes elected no leader within 30 s; see their node.log".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(cluster)
}

/// Founds a new cluster in `dir` and waits until every node applied the
/// genesis entries. Refuses a directory that already holds node data.
async fn found_cluster(
    dir: &Path,
    nodes: usize,
    genesis_issuer_keys: Option<&Path>,
    bin: PathBuf,
    tls: bool,
    certs_dir: Option<&Path>,
    out: &Output,
) -> Result<LocalCluster, CliError> {
    if dir.join("node-1").join("data").exists() {
        return Err(CliError::Usage(format!(
            "{} holds node data but no {} recording its nodes' addresses (stopped by an older version?); remove it, or give another directory, for a new cluster",
            dir.display(),
            crate::local_cluster::MANIFEST_FILE
        )));
    }
    let (keys, key_count) = match genesis_issuer_keys {
        Some(path) => {
            // Checked here so a typo fails now, not in a node's log.
            let count = crate::files::PublicKeyEntry::load_all(path)?.len();
            (std::fs::read_to_string(path)?, count)
        }
        None => ("[]".to_owned(), 0),
    };
    let certs_dir = match (tls, certs_dir) {
        (_, Some(given)) => Some(given.to_owned()),
        (true, None) => {
            let made = dir.join("certs");
            crate::tls::init_dev_pki(&made, &[], 365, false)?;
            out.note(&format!("development certificates in {}", made.display()));
            Some(made)
        }
        (false, None) => None,
    };
    let mut cluster = LocalCluster::start_detached(bin, dir, nodes, &keys, certs_dir.as_deref())?;
    out.note(&format!(
        "started {nodes} nodes; waiting until each is ready"
    ));
    for i in 0..cluster.size() {
        cluster.wait_ready(i, Duration::from_secs(60)).await?;
    }
    // A fresh cluster's log: the initial membership at index 0, the first
    // leader's blank entry at 1, then one entry per genesis key. Wait until
    // every node applied them, so payments right after `up` are not
    // rejected UNKNOWN_ISSUER_KEY.
    let genesis_index = 1 + key_count as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for i in 0..cluster.size() {
        while cluster
            .status(i)
            .await
            .is_none_or(|s| s.applied_index < genesis_index)
        {
            if std::time::Instant::now() > deadline {
                return Err(CliError::Usage(format!(
                    "node {} did not apply the genesis entries within 30 s; see its node.log",
                    i + 1
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(cluster)
}
