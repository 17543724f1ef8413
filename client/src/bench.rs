//! `spentledger bench`: a load generator for settlement throughput and
//! submit-to-verdict latency, with the machine's crypto limit measured in
//! the same run.
//!
//! Payments are generated (and signed) before timing starts. Closed-loop
//! mode keeps every gateway busy; fixed-rate mode releases batches on a
//! schedule and measures latency from each batch's scheduled start, so a
//! stalled cluster shows up as latency rather than as a slower schedule
//! (no coordinated omission).

use crate::bench_resources::{MemorySampler, MemorySeries, dir_bytes, total_cpu_seconds};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, Verdict, pb};

use crate::encoded_batch::EncodedBatch;
use crate::gateway::{Gateway, GatewayConfig, GatewayError};
use crate::tls::ClientTls;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadMode {
    /// Every gateway submits its next batch as soon as the last is answered.
    Closed,
    /// Batches start on a fixed schedule (`--rate` payments/s).
    Rate,
}

/// The order payments are submitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PaymentOrder {
    /// All of one device's payments, then the next device's: new
    /// certificates keep arriving for the whole run.
    Devices,
    /// Round by round: every device's k-th payment before any device's
    /// (k+1)-th, as when many devices pay at once. Every certificate is met
    /// in the first round, so the nodes' certificate caches fill then (and
    /// that round checks one issuer signature per payment on every node).
    Rounds,
}

/// `spentledger bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = LoadMode::Closed)]
    pub mode: LoadMode,
    /// Target payments per second (rate mode).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Concurrent gateways (closed mode) or batches in flight at most (rate mode).
    #[arg(long, default_value_t = 16)]
    pub gateways: usize,
    /// Payments per batch.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Token inputs per payment.
    #[arg(long, default_value_t = 2)]
    pub inputs: usize,
    /// Distinct payer devices.
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Payments in the run (generated before timing starts).
    #[arg(long, default_value_t = 100_000)]
    pub payments: usize,
    /// Stop after this many seconds even if payments remain.
    #[arg(long)]
    pub duration_s: Option<u64>,
    /// Share of payments that re-spend another payment's tokens (0..=0.5).
    #[arg(long, default_value_t = 0.0)]
    pub double_spend_share: f64,
    /// Order of the payments: by device, or round by round across devices.
    #[arg(long, value_enum, default_value_t = PaymentOrder::Devices)]
    pub order: PaymentOrder,
    /// Issuer secret key whose public key the cluster trusts (with
    /// --endpoints); without --endpoints a local 3-node cluster is started.
    #[arg(long)]
    pub issuer_key: Option<PathBuf>,
    /// Stop this node of the local cluster before the run (1-based).
    #[arg(long)]
    pub stop_node: Option<usize>,
    /// Nodes of the local cluster (1 is single-node mode: no replication).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// A name for this run in the CSV and JSON (letters, digits, `-`, `_`, `.`, `%`).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Append the results as a CSV row to this file (header when new).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Path of the spentledger-node binary for the local cluster.
    #[arg(long, env = "SPENTLEDGER_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Cluster(#[from] crate::local_cluster::ClusterError),
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub label: String,
    pub mode: LoadMode,
    /// Cluster members, and how many of them ran (validated) during the load.
    pub nodes: usize,
    pub nodes_running: usize,
    pub devices: usize,
    pub double_spend_share: f64,
    pub order: PaymentOrder,
    pub gateways: usize,
    pub batch: usize,
    pub inputs: usize,
    pub payments: usize,
    pub elapsed_s: f64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub verdicts: BTreeMap<String, usize>,
    pub failed_batches: usize,
    /// The machine's rate: the highest of [`BenchReport::signatures_per_s_samples`].
    pub signatures_per_s_all_cores: f64,
    /// Each measurement of the rate: before the load, and after it once
    /// every node applied (see [`machine_signatures_per_s`]).
    pub signatures_per_s_samples: Vec<f64>,
    /// Signatures per `verify_batch` call when the rate above was measured.
    pub signatures_per_batch: usize,
    pub signature_checks_per_payment: usize,
    pub crypto_limit_per_s: f64,
    /// Local cluster only: each running node's resident set over the load.
    pub memory: Vec<MemorySeries>,
    /// Local cluster only: the largest node data directory after the run
    /// (uncompacted: Raft log, state store, WAL) per live nullifier
    /// (accepted payments × inputs).
    pub disk_bytes_per_nullifier: Option<f64>,
    /// Local cluster only: `spentledger-node storage-report --compact` of
    /// that node after the run (per column family, per live nullifier).
    pub storage_compacted: Option<serde_json::Value>,
    /// Seconds after the last answer until every running node had applied
    /// every entry committed during the load (`None`: not within the limit).
    /// Raft answers once a majority stored an entry, so a follower can trail.
    pub all_applied_after_s: Option<f64>,
    /// Local cluster only: CPU seconds all running nodes used from the
    /// start of the load until every node had applied it (signature checks
    /// on every node, storage, replication, gRPC).
    pub node_cpu_s: Option<f64>,
}

impl BenchReport {
    /// Seconds after the load starts before growth is counted (caches fill).
    pub const MEMORY_WARM_UP_S: f64 = 5.0;

    /// The largest resident set of any node, MiB.
    pub fn rss_max_mib(&self) -> Option<f64> {
        self.memory
            .iter()
            .map(MemorySeries::max_mib)
            .reduce(f64::max)
    }

    /// The largest growth of any node after the warm-up, MiB.
    pub fn rss_growth_mib(&self) -> Option<f64> {
        self.memory
            .iter()
            .map(|m| m.growth_mib(Self::MEMORY_WARM_UP_S))
            .reduce(f64::max)
    }

    /// A per-nullifier figure of the compacted storage report.
    pub fn compacted(&self, key: &str) -> Option<f64> {
        self.storage_compacted.as_ref()?.get(key)?.as_f64()
    }

    /// Throughput counted until every running node had applied (validated
    /// and recorded) every payment: the rate the whole cluster sustains.
    pub fn throughput_all_applied_per_s(&self) -> Option<f64> {
        let after = self.all_applied_after_s?;
        Some(self.payments as f64 / (self.elapsed_s + after).max(1e-9))
    }

    /// Node CPU time per answered payment, in microseconds, all nodes
    /// together: what one payment costs the cluster.
    pub fn node_cpu_us_per_payment(&self) -> Option<f64> {
        let cpu_s = self.node_cpu_s?;
        (self.payments > 0).then(|| cpu_s * 1e6 / self.payments as f64)
    }

    pub fn ratio(&self) -> f64 {
        if self.crypto_limit_per_s > 0.0 {
            self.throughput_per_s / self.crypto_limit_per_s
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "label": self.label,
            "nodes": self.nodes, "nodes_running": self.nodes_running,
            "devices": self.devices, "double_spend_share": self.double_spend_share,
            "order": format!("{:?}", self.order).to_lowercase(),
            "mode": format!("{:?}", self.mode).to_lowercase(),
            "gateways": self.gateways, "batch": self.batch, "inputs": self.inputs,
            "payments": self.payments, "elapsed_s": self.elapsed_s,
            "throughput_per_s": self.throughput_per_s,
            "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms, "max_ms": self.max_ms,
            "verdicts": self.verdicts, "failed_batches": self.failed_batches,
            "signatures_per_s_all_cores": self.signatures_per_s_all_cores,
            "signatures_per_s_samples": self.signatures_per_s_samples,
            "signatures_per_batch": self.signatures_per_batch,
            "signature_checks_per_payment": self.signature_checks_per_payment,
            "crypto_limit_per_s": self.crypto_limit_per_s,
            "ratio_to_crypto_limit": self.ratio(),
            "node_rss_max_mib": self.rss_max_mib(),
            "node_rss_growth_mib": self.rss_growth_mib(),
            "node_rss_series_mib": self.memory.iter().map(|m| serde_json::json!({
                "node": m.node + 1,
                "samples": m.samples.iter().map(|(t, mib)| [*t, *mib]).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "disk_bytes_per_nullifier": self.disk_bytes_per_nullifier,
            "storage_compacted": self.storage_compacted,
            "all_applied_after_s": self.all_applied_after_s,
            "throughput_all_applied_per_s": self.throughput_all_applied_per_s(),
            "node_cpu_s": self.node_cpu_s,
            "node_cpu_us_per_payment": self.node_cpu_us_per_payment(),
        })
    }

    /// The CSV columns; `bench-plot` reads files with this header.
    pub const CSV_HEADER: &'static str = "label,mode,nodes,nodes_running,devices,double_spend_share,gateways,batch,inputs,payments,elapsed_s,throughput_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,accepted,duplicate,double_spend,rejected,failed_batches,crypto_limit_per_s,ratio,node_rss_max_mib,node_rss_growth_mib,disk_bytes_per_nullifier,compacted_state_bytes_per_nullifier,compacted_index_bytes_per_nullifier";

    pub fn csv_row(&self) -> String {
        let v = |k: &str| self.verdicts.get(k).copied().unwrap_or(0);
        let opt = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.1}"));
        format!(
            "{},{:?},{},{},{},{:.3},{},{},{},{},{:.3},{:.1},{:.2},{:.2},{:.2},{:.2},{:.2},{},{},{},{},{},{:.1},{:.4},{},{},{},{},{}",
            self.label,
            self.mode,
            self.nodes,
            self.nodes_running,
            self.devices,
            self.double_spend_share,
            self.gateways,
            self.batch,
            self.inputs,
            self.payments,
            self.elapsed_s,
            self.throughput_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            v("ACCEPTED"),
            v("DUPLICATE"),
            v("DOUBLE_SPEND"),
            v("REJECTED"),
            self.failed_batches,
            self.crypto_limit_per_s,
            self.ratio(),
            opt(self.rss_max_mib()),
            opt(self.rss_growth_mib()),
            opt(self.disk_bytes_per_nullifier),
            opt(self.compacted("state_bytes_per_nullifier")),
            opt(self.compacted("nullifier_index_bytes_per_nullifier")),
        )
    }
}

/// Largest local cluster `bench` starts.
pub const LOCAL_NODES_MAX: usize = 7;

/// Labels go into CSV cells and file names unquoted.
pub fn label_is_valid(label: &str) -> bool {
    label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '%'))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("bench ids are short ASCII")
}

fn seed_for(label: &str, n: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("spentledger bench seed");
    h.update(label.as_bytes());
    h.update(&n.to_le_bytes());
    *h.finalize().as_bytes()
}

/// How long each measurement of the crypto limit runs.
const CRYPTO_LIMIT_MEASURE: Duration = Duration::from_secs(2);

/// The batch size the crypto limit is measured in: see
/// [`measure_signatures_per_s`].
pub const CRYPTO_LIMIT_BATCH_SIGNATURES: usize =
    spentledger_protocol::limits::DETERMINISTIC_CHUNK_SIGNATURES;

/// ed25519 batch verifications per second on all cores, measured for about
/// `measure` in batches of the protocol's deterministic chunk: the size every
/// node's apply, and the leader's precheck, verify in (ingress chunks of a
/// 1,000-payment batch come close to it too). Batches of 64, used until the
/// thirteenth round, verify about 14% fewer signatures per second, which
/// understated the limit and overstated every ratio to it
/// (docs/BENCHMARKS.md).
pub fn measure_signatures_per_s(measure: Duration) -> f64 {
    let keys: Vec<SigningKey> = (0..CRYPTO_LIMIT_BATCH_SIGNATURES)
        .map(|i| SigningKey::from_bytes(&seed_for("sig-key", i as u64)))
        .collect();
    let messages: Vec<Vec<u8>> = (0..CRYPTO_LIMIT_BATCH_SIGNATURES)
        .map(|i| seed_for("sig-msg", i as u64).to_vec())
        .collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let public: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = 0;
                    while started.elapsed() < measure {
                        if ed25519_dalek::verify_batch(&refs, &signatures, &public).is_ok() {
                            done += CRYPTO_LIMIT_BATCH_SIGNATURES;
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a verification thread does not panic"))
            .sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// The machine's signature rate from several measurements of it: the
/// highest. The cores are shared with whatever else runs (the idle nodes,
/// a compaction, the host's other tenants), which only ever slows a 2 s
/// sample down; one sample read 22,700 to 30,500 signatures per second per
/// payment check within an hour on the benchmark machine
/// (docs/BENCHMARKS.md, seventeenth round). The highest is the best
/// estimate of what the machine can do, and the strictest limit to report
/// a ratio against.
pub fn machine_signatures_per_s(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(0.0, f64::max)
}

/// Signs `count` payments of `inputs` tokens each from `devices` devices;
/// `double_spend_share` of them re-spend an earlier payment's tokens.
pub fn generate(
    issuer: &Issuer,
    devices: usize,
    count: usize,
    inputs: usize,
    double_spend_share: f64,
    order: PaymentOrder,
    progress: &ProgressBar,
) -> Result<Vec<Payment>, BenchError> {
    let per_device = count.div_ceil(devices.max(1));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let device_ids: Vec<usize> = (0..devices).collect();
    let chunk = devices.div_ceil(threads).max(1);
    let issued_at = now_ms() - 3_600_000;
    let made: Vec<Result<Vec<Payment>, BenchError>> = std::thread::scope(|s| {
        let workers: Vec<_> = device_ids
            .chunks(chunk)
            .map(|ids| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for &d in ids {
                        let seed = seed_for("device", d as u64);
                        // One token of value 1 per input of each payment,
                        // plus spare: denominations split the limit.
                        let funding =
                            Funding::eur(id(&format!("bench-{d:07}")), 50_000, issued_at);
                        let wallet = issuer
                            .fund_device(&IssuancePolicy::default(), seed, &funding)
                            .map_err(|e| BenchError::Setup(e.to_string()))?;
                        let tokens = wallet.tokens().len();
                        for k in 0..per_device {
                            let first = k * inputs;
                            if first + inputs > tokens {
                                return Err(BenchError::Options(format!(
                                    "{per_device} payments of {inputs} inputs need more tokens than a device has ({tokens}); add --devices"
                                )));
                            }
                            let indices: Vec<u32> =
                                (first..first + inputs).map(|i| i as u32).collect();
                            let payment = wallet
                                .sign_payment(
                                    &indices,
                                    k as u64,
                                    &id(&format!("merchant-{:03}", (d + k) % 100)),
                                    seed_for("challenge", (d * 1_000 + k) as u64),
                                    now_ms(),
                                )
                                .map_err(|e| BenchError::Setup(e.to_string()))?;
                            out.push(payment);
                            progress.inc(1);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a generator thread does not panic"))
            .collect()
    });
    let mut payments = Vec::with_capacity(count);
    for part in made {
        payments.extend(part?);
    }
    if order == PaymentOrder::Rounds {
        // Stable: within a round, devices stay in order.
        payments.sort_by_key(|p| p.counter);
    }
    payments.truncate(count);
    // Replace a share with re-spends of an earlier payment's tokens (another
    // counter and merchant): the ledger must answer DOUBLE_SPEND.
    let every = if double_spend_share > 0.0 {
        (1.0 / double_spend_share).round().max(2.0) as usize
    } else {
        0
    };
    if every > 0 {
        for i in (every..payments.len()).step_by(every) {
            let original = payments[i - 1].clone();
            let mut twin = original.clone();
            twin.counter += 1_000_000;
            twin.payee_id = id("merchant-twin");
            // Unsigned for the new fields, so re-sign as the device would.
            let d = original.certificate.wallet_id.as_str()["bench-".len()..]
                .parse::<u64>()
                .unwrap_or(0);
            let key = SigningKey::from_bytes(&seed_for("device", d));
            twin.device_signature = key.sign(&twin.signing_message()).to_bytes();
            payments[i] = twin;
        }
    }
    Ok(payments)
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accepted => "ACCEPTED",
        Verdict::Duplicate => "DUPLICATE",
        Verdict::DoubleSpend => "DOUBLE_SPEND",
        Verdict::Rejected(_) => "REJECTED",
    }
}

struct Shared {
    histogram: Mutex<Histogram<u64>>,
    verdicts: Mutex<BTreeMap<String, usize>>,
    failed: AtomicUsize,
    answered: AtomicUsize,
}

impl Shared {
    fn record(&self, latency: Duration, result: Result<pb::SubmitBatchResponse, GatewayError>) {
        match result {
            Ok(response) => {
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let mut h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.record_n(micros, response.results.len() as u64);
                drop(h);
                let mut v = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
                for r in &response.results {
                    let name = Verdict::from_wire(r.verdict, r.reject_reason)
                        .map(|v| verdict_name(&v))
                        .unwrap_or("REJECTED");
                    *v.entry(name.to_owned()).or_default() += 1;
                }
                self.answered
                    .fetch_add(response.results.len(), Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "batch failed");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Submits the pre-built `batches` to `endpoints` and measures.
async fn drive(
    args: &BenchArgs,
    endpoints: &[String],
    tls: Option<&ClientTls>,
    batches: Vec<EncodedBatch>,
    progress: &ProgressBar,
) -> Result<(f64, Shared), BenchError> {
    let shared = Arc::new(Shared {
        histogram: Mutex::new(
            Histogram::new_with_bounds(1, 600_000_000, 3)
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        ),
        verdicts: Mutex::new(BTreeMap::new()),
        failed: AtomicUsize::new(0),
        answered: AtomicUsize::new(0),
    });
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = args
        .duration_s
        .map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let mut tasks = Vec::new();
    match args.mode {
        LoadMode::Closed => {
            for g in 0..args.gateways {
                let mut order = endpoints.to_vec();
                let n = order.len();
                order.rotate_left(g % n);
                let mut config = GatewayConfig::new(order);
                config.batch_payments_max = args.batch.max(1);
                config.tls = tls.cloned();
                let gateway = Gateway::new(config)?;
                let (batches, next, shared, progress) = (
                    batches.clone(),
                    next.clone(),
                    shared.clone(),
                    progress.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(i) else { return };
                        let t = Instant::now();
                        let result = gateway.submit_encoded(batch).await;
                        shared.record(t.elapsed(), result);
                        progress.inc(batch.payments() as u64);
                    }
                }));
            }
        }
        LoadMode::Rate => {
            let per_batch = Duration::from_secs_f64(args.batch as f64 / args.rate.max(1) as f64);
            let in_flight = Arc::new(tokio::sync::Semaphore::new(args.gateways.max(1)));
            let mut config = GatewayConfig::new(endpoints.to_vec());
            config.batch_payments_max = args.batch.max(1);
            config.tls = tls.cloned();
            let gateway = Arc::new(Gateway::new(config)?);
            for (i, batch) in batches.iter().enumerate() {
                let scheduled = started + per_batch.mul_f64(i as f64);
                if deadline.is_some_and(|d| scheduled >= d) {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let permit = in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let (gateway, shared, progress, batch) = (
                    gateway.clone(),
                    shared.clone(),
                    progress.clone(),
                    batch.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let result = gateway.submit_encoded(&batch).await;
                    // From the scheduled start: waiting for a slot counts.
                    shared.record(scheduled.elapsed(), result);
                    progress.inc(batch.payments() as u64);
                    drop(permit);
                }));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let shared = Arc::try_unwrap(shared)
        .map_err(|_| BenchError::Setup("a submit task outlived the run".into()))?;
    Ok((elapsed, shared))
}

/// The whole run: cluster (given or local), generation, crypto limit,
/// load, report.
/// `tls`: the gateway identity for a running TLS cluster (a local cluster
/// is plaintext, so the figures measure the ledger, not the cipher).
pub async fn run(
    args: &BenchArgs,
    endpoints: Option<Vec<String>>,
    tls: Option<ClientTls>,
    quiet: bool,
) -> Result<BenchReport, BenchError> {
    if args.batch == 0 || args.batch > 10_000 || args.gateways == 0 || args.gateways > 1_024 {
        return Err(BenchError::Options(
            "batch 1..=10000, gateways 1..=1024".into(),
        ));
    }
    if args.inputs == 0 || args.inputs > spentledger_protocol::limits::INPUTS_PER_PAYMENT_MAX {
        return Err(BenchError::Options("inputs 1..=64".into()));
    }
    if args.devices == 0 || args.payments == 0 || !(0.0..=0.5).contains(&args.double_spend_share) {
        return Err(BenchError::Options(
            "devices and payments at least 1, double-spend-share 0..=0.5".into(),
        ));
    }
    if !(1..=LOCAL_NODES_MAX).contains(&args.nodes) {
        return Err(BenchError::Options(format!(
            "--nodes 1..={LOCAL_NODES_MAX}"
        )));
    }
    if !label_is_valid(&args.label) {
        return Err(BenchError::Options(format!(
            "--label {:?}: at most 64 of letters, digits, '-', '_', '.', '%'",
            args.label
        )));
    }
    let say = |t: &str| {
        if !quiet {
            eprintln!("{t}");
        }
    };
    let mut local = None;
    let mut node_bin = None;
    let _temp;
    let (issuer, endpoints) = match endpoints {
        Some(e) => {
            let key = args.issuer_key.as_ref().ok_or_else(|| {
                BenchError::Options("--issuer-key is required with --endpoints".into())
            })?;
            (crate::files::IssuerKeyFile::load(key)?, e)
        }
        None => {
            let issuer = Issuer::from_seed(id("bank-bench"), seed_for("issuer", 0), 0, u64::MAX);
            let entry = crate::files::PublicKeyEntry::from_key(&issuer.issuer_key());
            let genesis = serde_json::to_string(&[entry]).expect("keys serialize");
            _temp = tempfile::Builder::new()
                .prefix("spentledger-bench-")
                .tempdir()?;
            say(&format!(
                "--- local {}-node cluster in {}",
                args.nodes,
                _temp.path().display()
            ));
            let bin = crate::local_cluster::find_node_binary(args.node_bin.clone())?;
            node_bin = Some(bin.clone());
            let mut cluster =
                crate::local_cluster::LocalCluster::start(bin, _temp.path(), args.nodes, &genesis)?;
            for i in 0..args.nodes {
                cluster.wait_ready(i, Duration::from_secs(60)).await?;
            }
            let e = cluster.addrs.iter().map(|a| a.to_string()).collect();
            local = Some(cluster);
            (issuer, e)
        }
    };
    let bar = |len: usize, what: &str| {
        let p = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len as u64)
        };
        p.set_style(
            ProgressStyle::with_template(&format!(
                "    {{bar:40}} {{pos}}/{{len}} {what} [{{elapsed}}]"
            ))
            .expect("the template is valid"),
        );
        p
    };

    say(&format!(
        "--- generating {} payments ({} inputs, {} devices)",
        args.payments, args.inputs, args.devices
    ));
    let progress = bar(args.payments, "signed");
    let payments = generate(
        &issuer,
        args.devices,
        args.payments,
        args.inputs,
        args.double_spend_share,
        args.order,
        &progress,
    )?;
    progress.finish_and_clear();
    let mut config = GatewayConfig::new(endpoints.clone());
    config.tls = tls.clone();
    Gateway::new(config)?
        .wait_for_issuer_key(&issuer, Duration::from_secs(30))
        .await?;
    if let (Some(cluster), Some(n)) = (local.as_mut(), args.stop_node) {
        if n == 0 || n > cluster.size() {
            return Err(BenchError::Options(format!(
                "--stop-node 1..={}",
                cluster.size()
            )));
        }
        say(&format!("--- stopping node {n}"));
        cluster.kill(n - 1)?;
    }

    say(&format!(
        "--- measuring the crypto limit (ed25519 batches of {CRYPTO_LIMIT_BATCH_SIGNATURES}, all cores, {} s; again after the load)",
        CRYPTO_LIMIT_MEASURE.as_secs()
    ));
    let mut signatures_per_s_samples = vec![measure_signatures_per_s(CRYPTO_LIMIT_MEASURE)];
    // Replicas that validate: a node stopped for the run checks nothing.
    let nodes_running = endpoints.len() - usize::from(args.stop_node.is_some());
    let replicas = nodes_running;
    let checks = 1 + replicas;

    // Encoded before timing starts, like the payments: the load generator
    // shares the machine with the nodes, so its own work is kept out of
    // their way (a retry resends the same bytes).
    let batches: Vec<EncodedBatch> = payments
        .chunks(args.batch)
        .enumerate()
        .map(|(i, c)| {
            EncodedBatch::new(&pb::SubmitBatchRequest {
                batch_id: i as u64,
                payments: c.iter().map(pb::Payment::from).collect(),
            })
        })
        .collect();
    say(&format!(
        "--- load: {:?}, {} gateways, batches of {}",
        args.mode, args.gateways, args.batch
    ));
    let progress = bar(args.payments, "payments");
    let cpu_before = local.as_ref().and_then(|c| total_cpu_seconds(&c.pids()));
    let sampler = local.as_ref().map(|c| MemorySampler::start(c.pids()));
    let (elapsed, shared) = drive(args, &endpoints, tls.as_ref(), batches, &progress).await?;
    progress.finish_and_clear();
    say("--- waiting for every running node to apply what was committed");
    let stopped = args.stop_node.filter(|_| local.is_some()).map(|n| n - 1);
    let all_applied_after_s =
        wait_all_applied(&endpoints, stopped, tls.as_ref(), ALL_APPLIED_WAIT_MAX).await;
    let cpu_after = local.as_ref().and_then(|c| total_cpu_seconds(&c.pids()));
    let node_cpu_s = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    let memory = sampler.map(MemorySampler::finish).unwrap_or_default();
    say(&format!(
        "--- measuring the crypto limit again, the load over ({} s)",
        CRYPTO_LIMIT_MEASURE.as_secs()
    ));
    signatures_per_s_samples.push(measure_signatures_per_s(CRYPTO_LIMIT_MEASURE));
    let signatures_per_s = machine_signatures_per_s(&signatures_per_s_samples);
    let accepted = shared
        .verdicts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get("ACCEPTED")
        .copied()
        .unwrap_or(0);
    let mut disk_bytes_per_nullifier = None;
    let mut storage_compacted = None;
    if let (Some(mut cluster), Some(bin)) = (local, node_bin) {
        let running: Vec<usize> = cluster.pids().iter().map(|(i, _)| *i).collect();
        cluster.stop();
        let largest = running
            .iter()
            .map(|i| (dir_bytes(&cluster.data_dir(*i)), *i))
            .max();
        let nullifiers = accepted * args.inputs;
        if let (Some((bytes, node)), true) = (largest, nullifiers > 0) {
            disk_bytes_per_nullifier = Some(bytes as f64 / nullifiers as f64);
            say(&format!(
                "--- compacting node {}'s storage to measure it",
                node + 1
            ));
            storage_compacted = Some(compacted_storage(&bin, &cluster.data_dir(node))?);
        }
    }
    let h = shared
        .histogram
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    let answered = shared.answered.load(Ordering::Relaxed);
    Ok(BenchReport {
        label: args.label.clone(),
        mode: args.mode,
        nodes: endpoints.len(),
        nodes_running,
        devices: args.devices,
        double_spend_share: args.double_spend_share,
        order: args.order,
        gateways: args.gateways,
        batch: args.batch,
        inputs: args.inputs,
        payments: answered,
        elapsed_s: elapsed,
        throughput_per_s: answered as f64 / elapsed.max(1e-9),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1_000.0,
        verdicts: shared
            .verdicts
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
        failed_batches: shared.failed.load(Ordering::Relaxed),
        signatures_per_s_all_cores: signatures_per_s,
        signatures_per_s_samples,
        signatures_per_batch: CRYPTO_LIMIT_BATCH_SIGNATURES,
        signature_checks_per_payment: checks,
        crypto_limit_per_s: signatures_per_s / checks as f64,
        memory,
        disk_bytes_per_nullifier,
        storage_compacted,
        all_applied_after_s,
        node_cpu_s,
    })
}

/// How long the bench waits, after the load, for trailing nodes to apply.
const ALL_APPLIED_WAIT_MAX: Duration = Duration::from_secs(300);
const ALL_APPLIED_POLL: Duration = Duration::from_millis(50);

/// Seconds until every node of `endpoints` (but the stopped one, by
/// position) has applied the largest commit index any of them has reported;
/// `None` if that takes longer than `limit`. A node that does not answer a
/// poll (busy applying) counts as behind.
async fn wait_all_applied(
    endpoints: &[String],
    stopped: Option<usize>,
    tls: Option<&ClientTls>,
    limit: Duration,
) -> Option<f64> {
    let started = Instant::now();
    let running: Vec<&String> = endpoints
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != stopped)
        .map(|(_, addr)| addr)
        .collect();
    let mut target = None;
    while started.elapsed() < limit {
        let mut behind = false;
        for addr in &running {
            match crate::local_cluster::node_status(addr, tls).await {
                Some(status) => {
                    let t = target.get_or_insert(0);
                    *t = (*t).max(status.committed_index);
                    behind |= status.applied_index < *t;
                }
                None => behind = true,
            }
        }
        if !behind && target.is_some() {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(ALL_APPLIED_POLL).await;
    }
    // Leave evidence: which node stayed behind, and in what state.
    for addr in &running {
        let seen = match crate::local_cluster::node_status(addr, tls).await {
            Some(s) => format!(
                "role {:?}, applied {}, committed {}, last log {}, digest mismatch {}",
                pb::NodeRole::try_from(s.role).unwrap_or(pb::NodeRole::Unspecified),
                s.applied_index,
                s.committed_index,
                s.last_log_index,
                s.digest_mismatch
            ),
            None => "no answer".to_owned(),
        };
        eprintln!(
            "warning: after {} s not every node had applied index {}: {addr}: {seen}",
            limit.as_secs(),
            target.unwrap_or(0)
        );
    }
    None
}

/// `spentledger-node storage-report --compact` on a stopped node's data.
fn compacted_storage(
    node_bin: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<serde_json::Value, BenchError> {
    let out = std::process::Command::new(node_bin)
        .args(["storage-report", "--compact", "--data-dir"])
        .arg(data_dir)
        .output()?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "storage-report on {}: {}",
            data_dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Setup(format!("storage-report printed no JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_rate_is_the_highest_measurement() {
        assert_eq!(machine_signatures_per_s(&[101_000.0, 118_500.5]), 118_500.5);
        assert_eq!(machine_signatures_per_s(&[96_000.0, 90_000.0]), 96_000.0);
        assert_eq!(
            machine_signatures_per_s(&[]),
            0.0,
            "no measurement, no limit"
        );
    }

    /// (counter, device number) of each payment, in submission order.
    fn order_of(payments: &[Payment]) -> Vec<(u64, u64)> {
        payments
            .iter()
            .map(|p| {
                let device = p.certificate.wallet_id.as_str()["bench-".len()..]
                    .parse()
                    .expect("bench wallet ids end in the device number");
                (p.counter, device)
            })
            .collect()
    }

    #[test]
    fn payments_come_by_device_or_round_by_round_and_twins_re_spend() {
        let issuer = Issuer::from_seed(id("bank-bench"), seed_for("issuer", 0), 0, u64::MAX);
        let make = |order| {
            generate(&issuer, 3, 7, 2, 0.0, order, &ProgressBar::hidden()).expect("generate")
        };
        let rounds = make(PaymentOrder::Rounds);
        assert_eq!(
            order_of(&rounds),
            [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)],
            "every device's k-th payment before any (k+1)-th"
        );
        assert!(rounds.iter().all(|p| p.inputs.len() == 2));
        assert_eq!(
            order_of(&make(PaymentOrder::Devices)),
            [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)],
            "one device's payments, then the next device's"
        );

        let with_twins = generate(
            &issuer,
            3,
            8,
            1,
            0.5,
            PaymentOrder::Rounds,
            &ProgressBar::hidden(),
        )
        .expect("generate");
        for i in (2..with_twins.len()).step_by(2) {
            let (original, twin) = (&with_twins[i - 1], &with_twins[i]);
            assert_eq!(
                twin.nullifiers(),
                original.nullifiers(),
                "twin {i} re-spends"
            );
            assert_ne!(twin.tx_id(), original.tx_id());
        }
    }
}
