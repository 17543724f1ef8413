//! The `spentledger` command line: argument definitions and dispatch. Each
//! group of commands lives in its own file; every command prints a human
//! table by default and one JSON value with `--json`.

mod admin;
mod cluster;
mod connect;
mod ledger;
mod offline;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::tls::{ClientRole, ClientTls, RoleIdentities};

pub use output::Output;

/// spentledger: settle offline payments on a replicated ledger.
#[derive(Debug, Parser)]
#[command(name = "spentledger", version, about)]
pub struct Cli {
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Cluster members to talk to, host:port, comma separated.
    #[arg(
        long,
        global = true,
        env = "SPENTLEDGER_ENDPOINTS",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Directory of a cluster started with `cluster up` (its endpoints are used
    /// when --endpoints is not given).
    #[arg(long, global = true, env = "SPENTLEDGER_CLUSTER_DIR")]
    pub cluster_dir: Option<PathBuf>,
    /// TLS certificates directory (as `certs init` writes): ca.pem and one
    /// <role>.pem/.key per role; each command presents its role's identity
    /// (gateway: submit and queries; issuer: issuer commands; admin: status,
    /// members, leader, snapshot). A --cluster-dir started with TLS supplies it.
    #[arg(long, global = true, env = "SPENTLEDGER_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// CA certificate to trust, with --cert and --key instead of --certs-dir.
    #[arg(long, global = true, env = "SPENTLEDGER_CA_CERT", requires_all = ["cert", "key"])]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate to present (its role decides what it may call).
    #[arg(long, global = true, env = "SPENTLEDGER_CERT", requires = "ca_cert")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (mode 0600).
    #[arg(long, global = true, env = "SPENTLEDGER_KEY", requires = "ca_cert")]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// A local cluster of spentledger-node processes on 127.0.0.1.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Every member's role, term, log and applied index and state digest.
    Status,
    /// Membership changes.
    #[command(subcommand)]
    Members(admin::MembersCommand),
    /// Leadership.
    #[command(subcommand)]
    Leader(admin::LeaderCommand),
    /// Ask the node to build a snapshot now.
    Snapshot,
    /// Issuer operations: keys, certificates, settlement, revocation.
    #[command(subcommand)]
    Issuer(offline::IssuerCommand),
    /// TLS certificates for development and tests.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Payer device operations (offline).
    #[command(subcommand)]
    Wallet(offline::WalletCommand),
    /// Merchant terminal operations (offline).
    #[command(subcommand)]
    Merchant(offline::MerchantCommand),
    /// Submit payment files as a settlement gateway; prints each verdict.
    Submit(ledger::SubmitArgs),
    /// Look up a recorded payment.
    #[command(subcommand)]
    Payment(ledger::PaymentCommand),
    /// Check whether token nullifiers are spent.
    #[command(subcommand)]
    Nullifier(ledger::NullifierCommand),
    /// A certificate's state on the ledger.
    #[command(subcommand)]
    Certificate(ledger::CertificateCommand),
    /// The revocation list.
    #[command(subcommand)]
    Revocations(ledger::RevocationsCommand),
    /// Local 3-node cluster demo: a day of offline payments with double
    /// spends and cloned devices through several gateways, killing the leader
    /// part-way; ends with a summary and exits non-zero if a check fails.
    Demo(crate::demo::DemoArgs),
    /// Load generator: throughput and submit-to-verdict latency against a
    /// cluster (--endpoints with --issuer-key) or a local 3-node one, with the
    /// crypto limit measured in the same run.
    Bench(crate::bench::BenchArgs),
    /// The benchmark matrix in one command: batch sizes × gateway counts,
    /// double-spend shares, one node down and single-node mode, each on a
    /// fresh local cluster; writes sweep.csv, sweep.md and PNG charts.
    BenchSweep(crate::bench_sweep::SweepArgs),
    /// PNG charts from `bench --csv` files: latency vs batch size and
    /// throughput vs gateways (and memory over time from a `--json` report).
    BenchPlot(BenchPlotArgs),
}

/// `spentledger bench-plot` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchPlotArgs {
    /// A CSV written by `bench --csv` or `bench-sweep`.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// A `spentledger --json bench` report of a local cluster: its memory
    /// series becomes memory-over-time.png.
    #[arg(long)]
    pub memory_json: Option<PathBuf>,
    /// Directory for the PNG files.
    #[arg(long)]
    pub out: PathBuf,
}

/// A command's failure, printed as `spentledger: <message>`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error(transparent)]
    Cluster(#[from] crate::local_cluster::ClusterError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    #[error(transparent)]
    Sweep(#[from] crate::bench_sweep::SweepError),
    #[error(transparent)]
    Plot(#[from] crate::bench_plot::PlotError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("{}: {}", .0.code(), .0.message())]
    Call(#[from] tonic::Status),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// A development CA, a node certificate (role peer) and one client
    /// certificate per role (gateway, issuer, admin), keys 0600.
    Init {
        /// Directory to write the certificates into.
        #[arg(long)]
        dir: PathBuf,
        /// Extra host names or IP addresses the node certificate must name
        /// (localhost and 127.0.0.1 always are); wildcards like
        /// *.spentledger-peer.ledger.svc.cluster.local work.
        #[arg(long = "node-host")]
        node_hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Replace certificates already in the directory.
        #[arg(long)]
        force: bool,
    },
}

impl Cli {
    /// The role a command acts in, when it calls the cluster.
    fn role(&self) -> Option<ClientRole> {
        match &self.command {
            // `cluster` finds its certificates in its own directory.
            Commands::Cluster(_) => None,
            Commands::Status | Commands::Members(_) | Commands::Leader(_) | Commands::Snapshot => {
                Some(ClientRole::Admin)
            }
            Commands::Issuer(_) => Some(ClientRole::Issuer),
            Commands::Submit(_)
            | Commands::Payment(_)
            | Commands::Nullifier(_)
            | Commands::Certificate(_)
            | Commands::Revocations(_)
            | Commands::Bench(_) => Some(ClientRole::Gateway),
            Commands::Certs(_)
            | Commands::Wallet(_)
            | Commands::Merchant(_)
            | Commands::Demo(_)
            | Commands::BenchSweep(_)
            | Commands::BenchPlot(_) => None,
        }
    }

    /// The certificates directory: --certs-dir, else the one the
    /// --cluster-dir manifest records.
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.certs_dir.clone().or_else(|| {
            self.cluster_dir
                .as_ref()
                .and_then(|d| crate::local_cluster::Manifest::load(d).ok())
                .and_then(|m| m.certs_dir)
        })
    }

    /// The identity to present in `role`: explicit files, else the role's
    /// files in the certificates directory, else none (plaintext).
    pub fn tls(&self, role: ClientRole) -> Result<Option<ClientTls>, CliError> {
        if let (Some(ca), Some(cert), Some(key)) = (&self.ca_cert, &self.cert, &self.key) {
            return Ok(Some(ClientTls::load(ca, cert, key)?));
        }
        match self.certs_dir() {
            Some(dir) => Ok(Some(ClientTls::from_dir(&dir, role.name())?)),
            None => Ok(None),
        }
    }

    /// Every role's identity from the certificates directory, if one is given.
    pub fn identities(&self) -> Result<Option<RoleIdentities>, CliError> {
        Ok(self
            .certs_dir()
            .map(|d| RoleIdentities::from_dir(&d))
            .transpose()?)
    }

    /// The endpoints to use: `--endpoints`, else the `--cluster-dir` manifest.
    pub fn endpoints(&self) -> Result<Vec<String>, CliError> {
        if !self.endpoints.is_empty() {
            return Ok(self.endpoints.clone());
        }
        match &self.cluster_dir {
            Some(dir) => Ok(crate::local_cluster::Manifest::load_running(dir)?.endpoints()),
            None => Err(CliError::Usage(
                "no cluster given: pass --endpoints host:port,... (or SPENTLEDGER_ENDPOINTS), or --cluster-dir".into(),
            )),
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output { json: cli.json };
    if let Some(role) = cli.role() {
        connect::set_tls(cli.tls(role)?);
    }
    match &cli.command {
        Commands::Cluster(c) => cluster::run(c, cli.certs_dir.as_deref(), &out).await,
        Commands::Certs(CertsCommand::Init {
            dir,
            node_hosts,
            days,
            force,
        }) => {
            let summary = crate::tls::init_dev_pki(dir, node_hosts, *days, *force)?;
            out.fields(vec![
                ("directory", summary.dir.display().to_string().into()),
                ("files", summary.files.join(" ").into()),
                (
                    "node certificate names",
                    summary.node_hosts.join(", ").into(),
                ),
                ("valid for", format!("{} days", summary.valid_days).into()),
            ]);
            out.note(&format!(
                "nodes: --tls-cert {0}/node.pem --tls-key {0}/node.key --tls-ca {0}/ca.pem; clients: --certs-dir {0}",
                summary.dir.display()
            ));
            Ok(())
        }
        Commands::Status => admin::status(&cli.endpoints()?, &out).await,
        Commands::Members(c) => admin::members(c, &cli.endpoints()?, &out).await,
        Commands::Leader(c) => admin::leader(c, &cli.endpoints()?, &out).await,
        Commands::Snapshot => admin::snapshot(&cli.endpoints()?, &out).await,
        Commands::Issuer(c) => offline::issuer(c, &cli, &out).await,
        Commands::Wallet(c) => offline::wallet(c, &out),
        Commands::Merchant(c) => offline::merchant(c, &out),
        Commands::Submit(a) => ledger::submit(a, &cli.endpoints()?, &out).await,
        Commands::Payment(c) => ledger::payment(c, &cli.endpoints()?, &out).await,
        Commands::Nullifier(c) => ledger::nullifier(c, &cli.endpoints()?, &out).await,
        Commands::Certificate(c) => ledger::certificate(c, &cli.endpoints()?, &out).await,
        Commands::Revocations(c) => ledger::revocations(c, &cli.endpoints()?, &out).await,
        Commands::Bench(a) => {
            let endpoints = if cli.endpoints.is_empty() && cli.cluster_dir.is_none() {
                None
            } else {
                Some(cli.endpoints()?)
            };
            let report = crate::bench::run(a, endpoints, connect::tls().cloned(), cli.json).await?;
            if let Some(path) = &a.csv {
                use std::io::Write;
                let new = !path.exists();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                if new {
                    writeln!(f, "{}", crate::bench::BenchReport::CSV_HEADER)?;
                }
                writeln!(f, "{}", report.csv_row())?;
            }
            if cli.json {
                out.json(&report.to_json());
            } else {
                let mut rows: Vec<(&str, serde_json::Value)> = vec![
                    ("payments answered", report.payments.into()),
                    ("elapsed", format!("{:.2} s", report.elapsed_s).into()),
                    ("throughput", format!("{:.0} payments/s", report.throughput_per_s).into()),
                    ("latency p50 / p90", format!("{:.1} / {:.1} ms", report.p50_ms, report.p90_ms).into()),
                    ("latency p99 / p99.9 / max", format!("{:.1} / {:.1} / {:.1} ms", report.p99_ms, report.p999_ms, report.max_ms).into()),
                    ("failed batches", report.failed_batches.into()),
                    (
                        "crypto limit",
                        format!(
                            "{:.0} payments/s ({:.0} signatures/s on all cores in batches of {}, the highest of {} / {} checks per payment)",
                            report.crypto_limit_per_s,
                            report.signatures_per_s_all_cores,
                            report.signatures_per_batch,
                            report
                                .signatures_per_s_samples
                                .iter()
                                .map(|s| format!("{s:.0}"))
                                .collect::<Vec<_>>()
                                .join(" and "),
                            report.signature_checks_per_payment
                        )
                        .into(),
                    ),
                    ("throughput / crypto limit", format!("{:.1}%", 100.0 * report.ratio()).into()),
                    (
                        "every node applied",
                        match (report.all_applied_after_s, report.throughput_all_applied_per_s()) {
                            (Some(after), Some(rate)) => format!(
                                "{after:.2} s after the last answer ({rate:.0} payments/s counted until then)"
                            ),
                            _ => "not within the wait limit".to_owned(),
                        }
                        .into(),
                    ),
                ];
                if let (Some(cpu_s), Some(us)) =
                    (report.node_cpu_s, report.node_cpu_us_per_payment())
                {
                    rows.push((
                        "node CPU",
                        format!(
                            "{cpu_s:.1} s, all nodes, load start to every node applied ({us:.0} µs per payment)"
                        )
                        .into(),
                    ));
                }
                if let (Some(max), Some(growth)) = (report.rss_max_mib(), report.rss_growth_mib()) {
                    rows.push((
                        "node memory (largest node)",
                        format!(
                            "max {max:.0} MiB, {growth:+.0} MiB after the first {:.0} s",
                            crate::bench::BenchReport::MEMORY_WARM_UP_S
                        )
                        .into(),
                    ));
                }
                if let Some(bytes) = report.disk_bytes_per_nullifier {
                    rows.push((
                        "disk per live nullifier",
                        format!("{bytes:.0} bytes (largest node data directory, uncompacted)")
                            .into(),
                    ));
                }
                if let (Some(state), Some(index)) = (
                    report.compacted("state_bytes_per_nullifier"),
                    report.compacted("nullifier_index_bytes_per_nullifier"),
                ) {
                    rows.push((
                        "after compaction, per live nullifier",
                        format!("{state:.0} bytes of state database, {index:.0} of them the nullifier index")
                            .into(),
                    ));
                }
                for (k, v) in &report.verdicts {
                    rows.push((k.as_str(), (*v).into()));
                }
                out.fields(rows);
            }
            Ok(())
        }
        Commands::BenchSweep(a) => {
            let (reports, written) = crate::bench_sweep::run(a, cli.json).await?;
            if cli.json {
                out.json(&serde_json::json!({
                    "runs": reports.iter().map(crate::bench::BenchReport::to_json).collect::<Vec<_>>(),
                    "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                }));
            } else {
                println!("{}", crate::bench_sweep::table(&reports));
                for path in &written {
                    out.note(&format!("wrote {}", path.display()));
                }
            }
            Ok(())
        }
        Commands::BenchPlot(a) => {
            if a.csv.is_none() && a.memory_json.is_none() {
                return Err(CliError::Usage(
                    "bench-plot needs --csv, --memory-json or both".into(),
                ));
            }
            let mut written = Vec::new();
            if let Some(csv) = &a.csv {
                written.extend(crate::bench_plot::plot_csv(csv, &a.out)?);
            }
            if let Some(json) = &a.memory_json {
                let lines = crate::bench_plot::read_memory_json(json)?;
                std::fs::create_dir_all(&a.out)?;
                let path = a.out.join(crate::bench_plot::MEMORY_PNG);
                crate::bench_plot::memory_over_time(&lines, &path)?;
                written.push(path);
            }
            if cli.json {
                out.json(&serde_json::json!({
                    "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                }));
            } else {
                for path in &written {
                    out.note(&format!("wrote {}", path.display()));
                }
            }
            Ok(())
        }
        Commands::Demo(a) => {
            let endpoints = if cli.endpoints.is_empty() && cli.cluster_dir.is_none() {
                None
            } else {
                Some(cli.endpoints()?)
            };
            let summary =
                crate::demo::run(a.to_options(cli.json, endpoints, cli.identities()?)).await?;
            if cli.json {
                out.json(&summary.to_json());
            }
            Ok(())
        }
    }
}
