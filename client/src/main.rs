//! `spentledger`: the command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spentledger_client::demo::{self, DemoOptions};

/// spentledger: settle offline payments on a replicated ledger.
#[derive(Debug, Parser)]
#[command(name = "spentledger", version, about)]
struct Cli {
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Start a local 3-node cluster and settle a day of offline payments with
    /// double spends and cloned devices through several gateways, killing the
    /// leader part-way; ends with a summary and exits non-zero if a check fails.
    Demo {
        /// Simulated payer devices.
        #[arg(long, default_value_t = 2_000)]
        devices: usize,
        /// Honest payments per device.
        #[arg(long, default_value_t = 4)]
        payments_per_device: usize,
        /// Merchants.
        #[arg(long, default_value_t = 25)]
        merchants: usize,
        /// Gateways submitting concurrently.
        #[arg(long, default_value_t = 3)]
        gateways: usize,
        /// One device in this many double-spends; another one is cloned.
        #[arg(long, default_value_t = 40)]
        conflict_every: usize,
        /// Payments per SubmitBatch.
        #[arg(long, default_value_t = 100)]
        batch_payments: usize,
        /// Do not kill the leader part-way.
        #[arg(long)]
        no_kill: bool,
        /// Path of the spentledger-node binary (default: next to this program).
        #[arg(long, env = "SPENTLEDGER_NODE_BIN")]
        node_bin: Option<PathBuf>,
        /// Keep node data and logs here (default: a temporary directory, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spentledger: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Commands::Demo {
            devices,
            payments_per_device,
            merchants,
            gateways,
            conflict_every,
            batch_payments,
            no_kill,
            node_bin,
            dir,
        } => {
            let options = DemoOptions {
                devices,
                payments_per_device,
                merchants,
                gateways,
                conflict_every,
                batch_payments,
                kill_leader: !no_kill,
                node_bin,
                dir,
                quiet: cli.json,
            };
            match runtime.block_on(demo::run(options)) {
                Ok(summary) => {
                    if cli.json {
                        println!("{}", summary.to_json());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("spentledger demo: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
