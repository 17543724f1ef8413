//! The direct decoder (`spentledger_protocol::direct`) against the general
//! way (prost, then the domain conversions): whenever the direct decoder
//! accepts bytes, the general way accepts them too with the same stamp and
//! payments; and it accepts every command the way prost writes it, in any
//! field order.

use proptest::prelude::*;
use prost::Message;
use spentledger_protocol::direct::{self, NotDirect};
use spentledger_protocol::{Payment, pb};

use crate::helpers::mutate;
use crate::properties::payment;

/// The general way, as a replica without the direct decoder applies a
/// submit command: `None` unless every payment decodes.
fn general(bytes: &[u8]) -> Option<(u64, Vec<Payment>)> {
    let command = pb::Command::decode(bytes).ok()?;
    let Some(pb::command::Kind::Submit(submit)) = command.kind else {
        return None;
    };
    let payments = submit
        .payments
        .iter()
        .map(Payment::try_from)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((command.stamp_ms, payments))
}

fn direct(bytes: &[u8]) -> Result<(u64, Vec<Payment>), NotDirect> {
    let submit = direct::submit_command(bytes)?;
    let payments = submit
        .payments
        .iter()
        .map(|p| direct::payment(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((submit.stamp_ms, payments))
}

fn encoded(stamp_ms: u64, payments: &[Payment]) -> Vec<u8> {
    pb::Command {
        stamp_ms,
        kind: Some(pb::command::Kind::Submit(pb::SubmitPayments {
            payments: payments.iter().map(pb::Payment::from).collect(),
        })),
    }
    .encode_to_vec()
}

/// The contract: what the direct decoder accepts, the general way decodes
/// to the same thing.
fn must_match_the_general_way(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(fast) = direct(bytes) {
        prop_assert_eq!(Some(fast), general(bytes), "bytes {:02x?}", bytes);
    }
    Ok(())
}

/// A payment's fields written in the order `order` gives (a permutation of
/// its 8 field numbers), with prost's field encoders.
fn payment_in_order(p: &Payment, order: &[u32]) -> Vec<u8> {
    let mut buf = Vec::new();
    for field in order {
        write_field(&pb::Payment::from(p), *field, &mut buf);
    }
    buf
}

/// Field `field` (1..=8) of `wire`, as prost writes it.
fn write_field(wire: &pb::Payment, field: u32, buf: &mut Vec<u8>) {
    use prost::encoding::{bytes, message, string, uint64};
    match field {
        1 => message::encode(1, wire.certificate.as_ref().expect("set"), buf),
        2 => {
            for input in &wire.inputs {
                message::encode(2, input, buf);
            }
        }
        3 => uint64::encode(3, &wire.amount, buf),
        4 => string::encode(4, &wire.payee_id, buf),
        5 => bytes::encode(5, &wire.payee_challenge, buf),
        6 => uint64::encode(6, &wire.counter, buf),
        7 => uint64::encode(7, &wire.created_at_ms, buf),
        _ => bytes::encode(8, &wire.device_signature, buf),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_direct_decoder_takes_every_command_prost_writes(
        stamp_ms in any::<u64>(),
        payments in prop::collection::vec(payment(), 0..4),
    ) {
        let bytes = encoded(stamp_ms, &payments);
        prop_assert_eq!(direct(&bytes), Ok((stamp_ms, payments.clone())));
        prop_assert_eq!(general(&bytes), Some((stamp_ms, payments)));
    }

    #[test]
    fn the_direct_decoder_takes_payment_fields_in_any_order(
        p in payment(),
        order in Just((1..=8u32).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut command = Vec::new();
        prost::encoding::uint64::encode(1, &7, &mut command);
        let mut submit = Vec::new();
        prost::encoding::bytes::encode(1, &payment_in_order(&p, &order), &mut submit);
        prost::encoding::bytes::encode(2, &submit, &mut command);
        prop_assert_eq!(direct(&command), Ok((7, vec![p])));
        must_match_the_general_way(&command)?;
    }

    #[test]
    fn payments_written_with_fields_repeated_or_missing_decode_the_same_or_are_refused(
        a in payment(),
        b in payment(),
        order in Just((1..=8u32).collect::<Vec<_>>()).prop_shuffle(),
        from_b in prop::collection::vec(any::<bool>(), 8),
        extra in prop::collection::vec((1..=8u32, any::<bool>(), any::<prop::sample::Index>()), 0..3),
        dropped in prop::option::of(any::<prop::sample::Index>()),
    ) {
        // Every field once, each from one of two payments, then some
        // written again (protobuf overwrites scalars and merges messages)
        // and maybe one left out (it reads as its default).
        let (a, b) = (pb::Payment::from(&a), pb::Payment::from(&b));
        let mut fields: Vec<(u32, bool)> = order.into_iter().zip(from_b).collect();
        for (field, source, at) in extra {
            fields.insert(at.index(fields.len() + 1), (field, source));
        }
        if let Some(at) = dropped {
            fields.remove(at.index(fields.len()));
        }
        let mut payment = Vec::new();
        for (field, source) in &fields {
            write_field(if *source { &b } else { &a }, *field, &mut payment);
        }
        let mut submit = Vec::new();
        prost::encoding::bytes::encode(1, &payment, &mut submit);
        let mut command = Vec::new();
        prost::encoding::bytes::encode(2, &submit, &mut command);
        must_match_the_general_way(&command)?;
    }

    #[test]
    fn what_the_direct_decoder_takes_from_mutated_bytes_the_general_way_decodes_the_same(
        stamp_ms in any::<u64>(),
        payments in prop::collection::vec(payment(), 1..3),
        edits in prop::collection::vec(
            (any::<usize>(), any::<usize>(), any::<u8>(), any::<u8>()),
            1..5,
        ),
    ) {
        must_match_the_general_way(&mutate(encoded(stamp_ms, &payments), &edits))?;
    }

    #[test]
    fn what_the_direct_decoder_takes_from_arbitrary_bytes_the_general_way_decodes_the_same(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        must_match_the_general_way(&bytes)?;
    }
}

/// Encodings the general way accepts, each with a rule the direct decoder
/// does not reproduce: it must refuse them (and the caller falls back).
#[test]
fn the_direct_decoder_refuses_what_it_does_not_reproduce() {
    use prost::encoding::{bytes, uint32, uint64};
    let p = Payment::try_from(&pb::Payment::decode(encoded_payment().as_slice()).expect("decodes"))
        .expect("valid");
    let wrap = |payment: Vec<u8>| {
        let mut submit = Vec::new();
        bytes::encode(1, &payment, &mut submit);
        let mut command = Vec::new();
        bytes::encode(2, &submit, &mut command);
        command
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut twice = encoded_payment();
    uint64::encode(3, &(p.amount + 1), &mut twice);
    cases.push(("a scalar written twice (the last wins)", wrap(twice)));

    let mut unknown = encoded_payment();
    uint64::encode(99, &5, &mut unknown);
    cases.push(("an unknown field (skipped)", wrap(unknown)));

    let mut cert_twice = encoded_payment();
    let cert = pb::OfflineCertificate {
        token_count: 9,
        ..Default::default()
    };
    prost::encoding::message::encode(1, &cert, &mut cert_twice);
    cases.push(("a message written twice (merged)", wrap(cert_twice)));

    let mut wide = pb::Payment::from(&p);
    wide.inputs[0].leaf = None;
    let mut leaf = Vec::new();
    uint64::encode(1, &(u64::from(u32::MAX) + 2), &mut leaf);
    let mut input = Vec::new();
    bytes::encode(1, &leaf, &mut input);
    let mut wide_bytes = Vec::new();
    bytes::encode(2, &input, &mut wide_bytes);
    wide.inputs.clear();
    wide_bytes.extend(wide.encode_to_vec());
    cases.push(("a uint32 above 2^32 - 1 (truncated)", wrap(wide_bytes)));

    let mut command = encoded(5, std::slice::from_ref(&p));
    uint32::encode(1, &6, &mut command);
    cases.push(("the stamp written twice", command));

    let settle = pb::Command {
        stamp_ms: 1,
        kind: Some(pb::command::Kind::Revoke(pb::RevokeCommand {
            cert_id: vec![0; 32],
            reason: 1,
        })),
    };
    cases.push(("another command kind", settle.encode_to_vec()));

    for (what, bytes) in cases {
        assert!(
            pb::Command::decode(bytes.as_slice()).is_ok(),
            "{what}: the general way decodes it"
        );
        assert_eq!(direct(&bytes).err(), Some(NotDirect), "{what}");
    }
}

/// A valid payment's encoding, from the protocol's own fixtures.
fn encoded_payment() -> Vec<u8> {
    pb::Payment::from(&crate::fixtures::valid_payment(1, 30)).encode_to_vec()
}

/// The mutation property above is only as strong as its mix: over a fixed
/// series of edits, the direct decoder must both accept (with the general
/// way's result) and refuse many of the mutated commands.
#[test]
fn mutated_commands_exercise_both_accepting_and_refusing() {
    let payments = [
        crate::fixtures::valid_payment(1, 30),
        crate::fixtures::valid_payment(2, 45),
    ];
    let base = encoded(1_767_225_600_000, &payments);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..4_000 {
        let edits: Vec<(usize, usize, u8, u8)> = (0..1 + next() % 3)
            .map(|_| {
                let r = next();
                (
                    r as usize,
                    (r >> 20) as usize,
                    (r >> 40) as u8,
                    (r >> 48) as u8,
                )
            })
            .collect();
        let bytes = mutate(base.clone(), &edits);
        match direct(&bytes) {
            Ok(fast) => {
                assert_eq!(Some(fast), general(&bytes), "edits {edits:?}");
                accepted += 1;
            }
            Err(NotDirect) => refused += 1,
        }
    }
    eprintln!("accepted {accepted}, refused {refused} of 4000 mutated commands");
    assert!(accepted >= 200, "accepted only {accepted}");
    assert!(refused >= 400, "refused only {refused}");
}
