//! `spentledger-node`: runs one ledger node until SIGTERM or SIGINT.
//! `spentledger-node storage-report --data-dir D [--compact]` measures a
//! stopped node's data directory instead.
//!
//! Exit codes: 0 after a graceful shutdown, 1 when the node fails at run
//! time, 2 for an invalid configuration (nothing was written then).

use std::process::ExitCode;

use clap::Parser;
use spentledger_node::bootstrap::{bootstrap_once, claim_identity, join_once};
use spentledger_node::config::{Flags, NodeConfig};
use spentledger_node::ledger_node::{LedgerNode, NodeError, NodeOptions};
use spentledger_node::restore::restore_from_snapshot;
use spentledger_node::state_machine::LedgerConfig;
use spentledger_node::storage::usage_report::{StorageReportArgs, storage_report};

/// jemalloc for every allocation, Rust's and RocksDB's: see `ops::heap`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // An offline tool on a stopped node's data directory, not a node run.
    if std::env::args().nth(1).as_deref() == Some("storage-report") {
        let args = StorageReportArgs::parse_from(std::env::args().skip(1));
        return match storage_report(&args.data_dir, args.compact) {
            Ok(report) => {
                println!("{}", report.to_json());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("spentledger-node storage-report: {e}");
                ExitCode::from(1)
            }
        };
    }
    let flags = Flags::parse();
    let config = match NodeConfig::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spentledger-node: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = claim_identity(&config.data_dir, config.node_id) {
        eprintln!("spentledger-node: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        // Colours for a terminal only: node.log files and container logs
        // stay plain text for grep and log shippers.
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spentledger-node: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(snapshot) = &config.restore_from_snapshot {
        let ledger = LedgerConfig {
            validation_threads: config.apply_validation_threads,
            certificate_cache_entries: 65_536,
            validation_nice: config.apply_validation_nice,
        };
        return match runtime.block_on(restore_from_snapshot(
            &config.data_dir,
            config.node_id,
            snapshot,
            ledger,
        )) {
            Ok(r) => {
                tracing::info!(node_id = config.node_id, last_log_index = r.last_log_index, last_log_term = r.last_log_term, voters = ?r.voters, "restored from snapshot");
                println!(
                    "restored node {} from {}: state at log index {} (term {}), voters {:?}; start the node without --restore-from-snapshot",
                    config.node_id,
                    snapshot.display(),
                    r.last_log_index,
                    r.last_log_term,
                    r.voters
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("spentledger-node: restore: {e}");
                ExitCode::from(1)
            }
        };
    }
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node failed");
            eprintln!("spentledger-node: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: NodeConfig) -> Result<(), NodeError> {
    // Installed before anything else, so a SIGTERM during start-up (a pod
    // deleted while joining) is a graceful stop, not the default kill.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let listen = |what: &'static str, addr: std::net::SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Listen { what, addr, source })
    };
    let listener = listen("gRPC", config.listen).await?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(listen("metrics", addr).await?),
        None => None,
    };
    let health_listener = match config.health_listen {
        Some(addr) => Some(listen("health", addr).await?),
        None => None,
    };
    let node = LedgerNode::start(NodeOptions {
        node_id: config.node_id,
        data_dir: config.data_dir.clone(),
        listener,
        timings: config.timings,
        ledger: LedgerConfig {
            validation_threads: config.apply_validation_threads,
            certificate_cache_entries: 65_536,
            validation_nice: config.apply_validation_nice,
        },
        api: spentledger_node::api::ApiLimits {
            batch_payments_max: config.batch_payments_max,
            submit: config.submit,
            ingress_validation_threads: config.validation_threads,
            apply_lag: config.apply_lag,
            ..Default::default()
        },
        metrics_listener,
        health_listener,
        drain_timeout_ms: config.drain_timeout_ms,
        digest_audit_interval_ms: config.digest_audit_interval_ms,
        cluster_id: config.cluster_id.clone(),
        tls: config.tls.clone(),
        #[cfg(feature = "fault-injection")]
        faults: fault_control(config.node_id),
    })
    .await?;
    tracing::info!(node_id = config.node_id, advertise = %config.advertise, cluster_id = %config.cluster_id, "serving");
    let start_up = async {
        if config.bootstrap {
            bootstrap_once(&node, &config.initial_members, &config.genesis_issuer_keys).await?;
        }
        if config.join && !config.bootstrap {
            join_once(&node, &config.initial_members, &config.advertise).await?;
        }
        Ok::<(), NodeError>(())
    };
    let stop_now = tokio::select! {
        result = start_up => {
            result?;
            false
        }
        result = wait_for_signal(&mut terminate) => {
            result?;
            true
        }
    };
    if !stop_now {
        wait_for_signal(&mut terminate).await?;
    }
    tracing::info!(node_id = config.node_id, "shutting down");
    node.shutdown().await;
    tracing::info!(node_id = config.node_id, "stopped");
    Ok(())
}

async fn wait_for_signal(terminate: &mut tokio::signal::unix::Signal) -> Result<(), NodeError> {
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}

/// Test builds only: faults driven by the file `SPENTLEDGER_FAULT_CONTROL`
/// names (the multi-process chaos suite's delay, loss and clock skew).
#[cfg(feature = "fault-injection")]
fn fault_control(node_id: u64) -> Option<spentledger_node::network::fault_layer::FaultNetwork> {
    use spentledger_node::network::fault_control::{CONTROL_ENV, spawn_watcher};
    let path = std::env::var_os(CONTROL_ENV)?;
    let network = spentledger_node::network::fault_layer::FaultNetwork::new(node_id);
    spawn_watcher(path.into(), network.clone());
    tracing::warn!("fault-injection build: faults controlled by {CONTROL_ENV}");
    Some(network)
}
