//! The checker as a specification: a clean history passes, and each rule
//! catches the violation planted for it.

use spentledger_chaos::checker::{Violation, check, excerpt};
use spentledger_chaos::history::{Answer, Event, History, Outcome, PaymentRef};

fn payment(tx: &str, cert: &str, nullifiers: &[&str]) -> PaymentRef {
    PaymentRef {
        tx_id: tx.to_owned(),
        cert_id: cert.to_owned(),
        nullifiers: nullifiers.iter().map(|n| (*n).to_owned()).collect(),
    }
}

fn answer(tx: &str, verdict: &str) -> Answer {
    Answer {
        tx_id: tx.to_owned(),
        verdict: verdict.to_owned(),
        receipt_tx_id: matches!(verdict, "ACCEPTED" | "DUPLICATE").then(|| tx.to_owned()),
        conflict_tx_id: None,
        reason: None,
    }
}

fn final_state(node: u64, accepted: &[&str], revoked: &[&str]) -> Event {
    Event::Final {
        node,
        applied_index: 40,
        digest: "d1".into(),
        accepted: accepted.iter().map(|s| (*s).to_owned()).collect(),
        revoked: revoked.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Two gateways on two sides of a partition: t1 accepted, t2 spends the
/// same token and is caught, t1's retry is a duplicate; after the heal a
/// fresh payment t3 is accepted; three replicas end equal.
fn clean() -> History {
    let mut double = answer("t2", "DOUBLE_SPEND");
    double.conflict_tx_id = Some("t1".into());
    History {
        events: vec![
            Event::Start {
                scenario: "partition-halves".into(),
                seed: 42,
            },
            Event::Invoke {
                op: 1,
                gateway: 1,
                node: "n1".into(),
                t_ms: 10,
                payments: vec![payment("t1", "c1", &["x1", "x2"])],
            },
            Event::Nemesis {
                t_ms: 20,
                action: "partition {1,2} {3}".into(),
            },
            Event::Complete {
                op: 1,
                t_ms: 30,
                result: Outcome::Answered {
                    answers: vec![answer("t1", "ACCEPTED")],
                },
            },
            Event::Invoke {
                op: 2,
                gateway: 2,
                node: "n3".into(),
                t_ms: 40,
                payments: vec![payment("t2", "c2", &["x2", "x9"])],
            },
            Event::Complete {
                op: 2,
                t_ms: 2_000,
                result: Outcome::Failed {
                    error: "deadline exceeded".into(),
                },
            },
            Event::Nemesis {
                t_ms: 3_000,
                action: Event::HEAL.into(),
            },
            Event::Invoke {
                op: 3,
                gateway: 2,
                node: "n3".into(),
                t_ms: 3_100,
                payments: vec![
                    payment("t2", "c2", &["x2", "x9"]),
                    payment("t3", "c3", &["x5"]),
                ],
            },
            Event::Complete {
                op: 3,
                t_ms: 3_500,
                result: Outcome::Answered {
                    answers: vec![double, answer("t3", "ACCEPTED")],
                },
            },
            Event::Invoke {
                op: 4,
                gateway: 1,
                node: "n2".into(),
                t_ms: 3_600,
                payments: vec![payment("t1", "c1", &["x1", "x2"])],
            },
            Event::Complete {
                op: 4,
                t_ms: 3_700,
                result: Outcome::Answered {
                    answers: vec![answer("t1", "DUPLICATE")],
                },
            },
            final_state(1, &["t1", "t3"], &["c2"]),
            final_state(2, &["t1", "t3"], &["c2"]),
            final_state(3, &["t1", "t3"], &["c2"]),
        ],
    }
}

fn with(mut history: History, edit: impl FnOnce(&mut Vec<Event>)) -> History {
    edit(&mut history.events);
    history
}

fn must_find(history: &History, expected: &Violation) {
    let report = check(history, 1_000);
    assert!(
        report.violations.contains(expected),
        "expected {expected:?}, got {:?}",
        report.violations
    );
}

#[test]
fn a_clean_history_passes_and_survives_a_jsonl_round_trip() {
    let history = clean();
    let text = history.to_jsonl();
    let again = History::parse(&text).expect("parse");
    assert_eq!(again, history);
    let report = check(&again, 1_000);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.seed, Some(42));
    assert_eq!(report.stats.requests, 4);
    assert_eq!(report.stats.failed_requests, 1);
    assert_eq!(report.stats.faults, 1);
    assert_eq!(report.stats.verdicts["ACCEPTED"], 2);
}

#[test]
fn a_token_accepted_twice_is_caught_and_shown_with_its_history_lines() {
    // t2 accepted as well (a split brain would do this).
    let history = with(clean(), |e| {
        e.push(final_state(4, &["t1", "t2", "t3"], &["c2"]));
    });
    let v = Violation::NullifierSpentTwice {
        nullifier: "x2".into(),
        tx_ids: ["t1".into(), "t2".into()],
    };
    must_find(&history, &v);
    let lines = excerpt(&history.to_jsonl(), &v);
    assert!(lines.iter().any(|(_, l)| l.contains("\"t2\"")), "{lines:?}");
}

#[test]
fn an_acknowledged_payment_missing_after_healing_is_lost() {
    let history = with(clean(), |e| {
        e.pop();
        e.push(final_state(3, &["t3"], &["c2"]));
    });
    must_find(
        &history,
        &Violation::AcknowledgedLost {
            tx_id: "t1".into(),
            node: 3,
        },
    );
}

#[test]
fn duplicates_and_double_spends_must_name_accepted_payments() {
    let history = with(clean(), |e| {
        for event in e.iter_mut() {
            if let Event::Complete {
                result: Outcome::Answered { answers },
                ..
            } = event
            {
                for a in answers.iter_mut() {
                    match a.verdict.as_str() {
                        "DUPLICATE" => a.receipt_tx_id = Some("t9".into()),
                        "DOUBLE_SPEND" => a.conflict_tx_id = Some("t3".into()),
                        _ => {}
                    }
                }
            }
        }
    });
    must_find(
        &history,
        &Violation::DuplicateWithoutOriginal { tx_id: "t1".into() },
    );
    // t3 is accepted but spends none of t2's tokens.
    must_find(
        &history,
        &Violation::DoubleSpendWithoutConflict { tx_id: "t2".into() },
    );
}

#[test]
fn a_double_spend_must_revoke_its_certificate_on_every_node() {
    let history = with(clean(), |e| {
        e.pop();
        e.push(final_state(3, &["t1", "t3"], &[]));
    });
    must_find(
        &history,
        &Violation::RevocationMissing {
            cert_id: "c2".into(),
            node: 3,
        },
    );
}

#[test]
fn replicas_must_end_equal_and_final_states_must_be_recorded() {
    let history = with(clean(), |e| {
        if let Some(Event::Final { digest, .. }) = e.last_mut() {
            *digest = "d2".into();
        }
    });
    let report = check(&history, 1_000);
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::Diverged { states } if states.len() == 3)),
        "{:?}",
        report.violations
    );
    let history = with(clean(), |e| e.retain(|x| !matches!(x, Event::Final { .. })));
    must_find(&history, &Violation::NoFinalState);
}

#[test]
fn a_write_must_succeed_within_the_bound_after_the_heal() {
    // The first success after the heal (t = 3,000 ms) comes at 3,500 ms.
    assert!(check(&clean(), 500).violations.is_empty());
    let report = check(&clean(), 499);
    assert_eq!(
        report.violations,
        vec![Violation::NotLive {
            healed_at_ms: 3_000,
            bound_ms: 499,
        }]
    );
}

#[test]
fn the_cli_exits_0_on_a_clean_history_1_with_seed_and_excerpt_on_a_violation_2_on_bad_input() {
    let dir = std::env::temp_dir().join(format!("spentledger-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let run = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write history");
        std::process::Command::new(env!("CARGO_BIN_EXE_spentledger-check"))
            .arg(&path)
            .output()
            .expect("run spentledger-check")
    };
    let ok = run("clean.jsonl", &clean().to_jsonl());
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("no violations"));
    let lost = with(clean(), |e| {
        e.pop();
        e.push(final_state(3, &["t3"], &["c2"]));
    });
    let bad = run("lost.jsonl", &lost.to_jsonl());
    let out = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("seed 42"), "{out}");
    assert!(out.contains("acknowledged ACCEPTED but node 3"), "{out}");
    assert!(
        out.contains("    2: "),
        "the excerpt shows numbered lines: {out}"
    );
    let unreadable = run("garbage.jsonl", "{not json\n");
    assert_eq!(unreadable.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).expect("clean up");
}
