//! Money invariants over random workloads (proptest): whatever gateways
//! submit, in whatever order and grouping, the ledger never credits a token
//! twice and its books balance.

use std::collections::BTreeMap;

use proptest::prelude::*;
use spentledger_node::state_machine::{CommandOutcome, PaymentOutcome};
use spentledger_protocol::{CertId, Nullifier, Payment, TxId, pb};

use crate::world::*;

/// One thing a gateway or issuer does.
#[derive(Debug, Clone)]
enum Action {
    /// Device pays a fresh amount.
    Pay { device: usize, amount: u64 },
    /// Device re-signs the tokens of its n-th payment (double spend).
    Respend { device: usize, nth: usize },
    /// A cloned device reuses the counter of its n-th payment on fresh tokens.
    Clone { device: usize, nth: usize },
    /// A gateway retries the n-th payment submitted so far.
    Retry { nth: usize },
    /// The issuer force-settles the device's certificate.
    Settle { device: usize },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..6usize, 1..300u64).prop_map(|(device, amount)| Action::Pay { device, amount }),
        2 => (0..6usize, 0..4usize).prop_map(|(device, nth)| Action::Respend { device, nth }),
        1 => (0..6usize, 0..4usize).prop_map(|(device, nth)| Action::Clone { device, nth }),
        2 => (0..64usize).prop_map(|nth| Action::Retry { nth }),
        1 => (0..6usize).prop_map(|device| Action::Settle { device }),
    ]
}

/// Turns actions into log commands (batches of up to `batch` payments).
fn commands(actions: &[Action], batch: usize) -> Vec<pb::Command> {
    let mut wallets: Vec<_> = (0..6u8).map(|d| wallet(d + 100, 4_000)).collect();
    let mut paid: Vec<Vec<Payment>> = vec![Vec::new(); 6];
    let mut submitted: Vec<Payment> = Vec::new();
    let mut pending: Vec<Payment> = Vec::new();
    let mut out = Vec::new();
    let mut stamp = T0_MS + HOUR_MS;
    let flush = |pending: &mut Vec<Payment>, out: &mut Vec<pb::Command>, stamp: u64| {
        if !pending.is_empty() {
            out.push(submit_cmd(stamp, pending));
            pending.clear();
        }
    };
    for (step, a) in actions.iter().enumerate() {
        stamp += 1_000;
        let p = match a {
            Action::Pay { device, amount } => {
                let challenge = [step as u8; 32];
                wallets[*device]
                    .pay(*amount, &id("m"), challenge, T0_MS + 600_000)
                    .ok()
                    .inspect(|p| paid[*device].push(p.clone()))
            }
            Action::Respend { device, nth } => paid[*device].get(*nth).map(|first| {
                let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
                wallets[*device]
                    .sign_payment(&tokens, 1_000 + step as u64, &id("m2"), [7; 32], T0_MS)
                    .expect("sign")
            }),
            Action::Clone { device, nth } => paid[*device].get(*nth).and_then(|first| {
                let w = &wallets[*device];
                let fresh = w
                    .tokens()
                    .iter()
                    .map(|t| t.index)
                    .find(|i| !w.is_spent(*i))?;
                Some(
                    w.sign_payment(&[fresh], first.counter, &id("m3"), [8; 32], T0_MS)
                        .expect("sign"),
                )
            }),
            Action::Retry { nth } => submitted.get(*nth).cloned(),
            Action::Settle { device } => {
                flush(&mut pending, &mut out, stamp);
                let cert = wallets[*device].certificate().clone();
                out.push(command(
                    stamp,
                    pb::command::Kind::Settle(pb::SettleCommand {
                        certificate: Some((&cert).into()),
                        force: true,
                        force_reason: "test".into(),
                    }),
                ));
                None
            }
        };
        if let Some(p) = p {
            submitted.push(p.clone());
            pending.push(p);
            if pending.len() >= batch {
                flush(&mut pending, &mut out, stamp);
            }
        }
    }
    flush(&mut pending, &mut out, stamp);
    out
}

/// Checks the books of a world after a log was applied, given its outcomes.
fn must_balance(w: &World, outcomes: &[CommandOutcome]) {
    let mut accepted: BTreeMap<TxId, Payment> = BTreeMap::new();
    for a in w.store.accepted.values() {
        accepted.insert(a.receipt.tx_id, a.payment.clone());
    }
    // 1. No token credited to two accepted payments.
    let mut owner: BTreeMap<Nullifier, TxId> = BTreeMap::new();
    for (tx, p) in &accepted {
        for n in p.nullifiers() {
            if let Some(other) = owner.insert(n, *tx) {
                panic!("token {n} credited to both {other} and {tx}");
            }
        }
    }
    // 2. Every live nullifier of an accepted payment points to it.
    for (n, record) in &w.store.nullifiers {
        if !record.held {
            assert_eq!(
                owner.get(n),
                Some(&record.tx_id),
                "nullifier {n} points elsewhere"
            );
        }
    }
    // 3. Spent value per certificate = sum of its accepted amounts.
    let mut spent: BTreeMap<CertId, u64> = BTreeMap::new();
    for p in accepted.values() {
        *spent.entry(p.certificate.cert_id()).or_default() += p.amount;
    }
    for (cert_id, record) in &w.store.certificates {
        assert_eq!(
            record.state.spent_value,
            spent.get(cert_id).copied().unwrap_or(0),
            "spent of {cert_id}"
        );
        assert_eq!(
            record.state.payment_count as usize,
            accepted
                .values()
                .filter(|p| p.certificate.cert_id() == *cert_id)
                .count()
        );
    }
    // 4. Settlements balance, and no payment was accepted after its certificate settled.
    for s in w.store.settlements.values() {
        assert_eq!(
            s.total_value,
            s.spent_value + s.held_value + s.unspent_value
        );
    }
    // 4b. A settled certificate's spent tokens (accepted and held) and its
    // counters are compacted away.
    for cert_id in w.store.settlements.keys() {
        let payments = accepted
            .values()
            .chain(w.store.held_payments.values())
            .filter(|p| p.certificate.cert_id() == *cert_id);
        for p in payments {
            for n in p.nullifiers() {
                assert!(
                    !w.store.nullifiers.contains_key(&n),
                    "nullifier {n} of settled {cert_id} kept"
                );
            }
        }
        assert!(
            w.store.counters.keys().all(|k| k.cert_id != *cert_id),
            "a counter of settled {cert_id} kept"
        );
    }
    // 5. A recorded payment leaves a trace: one of its nullifiers, or its certificate
    // settled. Apply's read-ahead skips the receipt look-up of a payment without one
    // (node/src/state_machine/read_ahead.rs), so a ledger change breaking this would
    // turn retries into second acceptances.
    for (tx, p) in &accepted {
        let cert_id = p.certificate.cert_id();
        let settled = w
            .store
            .certificates
            .get(&cert_id)
            .is_some_and(|r| r.state.settled);
        assert!(
            settled
                || p.nullifiers()
                    .iter()
                    .any(|n| w.store.nullifiers.contains_key(n)),
            "accepted {tx} left no nullifier and its certificate {cert_id} is not settled"
        );
    }
    // 6. Every verdict of every payment is accounted for; duplicates name a real receipt.
    for o in outcomes {
        if let CommandOutcome::Submitted(ps) = o {
            for p in ps {
                match p {
                    PaymentOutcome::Duplicate { receipt } => {
                        assert!(
                            accepted.contains_key(&receipt.tx_id),
                            "duplicate of an unknown receipt"
                        );
                    }
                    PaymentOutcome::DoubleSpend { tx_id, evidence } => {
                        assert!(
                            !accepted.contains_key(tx_id),
                            "a double spend was also accepted"
                        );
                        evidence
                            .verify(&issuer().issuer_key().public_key)
                            .expect("evidence verifies");
                    }
                    _ => {}
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_books_balance_whatever_is_submitted(
        actions in prop::collection::vec(action(), 1..60),
        batch in 1usize..8,
        group in 1usize..5,
    ) {
        let log = commands(&actions, batch);
        let mut one = World::with_threads(1);
        let outcomes: Vec<_> = log.iter().map(|c| one.apply(c.clone())).collect();
        must_balance(&one, &outcomes);
        let mut grouped = World::with_threads(2);
        let mut grouped_outcomes = Vec::new();
        for g in log.chunks(group) {
            grouped_outcomes.extend(grouped.apply_group(g));
        }
        prop_assert_eq!(&outcomes, &grouped_outcomes);
        prop_assert_eq!(&one.store, &grouped.store);
        prop_assert_eq!(one.digest, grouped.digest);
    }
}
