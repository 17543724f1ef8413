//! `spentledger-check HISTORY.jsonl`: judges a recorded fault run. Prints
//! what the run did and every violation with the seed and the history
//! lines involved; exit 0 when the history satisfies every rule, 1 on a
//! violation, 2 when the file cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spentledger_chaos::checker::{LIVENESS_BOUND_MS_DEFAULT, check, excerpt};
use spentledger_chaos::history::History;

/// Check a recorded spentledger fault-test history (JSON Lines).
#[derive(Debug, Parser)]
#[command(name = "spentledger-check", version, about)]
struct Args {
    /// The history file.
    history: PathBuf,
    /// How long after the last heal a write must succeed, in ms.
    #[arg(long, default_value_t = LIVENESS_BOUND_MS_DEFAULT)]
    liveness_bound_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.history) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("spentledger-check: {}: {e}", args.history.display());
            return ExitCode::from(2);
        }
    };
    let history = match History::parse(&text) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("spentledger-check: {}: {e}", args.history.display());
            return ExitCode::from(2);
        }
    };
    let report = check(&history, args.liveness_bound_ms);
    let s = &report.stats;
    println!(
        "{}: {} requests ({} without an answer), {} payments, {} faults, {} final node states",
        args.history.display(),
        s.requests,
        s.failed_requests,
        s.payments,
        s.faults,
        s.nodes
    );
    for (verdict, n) in &s.verdicts {
        println!("  {verdict}: {n}");
    }
    if report.violations.is_empty() {
        println!("no violations");
        return ExitCode::SUCCESS;
    }
    let seed = report
        .seed
        .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
    println!("{} violations (seed {seed}):", report.violations.len());
    for v in &report.violations {
        println!("- {v}");
        for (line, text) in excerpt(&text, v) {
            println!("    {line}: {text}");
        }
    }
    ExitCode::from(1)
}
