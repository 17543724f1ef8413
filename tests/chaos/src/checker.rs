//! The rules a fault run's history must satisfy. Safety: no token spent by
//! two accepted payments; nothing acknowledged is lost; DUPLICATE and
//! DOUBLE_SPEND answers name real accepted payments; every double spend
//! revokes its certificate; all replicas end equal. Liveness: after the
//! last heal, a write succeeds within a bound.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::history::{Answer, Event, History, Outcome, PaymentRef};

/// How long after the last heal a write must succeed, by default.
pub const LIVENESS_BOUND_MS_DEFAULT: u64 = 10_000;
/// History lines shown per violation.
pub const EXCERPT_LINES_MAX: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two different accepted payments spend one token.
    NullifierSpentTwice {
        nullifier: String,
        tx_ids: [String; 2],
    },
    /// An ACCEPTED answer whose payment a node does not hold after healing.
    AcknowledgedLost { tx_id: String, node: u64 },
    /// A DUPLICATE answer that names no accepted original.
    DuplicateWithoutOriginal { tx_id: String },
    /// A DOUBLE_SPEND answer whose evidence names no accepted payment
    /// spending one of the same tokens.
    DoubleSpendWithoutConflict { tx_id: String },
    /// A double spend whose certificate a node did not revoke.
    RevocationMissing { cert_id: String, node: u64 },
    /// Replicas ended at different indexes or digests.
    Diverged { states: Vec<(u64, u64, String)> },
    /// No node's final state was recorded: durability cannot be judged.
    NoFinalState,
    /// No write succeeded within the bound after the last heal.
    NotLive { healed_at_ms: u64, bound_ms: u64 },
}

impl Violation {
    /// The ids whose history lines explain this violation.
    pub fn ids(&self) -> Vec<String> {
        match self {
            Violation::NullifierSpentTwice { nullifier, tx_ids } => {
                vec![nullifier.clone(), tx_ids[0].clone(), tx_ids[1].clone()]
            }
            Violation::AcknowledgedLost { tx_id, .. }
            | Violation::DuplicateWithoutOriginal { tx_id }
            | Violation::DoubleSpendWithoutConflict { tx_id } => vec![tx_id.clone()],
            Violation::RevocationMissing { cert_id, .. } => vec![cert_id.clone()],
            Violation::Diverged { .. } => vec!["\"final\"".to_owned()],
            Violation::NoFinalState => Vec::new(),
            Violation::NotLive { .. } => vec![format!("\"{}\"", Event::HEAL)],
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NullifierSpentTwice { nullifier, tx_ids } => write!(
                f,
                "token {nullifier} accepted twice: by {} and by {}",
                tx_ids[0], tx_ids[1]
            ),
            Violation::AcknowledgedLost { tx_id, node } => {
                write!(
                    f,
                    "payment {tx_id} was acknowledged ACCEPTED but node {node} does not hold it"
                )
            }
            Violation::DuplicateWithoutOriginal { tx_id } => {
                write!(f, "DUPLICATE for {tx_id} names no accepted original")
            }
            Violation::DoubleSpendWithoutConflict { tx_id } => write!(
                f,
                "DOUBLE_SPEND for {tx_id} names no accepted payment spending one of its tokens"
            ),
            Violation::RevocationMissing { cert_id, node } => {
                write!(
                    f,
                    "certificate {cert_id} double-spent but not revoked on node {node}"
                )
            }
            Violation::Diverged { states } => {
                write!(
                    f,
                    "replicas diverged (node, applied index, digest): {states:?}"
                )
            }
            Violation::NoFinalState => write!(f, "the history records no node's final state"),
            Violation::NotLive {
                healed_at_ms,
                bound_ms,
            } => write!(
                f,
                "no write succeeded within {bound_ms} ms of the heal at {healed_at_ms} ms"
            ),
        }
    }
}

/// Counts for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: usize,
    pub failed_requests: usize,
    pub payments: usize,
    /// Answers by verdict.
    pub verdicts: BTreeMap<String, usize>,
    pub faults: usize,
    pub nodes: usize,
}

/// The judgement of one history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub seed: Option<u64>,
    pub stats: Stats,
    pub violations: Vec<Violation>,
}

struct Final<'a> {
    node: u64,
    accepted: BTreeSet<&'a str>,
    revoked: BTreeSet<&'a str>,
}

/// Judges `history`; `liveness_bound_ms` bounds the wait for a successful
/// write after the last heal.
pub fn check(history: &History, liveness_bound_ms: u64) -> Report {
    let mut sent: BTreeMap<&str, &PaymentRef> = BTreeMap::new();
    let mut answers: Vec<&Answer> = Vec::new();
    let mut finals: Vec<Final> = Vec::new();
    let mut end_states: Vec<(u64, u64, String)> = Vec::new();
    let mut completions: Vec<(u64, bool)> = Vec::new();
    let mut last_heal_ms = None;
    let mut stats = Stats::default();
    for event in &history.events {
        match event {
            Event::Start { .. } => {}
            Event::Invoke { payments, .. } => {
                stats.requests += 1;
                stats.payments += payments.len();
                for p in payments {
                    sent.insert(p.tx_id.as_str(), p);
                }
            }
            Event::Complete { t_ms, result, .. } => match result {
                Outcome::Answered { answers: a } => {
                    for answer in a {
                        *stats.verdicts.entry(answer.verdict.clone()).or_default() += 1;
                    }
                    let wrote = a.iter().any(|x| x.verdict != "REJECTED");
                    completions.push((*t_ms, wrote));
                    answers.extend(a);
                }
                Outcome::Failed { .. } => stats.failed_requests += 1,
            },
            Event::Nemesis { t_ms, action } => {
                stats.faults += usize::from(action != Event::HEAL);
                if action == Event::HEAL {
                    last_heal_ms = Some(*t_ms);
                }
            }
            Event::Final {
                node,
                applied_index,
                digest,
                accepted,
                revoked,
            } => {
                finals.push(Final {
                    node: *node,
                    accepted: accepted.iter().map(String::as_str).collect(),
                    revoked: revoked.iter().map(String::as_str).collect(),
                });
                end_states.push((*node, *applied_index, digest.clone()));
            }
        }
    }
    stats.nodes = finals.len();
    let mut violations = Vec::new();

    // Every payment the ledger ever said it accepted, and every one a
    // replica holds.
    let acknowledged: BTreeSet<&str> = answers
        .iter()
        .filter(|a| a.verdict == "ACCEPTED")
        .map(|a| a.tx_id.as_str())
        .collect();
    let accepted: BTreeSet<&str> = acknowledged
        .iter()
        .copied()
        .chain(finals.iter().flat_map(|f| f.accepted.iter().copied()))
        .collect();
    let held_everywhere =
        |tx: &str| !finals.is_empty() && finals.iter().all(|f| f.accepted.contains(tx));

    let mut spender: BTreeMap<&str, &str> = BTreeMap::new();
    for tx in &accepted {
        let Some(payment) = sent.get(tx) else {
            continue;
        };
        for n in &payment.nullifiers {
            match spender.get(n.as_str()) {
                Some(first) if first != tx => violations.push(Violation::NullifierSpentTwice {
                    nullifier: n.clone(),
                    tx_ids: [(*first).to_owned(), (*tx).to_owned()],
                }),
                Some(_) => {}
                None => {
                    spender.insert(n.as_str(), tx);
                }
            }
        }
    }

    if finals.is_empty() {
        violations.push(Violation::NoFinalState);
    }
    for tx in &acknowledged {
        for f in finals.iter().filter(|f| !f.accepted.contains(tx)) {
            violations.push(Violation::AcknowledgedLost {
                tx_id: (*tx).to_owned(),
                node: f.node,
            });
        }
    }

    let mut duplicates_seen = BTreeSet::new();
    let mut double_spends_seen = BTreeSet::new();
    for a in &answers {
        match a.verdict.as_str() {
            "DUPLICATE" if duplicates_seen.insert(a.tx_id.as_str()) => {
                let names_itself = a.receipt_tx_id.as_deref() == Some(a.tx_id.as_str());
                if !names_itself || !held_everywhere(&a.tx_id) {
                    violations.push(Violation::DuplicateWithoutOriginal {
                        tx_id: a.tx_id.clone(),
                    });
                }
            }
            "DOUBLE_SPEND" if double_spends_seen.insert(a.tx_id.as_str()) => {
                let shares_a_token =
                    |conflict: &str| match (sent.get(a.tx_id.as_str()), sent.get(conflict)) {
                        (Some(p), Some(q)) => p.nullifiers.iter().any(|n| q.nullifiers.contains(n)),
                        // Unknown to this history (another gateway's run): the
                        // ledger's word stands for the overlap.
                        _ => true,
                    };
                let named = a
                    .conflict_tx_id
                    .as_deref()
                    .is_some_and(|c| c != a.tx_id && held_everywhere(c) && shares_a_token(c));
                if !named {
                    violations.push(Violation::DoubleSpendWithoutConflict {
                        tx_id: a.tx_id.clone(),
                    });
                }
                if let Some(p) = sent.get(a.tx_id.as_str()) {
                    for f in finals
                        .iter()
                        .filter(|f| !f.revoked.contains(p.cert_id.as_str()))
                    {
                        violations.push(Violation::RevocationMissing {
                            cert_id: p.cert_id.clone(),
                            node: f.node,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    let distinct: BTreeSet<(u64, &str)> = end_states
        .iter()
        .map(|(_, index, digest)| (*index, digest.as_str()))
        .collect();
    if distinct.len() > 1 {
        violations.push(Violation::Diverged { states: end_states });
    }

    if let Some(healed) = last_heal_ms {
        let live = completions
            .iter()
            .any(|(t, wrote)| *wrote && *t >= healed && *t - healed <= liveness_bound_ms);
        if !live {
            violations.push(Violation::NotLive {
                healed_at_ms: healed,
                bound_ms: liveness_bound_ms,
            });
        }
    }

    Report {
        seed: history.seed(),
        stats,
        violations,
    }
}

/// The history lines (1-based number and text) that mention `violation`'s
/// ids, at most [`EXCERPT_LINES_MAX`].
pub fn excerpt(history_text: &str, violation: &Violation) -> Vec<(usize, String)> {
    let ids = violation.ids();
    history_text
        .lines()
        .enumerate()
        .filter(|(_, line)| ids.iter().any(|id| line.contains(id.as_str())))
        .take(EXCERPT_LINES_MAX)
        .map(|(i, line)| (i + 1, line.to_owned()))
        .collect()
}
