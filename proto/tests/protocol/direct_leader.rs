//! The leader's side of the direct way: a gateway's request split into its
//! payments' bytes, those bytes decoded (directly or the general way), and
//! the entry written from them, each against what prost does with the same
//! request and payments.

use proptest::prelude::*;
use prost::Message;
use spentledger_protocol::direct::{self, NotDirect};
use spentledger_protocol::{DecodeError, Payment, RejectReason, Validator, pb};

use crate::helpers::mutate;
use crate::properties::payment;

fn request(batch_id: u64, payments: &[Payment]) -> pb::SubmitBatchRequest {
    pb::SubmitBatchRequest {
        batch_id,
        payments: payments.iter().map(pb::Payment::from).collect(),
    }
}

/// What the leader does with a request's bytes: split, then decode each
/// payment on its own.
fn leader_way(bytes: &[u8]) -> Result<(u64, Vec<Result<Payment, DecodeError>>), NotDirect> {
    let split = direct::submit_batch_request(bytes)?;
    let validator = Validator::new(1, 4).expect("one thread");
    let (payments, slots) = validator.decode_split_encoded(&split.payments);
    let mut payments = payments.into_iter();
    let decoded = slots
        .into_iter()
        .map(|slot| match slot {
            None => Ok(payments.next().expect("one payment per empty slot")),
            Some(e) => Err(e),
        })
        .collect();
    Ok((split.batch_id, decoded))
}

/// What the generated service did: prost decodes the request (or refuses
/// it whole), then each payment is converted.
fn general_way(bytes: &[u8]) -> Option<(u64, Vec<Result<Payment, DecodeError>>)> {
    let request = pb::SubmitBatchRequest::decode(bytes).ok()?;
    let decoded = request.payments.iter().map(Payment::try_from).collect();
    Some((request.batch_id, decoded))
}

/// The contract of `submit_batch_request` and `decode_split_encoded`: for a
/// request prost decodes, the leader's way is refused (then the node decodes
/// it the general way) or gives the same batch id and the same verdict per
/// payment.
fn must_match_the_general_way(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let (Ok(fast), Some(general)) = (leader_way(bytes), general_way(bytes)) {
        prop_assert_eq!(fast, general, "bytes {:02x?}", bytes);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_request_prost_writes_splits_into_each_payments_prost_encoding(
        batch_id in any::<u64>(),
        payments in prop::collection::vec(payment(), 0..4),
    ) {
        let wire = request(batch_id, &payments);
        let bytes = wire.encode_to_vec();
        let split = direct::submit_batch_request(&bytes).expect("prost's own encoding");
        prop_assert_eq!(split.batch_id, batch_id);
        let expected: Vec<Vec<u8>> = wire.payments.iter().map(Message::encode_to_vec).collect();
        let got: Vec<Vec<u8>> = split.payments.iter().map(|p| p.to_vec()).collect();
        prop_assert_eq!(got, expected);
        let decoded = leader_way(&bytes).expect("split");
        prop_assert_eq!(decoded.1, payments.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn an_entry_written_from_payment_bytes_is_the_one_prost_writes(
        stamp_ms in prop_oneof![Just(0u64), any::<u64>()],
        payments in prop::collection::vec(payment(), 0..4),
    ) {
        let wire: Vec<pb::Payment> = payments.iter().map(pb::Payment::from).collect();
        let encodings: Vec<Vec<u8>> = wire.iter().map(Message::encode_to_vec).collect();
        let prost_entry = pb::Command {
            stamp_ms,
            kind: Some(pb::command::Kind::Submit(pb::SubmitPayments { payments: wire })),
        }
        .encode_to_vec();
        prop_assert_eq!(direct::encode_submit_command(stamp_ms, &encodings), prost_entry);
    }

    #[test]
    fn what_the_leader_takes_from_mutated_requests_matches_the_general_way(
        batch_id in any::<u64>(),
        payments in prop::collection::vec(payment(), 1..3),
        edits in prop::collection::vec(
            (any::<usize>(), any::<usize>(), any::<u8>(), any::<u8>()),
            1..5,
        ),
    ) {
        let bytes = request(batch_id, &payments).encode_to_vec();
        must_match_the_general_way(&mutate(bytes, &edits))?;
    }

    #[test]
    fn what_the_leader_takes_from_arbitrary_bytes_matches_the_general_way(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        must_match_the_general_way(&bytes)?;
    }
}

#[test]
fn a_request_with_a_field_the_split_does_not_know_is_refused_for_the_general_way() {
    let mut bytes = request(9, &[]).encode_to_vec();
    // Field 15, varint 1: prost skips it.
    prost::encoding::uint64::encode(15, &1, &mut bytes);
    assert_eq!(direct::submit_batch_request(&bytes), Err(NotDirect));
    assert!(general_way(&bytes).is_some(), "prost takes it");
}

#[test]
fn a_payment_that_is_not_protobuf_is_refused_alone() {
    // Field 2 (a payment) holding bytes that are no protobuf message: a
    // field key with wire type 7.
    let mut bytes = Vec::new();
    prost::encoding::bytes::encode(2, &vec![0x0f_u8, 0x00], &mut bytes);
    assert!(
        general_way(&bytes).is_none(),
        "prost refuses the whole request"
    );
    let (_, decoded) = leader_way(&bytes).expect("the framing is fine");
    let error = decoded[0].as_ref().expect_err("not a payment");
    assert_eq!(
        RejectReason::for_decode_error(error),
        RejectReason::Malformed
    );
    assert!(
        error.to_string().contains("not a protobuf Payment"),
        "{error}"
    );
}

#[test]
fn a_batch_id_written_twice_reads_as_its_last_value_both_ways() {
    let mut bytes = request(5, &[]).encode_to_vec();
    prost::encoding::uint64::encode(1, &8, &mut bytes);
    assert_eq!(general_way(&bytes).expect("prost takes it").0, 8);
    assert_eq!(leader_way(&bytes).expect("split").0, 8);
}
