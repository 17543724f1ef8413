//! A follower applies entries from their bytes, decoding submit entries
//! straight to domain payments where it can (`Ledger::apply_encoded`); it
//! must reach exactly the state of the replica that applied the decoded
//! commands, and fall back to the general decoder for anything unusual.

use prost::Message;
use spentledger_node::state_machine::{CommandOutcome, PaymentOutcome};
use spentledger_protocol::{RejectReason, pb};

use crate::determinism::workload;
use crate::world::*;

/// A submit command's bytes built from each payment's own bytes, so a test
/// can put in a payment encoding prost would never write.
fn submit_bytes(stamp_ms: u64, payments: &[Vec<u8>]) -> Vec<u8> {
    let mut submit = Vec::new();
    for p in payments {
        prost::encoding::bytes::encode(1, p, &mut submit);
    }
    let mut command = Vec::new();
    prost::encoding::uint64::encode(1, &stamp_ms, &mut command);
    prost::encoding::bytes::encode(2, &submit, &mut command);
    command
}

/// Applies `bytes` to a general replica (decoded first, as a leader holds
/// it) and to a follower (from the bytes); both must agree.
fn must_agree(general: &mut World, follower: &mut World, bytes: &[u8]) -> CommandOutcome {
    let command = pb::Command::decode(bytes).expect("the general decoder takes it");
    let expected = general.apply(command);
    let outcome = follower
        .apply_encoded_group(&[bytes.to_vec()])
        .pop()
        .expect("one outcome");
    assert_eq!(outcome, expected, "outcome from the bytes");
    assert_eq!(follower.digest, general.digest, "state digest");
    assert_eq!(follower.store, general.store, "stored state");
    outcome
}

/// The payment outcomes of a submit entry, the first of them accepted.
fn must_accept_first(outcome: &CommandOutcome) -> &[PaymentOutcome] {
    let CommandOutcome::Submitted(outcomes) = outcome else {
        panic!("submitted: {outcome:?}")
    };
    must_accept(&outcomes[0]);
    outcomes
}

#[test]
fn a_follower_decoding_entry_bytes_directly_reaches_the_deciders_state() {
    let log = workload();
    let payments: usize = log
        .iter()
        .map(|c| match &c.kind {
            Some(pb::command::Kind::Submit(s)) => s.payments.len(),
            _ => 0,
        })
        .sum();
    let encoded: Vec<Vec<u8>> = log.iter().map(Message::encode_to_vec).collect();
    let mut general = World::new();
    let mut follower = World::new();

    eprintln!(
        "--- {} entries, {payments} payments, applied decoded and from bytes",
        log.len()
    );
    let expected = general.apply_group(&log);
    let outcomes = follower.apply_encoded_group(&encoded);
    assert_eq!(outcomes, expected);
    assert_eq!(follower.store, general.store);
    assert_eq!(follower.digest, general.digest);

    eprintln!("--- every payment took the direct decoder on the follower, none on the other");
    assert_eq!(follower.ledger.direct_decoded_payments(), payments as u64);
    assert_eq!(general.ledger.direct_decoded_payments(), 0);
    let rejected = outcomes
        .iter()
        .filter_map(|o| match o {
            CommandOutcome::Submitted(p) => Some(p),
            _ => None,
        })
        .flatten()
        .filter(|p| !matches!(p, PaymentOutcome::Accepted { .. }))
        .count();
    assert!(rejected > 0, "the workload has double spends and forgeries");
}

#[test]
fn an_entry_the_direct_decoder_refuses_goes_the_general_way_to_the_same_outcome() {
    let mut general = World::new();
    let mut follower = World::new();
    let mut w = wallet(3, 5_000);
    let stamp_ms = T0_MS + HOUR_MS;
    let mut pay = |n: u8| {
        let p = w
            .pay(10, &id("m"), [n; 32], T0_MS + 600_000)
            .expect("funded");
        pb::Payment::from(&p).encode_to_vec()
    };

    eprintln!("--- a payment failing a domain check: its own MALFORMED verdict");
    let mut short = pb::Payment::decode(pay(1).as_slice()).expect("decodes");
    short.payee_challenge.pop();
    let bytes = submit_bytes(stamp_ms, &[pay(2), short.encode_to_vec(), pay(3)]);
    let outcome = must_agree(&mut general, &mut follower, &bytes);
    let outcomes = must_accept_first(&outcome);
    assert!(
        matches!(
            &outcomes[1],
            PaymentOutcome::Rejected { reason: RejectReason::Malformed, detail: Some(d), .. }
                if d.contains("payee_challenge")
        ),
        "{:?}",
        outcomes[1]
    );
    must_accept(&outcomes[2]);
    assert_eq!(follower.ledger.direct_decoded_payments(), 0, "general way");

    eprintln!("--- an unknown field in a payment: skipped by protobuf, accepted");
    let mut extended = pay(4);
    prost::encoding::uint64::encode(127, &1, &mut extended);
    let bytes = submit_bytes(stamp_ms, &[extended]);
    let outcome = must_agree(&mut general, &mut follower, &bytes);
    must_accept_first(&outcome);
    assert_eq!(follower.ledger.direct_decoded_payments(), 0, "general way");

    eprintln!("--- a field written twice: protobuf keeps the last value");
    let p = pay(5);
    let amount = pb::Payment::decode(p.as_slice()).expect("decodes").amount;
    let mut twice = Vec::new();
    prost::encoding::uint64::encode(3, &(amount + 1), &mut twice);
    twice.extend_from_slice(&p);
    let bytes = submit_bytes(stamp_ms, &[twice]);
    let outcome = must_agree(&mut general, &mut follower, &bytes);
    must_accept_first(&outcome);
    assert_eq!(follower.ledger.direct_decoded_payments(), 0, "general way");

    eprintln!("--- a plain entry after them: the direct way again");
    let bytes = submit_bytes(stamp_ms, &[pay(6)]);
    let outcome = must_agree(&mut general, &mut follower, &bytes);
    must_accept_first(&outcome);
    assert_eq!(follower.ledger.direct_decoded_payments(), 1);

    eprintln!("--- bytes that are not a command: MALFORMED, and the entry still counts");
    let before = follower.digest;
    let outcome = follower
        .apply_encoded_group(&[vec![0x12, 0x05, 0x0a]])
        .pop()
        .expect("one outcome");
    assert!(
        matches!(&outcome, CommandOutcome::Malformed(m) if m.starts_with("command: invalid protobuf")),
        "{outcome:?}"
    );
    assert_ne!(follower.digest, before);
}
