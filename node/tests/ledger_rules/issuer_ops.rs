//! Issuer operations: settlement (windows, force, idempotence, compaction),
//! issuer keys, and malformed commands.

use spentledger_node::state_machine::{
    CommandOutcome, CounterKey, IssuerOpError, LedgerRead, PaymentOutcome,
};
use spentledger_protocol::{RejectReason, Verdict, pb};

use crate::world::*;

fn must_settle(outcome: CommandOutcome) -> spentledger_protocol::CertificateSettlement {
    match outcome {
        CommandOutcome::Settled(Ok(s)) => s,
        other => panic!("expected a settlement, got {other:?}"),
    }
}

#[test]
fn settlement_waits_for_settle_until_unless_forced_and_is_idempotent() {
    let mut w = World::new();
    let mut device = wallet(1, 5_000);
    let cert = device.certificate().clone();
    let p = device
        .pay(1_000, &id("m"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&p));
    eprintln!("--- too early without force");
    assert_eq!(
        w.settle(cert.settle_until_ms, &cert, None),
        CommandOutcome::Settled(Err(IssuerOpError::NotYetSettleable {
            settle_until_ms: cert.settle_until_ms,
            stamp_ms: cert.settle_until_ms,
        }))
    );
    eprintln!("--- forced early with a reason");
    let s = must_settle(w.settle(T0_MS + 2 * HOUR_MS, &cert, Some("device reported stolen")));
    assert_eq!(s.forced.as_deref(), Some("device reported stolen"));
    assert_eq!(
        (s.total_value, s.spent_value, s.held_value),
        (cert.total_value, 1_000, 0)
    );
    assert_eq!(s.unspent_value, cert.total_value - 1_000);
    assert_eq!(s.payment_count, 1);
    assert!(!s.double_spend_detected);
    eprintln!("--- settling again returns the same settlement");
    assert_eq!(
        must_settle(w.settle(cert.settle_until_ms + 5, &cert, None)),
        s
    );
}

#[test]
fn after_settlement_payments_are_rejected_and_nullifiers_compacted() {
    let mut w = World::new();
    let mut device = wallet(2, 5_000);
    let cert = device.certificate().clone();
    let cert_id = cert.cert_id();
    let a = device
        .pay(100, &id("m"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    let late = device
        .pay(200, &id("m"), [2; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&a));
    let a_counter = CounterKey {
        cert_id,
        counter: a.counter,
    };
    assert!(w.store.counters.contains_key(&a_counter));
    for n in a.nullifiers() {
        assert!(w.store.nullifiers.contains_key(&n));
    }
    let other = wallet(3, 1_000);
    let mut other_device = other.clone();
    let o = other_device
        .pay(5, &id("m"), [3; 32], T0_MS + 600_000)
        .expect("pay");
    must_accept(&w.must_submit_one(&o));

    // Forced, early: after settle_until the time rule would refuse late payments first.
    must_settle(w.settle(T0_MS + 2 * HOUR_MS, &cert, Some("issuer closes the wallet")));
    eprintln!("--- the settled certificate's nullifiers and counters are gone");
    for n in a.nullifiers() {
        assert!(
            !w.store.nullifiers.contains_key(&n),
            "nullifier kept after settlement"
        );
    }
    assert!(w.store.counters.keys().all(|k| k.cert_id != cert_id));
    assert_eq!(
        w.store.counters_of(&cert_id).expect("read"),
        Vec::<u64>::new()
    );
    eprintln!("--- other certificates are untouched");
    for n in o.nullifiers() {
        assert!(w.store.nullifiers.contains_key(&n));
    }
    eprintln!("--- a late payment under the settled certificate is refused");
    assert_eq!(
        w.must_submit_one(&late).verdict(),
        Verdict::Rejected(RejectReason::CertificateSettled)
    );
    eprintln!("--- a retry of a settled payment is still a duplicate");
    assert!(matches!(
        w.must_submit_one(&a),
        PaymentOutcome::Duplicate { .. }
    ));
}

#[test]
fn settling_a_forged_certificate_is_refused() {
    let mut w = World::new();
    let mut cert = wallet(4, 5_000).certificate().clone();
    cert.total_value *= 2;
    assert_eq!(
        w.settle(cert.settle_until_ms + 1, &cert, None),
        CommandOutcome::Settled(Err(IssuerOpError::InvalidCertificate(
            RejectReason::BadIssuerSignature
        )))
    );
}

#[test]
fn issuer_keys_register_conflict_and_retire() {
    let mut w = World::new();
    let mut before = wallet(5, 1_000);
    let p = before
        .pay(10, &id("m"), [1; 32], T0_MS + 600_000)
        .expect("pay");
    eprintln!("--- the same key id with another public key is refused");
    let mut other = pb::IssuerKey::from(&issuer().issuer_key());
    other.public_key = spentledger_protocol::sim::Wallet::device_key_for(&[0x77; 32]).to_vec();
    let outcome = w.apply(command(
        T0_MS,
        pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand { key: Some(other) }),
    ));
    assert_eq!(
        outcome,
        CommandOutcome::KeyRegistered(Err(IssuerOpError::KeyConflict {
            key_id: "bank-a".into()
        }))
    );
    eprintln!("--- retiring at T0 + 1s keeps certificates issued before valid");
    let outcome = w.apply(command(
        T0_MS + HOUR_MS,
        pb::command::Kind::RetireKey(pb::RetireIssuerKeyCommand {
            key_id: "bank-a".into(),
            retired_at_ms: T0_MS + 1_000,
        }),
    ));
    let CommandOutcome::KeyRetired(Ok(key)) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(key.valid_until_ms, T0_MS + 1_000);
    must_accept(&w.must_submit_one(&p));
    eprintln!("--- a certificate issued after the retirement is refused");
    let later = {
        let funding = spentledger_protocol::sim::Funding::eur(id("late"), 100, T0_MS + 2_000);
        let mut wallet = issuer()
            .fund_device(&Default::default(), [0x55; 32], &funding)
            .expect("issue");
        wallet
            .pay(10, &id("m"), [1; 32], T0_MS + 600_000)
            .expect("pay")
    };
    assert_eq!(
        w.must_submit_one(&later).verdict(),
        Verdict::Rejected(RejectReason::IssuerKeyNotValid)
    );
    eprintln!("--- unknown keys cannot be retired");
    let outcome = w.apply(command(
        T0_MS,
        pb::command::Kind::RetireKey(pb::RetireIssuerKeyCommand {
            key_id: "nope".into(),
            retired_at_ms: 0,
        }),
    ));
    assert_eq!(
        outcome,
        CommandOutcome::KeyRetired(Err(IssuerOpError::UnknownKey {
            key_id: "nope".into()
        }))
    );
}

#[test]
fn malformed_commands_change_nothing() {
    let mut w = World::new();
    let before = w.store.clone();
    for kind in [
        None,
        Some(pb::command::Kind::Settle(pb::SettleCommand::default())),
        Some(pb::command::Kind::Revoke(pb::RevokeCommand {
            cert_id: vec![1, 2, 3],
            reason: 1,
        })),
        Some(pb::command::Kind::Settle(pb::SettleCommand {
            certificate: Some((&wallet(9, 100).certificate().clone()).into()),
            force: true,
            force_reason: String::new(),
        })),
    ] {
        let outcome = w.apply(pb::Command {
            stamp_ms: T0_MS,
            kind,
        });
        assert!(
            matches!(outcome, CommandOutcome::Malformed(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(w.store, before);
}
