//! Submitting payments: accept, duplicate, double spends, held tokens,
//! clones, revocation, every reject reason reaching apply.

use spentledger_node::state_machine::PaymentOutcome;
use spentledger_protocol::types::RevocationReason;
use spentledger_protocol::{RejectReason, Verdict, pb};

use crate::world::*;

#[test]
fn an_accepted_payment_gets_a_receipt_and_consumes_its_tokens() {
    let mut w = World::new();
    let mut device = wallet(1, 5_000);
    let p = device
        .pay(1_234, &id("cafe"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let outcome = w.must_submit_one(&p);
    let receipt = must_accept(&outcome);
    assert_eq!(receipt.tx_id, p.tx_id());
    assert_eq!(receipt.amount, 1_234);
    assert_eq!(receipt.payee_id, id("cafe"));
    assert_eq!(receipt.log_index, 2, "entry 1 registered the key");
    assert_eq!(receipt.settled_at_ms, w.now_ms);
    assert!(!receipt.clone_detected());
    let state = w.cert_state(&p.certificate.cert_id()).state;
    assert_eq!(
        (state.spent_value, state.held_value, state.payment_count),
        (1_234, 0, 1)
    );
    for n in p.nullifiers() {
        let record = w.store.nullifiers.get(&n).expect("nullifier recorded");
        assert_eq!((record.tx_id, record.held), (p.tx_id(), false));
    }
}

#[test]
fn a_retry_is_a_duplicate_with_the_original_receipt_even_after_the_windows_close() {
    let mut w = World::new();
    let mut device = wallet(1, 5_000);
    let p = device
        .pay(50, &id("cafe"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let first = must_accept(&w.must_submit_one(&p)).clone();
    assert_eq!(
        w.must_submit_one(&p),
        PaymentOutcome::Duplicate {
            receipt: first.clone()
        }
    );
    eprintln!("--- retried after settle_until: still DUPLICATE, not SETTLEMENT_WINDOW_CLOSED");
    w.now_ms = p.certificate.settle_until_ms + DAY_MS;
    assert_eq!(
        w.must_submit_one(&p),
        PaymentOutcome::Duplicate { receipt: first }
    );
    assert_eq!(
        w.cert_state(&p.certificate.cert_id()).state.payment_count,
        1
    );
}

#[test]
fn a_double_spend_within_one_batch_loses_to_the_earlier_payment() {
    let mut w = World::new();
    let mut device = wallet(2, 5_000);
    let first = device
        .pay(300, &id("m-a"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let second = device
        .sign_payment(&tokens, 1, &id("m-b"), [2; 32], T0_MS + 700_000)
        .expect("sign");
    let outcomes = w.submit(&[first.clone(), second.clone()]);
    let receipt = must_accept(&outcomes[0]).clone();
    let evidence = must_double_spend(&outcomes[1]);
    eprintln!("--- the evidence names the first payment and its receipt, and verifies offline");
    assert_eq!(evidence.first_payment, first.clone().into_recorded());
    assert_eq!(evidence.first_receipt, Some(receipt));
    assert_eq!(evidence.second_payment, second.clone().into_recorded());
    eprintln!("--- both payments as recorded: leaves kept, Merkle paths dropped, same tx ids");
    assert!(first.inputs.iter().all(|i| !i.path.is_empty()), "{first:?}");
    for (recorded, submitted) in [
        (&evidence.first_payment, &first),
        (&evidence.second_payment, &second),
    ] {
        assert!(recorded.inputs.iter().all(|i| i.path.is_empty()));
        let leaves = |p: &spentledger_protocol::Payment| -> Vec<_> {
            p.inputs.iter().map(|i| i.leaf).collect()
        };
        assert_eq!(leaves(recorded), leaves(submitted));
        assert_eq!(recorded.tx_id(), submitted.tx_id());
    }
    assert!(first.nullifiers().contains(&evidence.nullifier));
    evidence
        .verify(&issuer().issuer_key().public_key)
        .expect("evidence verifies");
    eprintln!("--- the certificate is revoked for double spend, first in the feed");
    let record = w.cert_state(&first.certificate.cert_id());
    assert_eq!(record.state.revoked, Some(RevocationReason::DoubleSpend));
    assert!(record.double_spend_detected);
    let revocation = w.store.revocations.get(&1).expect("revocation 1");
    assert_eq!(revocation.cert_id, first.certificate.cert_id());
    assert_eq!(record.state.spent_value, 300);
    assert_eq!(
        record.state.held_value, 0,
        "no fresh tokens in the losing payment"
    );
}

#[test]
fn a_double_spend_across_batches_is_caught_and_a_retry_of_it_changes_nothing() {
    let mut w = World::new();
    let mut device = wallet(3, 5_000);
    let first = device
        .pay(700, &id("m-a"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&first));
    let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let second = device
        .sign_payment(&tokens, 9, &id("m-b"), [2; 32], T0_MS + 700_000)
        .expect("sign");
    let evidence = must_double_spend(&w.must_submit_one(&second)).clone();
    let revocations = w.store.revocations.len();
    let evidence_count = w.store.evidence.len();
    eprintln!("--- the gateway retries the losing payment");
    let again = must_double_spend(&w.must_submit_one(&second)).clone();
    assert_eq!(again.first_payment, evidence.first_payment);
    assert_eq!(w.store.revocations.len(), revocations);
    assert_eq!(w.store.evidence.len(), evidence_count);
}

#[test]
fn the_losing_payments_fresh_tokens_are_held_never_spent_again_nor_refunded() {
    let mut w = World::new();
    let mut device = wallet(4, 5_000);
    let first = device
        .pay(100, &id("m-a"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&first));
    let spent: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let fresh = device.select_tokens(200).expect("exact change");
    let mut mixed = spent.clone();
    mixed.extend(&fresh);
    eprintln!("--- a payment mixing a spent token with fresh ones loses");
    let losing = device
        .sign_payment(&mixed, 5, &id("m-b"), [2; 32], T0_MS + 700_000)
        .expect("sign");
    must_double_spend(&w.must_submit_one(&losing));
    let cert_id = first.certificate.cert_id();
    assert_eq!(w.cert_state(&cert_id).state.held_value, 200);
    for index in &fresh {
        let record = w
            .store
            .nullifiers
            .get(&cert_id.token_nullifier(*index))
            .expect("held");
        assert_eq!((record.tx_id, record.held), (losing.tx_id(), true));
    }
    eprintln!("--- spending the held tokens again is a double spend against the held payment");
    let third = device
        .sign_payment(&fresh, 6, &id("m-c"), [3; 32], T0_MS + 800_000)
        .expect("sign");
    let evidence = must_double_spend(&w.must_submit_one(&third)).clone();
    assert_eq!(evidence.first_payment, losing.clone().into_recorded());
    assert_eq!(
        evidence.first_receipt, None,
        "a held payment has no receipt"
    );
    evidence
        .verify(&issuer().issuer_key().public_key)
        .expect("verifies");
    eprintln!("--- at settlement the held value is not refunded");
    let cert = first.certificate.clone();
    let settled = w.settle(cert.settle_until_ms + 1, &cert, None);
    let spentledger_node::state_machine::CommandOutcome::Settled(Ok(s)) = settled else {
        panic!("settlement failed: {settled:?}");
    };
    assert_eq!((s.spent_value, s.held_value), (100, 200));
    assert_eq!(s.unspent_value, cert.total_value - 300);
    assert!(s.double_spend_detected);
}

#[test]
fn a_cloned_device_reusing_a_counter_is_accepted_flagged_and_revoked() {
    let mut w = World::new();
    let mut device = wallet(5, 5_000);
    let mut clone = device.clone();
    let a = device
        .pay(100, &id("m-a"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let b = counter_reuse(&clone, &a);
    let outcomes = w.submit(&[a.clone(), b.clone()]);
    assert!(!must_accept(&outcomes[0]).clone_detected());
    let PaymentOutcome::Accepted {
        receipt,
        clone_evidence,
    } = &outcomes[1]
    else {
        panic!("clone's payment should be accepted: {:?}", outcomes[1]);
    };
    assert!(receipt.clone_detected(), "receipt flagged");
    let evidence = clone_evidence.as_ref().expect("clone evidence");
    assert_eq!(
        (&evidence.first_payment, &evidence.second_payment),
        (&a.clone().into_recorded(), &b.clone().into_recorded())
    );
    evidence
        .verify(&issuer().issuer_key().public_key)
        .expect("verifies");
    let record = w.cert_state(&a.certificate.cert_id());
    assert_eq!(record.state.revoked, Some(RevocationReason::ClonedDevice));
    assert!(!record.double_spend_detected);
    assert_eq!(w.store.evidence.len(), 1);
    drop(clone.pay(1, &id("m"), [0; 32], T0_MS));
}

#[test]
fn a_revoked_certificate_keeps_settling_fresh_tokens_until_it_is_settled() {
    let mut w = World::new();
    let mut device = wallet(6, 5_000);
    let cert = device.certificate().clone();
    let revoked = w.revoke(cert.cert_id(), RevocationReason::LostOrStolen);
    assert!(matches!(
        revoked,
        spentledger_node::state_machine::CommandOutcome::Revoked(Ok(_))
    ));
    eprintln!("--- a merchant who accepted before the revocation reached it is still paid");
    let p = device
        .pay(40, &id("m-a"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&p));
    eprintln!("--- revoking again returns the first revocation");
    let again = w.revoke(cert.cert_id(), RevocationReason::IssuerRequest);
    let spentledger_node::state_machine::CommandOutcome::Revoked(Ok(r)) = again else {
        panic!("{again:?}");
    };
    assert_eq!((r.sequence, r.reason), (1, RevocationReason::LostOrStolen));
}

#[test]
fn every_stateless_reason_reaches_the_verdict_and_records_nothing() {
    let mut w = World::new();
    let mut device = wallet(7, 5_000);
    let good = device
        .pay(10, &id("m"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let mut forged = good.clone();
    forged.amount = 11;
    let mut bad_path = good.clone();
    bad_path.inputs[0].path[0][0] ^= 1;
    let mut wire_bad = pb::Payment::from(&good);
    wire_bad.payee_challenge.truncate(3);
    let cmd = pb::Command {
        stamp_ms: w.now_ms,
        kind: Some(pb::command::Kind::Submit(pb::SubmitPayments {
            payments: vec![(&forged).into(), (&bad_path).into(), wire_bad],
        })),
    };
    let spentledger_node::state_machine::CommandOutcome::Submitted(outcomes) = w.apply(cmd) else {
        panic!("submit");
    };
    let verdicts: Vec<Verdict> = outcomes.iter().map(PaymentOutcome::verdict).collect();
    assert_eq!(
        verdicts,
        vec![
            Verdict::Rejected(RejectReason::AmountMismatch),
            Verdict::Rejected(RejectReason::BadMerklePath),
            Verdict::Rejected(RejectReason::Malformed),
        ]
    );
    let PaymentOutcome::Rejected {
        tx_id: None,
        detail: Some(detail),
        ..
    } = &outcomes[2]
    else {
        panic!("{:?}", outcomes[2]);
    };
    assert!(detail.contains("payee_challenge"), "{detail}");
    assert!(w.store.nullifiers.is_empty() && w.store.accepted.is_empty());
    eprintln!("--- after the windows, a new payment is refused by time");
    w.now_ms = good.certificate.settle_until_ms + 1;
    assert_eq!(
        w.must_submit_one(&good).verdict(),
        Verdict::Rejected(RejectReason::SettlementWindowClosed)
    );
}

#[test]
fn entry_stamps_never_go_back() {
    let mut w = World::new();
    let mut device = wallet(8, 5_000);
    w.now_ms = T0_MS + 2 * HOUR_MS;
    let a = device
        .pay(10, &id("m"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&a));
    eprintln!("--- a new leader with a clock an hour behind");
    w.now_ms = T0_MS + HOUR_MS;
    let b = device
        .pay(20, &id("m"), [2; 32], T0_MS + 600_000)
        .expect("pay");
    let receipt = must_accept(&w.must_submit_one(&b)).clone();
    assert_eq!(receipt.settled_at_ms, T0_MS + 2 * HOUR_MS);
}
