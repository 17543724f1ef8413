//! `spentledger bench-sweep` and `bench-plot`: every case of a (small) sweep
//! runs on its own cluster and lands in the CSV, the table and the charts.

use std::process::Command;

use super::{CLI, must_node_binary};

fn must_be_png(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 5_000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a drawn PNG ({} bytes)",
        path.display(),
        bytes.len()
    );
}

#[test]
fn a_sweep_runs_every_case_and_draws_its_charts_from_the_csv() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("sweep");
    eprintln!("--- a 2 × 2 matrix, one double-spend share, one node down, single node");
    let out = Command::new(CLI)
        .args([
            "--json",
            "bench-sweep",
            "--batches",
            "10,50",
            "--gateway-counts",
            "1,2",
        ])
        .args([
            "--double-spend-shares",
            "0.1",
            "--payments",
            "200",
            "--devices",
            "20",
        ])
        .args(["--run-s", "30", "--out"])
        .arg(&out_dir)
        .env("SPENTLEDGER_NODE_BIN", must_node_binary())
        .output()
        .expect("run bench-sweep");
    assert!(
        out.status.success(),
        "bench-sweep: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let runs = report["runs"].as_array().expect("runs");
    let labels: Vec<&str> = runs
        .iter()
        .map(|r| r["label"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        labels,
        [
            "matrix-b10-g1",
            "matrix-b10-g2",
            "matrix-b50-g1",
            "matrix-b50-g2",
            "double-spend-10%",
            "one-node-down",
            "single-node"
        ]
    );
    for run in runs {
        assert_eq!(run["payments"], 200, "every payment answered: {run}");
        assert_eq!(run["failed_batches"], 0, "{run}");
    }
    // Every 10th payment from the 10th re-spends its predecessor's tokens.
    assert_eq!(runs[4]["verdicts"]["DOUBLE_SPEND"], 19, "{}", runs[4]);
    assert_eq!(
        (&runs[4]["batch"], &runs[4]["gateways"]),
        (&50.into(), &2.into())
    );
    assert_eq!(
        (&runs[5]["nodes"], &runs[5]["nodes_running"]),
        (&3.into(), &2.into())
    );
    assert_eq!(
        runs[5]["signature_checks_per_payment"], 3,
        "ingress + 2 replicas"
    );
    assert_eq!(
        (&runs[6]["nodes"], &runs[6]["nodes_running"]),
        (&1.into(), &1.into())
    );
    assert_eq!(runs[6]["verdicts"]["ACCEPTED"], 200, "{}", runs[6]);
    assert_eq!(
        runs[6]["signature_checks_per_payment"], 2,
        "ingress + 1 replica"
    );

    eprintln!("--- the CSV, the table and the charts");
    let csv = std::fs::read_to_string(out_dir.join("sweep.csv")).expect("sweep.csv");
    assert_eq!(csv.lines().count(), 1 + runs.len(), "{csv}");
    let table = std::fs::read_to_string(out_dir.join("sweep.md")).expect("sweep.md");
    assert!(
        table.contains("| single-node | 1 (1) | 50 | 2 |"),
        "{table}"
    );
    must_be_png(&out_dir.join("latency-vs-batch.png"));
    must_be_png(&out_dir.join("throughput-vs-gateways.png"));

    eprintln!("--- bench-plot redraws from the CSV and plots a run's memory");
    let run_json = dir.path().join("run.json");
    std::fs::write(&run_json, runs[0].to_string()).expect("write a run report");
    let plots = dir.path().join("plots");
    let out = Command::new(CLI)
        .args(["bench-plot", "--csv"])
        .arg(out_dir.join("sweep.csv"))
        .arg("--memory-json")
        .arg(&run_json)
        .arg("--out")
        .arg(&plots)
        .output()
        .expect("run bench-plot");
    assert!(
        out.status.success(),
        "bench-plot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "latency-vs-batch.png",
        "throughput-vs-gateways.png",
        "memory-over-time.png",
    ] {
        must_be_png(&plots.join(name));
    }

    eprintln!("--- bench-plot refuses a file that is not a bench CSV");
    let out = Command::new(CLI)
        .args(["bench-plot", "--out"])
        .arg(&plots)
        .arg("--csv")
        .arg(&run_json)
        .output()
        .expect("run bench-plot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("header differs"),
        "{stderr}"
    );
}
