//! Node configuration: command-line flags, each also settable by an
//! environment variable, optionally on top of a TOML file. Everything is
//! checked before anything is written to disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use crate::api::CoalescerLimits;
use crate::consensus::apply_lag::ApplyLagLimits;
use crate::ledger_node::RaftTimings;
use crate::network::{ClusterId, RAFT_MESSAGE_BYTES_MAX};
use crate::security::{NodeTls, TlsError};
use crate::state_machine::VALIDATION_NICE_DEFAULT;

/// spentledger-node: one node of a spentledger ledger cluster.
#[derive(Debug, Clone, Parser)]
#[command(name = "spentledger-node", version, about, long_about = None)]
pub struct Flags {
    /// TOML file with any of the settings below (flags and environment win).
    #[arg(long, env = "SPENTLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (>= 1), unique in the cluster and never reused.
    #[arg(long, env = "SPENTLEDGER_NODE_ID")]
    pub node_id: Option<u64>,
    /// Take the node id from the host name's ordinal suffix plus one
    /// (`spentledger-0` is node 1), as for StatefulSet pods.
    #[arg(long, env = "SPENTLEDGER_NODE_ID_FROM_HOSTNAME")]
    pub node_id_from_hostname: bool,
    /// Address the gRPC server listens on (APIs and Raft).
    #[arg(long, env = "SPENTLEDGER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address peers and clients use to reach this node (default: --listen).
    #[arg(long, env = "SPENTLEDGER_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the Raft log, the state database and snapshots.
    #[arg(long, env = "SPENTLEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial voters as id=host:port pairs, comma separated; with --bootstrap.
    #[arg(long, env = "SPENTLEDGER_INITIAL_MEMBERS", value_delimiter = ',')]
    pub initial_members: Vec<String>,
    /// Initialise the cluster from --initial-members if this node's log is empty.
    /// Give it to exactly one node.
    #[arg(long, env = "SPENTLEDGER_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Join the cluster through --initial-members (the seeds) when this node
    /// is not a member: added as a learner, promoted to voter once caught up.
    #[arg(long, env = "SPENTLEDGER_JOIN")]
    pub join: bool,
    /// Bootstrap only on the node with this id (every StatefulSet pod gets the
    /// same flags; this picks the first one).
    #[arg(long, env = "SPENTLEDGER_BOOTSTRAP_NODE_ID")]
    pub bootstrap_node_id: Option<u64>,
    /// JSON file of issuer public keys registered when the cluster is bootstrapped.
    #[arg(long, env = "SPENTLEDGER_GENESIS_ISSUER_KEYS")]
    pub genesis_issuer_keys: Option<PathBuf>,
    /// Payments accepted in one SubmitBatch.
    #[arg(long, env = "SPENTLEDGER_BATCH_PAYMENTS_MAX")]
    pub batch_payments_max: Option<usize>,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "SPENTLEDGER_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (maximum is twice this).
    #[arg(long, env = "SPENTLEDGER_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Entries between snapshots.
    #[arg(long, env = "SPENTLEDGER_SNAPSHOT_AFTER_ENTRIES")]
    pub snapshot_after_entries: Option<u64>,
    /// Threads for payment validation (default: all cores).
    #[arg(long, env = "SPENTLEDGER_VALIDATION_THREADS")]
    pub validation_threads: Option<usize>,
    /// Threads the state machine validates followers' entries with
    /// (default: --validation-threads). Lower it when nodes share a machine.
    #[arg(long, env = "SPENTLEDGER_APPLY_VALIDATION_THREADS")]
    pub apply_validation_threads: Option<usize>,
    /// Nice value of those threads, 0 (normal) to 19: a follower's re-validation yields the
    /// cores to what clients wait for [default: 10].
    #[arg(long, env = "SPENTLEDGER_APPLY_VALIDATION_NICE")]
    pub apply_validation_nice: Option<i32>,
    /// Address serving Prometheus metrics at /metrics (default: not served).
    #[arg(long, env = "SPENTLEDGER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Payments admitted at once (validating, queued or being written);
    /// beyond it submissions get RESOURCE_EXHAUSTED with a retry hint [default: 20000].
    #[arg(long, env = "SPENTLEDGER_SUBMIT_QUEUE_PAYMENTS_MAX")]
    pub submit_queue_payments_max: Option<usize>,
    /// Payments coalesced into one Raft entry [default: 4096].
    #[arg(long, env = "SPENTLEDGER_ENTRY_PAYMENTS_MAX")]
    pub entry_payments_max: Option<usize>,
    /// Encoded payment bytes in one Raft entry [default: 8388608].
    #[arg(long, env = "SPENTLEDGER_ENTRY_BYTES_MAX")]
    pub entry_bytes_max: Option<usize>,
    /// How long the leader waits for more batches to share an entry, in ms [default: 0: batches
    /// that queued while the previous entry was validated share the next one anyway].
    #[arg(long, env = "SPENTLEDGER_SUBMIT_LINGER_MS")]
    pub submit_linger_ms: Option<u64>,
    /// As leader, hold new entries while a majority needs more than this many ms to catch up
    /// with this node's apply, at its recent pace (flow control: a new leader then never faces
    /// a longer backlog); 0 turns it off [default: 1000].
    #[arg(long, env = "SPENTLEDGER_APPLY_LAG_MS_MAX")]
    pub apply_lag_ms_max: Option<u64>,
    /// On SIGTERM, how long in-flight requests may run before being cut, in ms [default: 10000].
    #[arg(long, env = "SPENTLEDGER_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// How often this node compares its state digest with its peers', in ms;
    /// a node that disagrees with all of them stops serving [default: 10000].
    #[arg(long, env = "SPENTLEDGER_DIGEST_AUDIT_INTERVAL_MS")]
    pub digest_audit_interval_ms: Option<u64>,
    /// This cluster's id, the same on every member and unique among
    /// clusters that could reach one another: stamped on every Raft message
    /// and required on those received, so a node never takes another
    /// cluster's messages for its own (1-63 characters of A-Z a-z 0-9 . _ -)
    /// [default: spentledger].
    #[arg(long, env = "SPENTLEDGER_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// PEM certificate (chain) this node presents to clients and peers. With
    /// --tls-key and --tls-ca: mutual TLS, and every RPC checked against the
    /// caller certificate's role (gateway, issuer, admin, peer).
    #[arg(long, env = "SPENTLEDGER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; refused when other users may read it.
    #[arg(long, env = "SPENTLEDGER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the CA that signs every node and client certificate.
    #[arg(long, env = "SPENTLEDGER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Also serve the standard gRPC health service, alone and in plaintext,
    /// here (for probes that cannot present a client certificate).
    #[arg(long, env = "SPENTLEDGER_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Fill the (new, empty) data directory from this snapshot file and its
    /// `.meta` sidecar, then exit: run it for every member with the same
    /// backup, then start the members as usual (docs/OPERATIONS.md).
    #[arg(long, env = "SPENTLEDGER_RESTORE_FROM_SNAPSHOT")]
    pub restore_from_snapshot: Option<PathBuf>,
    /// Serve without TLS and without access control (development only; the
    /// node logs a warning). Required when no TLS files are given.
    #[arg(long, env = "SPENTLEDGER_PLAINTEXT")]
    pub plaintext: bool,
}

/// The same settings as a TOML file (kebab-case keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSettings {
    pub node_id: Option<u64>,
    #[serde(default)]
    pub node_id_from_hostname: bool,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub initial_members: Vec<String>,
    #[serde(default)]
    pub bootstrap: bool,
    pub bootstrap_node_id: Option<u64>,
    #[serde(default)]
    pub join: bool,
    pub genesis_issuer_keys: Option<PathBuf>,
    pub batch_payments_max: Option<usize>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub snapshot_after_entries: Option<u64>,
    pub validation_threads: Option<usize>,
    pub apply_validation_threads: Option<usize>,
    pub apply_validation_nice: Option<i32>,
    pub metrics_listen: Option<SocketAddr>,
    pub submit_queue_payments_max: Option<usize>,
    pub entry_payments_max: Option<usize>,
    pub entry_bytes_max: Option<usize>,
    pub submit_linger_ms: Option<u64>,
    pub apply_lag_ms_max: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub digest_audit_interval_ms: Option<u64>,
    pub cluster_id: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub health_listen: Option<SocketAddr>,
    #[serde(default)]
    pub plaintext: bool,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub initial_members: BTreeMap<u64, String>,
    pub bootstrap: bool,
    pub join: bool,
    pub genesis_issuer_keys: Vec<spentledger_protocol::IssuerKey>,
    pub batch_payments_max: usize,
    pub timings: RaftTimings,
    /// Ingress validation (the leader checks what it proposes).
    pub validation_threads: usize,
    /// The state machine's validation of entries it did not propose.
    pub apply_validation_threads: usize,
    pub apply_validation_nice: i32,
    pub metrics_listen: Option<SocketAddr>,
    pub submit: CoalescerLimits,
    pub apply_lag: ApplyLagLimits,
    pub drain_timeout_ms: u64,
    pub digest_audit_interval_ms: u64,
    pub cluster_id: ClusterId,
    /// `None`: plaintext, chosen explicitly.
    pub tls: Option<NodeTls>,
    /// Restore the data directory from this snapshot instead of running.
    pub restore_from_snapshot: Option<PathBuf>,
    pub health_listen: Option<SocketAddr>,
}

/// A numeric setting from flags/env, else the file, else `default`, checked
/// against an inclusive range.
fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    flag: &'static str,
    from_flags: Option<T>,
    from_file: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    let value = from_flags.or(from_file).unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            flag,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{0} is required")]
    Missing(&'static str),
    #[error("--{flag}: {problem}")]
    Invalid { flag: &'static str, problem: String },
    #[error("config file {path}: {problem}")]
    File { path: String, problem: String },
}

/// `name-<ordinal>` to ordinal + 1 (StatefulSet pod names).
pub fn node_id_from_hostname(host: &str) -> Option<u64> {
    let (_, ordinal) = host.rsplit_once('-')?;
    ordinal.parse::<u64>().ok()?.checked_add(1)
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        problem: problem.into(),
    }
}

/// One genesis issuer key as JSON (hex public key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisKey {
    key_id: String,
    public_key_hex: String,
    valid_from_ms: u64,
    valid_until_ms: u64,
}

fn read_genesis_keys(path: &PathBuf) -> Result<Vec<spentledger_protocol::IssuerKey>, ConfigError> {
    let flag = "genesis-issuer-keys";
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(flag, format!("{}: {e}", path.display())))?;
    let keys: Vec<GenesisKey> = serde_json::from_str(&text)
        .map_err(|e| invalid(flag, format!("{}: {e}", path.display())))?;
    keys.into_iter()
        .enumerate()
        .map(|(i, k)| {
            let bytes: Vec<u8> = (0..k.public_key_hex.len())
                .step_by(2)
                .map(|j| {
                    k.public_key_hex
                        .get(j..j + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<_>>()
                .ok_or_else(|| invalid(flag, format!("key {i}: public_key_hex is not hex")))?;
            let wire = spentledger_protocol::pb::IssuerKey {
                key_id: k.key_id,
                public_key: bytes,
                valid_from_ms: k.valid_from_ms,
                valid_until_ms: k.valid_until_ms,
            };
            spentledger_protocol::IssuerKey::try_from(&wire)
                .map_err(|e| invalid(flag, format!("key {i}: {e}")))
        })
        .collect()
}

impl NodeConfig {
    /// Merges file < environment/flags and checks every value.
    pub fn resolve(flags: Flags) -> Result<NodeConfig, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    problem: e.to_string(),
                })?;
                toml::from_str::<FileSettings>(&text).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    problem: e.to_string(),
                })?
            }
            None => FileSettings::default(),
        };
        let node_id = match flags.node_id.or(file.node_id) {
            Some(id) => id,
            None if flags.node_id_from_hostname || file.node_id_from_hostname => {
                let host = std::env::var("HOSTNAME").unwrap_or_default();
                node_id_from_hostname(&host).ok_or_else(|| {
                    invalid(
                        "node-id-from-hostname",
                        format!("HOSTNAME {host:?} does not end in -<ordinal>"),
                    )
                })?
            }
            None => return Err(ConfigError::Missing("node-id")),
        };
        if node_id == 0 {
            return Err(invalid("node-id", "must be at least 1"));
        }
        let listen = flags
            .listen
            .or(file.listen)
            .ok_or(ConfigError::Missing("listen"))?;
        let advertise = flags
            .advertise
            .or(file.advertise)
            .unwrap_or_else(|| listen.to_string());
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .ok_or(ConfigError::Missing("data-dir"))?;
        let bootstrap = flags.bootstrap
            || file.bootstrap
            || flags.bootstrap_node_id.or(file.bootstrap_node_id) == Some(node_id);
        let members_text = if flags.initial_members.is_empty() {
            file.initial_members
        } else {
            flags.initial_members
        };
        let mut initial_members = BTreeMap::new();
        for item in members_text.iter().filter(|s| !s.trim().is_empty()) {
            let (id, addr) = item.split_once('=').ok_or_else(|| {
                invalid("initial-members", format!("{item:?} is not id=host:port"))
            })?;
            let id: u64 = id
                .trim()
                .parse()
                .ok()
                .filter(|id| *id >= 1)
                .ok_or_else(|| {
                    invalid(
                        "initial-members",
                        format!("{item:?}: node id must be an integer >= 1"),
                    )
                })?;
            if !addr.contains(':') {
                return Err(invalid(
                    "initial-members",
                    format!("{item:?}: address needs host:port"),
                ));
            }
            if initial_members.insert(id, addr.trim().to_owned()).is_some() {
                return Err(invalid(
                    "initial-members",
                    format!("node {id} listed twice"),
                ));
            }
        }
        if bootstrap && !initial_members.contains_key(&node_id) {
            return Err(invalid(
                "initial-members",
                format!("must include this node ({node_id}) when bootstrapping"),
            ));
        }
        let genesis_issuer_keys = match flags.genesis_issuer_keys.or(file.genesis_issuer_keys) {
            Some(path) => read_genesis_keys(&path)?,
            None => Vec::new(),
        };
        let batch_payments_max = flags
            .batch_payments_max
            .or(file.batch_payments_max)
            .unwrap_or(1_000);
        if !(1..=100_000).contains(&batch_payments_max) {
            return Err(invalid("batch-payments-max", "must be 1..=100000"));
        }
        let defaults = RaftTimings::default();
        let heartbeat = flags
            .heartbeat_ms
            .or(file.heartbeat_ms)
            .unwrap_or(defaults.heartbeat_interval_ms);
        let election = flags
            .election_timeout_ms
            .or(file.election_timeout_ms)
            .unwrap_or(defaults.election_timeout_min_ms);
        if heartbeat == 0 || election <= heartbeat * 2 {
            return Err(invalid(
                "election-timeout-ms",
                format!("must exceed twice the heartbeat ({heartbeat} ms)"),
            ));
        }
        let snapshot_after_entries = flags
            .snapshot_after_entries
            .or(file.snapshot_after_entries)
            .unwrap_or(defaults.snapshot_after_entries);
        if snapshot_after_entries == 0 {
            return Err(invalid("snapshot-after-entries", "must be at least 1"));
        }
        let validation_threads = flags
            .validation_threads
            .or(file.validation_threads)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if !(1..=256).contains(&validation_threads) {
            return Err(invalid("validation-threads", "must be 1..=256"));
        }
        let apply_validation_threads = flags
            .apply_validation_threads
            .or(file.apply_validation_threads)
            .unwrap_or(validation_threads);
        if !(1..=256).contains(&apply_validation_threads) {
            return Err(invalid("apply-validation-threads", "must be 1..=256"));
        }
        let apply_validation_nice = bounded(
            "apply-validation-nice",
            flags.apply_validation_nice,
            file.apply_validation_nice,
            VALIDATION_NICE_DEFAULT,
            0..=19,
        )?;
        let submit_defaults = CoalescerLimits::default();
        let queue_payments_max = bounded(
            "submit-queue-payments-max",
            flags.submit_queue_payments_max,
            file.submit_queue_payments_max,
            submit_defaults.queue_payments_max,
            1..=10_000_000,
        )?;
        if queue_payments_max < batch_payments_max {
            return Err(invalid(
                "submit-queue-payments-max",
                format!(
                    "{queue_payments_max} is below --batch-payments-max ({batch_payments_max}): a full batch could never be admitted"
                ),
            ));
        }
        let submit = CoalescerLimits {
            queue_payments_max,
            entry_payments_max: bounded(
                "entry-payments-max",
                flags.entry_payments_max,
                file.entry_payments_max,
                submit_defaults.entry_payments_max,
                1..=100_000,
            )?,
            // Half the Raft message limit leaves room for the entry's framing
            // and for a second entry in the same AppendEntries.
            entry_bytes_max: bounded(
                "entry-bytes-max",
                flags.entry_bytes_max,
                file.entry_bytes_max,
                submit_defaults.entry_bytes_max,
                1_024..=RAFT_MESSAGE_BYTES_MAX / 2,
            )?,
            linger_ms: bounded(
                "submit-linger-ms",
                flags.submit_linger_ms,
                file.submit_linger_ms,
                submit_defaults.linger_ms,
                0..=1_000,
            )?,
            ..submit_defaults
        };
        let apply_lag_defaults = ApplyLagLimits::default();
        let apply_lag = ApplyLagLimits {
            lag_ms_max: bounded(
                "apply-lag-ms-max",
                flags.apply_lag_ms_max,
                file.apply_lag_ms_max,
                apply_lag_defaults.lag_ms_max,
                0..=600_000,
            )?,
            ..apply_lag_defaults
        };
        let drain_timeout_ms = bounded(
            "drain-timeout-ms",
            flags.drain_timeout_ms,
            file.drain_timeout_ms,
            10_000,
            0..=600_000,
        )?;
        let digest_audit_interval_ms = bounded(
            "digest-audit-interval-ms",
            flags.digest_audit_interval_ms,
            file.digest_audit_interval_ms,
            10_000,
            100..=3_600_000,
        )?;
        let cluster_id = match flags.cluster_id.or(file.cluster_id) {
            Some(text) => ClusterId::new(&text).map_err(|e| invalid("cluster-id", e))?,
            None => ClusterId::default(),
        };
        let tls = resolve_tls(
            flags.tls_cert.or(file.tls_cert),
            flags.tls_key.or(file.tls_key),
            flags.tls_ca.or(file.tls_ca),
            flags.plaintext || file.plaintext,
        )?;
        Ok(NodeConfig {
            node_id,
            listen,
            advertise,
            data_dir,
            initial_members,
            bootstrap,
            join: flags.join || file.join,
            genesis_issuer_keys,
            batch_payments_max,
            timings: RaftTimings {
                heartbeat_interval_ms: heartbeat,
                election_timeout_min_ms: election,
                election_timeout_max_ms: election * 2,
                snapshot_after_entries,
                logs_kept_after_snapshot: defaults.logs_kept_after_snapshot,
            },
            validation_threads,
            apply_validation_threads,
            apply_validation_nice,
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            submit,
            apply_lag,
            drain_timeout_ms,
            digest_audit_interval_ms,
            cluster_id,
            tls,
            health_listen: flags.health_listen.or(file.health_listen),
            restore_from_snapshot: flags.restore_from_snapshot,
        })
    }
}

/// TLS from all three files, or plaintext when asked for explicitly;
/// anything in between is a configuration error.
fn resolve_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    plaintext: bool,
) -> Result<Option<NodeTls>, ConfigError> {
    match (cert, key, ca, plaintext) {
        (None, None, None, true) => Ok(None),
        (None, None, None, false) => Err(invalid(
            "tls-cert",
            "TLS is required: give --tls-cert, --tls-key and --tls-ca \
             (spentledger certs init makes them), or --plaintext for development",
        )),
        (_, _, _, true) => Err(invalid(
            "plaintext",
            "--plaintext contradicts the --tls-* files given",
        )),
        (Some(cert), Some(key), Some(ca), false) => {
            NodeTls::load(&cert, &key, &ca).map(Some).map_err(|e| {
                let flag = match &e {
                    TlsError::KeyExposed { .. } => "tls-key",
                    _ => "tls-cert",
                };
                invalid(flag, e.to_string())
            })
        }
        (cert, key, _, false) => Err(invalid(
            if cert.is_none() {
                "tls-cert"
            } else if key.is_none() {
                "tls-key"
            } else {
                "tls-ca"
            },
            "--tls-cert, --tls-key and --tls-ca go together",
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn resolve(extra: &[&str]) -> Result<NodeConfig, ConfigError> {
        let mut args = vec![
            "spentledger-node",
            "--plaintext",
            "--node-id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--data-dir",
            "/nonexistent/spentledger-config-test",
        ];
        args.extend_from_slice(extra);
        NodeConfig::resolve(Flags::try_parse_from(args).expect("flags parse"))
    }

    #[test]
    fn apply_validation_threads_default_to_the_validation_threads_and_can_be_fewer() {
        let both = resolve(&["--validation-threads", "3"]).expect("valid");
        assert_eq!(
            (both.validation_threads, both.apply_validation_threads),
            (3, 3)
        );
        let split = resolve(&[
            "--validation-threads",
            "2",
            "--apply-validation-threads",
            "1",
        ])
        .expect("valid");
        assert_eq!(
            (split.validation_threads, split.apply_validation_threads),
            (2, 1)
        );
        let err = resolve(&["--apply-validation-threads", "0"]).expect_err("0 threads is refused");
        assert!(
            err.to_string().contains("--apply-validation-threads"),
            "the error names the flag: {err}"
        );
        assert_eq!(both.apply_validation_nice, VALIDATION_NICE_DEFAULT);
        let normal = resolve(&["--apply-validation-nice", "0"]).expect("0 is normal priority");
        assert_eq!(normal.apply_validation_nice, 0);
        for bad in ["--apply-validation-nice=20", "--apply-validation-nice=-1"] {
            let err = resolve(&[bad]).expect_err("outside 0..=19");
            assert!(err.to_string().contains("apply-validation-nice"), "{err}");
        }
    }

    #[test]
    fn apply_lag_flow_control_is_on_by_default_bounded_and_can_be_turned_off() {
        let default = resolve(&[]).expect("valid");
        assert_eq!(default.apply_lag, ApplyLagLimits::default());
        assert_eq!(default.apply_lag.lag_ms_max, 1_000);
        let off = resolve(&["--apply-lag-ms-max", "0"]).expect("0 turns it off");
        assert_eq!(off.apply_lag.lag_ms_max, 0);
        let set = resolve(&["--apply-lag-ms-max", "2500"]).expect("valid");
        assert_eq!(set.apply_lag.lag_ms_max, 2_500);
        assert_eq!(set.apply_lag.poll_ms, ApplyLagLimits::default().poll_ms);
        let err = resolve(&["--apply-lag-ms-max", "600001"]).expect_err("past ten minutes");
        assert!(
            err.to_string().contains("apply-lag-ms-max"),
            "the error names the flag: {err}"
        );
    }
}
