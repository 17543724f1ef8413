//! The leader applies its own entries with the verdicts its ingress computed
//! (a precheck) instead of validating again. That may change speed only: the
//! outcomes and the digest must be those of validating again, and a precheck
//! computed in another context (stamp, issuer keys) must not be used.

use prost::Message;
use spentledger_node::state_machine::{
    CommandOutcome, LedgerRead, PaymentOutcome, Prechecked, apply_context,
};
use spentledger_protocol::validate::Checked;
use spentledger_protocol::{Payment, RejectReason, ValidationMode, Validator, direct, pb};

use crate::world::*;

fn ingress_validator() -> Validator {
    Validator::new(2, 1_024).expect("validator threads")
}

/// What the node's ingress does with a gathered entry: validates it as apply
/// will (deterministic mode, apply's context), keeps the payments that pass
/// and their verdicts.
fn ingress_entry(
    world: &World,
    validator: &Validator,
    stamp_ms: u64,
    payments: &[Payment],
) -> (pb::Command, Prechecked) {
    let keys = world.store.issuer_keys().expect("in-memory store");
    let verdicts = validator.validate_batch(
        payments,
        &apply_context(stamp_ms, &keys),
        ValidationMode::Deterministic,
    );
    let passed: Vec<(Payment, Checked)> = payments
        .iter()
        .cloned()
        .zip(verdicts)
        .filter_map(|(payment, verdict)| verdict.ok().map(|checked| (payment, checked)))
        .collect();
    let kept: Vec<Payment> = passed.iter().map(|(p, _)| p.clone()).collect();
    (
        submit_cmd(stamp_ms, &kept),
        Prechecked::new(stamp_ms, keys, passed),
    )
}

/// The entry's bytes as the leader writes them: from each payment's own
/// encoding, not by encoding the command.
fn leader_bytes(cmd: &pb::Command) -> Vec<u8> {
    let Some(pb::command::Kind::Submit(submit)) = &cmd.kind else {
        panic!("a submit command");
    };
    let encodings: Vec<Vec<u8>> = submit.payments.iter().map(Message::encode_to_vec).collect();
    direct::encode_submit_command(cmd.stamp_ms, &encodings)
}

fn must_submitted(outcome: CommandOutcome) -> Vec<PaymentOutcome> {
    match outcome {
        CommandOutcome::Submitted(outcomes) => outcomes,
        other => panic!("expected payment outcomes, got {other:?}"),
    }
}

#[test]
fn a_precheck_gives_the_outcomes_and_digest_of_validating_again() {
    let validator = ingress_validator();
    let mut leader = World::new();
    // The leader as it runs: its entries written from the payments' bytes,
    // applied from those bytes with the precheck.
    let mut leader_from_bytes = World::new();
    let mut follower = World::new();
    let mut wallets: Vec<_> = (0..30u8).map(|d| wallet(d, 3_000)).collect();
    let mut previous: Vec<Payment> = Vec::new();
    let mut proposed = 0;
    for round in 0..4u64 {
        eprintln!("--- round {round}: fresh payments, double spends, bad amounts, retries");
        let mut batch: Vec<Payment> = Vec::new();
        for (d, w) in wallets.iter_mut().enumerate() {
            let amount = 1 + (d as u64 + round * 5) % 30;
            let Ok(p) = w.pay(amount, &id("m"), [round as u8; 32], T0_MS + 600_000) else {
                continue;
            };
            batch.push(p.clone());
            if d % 7 == 0 {
                let tokens: Vec<u32> = p.inputs.iter().map(|i| i.leaf.index).collect();
                batch.push(
                    w.sign_payment(&tokens, p.counter + 100, &id("m2"), [9; 32], T0_MS)
                        .expect("sign"),
                );
            }
            if d % 11 == 0 {
                let mut bad = p.clone();
                bad.amount += 1; // fails a rule: ingress answers it, never proposes it
                batch.push(bad);
            }
        }
        batch.extend(previous.iter().take(3).cloned()); // retries: DUPLICATE
        previous.clone_from(&batch);
        let stamp_ms = T0_MS + HOUR_MS + round * 1_000;
        let (cmd, precheck) = ingress_entry(&leader, &validator, stamp_ms, &batch);
        proposed += precheck.len() as u64;
        let with = must_submitted(leader.apply_prechecked(&cmd, Some(&precheck)));
        let bytes = leader_bytes(&cmd);
        assert_eq!(bytes, cmd.encode_to_vec(), "the entry prost would write");
        let from_bytes =
            must_submitted(leader_from_bytes.apply_encoded_prechecked(&bytes, Some(&precheck)));
        let without = must_submitted(follower.apply_prechecked(&cmd, None));
        assert_eq!(with, without, "round {round}: outcomes");
        assert_eq!(from_bytes, without, "round {round}: outcomes from bytes");
        assert!(
            with.iter()
                .any(|o| matches!(o, PaymentOutcome::DoubleSpend { .. })),
            "round {round} has a double spend"
        );
    }
    assert_eq!(leader.digest, follower.digest, "same state digest");
    assert_eq!(
        leader_from_bytes.digest, follower.digest,
        "same state digest"
    );
    assert_eq!(
        leader.ledger.prechecked_payments(),
        proposed,
        "the leader took every verdict from its precheck"
    );
    assert_eq!(
        leader_from_bytes.ledger.prechecked_payments(),
        proposed,
        "from bytes too"
    );
    assert_eq!(
        leader_from_bytes.ledger.direct_decoded_payments(),
        0,
        "a prechecked entry is not decoded"
    );
    assert_eq!(follower.ledger.prechecked_payments(), 0);
}

#[test]
fn a_precheck_from_another_stamp_or_other_issuer_keys_is_not_used() {
    let validator = ingress_validator();
    let mut world = World::new();
    let mut w = wallet(1, 1_000);
    let stamp_ms = T0_MS + HOUR_MS;

    eprintln!("--- the entry's stamp is not the one the verdicts were computed with");
    let p = w.pay(10, &id("m"), [1; 32], T0_MS + 600_000).expect("pay");
    let (mut cmd, precheck) = ingress_entry(&world, &validator, stamp_ms, &[p]);
    cmd.stamp_ms = stamp_ms + 1;
    let outcomes = must_submitted(world.apply_prechecked(&cmd, Some(&precheck)));
    must_accept(&outcomes[0]);
    assert_eq!(world.ledger.prechecked_payments(), 0, "validated again");

    eprintln!("--- the issuer key was retired between ingress and apply");
    let p = w.pay(10, &id("m"), [2; 32], T0_MS + 600_000).expect("pay");
    let (cmd, stale) = ingress_entry(&world, &validator, stamp_ms + 10, &[p]);
    assert_eq!(stale.len(), 1, "valid at ingress");
    let retired = world.apply(command(
        stamp_ms + 5,
        pb::command::Kind::RetireKey(pb::RetireIssuerKeyCommand {
            key_id: "bank-a".into(),
            retired_at_ms: T0_MS - HOUR_MS, // before the certificate was issued
        }),
    ));
    assert!(
        matches!(retired, CommandOutcome::KeyRetired(Ok(_))),
        "{retired:?}"
    );
    let mut from_bytes = world.clone_state();
    let outcomes = must_submitted(world.apply_prechecked(&cmd, Some(&stale)));
    let outcomes_from_bytes =
        must_submitted(from_bytes.apply_encoded_prechecked(&leader_bytes(&cmd), Some(&stale)));
    assert_eq!(
        outcomes_from_bytes, outcomes,
        "the same from the entry's bytes"
    );
    assert_eq!(
        from_bytes.ledger.prechecked_payments(),
        0,
        "validated again"
    );
    assert_eq!(from_bytes.ledger.direct_decoded_payments(), 1, "decoded");
    assert!(
        matches!(
            &outcomes[0],
            PaymentOutcome::Rejected {
                reason: RejectReason::IssuerKeyNotValid,
                ..
            }
        ),
        "apply judged by the keys it has, not the precheck's: {outcomes:?}"
    );
    assert_eq!(world.ledger.prechecked_payments(), 0, "validated again");
}

#[test]
fn reads_fetched_ahead_never_hide_an_earlier_payment_of_the_same_entry() {
    // Apply fetches the reads of each group of 512 payments together before
    // judging them. An entry longer than one group: a payment in the first
    // group; in the second its retry, a cloned device reusing its counter and
    // a double spend of its tokens. Each must see the first payment's
    // pending writes, not the state fetched ahead.
    let validator = ingress_validator();
    let mut leader = World::new();
    let mut follower = World::new();
    let stamp_ms = follower.now_ms;
    let mut device = wallet(1, 50_000);
    let clone = device.clone();
    let first = device
        .pay(100, &id("m-a"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let mut payments = vec![first.clone()];
    let mut others: Vec<_> = (10..=200u8).map(|d| wallet(d, 3_000)).collect();
    'fill: for round in 0u8.. {
        for w in &mut others {
            if payments.len() == 600 {
                break 'fill;
            }
            payments.push(
                w.pay(5, &id("m"), [round; 32], T0_MS + 600_000)
                    .expect("pay"),
            );
        }
    }
    let used: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let cloned = counter_reuse(&clone, &first);
    let double = device
        .sign_payment(
            &used,
            first.counter + 50,
            &id("m-c"),
            [3; 32],
            T0_MS + 600_000,
        )
        .expect("sign");
    payments.extend([first.clone(), cloned, double]);

    eprintln!("--- a follower validates the entry itself; the leader uses its precheck");
    let (cmd, precheck) = ingress_entry(&leader, &validator, stamp_ms, &payments);
    assert_eq!(
        precheck.len(),
        payments.len(),
        "every payment passes ingress"
    );
    let by_follower = must_submitted(follower.apply(cmd.clone()));
    let by_leader = must_submitted(leader.apply_prechecked(&cmd, Some(&precheck)));
    assert_eq!(by_leader, by_follower);
    assert_eq!(leader.digest, follower.digest);

    let receipt = must_accept(&by_follower[0]).clone();
    assert!(
        by_follower[1..600]
            .iter()
            .all(|o| matches!(o, PaymentOutcome::Accepted { .. })),
        "the other devices' payments are accepted"
    );
    assert_eq!(
        by_follower[600],
        PaymentOutcome::Duplicate { receipt },
        "the retry in the second group"
    );
    match &by_follower[601] {
        PaymentOutcome::Accepted { receipt, .. } => {
            assert!(receipt.clone_detected(), "the counter reuse is caught")
        }
        other => panic!("clone's payment: {other:?}"),
    }
    let evidence = must_double_spend(&by_follower[602]);
    assert_eq!(evidence.first_payment, first.into_recorded());
}
