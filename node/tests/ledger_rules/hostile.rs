//! Hostile input (proptest): whatever bytes reach a node as a Raft entry,
//! vote or membership, decoding answers with a value or an error, never a
//! panic; and whatever commands a (faulty or compromised) leader puts in
//! the log, every replica applies them without panicking, to the same state.

use proptest::prelude::*;
use prost::Message;
use spentledger_node::consensus::{
    decode_entry, decode_log_id, decode_membership, decode_snapshot_meta, decode_vote,
};
use spentledger_node::state_machine::CommandOutcome;
use spentledger_protocol::pb;

use crate::world::*;

/// Encodings of real commands of every kind, to mutate.
fn seed_commands() -> Vec<Vec<u8>> {
    let mut w = wallet(77, 2_000);
    let p = w.pay(120, &id("m"), [1; 32], T0_MS + 600_000).expect("pay");
    let cert_id = w.certificate().cert_id().0.to_vec();
    let key = pb::IssuerKey::from(&issuer().issuer_key());
    let stamp = T0_MS + HOUR_MS;
    let kinds = [
        submit_cmd(stamp, std::slice::from_ref(&p)),
        command(
            stamp,
            pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand { key: Some(key) }),
        ),
        command(
            stamp,
            pb::command::Kind::Settle(pb::SettleCommand {
                certificate: Some(w.certificate().into()),
                force: true,
                force_reason: "returned".into(),
            }),
        ),
        command(
            stamp,
            pb::command::Kind::Revoke(pb::RevokeCommand { cert_id, reason: 3 }),
        ),
    ];
    kinds.iter().map(Message::encode_to_vec).collect()
}

/// A mutation of an encoding: flipped bytes, a cut, or bytes spliced in.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for (pos, value, how) in edits {
        if bytes.is_empty() {
            bytes.push(*value);
            continue;
        }
        let at = pos % bytes.len();
        match how % 4 {
            0 => bytes[at] ^= value | 1,
            1 => bytes.truncate(at),
            2 => bytes.insert(at, *value),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raft_decoders_never_panic_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = decode_entry(&bytes);
        let _ = decode_vote(&bytes);
        let _ = decode_log_id(&bytes);
        let _ = decode_membership(&bytes);
        let _ = decode_snapshot_meta(&bytes);
    }

    #[test]
    fn replicas_apply_mutated_commands_without_panicking_to_the_same_state(
        picks in prop::collection::vec(
            (0..4usize, prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6)),
            1..12,
        ),
    ) {
        let seeds = seed_commands();
        let (encoded, commands): (Vec<Vec<u8>>, Vec<pb::Command>) = picks
            .iter()
            .filter_map(|(seed, edits)| {
                let bytes = mutate(seeds[*seed].clone(), edits);
                let command = pb::Command::decode(bytes.as_slice()).ok()?;
                Some((bytes, command))
            })
            .unzip();
        let mut one = World::with_threads(1);
        let mut two = World::with_threads(2);
        // A follower applies the mutated bytes themselves: the direct
        // decoder takes some, the general way the rest.
        let mut follower = World::with_threads(2);
        let outcomes: Vec<_> = commands.iter().map(|c| one.apply(c.clone())).collect();
        let grouped = two.apply_group(&commands);
        let from_bytes = follower.apply_encoded_group(&encoded);
        prop_assert_eq!(&outcomes, &grouped);
        prop_assert_eq!(&outcomes, &from_bytes);
        prop_assert_eq!(&one.store, &two.store);
        prop_assert_eq!(&one.store, &follower.store);
        prop_assert_eq!(one.digest, two.digest);
        prop_assert_eq!(one.digest, follower.digest);
    }
}

#[test]
fn a_command_without_a_kind_or_with_garbage_fields_is_answered_not_fatal() {
    let mut world = World::new();
    let before = world.digest;
    let outcome = world.apply(pb::Command {
        stamp_ms: T0_MS,
        kind: None,
    });
    assert!(
        matches!(outcome, CommandOutcome::Malformed(_)),
        "{outcome:?}"
    );
    assert_ne!(world.digest, before, "the entry still counts in the digest");
    let outcome = world.apply(command(
        T0_MS,
        pb::command::Kind::Submit(pb::SubmitPayments {
            payments: vec![pb::Payment::default(); 3],
        }),
    ));
    assert!(format!("{outcome:?}").contains("Rejected"), "{outcome:?}");
}
