//! `spentledger bench-sweep`: the benchmark matrix of docs/BENCHMARKS.md in
//! one command. Each case is one `spentledger bench` run against its own
//! fresh local cluster; rows go to `sweep.csv` as they finish (a sweep cut
//! short keeps what it measured), then `sweep.md` and the PNG charts are
//! made from that CSV.

use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::{BenchArgs, BenchError, BenchReport, LoadMode, PaymentOrder};
use crate::bench_plot::PlotError;

/// Cases in one sweep at most (each starts a cluster and runs for seconds).
pub const SWEEP_CASES_MAX: usize = 64;
/// The CSV, table and chart names in `--out`.
pub const SWEEP_CSV: &str = "sweep.csv";
pub const SWEEP_TABLE: &str = "sweep.md";

/// `spentledger bench-sweep` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Directory for sweep.csv, sweep.md and the charts (created if missing;
    /// an existing sweep.csv there is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Batch sizes of the batch × gateways matrix.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10, 100, 1000])]
    pub batches: Vec<usize>,
    /// Gateway counts of the matrix.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    pub gateway_counts: Vec<usize>,
    /// Double-spend shares, run at the largest batch and gateway count (the
    /// matrix itself has none).
    #[arg(long, value_delimiter = ',', default_values_t = [0.01f64, 0.1])]
    pub double_spend_shares: Vec<f64>,
    /// Payments generated for each run (a run may end earlier, see --run-s).
    #[arg(long, default_value_t = 60_000)]
    pub payments: usize,
    /// Distinct payer devices per run.
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Each run stops submitting after this many seconds.
    #[arg(long, default_value_t = 20)]
    pub run_s: u64,
    /// Path of the spentledger-node binary.
    #[arg(long, env = "SPENTLEDGER_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Options(String),
    #[error("case {label}: {source}")]
    Run { label: String, source: BenchError },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepCase {
    pub label: String,
    pub batch: usize,
    pub gateways: usize,
    pub double_spend_share: f64,
    pub nodes: usize,
    pub stop_node: Option<usize>,
}

/// The matrix, then double spends, one node down and single-node mode at
/// the largest batch and gateway count (the heaviest load of the matrix).
pub fn cases(args: &SweepArgs) -> Result<Vec<SweepCase>, SweepError> {
    if args.batches.is_empty() || args.gateway_counts.is_empty() {
        return Err(SweepError::Options(
            "--batches and --gateway-counts need at least one value each".into(),
        ));
    }
    let batch = *args.batches.iter().max().expect("not empty, checked");
    let gateways = *args
        .gateway_counts
        .iter()
        .max()
        .expect("not empty, checked");
    let base = |label: String, batch, gateways| SweepCase {
        label,
        batch,
        gateways,
        double_spend_share: 0.0,
        nodes: 3,
        stop_node: None,
    };
    let mut out = Vec::new();
    for &b in &args.batches {
        for &g in &args.gateway_counts {
            out.push(base(format!("matrix-b{b}-g{g}"), b, g));
        }
    }
    for &share in &args.double_spend_shares {
        if !(share > 0.0 && share <= 0.5) {
            return Err(SweepError::Options(format!(
                "--double-spend-shares: {share} is not in (0, 0.5]"
            )));
        }
        out.push(SweepCase {
            double_spend_share: share,
            ..base(format!("double-spend-{}%", share * 100.0), batch, gateways)
        });
    }
    out.push(SweepCase {
        stop_node: Some(3),
        ..base("one-node-down".into(), batch, gateways)
    });
    out.push(SweepCase {
        nodes: 1,
        ..base("single-node".into(), batch, gateways)
    });
    if out.len() > SWEEP_CASES_MAX {
        return Err(SweepError::Options(format!(
            "{} cases; at most {SWEEP_CASES_MAX}",
            out.len()
        )));
    }
    Ok(out)
}

fn bench_args(args: &SweepArgs, case: &SweepCase) -> BenchArgs {
    BenchArgs {
        mode: LoadMode::Closed,
        rate: 1,
        gateways: case.gateways,
        batch: case.batch,
        inputs: 2,
        devices: args.devices,
        payments: args.payments,
        duration_s: Some(args.run_s),
        double_spend_share: case.double_spend_share,
        order: PaymentOrder::Devices,
        issuer_key: None,
        stop_node: case.stop_node,
        nodes: case.nodes,
        label: case.label.clone(),
        csv: None,
        node_bin: args.node_bin.clone(),
    }
}

/// The markdown table of a sweep's reports.
pub fn table(reports: &[BenchReport]) -> String {
    let mut t = String::from(
        "| case | nodes (running) | batch | gateways | double-spend share | payments/s | crypto limit | ratio | p50 ms | p99 ms | every node applied after | payments/s until then | DOUBLE_SPEND | failed batches |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in reports {
        t.push_str(&format!(
            "| {} | {} ({}) | {} | {} | {}% | {:.0} | {:.0} | {:.1}% | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            r.label,
            r.nodes,
            r.nodes_running,
            r.batch,
            r.gateways,
            r.double_spend_share * 100.0,
            r.throughput_per_s,
            r.crypto_limit_per_s,
            r.ratio() * 100.0,
            r.p50_ms,
            r.p99_ms,
            r.all_applied_after_s
                .map_or("-".to_owned(), |s| format!("{s:.2} s")),
            r.throughput_all_applied_per_s()
                .map_or("-".to_owned(), |x| format!("{x:.0}")),
            r.verdicts.get("DOUBLE_SPEND").copied().unwrap_or(0),
            r.failed_batches,
        ));
    }
    t
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs every case in order; returns the reports and the files written.
pub async fn run(
    args: &SweepArgs,
    quiet: bool,
) -> Result<(Vec<BenchReport>, Vec<PathBuf>), SweepError> {
    let cases = cases(args)?;
    std::fs::create_dir_all(&args.out).map_err(io_err(&args.out))?;
    let csv_path = args.out.join(SWEEP_CSV);
    let mut csv = std::fs::File::create(&csv_path).map_err(io_err(&csv_path))?;
    writeln!(csv, "{}", BenchReport::CSV_HEADER).map_err(io_err(&csv_path))?;
    let progress = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cases.len() as u64)
    };
    progress.set_style(
        ProgressStyle::with_template("    {bar:30} {pos}/{len} runs [{elapsed}] {msg}")
            .expect("the template is valid"),
    );
    let mut reports = Vec::with_capacity(cases.len());
    for case in &cases {
        progress.set_message(case.label.clone());
        let report = crate::bench::run(&bench_args(args, case), None, None, true)
            .await
            .map_err(|source| SweepError::Run {
                label: case.label.clone(),
                source,
            })?;
        writeln!(csv, "{}", report.csv_row()).map_err(io_err(&csv_path))?;
        csv.flush().map_err(io_err(&csv_path))?;
        progress.println(format!(
            "{:<20} {:>8.0} payments/s ({:.1}% of the crypto limit)  p50 {:>8.1} ms  p99 {:>8.1} ms",
            report.label,
            report.throughput_per_s,
            report.ratio() * 100.0,
            report.p50_ms,
            report.p99_ms
        ));
        progress.inc(1);
        reports.push(report);
    }
    progress.finish_and_clear();
    let table_path = args.out.join(SWEEP_TABLE);
    std::fs::write(&table_path, table(&reports)).map_err(io_err(&table_path))?;
    let mut written = vec![csv_path.clone(), table_path];
    written.extend(crate::bench_plot::plot_csv(&csv_path, &args.out)?);
    Ok((reports, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sweep: SweepArgs,
    }

    fn parse(args: &[&str]) -> SweepArgs {
        Cli::try_parse_from(std::iter::once("sweep").chain(args.iter().copied()))
            .expect("valid arguments")
            .sweep
    }

    #[test]
    fn the_default_sweep_is_the_documented_matrix_plus_four_cases() {
        let cases = cases(&parse(&["--out", "x"])).expect("cases");
        let labels: Vec<&str> = cases.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(cases.len(), 4 * 3 + 2 + 2, "{labels:?}");
        assert_eq!(labels[0], "matrix-b1-g1");
        assert_eq!(labels[11], "matrix-b1000-g16");
        assert_eq!(
            &labels[12..],
            [
                "double-spend-1%",
                "double-spend-10%",
                "one-node-down",
                "single-node"
            ]
        );
        let down = &cases[14];
        assert_eq!(
            (down.batch, down.gateways, down.stop_node, down.nodes),
            (1000, 16, Some(3), 3)
        );
        let single = &cases[15];
        assert_eq!((single.nodes, single.stop_node), (1, None));
        assert!(cases.iter().all(|c| crate::bench::label_is_valid(&c.label)));
    }

    #[test]
    fn bad_sweeps_are_refused_before_anything_runs() {
        let no_batches = SweepArgs {
            batches: vec![],
            ..parse(&["--out", "x"])
        };
        assert!(matches!(cases(&no_batches), Err(SweepError::Options(_))));
        let bad_share = parse(&["--out", "x", "--double-spend-shares", "0.7"]);
        assert!(matches!(cases(&bad_share), Err(SweepError::Options(_))));
        let huge = parse(&[
            "--out",
            "x",
            "--batches",
            &(1..=30)
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(","),
            "--gateway-counts",
            "1,2,3",
        ]);
        assert!(matches!(cases(&huge), Err(SweepError::Options(_))));
    }
}
