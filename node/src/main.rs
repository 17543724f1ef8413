//! `spentledger-node`: runs one ledger node until SIGTERM or SIGINT.
//!
//! Exit codes: 0 after a graceful shutdown, 1 when the node fails at run
//! time, 2 for an invalid configuration (nothing was written then).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openraft::BasicNode;
use openraft::type_config::async_runtime::WatchReceiver;
use spentledger_node::config::{Flags, NodeConfig};
use spentledger_node::consensus::ClientRequest;
use spentledger_node::ledger_node::{LedgerNode, NodeError, NodeOptions};
use spentledger_node::state_machine::{CommandOutcome, LedgerConfig};
use spentledger_protocol::pb;

/// How long a bootstrapping node waits for the first leader.
const BOOTSTRAP_LEADER_WAIT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match NodeConfig::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spentledger-node: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
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
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let node = LedgerNode::start(NodeOptions {
        node_id: config.node_id,
        data_dir: config.data_dir.clone(),
        listener,
        timings: config.timings,
        ledger: LedgerConfig {
            validation_threads: config.validation_threads,
            certificate_cache_entries: 65_536,
        },
        api: spentledger_node::api::ApiLimits {
            batch_payments_max: config.batch_payments_max,
            submit: config.submit,
            ..Default::default()
        },
        metrics_listener,
        drain_timeout_ms: config.drain_timeout_ms,
        digest_audit_interval_ms: config.digest_audit_interval_ms,
    })
    .await?;
    tracing::info!(node_id = config.node_id, advertise = %config.advertise, "serving");
    if config.bootstrap {
        bootstrap(&node, &config).await?;
    }
    wait_for_signal().await?;
    tracing::info!(node_id = config.node_id, "shutting down");
    node.shutdown().await;
    tracing::info!(node_id = config.node_id, "stopped");
    Ok(())
}

/// Initialises the cluster once (only when this node's log is empty), then
/// registers the genesis issuer keys through the first leader.
async fn bootstrap(node: &LedgerNode, config: &NodeConfig) -> Result<(), NodeError> {
    let raft_err = |e: &dyn std::fmt::Display| NodeError::Raft(e.to_string());
    if node.raft.is_initialized().await.map_err(|e| raft_err(&e))? {
        tracing::info!("already initialised; bootstrap skipped");
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = config
        .initial_members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    node.raft
        .initialize(members)
        .await
        .map_err(|e| raft_err(&e))?;
    tracing::info!(members = ?config.initial_members, "cluster initialised");
    if config.genesis_issuer_keys.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_LEADER_WAIT;
    loop {
        let leader = node.raft.metrics().borrow_watched().current_leader;
        match leader {
            Some(id) if id == node.id => break,
            Some(other) => {
                tracing::warn!(
                    leader = other,
                    "another node leads: register the genesis issuer keys through the Issuer API"
                );
                return Ok(());
            }
            None if tokio::time::Instant::now() > deadline => {
                return Err(NodeError::Raft(
                    "no leader elected within 30 s of bootstrap".into(),
                ));
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    for key in &config.genesis_issuer_keys {
        let command = pb::Command {
            stamp_ms: spentledger_node::api::now_ms(),
            kind: Some(pb::command::Kind::RegisterKey(
                pb::RegisterIssuerKeyCommand {
                    key: Some(key.into()),
                },
            )),
        };
        let response = node
            .raft
            .client_write(ClientRequest(command))
            .await
            .map_err(|e| raft_err(&e))?;
        match response.data {
            CommandOutcome::KeyRegistered(Ok(_)) => {
                tracing::info!(key_id = %key.key_id, "genesis issuer key registered")
            }
            other => {
                tracing::warn!(key_id = %key.key_id, outcome = ?other, "genesis issuer key not registered")
            }
        }
    }
    Ok(())
}

async fn wait_for_signal() -> Result<(), NodeError> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}
