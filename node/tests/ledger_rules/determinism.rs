//! Same log, same state: whatever the thread count and however the entries
//! are grouped into apply calls (openraft hands replicas different groups).

use spentledger_protocol::Payment;
use spentledger_protocol::pb;

use crate::world::*;

/// A log of submissions with double spends, clones, bad payments and a settlement.
pub fn workload() -> Vec<pb::Command> {
    let mut wallets: Vec<_> = (0..40u8).map(|d| wallet(d, 3_000)).collect();
    let mut log = Vec::new();
    for round in 0..6u64 {
        let mut batch: Vec<Payment> = Vec::new();
        for (d, w) in wallets.iter_mut().enumerate() {
            let amount = 1 + (d as u64 + round * 7) % 40;
            let Ok(p) = w.pay(amount, &id("m"), [round as u8; 32], T0_MS + 600_000) else {
                continue;
            };
            batch.push(p.clone());
            if d % 9 == 0 {
                // The same tokens again at another merchant (double spend).
                let tokens: Vec<u32> = p.inputs.iter().map(|i| i.leaf.index).collect();
                batch.push(
                    w.sign_payment(&tokens, p.counter + 100, &id("m2"), [9; 32], T0_MS)
                        .expect("sign"),
                );
            }
            if d % 13 == 0 {
                let mut bad = p.clone();
                bad.amount += 1;
                batch.push(bad);
            }
        }
        log.push(submit_cmd(T0_MS + HOUR_MS + round * 1_000, &batch));
    }
    let cert = wallets[5].certificate().clone();
    log.push(command(
        T0_MS + 2 * HOUR_MS,
        pb::command::Kind::Settle(pb::SettleCommand {
            certificate: Some((&cert).into()),
            force: true,
            force_reason: "test".into(),
        }),
    ));
    log
}

#[test]
fn replicas_with_different_threads_and_apply_groupings_agree_byte_for_byte() {
    let log = workload();
    let mut one_by_one = World::with_threads(1);
    let outcomes_a: Vec<_> = log.iter().map(|c| one_by_one.apply(c.clone())).collect();

    let mut grouped = World::with_threads(3);
    let mut outcomes_b = Vec::new();
    for group in log.chunks(3) {
        outcomes_b.extend(grouped.apply_group(group));
    }
    let mut all_at_once = World::with_threads(2);
    let outcomes_c = all_at_once.apply_group(&log);

    assert_eq!(outcomes_a, outcomes_b, "outcomes differ between replicas");
    assert_eq!(outcomes_a, outcomes_c, "outcomes differ between replicas");
    assert_eq!(one_by_one.store, grouped.store, "state differs");
    assert_eq!(one_by_one.store, all_at_once.store, "state differs");
    assert_eq!(one_by_one.digest, grouped.digest);
    assert_eq!(one_by_one.digest, all_at_once.digest);
    eprintln!("--- the workload exercised what it should");
    assert!(
        one_by_one.store.evidence.len() >= 4,
        "double spends recorded"
    );
    assert!(!one_by_one.store.settlements.is_empty());
}

#[test]
fn the_digest_changes_with_any_verdict() {
    let log = workload();
    let mut a = World::new();
    let mut b = World::new();
    for c in &log {
        a.apply(c.clone());
    }
    let mut tampered = log.clone();
    if let Some(pb::command::Kind::Submit(s)) = tampered[0].kind.as_mut() {
        s.payments[0].amount += 1; // ACCEPTED becomes REJECTED(AMOUNT_MISMATCH)
    }
    for c in &tampered {
        b.apply(c.clone());
    }
    assert_ne!(a.digest, b.digest);
}
