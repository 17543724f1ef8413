//! `spentledger demo`: a local 3-node cluster settling a day of offline
//! payments, with deliberate double spends and cloned devices, through
//! several gateways at once, while the leader is killed and restarted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, Verdict, pb};

use crate::gateway::{Gateway, GatewayConfig, PaymentVerdict};
use crate::local_cluster::{ClusterError, LocalCluster, find_node_binary};
use crate::tls::{ClientRole, ClientTls, RoleIdentities};

/// What the demo does; defaults give a run of about a minute.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub devices: usize,
    pub payments_per_device: usize,
    pub merchants: usize,
    pub gateways: usize,
    /// Every `conflict_every`-th device double-spends one token at a second
    /// merchant, and another one in each such group is cloned.
    pub conflict_every: usize,
    pub batch_payments: usize,
    pub kill_leader: bool,
    pub node_bin: Option<PathBuf>,
    /// Where node data goes; a temporary directory (removed) when absent.
    pub dir: Option<PathBuf>,
    /// No progress bar (for scripts and tests).
    pub quiet: bool,
    /// A running cluster to use instead of starting one (the demo registers
    /// its issuer key there and does not kill anything).
    pub endpoints: Option<Vec<String>>,
    /// The identities to call a running TLS cluster with (each call in its
    /// role). A local cluster always gets new development certificates.
    pub tls: Option<RoleIdentities>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            devices: 2_000,
            payments_per_device: 4,
            merchants: 25,
            gateways: 3,
            conflict_every: 40,
            batch_payments: 100,
            kill_leader: true,
            node_bin: None,
            dir: None,
            quiet: false,
            endpoints: None,
            tls: None,
        }
    }
}

/// `spentledger demo` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated payer devices.
    #[arg(long, default_value_t = 2_000)]
    pub devices: usize,
    /// Honest payments per device.
    #[arg(long, default_value_t = 4)]
    pub payments_per_device: usize,
    /// Merchants.
    #[arg(long, default_value_t = 25)]
    pub merchants: usize,
    /// Gateways submitting concurrently.
    #[arg(long, default_value_t = 3)]
    pub gateways: usize,
    /// One device in this many double-spends; another one is cloned.
    #[arg(long, default_value_t = 40)]
    pub conflict_every: usize,
    /// Payments per SubmitBatch.
    #[arg(long, default_value_t = 100)]
    pub batch_payments: usize,
    /// Do not kill the leader part-way.
    #[arg(long)]
    pub no_kill: bool,
    /// Path of the spentledger-node binary (default: next to this program).
    #[arg(long, env = "SPENTLEDGER_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
    /// Keep node data and logs here (default: a temporary directory, removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl DemoArgs {
    pub fn to_options(
        &self,
        quiet: bool,
        endpoints: Option<Vec<String>>,
        tls: Option<RoleIdentities>,
    ) -> DemoOptions {
        DemoOptions {
            devices: self.devices,
            payments_per_device: self.payments_per_device,
            merchants: self.merchants,
            gateways: self.gateways,
            conflict_every: self.conflict_every,
            batch_payments: self.batch_payments,
            kill_leader: !self.no_kill,
            node_bin: self.node_bin.clone(),
            dir: self.dir.clone(),
            quiet,
            endpoints,
            tls,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Options(String),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::local_cluster::ClusterError),
    #[error("gateway: {0}")]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("issuing: {0}")]
    Issue(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("call failed: {0}")]
    Call(#[from] tonic::Status),
    #[error("check failed: {0}")]
    Check(String),
}

/// The figures the demo ends with (also printed as JSON with `--json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub payments_submitted: usize,
    pub accepted: usize,
    pub duplicates: usize,
    pub double_spends: usize,
    pub rejected: usize,
    pub planned_double_spends: usize,
    pub planned_clones: usize,
    pub revocations: usize,
    pub settlements: usize,
    /// Settlements of expired certificates (not forced).
    pub expired_settled: usize,
    pub settled_spent: u64,
    pub settled_held: u64,
    pub settled_refund: u64,
    pub leader_killed: Option<u64>,
    pub applied_index: u64,
    pub digests_equal: bool,
    pub elapsed_ms: u64,
}

impl DemoSummary {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "payments_submitted": self.payments_submitted,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "double_spends": self.double_spends,
            "rejected": self.rejected,
            "planned_double_spends": self.planned_double_spends,
            "planned_clones": self.planned_clones,
            "revocations": self.revocations,
            "settlements": self.settlements,
            "expired_settled": self.expired_settled,
            "settled_spent": self.settled_spent,
            "settled_held": self.settled_held,
            "settled_refund": self.settled_refund,
            "leader_killed": self.leader_killed,
            "applied_index": self.applied_index,
            "digests_equal": self.digests_equal,
            "elapsed_ms": self.elapsed_ms,
        })
    }
}

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("demo ids are short ASCII")
}

/// Deterministic stand-in for device and terminal randomness.
/// This run's nonce: a second demo against the same running cluster gets
/// its own issuer key, devices and payments.
static RUN_NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn run_nonce() -> u64 {
    *RUN_NONCE.get_or_init(now_ms)
}

fn entropy(label: &str, n: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("spentledger demo entropy");
    hasher.update(&run_nonce().to_le_bytes());
    hasher.update(label.as_bytes());
    hasher.update(&n.to_le_bytes());
    *hasher.finalize().as_bytes()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn say(quiet: bool, text: &str) {
    if !quiet {
        println!("{text}");
    }
}

/// The offline day: payments in the order gateways will submit them, the
/// devices' wallets (for settlement), and how many conflicts were planted.
/// Conflicting payments come from merchants who come online late: they are
/// submitted after the honest ones, so the honest payment always wins and
/// the loser's fresh tokens are held.
struct Workload {
    per_gateway: Vec<Vec<Payment>>,
    late_per_gateway: Vec<Vec<Payment>>,
    wallets: Vec<Wallet>,
    double_spenders: Vec<usize>,
    clones: Vec<usize>,
}

fn build_workload(options: &DemoOptions, issuer: &Issuer) -> Result<Workload, DemoError> {
    let policy = IssuancePolicy::default();
    let issued_at_ms = now_ms() - 3_600_000;
    let merchants: Vec<IdText> = (0..options.merchants)
        .map(|m| id(&format!("merchant-{m:03}")))
        .collect();
    let mut per_gateway: Vec<Vec<Payment>> = vec![Vec::new(); options.gateways];
    let mut late_per_gateway: Vec<Vec<Payment>> = vec![Vec::new(); options.gateways];
    let mut late: Option<Payment> = None;
    let mut wallets = Vec::with_capacity(options.devices);
    let mut double_spenders = Vec::new();
    let mut clones = Vec::new();
    let mut slot = 0usize;
    for d in 0..options.devices {
        let seed = entropy("device", d as u64);
        let funding = Funding::eur(id(&format!("wallet-{d:06}")), 20_000, issued_at_ms)
            .with_credit_line(5_000);
        let mut wallet = issuer
            .fund_device(&policy, seed, &funding)
            .map_err(|e| DemoError::Issue(e.to_string()))?;
        let mut made: Vec<Payment> = Vec::new();
        for k in 0..options.payments_per_device {
            let merchant = &merchants[(d * 7 + k * 3) % merchants.len()];
            let amount = [120, 455, 980, 35, 2_000][(d + k) % 5];
            let payment = wallet
                .pay(
                    amount,
                    merchant,
                    entropy("challenge", (d * 1_000 + k) as u64),
                    now_ms() - 60_000,
                )
                .map_err(|e| DemoError::Issue(e.to_string()))?;
            made.push(payment);
        }
        let first = made[0].clone();
        if d % options.conflict_every == 1 {
            // A tampered device spends its first payment's tokens again at
            // another merchant, with a fresh counter, topped up with one
            // unspent token (held, not refunded, when the payment loses).
            let mut tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
            let fresh = wallet
                .select_tokens(35)
                .map_err(|e| DemoError::Issue(e.to_string()))?;
            tokens.extend(fresh);
            tokens.sort_unstable();
            tokens.dedup();
            let again = wallet
                .sign_payment(
                    &tokens,
                    wallet.next_counter() + 100,
                    &merchants[(d + 1) % merchants.len()],
                    entropy("challenge-twice", d as u64),
                    now_ms() - 30_000,
                )
                .map_err(|e| DemoError::Issue(e.to_string()))?;
            late = Some(again);
            double_spenders.push(d);
        } else if d % options.conflict_every == 2 {
            // A cloned secure element: fresh tokens, but the first payment's counter.
            let fresh = wallet
                .select_tokens(35)
                .map_err(|e| DemoError::Issue(e.to_string()))?;
            let cloned = wallet
                .sign_payment(
                    &fresh,
                    first.counter,
                    &merchants[(d + 2) % merchants.len()],
                    entropy("challenge-clone", d as u64),
                    now_ms() - 30_000,
                )
                .map_err(|e| DemoError::Issue(e.to_string()))?;
            late = Some(cloned);
            clones.push(d);
        }
        // Spread each device's payments over the gateways, so conflicting
        // payments arrive through different gateways (and nodes).
        for p in made {
            per_gateway[slot % options.gateways].push(p);
            slot += 1;
        }
        if let Some(p) = late.take() {
            late_per_gateway[slot % options.gateways].push(p);
            slot += 1;
        }
        wallets.push(wallet);
    }
    Ok(Workload {
        per_gateway,
        late_per_gateway,
        wallets,
        double_spenders,
        clones,
    })
}

/// The identity for calls in `role` (none on a plaintext cluster).
fn as_role(ids: Option<&RoleIdentities>, role: ClientRole) -> Option<&ClientTls> {
    ids.map(|i| i.get(role))
}

/// Runs the demo and returns its figures; `Err` when a check fails.
pub async fn run(options: DemoOptions) -> Result<DemoSummary, DemoError> {
    if options.devices == 0
        || options.devices > 100_000
        || options.payments_per_device == 0
        || options.payments_per_device > 20
        || options.gateways == 0
        || options.gateways > 16
        || options.merchants < 3
        || options.conflict_every < 3
        || options.batch_payments == 0
        || options.batch_payments > 1_000
    {
        return Err(DemoError::Options(
            "devices 1..=100000, payments-per-device 1..=20, gateways 1..=16, merchants >= 3, conflict-every >= 3, batch 1..=1000".into(),
        ));
    }
    let started = Instant::now();
    let quiet = options.quiet;
    let temp;
    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("spentledger-demo-")
                .tempdir()?;
            temp.path().to_owned()
        }
    };

    say(quiet, "--- issuer key and a day of offline payments");
    let issuer = Issuer::from_seed(
        id(&format!("bank-demo-{}", run_nonce())),
        entropy("issuer", 0),
        0,
        now_ms() + 365 * 86_400_000,
    );
    let key = issuer.issuer_key();
    let public_hex: String = key.public_key.iter().map(|b| format!("{b:02x}")).collect();
    let genesis = format!(
        r#"[{{"key_id": "bank-demo-{}", "public_key_hex": "{public_hex}", "valid_from_ms": 0, "valid_until_ms": {}}}]"#,
        run_nonce(),
        now_ms() + 365 * 86_400_000
    );
    let workload = build_workload(&options, &issuer)?;
    let total: usize = workload
        .per_gateway
        .iter()
        .chain(&workload.late_per_gateway)
        .map(Vec::len)
        .sum();
    say(
        quiet,
        &format!(
            "    {} devices, {} merchants, {total} payments; planted {} double spends and {} cloned devices",
            options.devices,
            options.merchants,
            workload.double_spenders.len(),
            workload.clones.len()
        ),
    );

    let (mut cluster, endpoints) = match &options.endpoints {
        Some(endpoints) => {
            say(
                quiet,
                "--- using the running cluster; registering the demo issuer's key",
            );
            register_key(&issuer, endpoints, options.tls.as_ref()).await?;
            (None, endpoints.clone())
        }
        None => {
            say(
                quiet,
                &format!(
                    "--- start 3 spentledger-node processes with mutual TLS (data and development certificates in {})",
                    dir.display()
                ),
            );
            let node_bin = find_node_binary(options.node_bin.clone())?;
            let certs = dir.join("certs");
            crate::tls::init_dev_pki(&certs, &[], 30, true).map_err(ClusterError::Tls)?;
            let mut cluster = LocalCluster::start_tls(node_bin, &dir, 3, &genesis, &certs)?;
            for i in 0..cluster.size() {
                cluster.wait_ready(i, Duration::from_secs(60)).await?;
            }
            let endpoints: Vec<String> = cluster.addrs.iter().map(|a| a.to_string()).collect();
            (Some(cluster), endpoints)
        }
    };
    let ids: Option<RoleIdentities> = match &cluster {
        Some(c) => c.identities().cloned(),
        None => options.tls.clone(),
    };
    let ids = ids.as_ref();
    let mut config = GatewayConfig::new(endpoints.clone());
    config.tls = as_role(ids, ClientRole::Gateway).cloned();
    let gateway = Gateway::new(config)?;
    gateway
        .wait_for_issuer_key(&issuer, Duration::from_secs(30))
        .await?;
    // Two devices whose certificates expire within seconds: they pay now and
    // are settled after their settle time, without forcing.
    let expiring = expiring_devices(&issuer, &gateway).await?;

    say(
        quiet,
        &format!(
            "--- {} gateways submit concurrently, each through a different node first",
            options.gateways
        ),
    );
    let progress = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    progress.set_style(
        ProgressStyle::with_template("    [{elapsed_precise}] {bar:40} {pos}/{len} payments {msg}")
            .expect("the template is valid"),
    );
    let answered = Arc::new(AtomicUsize::new(0));
    let mut gateways = Vec::with_capacity(options.gateways);
    for g in 0..options.gateways {
        let mut order = endpoints.clone();
        let n = order.len();
        order.rotate_left(g % n);
        let mut config = GatewayConfig::new(order);
        config.batch_payments_max = options.batch_payments;
        config.tls = as_role(ids, ClientRole::Gateway).cloned();
        gateways.push(Arc::new(Gateway::new(config)?));
    }
    let mut tasks = Vec::new();
    for (g, payments) in workload.per_gateway.iter().cloned().enumerate() {
        let gateway = gateways[g].clone();
        let progress = progress.clone();
        let answered = answered.clone();
        let batch = options.batch_payments;
        tasks.push(tokio::spawn(async move {
            let mut verdicts: Vec<(Payment, PaymentVerdict)> = Vec::with_capacity(payments.len());
            for chunk in payments.chunks(batch) {
                let got = gateway.submit(chunk).await?;
                progress.inc(chunk.len() as u64);
                answered.fetch_add(chunk.len(), Ordering::Relaxed);
                verdicts.extend(chunk.iter().cloned().zip(got));
            }
            Ok::<_, crate::gateway::GatewayError>(verdicts)
        }));
    }

    // Part-way, the leader dies without warning; later it comes back (only
    // in a cluster the demo started itself).
    let mut leader_killed = None;
    if let (true, Some(cluster)) = (options.kill_leader, cluster.as_mut()) {
        while answered.load(Ordering::Relaxed) < total * 2 / 5 {
            if tasks.iter().all(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(leader) = cluster.leader().await {
            progress.set_message(format!("(killed leader node {} with SIGKILL)", leader + 1));
            cluster.kill(leader)?;
            leader_killed = Some(leader as u64 + 1);
            while answered.load(Ordering::Relaxed) < total * 7 / 10
                && !tasks.iter().all(|t| t.is_finished())
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cluster.restart(leader)?;
            progress.set_message(format!("(node {} restarted)", leader + 1));
        }
    }
    let mut results: Vec<(Payment, PaymentVerdict)> = Vec::with_capacity(total);
    for task in tasks {
        results.extend(
            task.await
                .map_err(|e| DemoError::Check(format!("gateway task: {e}")))??,
        );
    }
    // The late merchants: each gateway relays its conflicting payments.
    let late = futures::future::join_all(workload.late_per_gateway.iter().enumerate().map(
        |(g, payments)| {
            let gateway = gateways[g].clone();
            async move { gateway.submit(payments).await.map(|v| (payments, v)) }
        },
    ))
    .await;
    for batch in late {
        let (payments, verdicts) = batch?;
        progress.inc(payments.len() as u64);
        results.extend(payments.iter().cloned().zip(verdicts));
    }
    progress.finish_and_clear();

    let mut summary = DemoSummary {
        payments_submitted: total,
        planned_double_spends: workload.double_spenders.len(),
        planned_clones: workload.clones.len(),
        leader_killed,
        ..DemoSummary::default()
    };
    let mut evidence_shown: Option<pb::DoubleSpendEvidence> = None;
    for (_, v) in &results {
        match v.verdict {
            Verdict::Accepted => summary.accepted += 1,
            Verdict::Duplicate => summary.duplicates += 1,
            Verdict::DoubleSpend => {
                summary.double_spends += 1;
                if evidence_shown.is_none() {
                    evidence_shown = v.result.double_spend.clone();
                }
            }
            Verdict::Rejected(_) => summary.rejected += 1,
        }
    }

    say(
        quiet,
        "--- settle a few certificates (devices returned to the bank)",
    );
    let mut returned: Vec<usize> = workload.double_spenders.iter().take(2).copied().collect();
    returned.extend([0, options.devices / 2, options.devices - 1]);
    returned.sort_unstable();
    returned.dedup();
    // Devices returned early are force-settled; expired certificates settle as of right.
    let mut to_settle: Vec<(spentledger_protocol::OfflineCertificate, bool)> = returned
        .iter()
        .map(|d| (workload.wallets[*d].certificate().clone(), true))
        .collect();
    to_settle.extend(expiring.iter().map(|c| (c.clone(), false)));
    let settle_after_ms = expiring
        .iter()
        .map(|c| c.settle_until_ms)
        .max()
        .unwrap_or(0);
    let wait_ms = (settle_after_ms + 200).saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let mut settlement_table = Table::new();
    settlement_table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec![
            "wallet",
            "total",
            "spent",
            "held",
            "refund (unspent)",
            "payments",
            "double spend",
            "settled",
        ]);
    for (certificate, force) in &to_settle {
        let request = pb::SettleCertificateRequest {
            certificate: Some(certificate.into()),
            force: *force,
            force_reason: if *force {
                "demo: device returned to the issuer".into()
            } else {
                String::new()
            },
        };
        // Settling a certificate twice returns the first settlement, so a
        // retry after a lost answer is safe.
        let settled = on_leader(&endpoints, ids, ClientRole::Issuer, |ch| {
            let request = request.clone();
            async move {
                pb::issuer_client::IssuerClient::new(ch)
                    .settle_certificate(request)
                    .await
            }
        })
        .await?
        .settlement
        .ok_or_else(|| DemoError::Check("settlement missing".into()))?;
        if settled.total_value != settled.spent_value + settled.held_value + settled.unspent_value {
            return Err(DemoError::Check(format!(
                "settlement of {} does not add up: {settled:?}",
                certificate.wallet_id.as_str()
            )));
        }
        summary.settlements += 1;
        if !settled.forced {
            summary.expired_settled += 1;
        }
        summary.settled_spent += settled.spent_value;
        summary.settled_held += settled.held_value;
        summary.settled_refund += settled.unspent_value;
        settlement_table.add_row(vec![
            settled.wallet_id.clone(),
            settled.total_value.to_string(),
            settled.spent_value.to_string(),
            settled.held_value.to_string(),
            settled.unspent_value.to_string(),
            settled.payment_count.to_string(),
            if settled.double_spend_detected {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            if settled.forced {
                "early (forced)"
            } else {
                "expired"
            }
            .to_string(),
        ]);
    }

    say(
        quiet,
        "--- every node has applied the same log to the same state",
    );
    let (applied_index, digest_table, equal) = converge(&endpoints, ids).await?;
    summary.applied_index = applied_index;
    summary.digests_equal = equal;
    let revocations = on_leader(&endpoints, ids, ClientRole::Gateway, |ch| async move {
        pb::settlement_client::SettlementClient::new(ch)
            .list_revocations(pb::ListRevocationsRequest {
                after_sequence: 0,
                limit: 10_000,
                consistency: pb::ReadConsistency::Linearizable as i32,
            })
            .await
    })
    .await?;
    summary.revocations = revocations.revocations.len();
    if let Some(cluster) = cluster.as_mut() {
        cluster.stop();
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;

    if !quiet {
        print_summary(
            &summary,
            &settlement_table,
            &digest_table,
            evidence_shown.as_ref(),
        );
    }
    check(&summary)?;
    Ok(summary)
}

/// Registers the demo issuer's key with a running cluster (through its
/// leader, retrying while there is none).
async fn register_key(
    issuer: &Issuer,
    endpoints: &[String],
    ids: Option<&RoleIdentities>,
) -> Result<(), DemoError> {
    let key: pb::IssuerKey = (&issuer.issuer_key()).into();
    let registered = on_leader(endpoints, ids, ClientRole::Issuer, |ch| {
        let key = key.clone();
        async move {
            pb::issuer_client::IssuerClient::new(ch)
                .register_issuer_key(pb::RegisterIssuerKeyRequest { key: Some(key) })
                .await
        }
    })
    .await;
    match registered {
        Ok(_) => Ok(()),
        // The key id is this run's own, so this should not happen.
        Err(DemoError::Call(s)) if s.code() == tonic::Code::AlreadyExists => {
            Err(DemoError::Check(format!(
                "the cluster already has a different key with this run's key id: {}",
                s.message()
            )))
        }
        Err(e) => Err(e),
    }
}

/// No leader, leadership moved, or the node did not answer in time.
fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    )
}

/// How long a call that needs the leader keeps retrying through elections.
const LEADER_CALL_TIMEOUT_MS: u64 = 30_000;

/// Runs `call` against the current leader, finding it again and retrying
/// while the answer is UNAVAILABLE (no leader yet, or leadership moved after
/// the leader was found: the restarted node of the kill phase can still win
/// an election late). Only for calls that are safe to repeat: every caller's
/// command is idempotent in the state machine (key registration with the same
/// key, settlement of a certificate, reads).
async fn on_leader<T, F, Fut>(
    endpoints: &[String],
    ids: Option<&RoleIdentities>,
    role: ClientRole,
    mut call: F,
) -> Result<T, DemoError>
where
    F: FnMut(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_millis(LEADER_CALL_TIMEOUT_MS);
    loop {
        let leader = wait_for_leader(endpoints, ids).await?;
        let outcome = match crate::connect::dial(&endpoints[leader], None, as_role(ids, role)).await
        {
            Ok(ch) => call(ch).await,
            Err(status) => Err(status),
        };
        match outcome {
            Ok(response) => return Ok(response.into_inner()),
            Err(s) if retryable(&s) && Instant::now() < deadline => {
                tracing::debug!(node = leader + 1, "retrying on the leader: {}", s.message());
            }
            Err(s) => return Err(s.into()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Devices whose certificates can be spent for 1.5 s and settled 1.5 s
/// later; each pays twice at once. Returns their certificates.
async fn expiring_devices(
    issuer: &Issuer,
    gateway: &Gateway,
) -> Result<Vec<spentledger_protocol::OfflineCertificate>, DemoError> {
    let policy = IssuancePolicy {
        spend_window_ms: 1_500,
        settle_grace_ms: 1_500,
        ..IssuancePolicy::default()
    };
    let mut certificates = Vec::new();
    let mut payments = Vec::new();
    for n in 0..2u64 {
        let seed = entropy("expiring-device", n);
        let funding = Funding::eur(id(&format!("wallet-expiring-{n}")), 3_000, now_ms());
        let mut wallet = issuer
            .fund_device(&policy, seed, &funding)
            .map_err(|e| DemoError::Issue(e.to_string()))?;
        for (k, amount) in [250u64, 1_000].into_iter().enumerate() {
            payments.push(
                wallet
                    .pay(
                        amount,
                        &id("merchant-000"),
                        entropy("expiring-challenge", n * 10 + k as u64),
                        now_ms(),
                    )
                    .map_err(|e| DemoError::Issue(e.to_string()))?,
            );
        }
        certificates.push(wallet.certificate().clone());
    }
    let verdicts = gateway.submit(&payments).await?;
    if !verdicts.iter().all(PaymentVerdict::is_settled) {
        return Err(DemoError::Check(format!(
            "the expiring devices' payments were not accepted: {:?}",
            verdicts.iter().map(|v| v.verdict).collect::<Vec<_>>()
        )));
    }
    Ok(certificates)
}

async fn wait_for_leader(
    endpoints: &[String],
    ids: Option<&RoleIdentities>,
) -> Result<usize, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let admin = as_role(ids, ClientRole::Admin);
        if let Some(l) = crate::local_cluster::leader_among(endpoints, admin).await {
            return Ok(l);
        }
        if Instant::now() > deadline {
            return Err(DemoError::Check("no leader within 30 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every node reports the same applied index, then compares digests.
async fn converge(
    endpoints: &[String],
    ids: Option<&RoleIdentities>,
) -> Result<(u64, Table, bool), DemoError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let admin = as_role(ids, ClientRole::Admin);
    loop {
        let mut seen: BTreeMap<usize, pb::NodeStatus> = BTreeMap::new();
        for (i, addr) in endpoints.iter().enumerate() {
            if let Some(s) = crate::local_cluster::node_status(addr, admin).await {
                seen.insert(i, s);
            }
        }
        let indexes: std::collections::BTreeSet<u64> =
            seen.values().map(|s| s.applied_index).collect();
        if seen.len() == endpoints.len() && indexes.len() == 1 {
            let digests: std::collections::BTreeSet<&Vec<u8>> =
                seen.values().map(|s| &s.state_digest).collect();
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
                "node",
                "role",
                "term",
                "applied index",
                "state digest",
            ]);
            for s in seen.values() {
                let role = pb::NodeRole::try_from(s.role)
                    .map(|r| {
                        r.as_str_name()
                            .trim_start_matches("NODE_ROLE_")
                            .to_lowercase()
                    })
                    .unwrap_or_default();
                let hex: String = s.state_digest.iter().map(|b| format!("{b:02x}")).collect();
                table.add_row(vec![
                    s.node_id.to_string(),
                    role,
                    s.term.to_string(),
                    s.applied_index.to_string(),
                    hex,
                ]);
            }
            let index = *indexes.iter().next().expect("one index");
            return Ok((index, table, digests.len() == 1));
        }
        if Instant::now() > deadline {
            return Err(DemoError::Check(format!(
                "nodes did not reach the same applied index: {:?}",
                seen.iter()
                    .map(|(i, s)| (i + 1, s.applied_index))
                    .collect::<Vec<_>>()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_summary(
    s: &DemoSummary,
    settlements: &Table,
    digests: &Table,
    evidence: Option<&pb::DoubleSpendEvidence>,
) {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["figure", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("payments submitted", s.payments_submitted.to_string()),
        ("accepted", s.accepted.to_string()),
        (
            "duplicate (a retry of a recorded payment)",
            s.duplicates.to_string(),
        ),
        (
            "double spends caught / planted",
            format!("{} / {}", s.double_spends, s.planned_double_spends),
        ),
        ("cloned devices planted", s.planned_clones.to_string()),
        ("rejected", s.rejected.to_string()),
        ("certificates revoked", s.revocations.to_string()),
        (
            "certificates settled (of which expired)",
            format!("{} ({})", s.settlements, s.expired_settled),
        ),
        (
            "leader killed mid-run",
            s.leader_killed.map_or("no".into(), |n| {
                format!("node {n} (SIGKILL, then restarted)")
            }),
        ),
        ("elapsed", format!("{:.1} s", s.elapsed_ms as f64 / 1000.0)),
    ];
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    println!("\n{table}");
    if let Some(e) = evidence {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        println!("\nOne double spend, with its evidence:");
        println!("  nullifier          {}", hex(&e.nullifier));
        if let Some(p) = &e.first_payment {
            println!(
                "  first payment      {} to {} (counter {})",
                p.amount, p.payee_id, p.counter
            );
        }
        if let Some(r) = &e.first_receipt {
            println!(
                "  first receipt      tx {} at log index {}",
                hex(&r.tx_id),
                r.log_index
            );
        }
        if let Some(p) = &e.second_payment {
            println!(
                "  second payment     {} to {} (counter {})",
                p.amount, p.payee_id, p.counter
            );
        }
        println!("  detected at index  {}", e.detected_log_index);
    }
    println!("\nSettlements (total = spent + held + refund):\n{settlements}");
    println!(
        "  sums: spent {}, held {}, refund {}",
        s.settled_spent, s.settled_held, s.settled_refund
    );
    println!(
        "\nPer-node state ({}):\n{digests}",
        if s.digests_equal {
            "digests equal"
        } else {
            "DIGESTS DIFFER"
        }
    );
}

/// The demo's own acceptance checks: every planted conflict caught, no
/// payment lost, replicas identical.
fn check(s: &DemoSummary) -> Result<(), DemoError> {
    if s.double_spends != s.planned_double_spends {
        return Err(DemoError::Check(format!(
            "{} double spends caught, {} planted",
            s.double_spends, s.planned_double_spends
        )));
    }
    if s.accepted + s.duplicates + s.double_spends + s.rejected != s.payments_submitted {
        return Err(DemoError::Check("a payment went unanswered".into()));
    }
    if s.rejected != 0 {
        return Err(DemoError::Check(format!(
            "{} honest payments rejected",
            s.rejected
        )));
    }
    if s.expired_settled == 0 {
        return Err(DemoError::Check(
            "no expired certificate was settled".into(),
        ));
    }
    if s.revocations < s.planned_double_spends + s.planned_clones {
        return Err(DemoError::Check(format!(
            "{} revocations for {} conflicts",
            s.revocations,
            s.planned_double_spends + s.planned_clones
        )));
    }
    if !s.digests_equal {
        return Err(DemoError::Check("replica digests differ".into()));
    }
    Ok(())
}
