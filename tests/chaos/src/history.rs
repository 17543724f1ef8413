//! The history of one fault run, one JSON object per line. Ids are lower
//! case hex, times are milliseconds since the run started.

use serde::{Deserialize, Serialize};

/// A payment as a gateway sent it: what the checker needs to relate
/// answers (its id, its certificate, the token nullifiers it spends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub tx_id: String,
    pub cert_id: String,
    pub nullifiers: Vec<String>,
}

/// The ledger's answer for one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub tx_id: String,
    /// `ACCEPTED`, `DUPLICATE`, `DOUBLE_SPEND` or `REJECTED`.
    pub verdict: String,
    /// ACCEPTED and DUPLICATE: the tx id the receipt names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_tx_id: Option<String>,
    /// DOUBLE_SPEND: the accepted payment the evidence names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_tx_id: Option<String>,
    /// REJECTED: the reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// One answer per payment, in order.
    Answered { answers: Vec<Answer> },
    /// No answer (timeout, unavailable): the payments' fate is unknown
    /// until the final states tell.
    Failed { error: String },
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// First line: what ran, with which seed.
    Start { scenario: String, seed: u64 },
    /// A gateway sends a batch to a node.
    Invoke {
        op: u64,
        gateway: u32,
        node: String,
        t_ms: u64,
        payments: Vec<PaymentRef>,
    },
    /// The answer to invocation `op`.
    Complete { op: u64, t_ms: u64, result: Outcome },
    /// A fault starts or ends (`heal` ends all of them).
    Nemesis { t_ms: u64, action: String },
    /// A node's state after healing and converging: every accepted tx id
    /// and every revoked certificate.
    Final {
        node: u64,
        applied_index: u64,
        digest: String,
        accepted: Vec<String>,
        revoked: Vec<String>,
    },
}

impl Event {
    /// The action that marks the end of every fault.
    pub const HEAL: &'static str = "heal";
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
}

/// A history read back: its events and their line numbers (from 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    /// Parses JSON Lines; blank lines are skipped.
    pub fn parse(text: &str) -> Result<History, HistoryError> {
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            events.push(serde_json::from_str(line).map_err(|e| HistoryError::Line {
                line: i + 1,
                problem: e.to_string(),
            })?);
        }
        Ok(History { events })
    }

    /// One JSON object per line.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for event in &self.events {
            out.push_str(&serde_json::to_string(event).expect("events always serialize"));
            out.push('\n');
        }
        out
    }

    /// The seed of the run, when the history says.
    pub fn seed(&self) -> Option<u64> {
        self.events.iter().find_map(|e| match e {
            Event::Start { seed, .. } => Some(*seed),
            _ => None,
        })
    }
}

/// Records a run's history as it happens; shared by the workload's tasks and
/// the nemesis. Times are measured from `new`.
#[derive(Debug)]
pub struct Recorder {
    started: std::time::Instant,
    inner: std::sync::Mutex<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    events: Vec<Event>,
    next_op: u64,
}

impl Recorder {
    /// A history that starts with `scenario` and `seed`.
    pub fn new(scenario: &str, seed: u64) -> Recorder {
        Recorder {
            started: std::time::Instant::now(),
            inner: std::sync::Mutex::new(RecorderState {
                events: vec![Event::Start {
                    scenario: scenario.to_owned(),
                    seed,
                }],
                next_op: 1,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut RecorderState) -> T) -> T {
        // A panicking recorder thread leaves whole events behind: go on.
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Milliseconds since the run started.
    pub fn t_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that `gateway` sends `payments` to `node`; returns the op id
    /// to complete.
    pub fn invoke(&self, gateway: u32, node: &str, payments: Vec<PaymentRef>) -> u64 {
        let t_ms = self.t_ms();
        self.with(|s| {
            let op = s.next_op;
            s.next_op += 1;
            s.events.push(Event::Invoke {
                op,
                gateway,
                node: node.to_owned(),
                t_ms,
                payments,
            });
            op
        })
    }

    /// Records how op `op` ended.
    pub fn complete(&self, op: u64, result: Outcome) {
        let t_ms = self.t_ms();
        self.with(|s| s.events.push(Event::Complete { op, t_ms, result }));
    }

    /// Records a fault starting, or [`Event::HEAL`].
    pub fn nemesis(&self, action: &str) {
        let t_ms = self.t_ms();
        self.with(|s| {
            s.events.push(Event::Nemesis {
                t_ms,
                action: action.to_owned(),
            })
        });
    }

    /// Records any event as is (the final states).
    pub fn push(&self, event: Event) {
        self.with(|s| s.events.push(event));
    }

    /// The history so far.
    pub fn history(&self) -> History {
        self.with(|s| History {
            events: s.events.clone(),
        })
    }
}
