//! The leader's side of the direct way: a gateway's `SubmitBatchRequest`
//! split into its payments' bytes, and a submit command written from
//! payments' bytes. With both, a payment's bytes go from the request into the
//! log entry as they came, copied once, never decoded into protobuf structs
//! nor encoded again (the payments themselves are decoded straight to domain
//! types by [`super::payment`], on the validation pool).
//!
//! Field numbers are those of `proto/spentledger/v1/settlement.proto` and
//! `raft.proto`.

use prost::encoding::{encode_varint, encoded_len_varint};

use super::field_reader::{FieldReader, FieldValue, NotDirect};

/// A `SubmitBatchRequest`'s batch id and each payment's bytes, not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest<'a> {
    pub batch_id: u64,
    pub payments: Vec<&'a [u8]>,
}

/// Splits a `SubmitBatchRequest` into its batch id and payment messages,
/// reading only the request's own framing.
///
/// Contract: when prost decodes `bytes` as a `SubmitBatchRequest`, this
/// either refuses ([`NotDirect`]: an unknown field or an unexpected wire
/// type, which the caller decodes the general way) or gives the same batch
/// id and, in order, bytes that prost decodes to the same payments. The
/// payments are not looked into: bytes that are not a payment are found when
/// that payment is decoded, and refused alone (the general way refuses the
/// whole request).
pub fn submit_batch_request(bytes: &[u8]) -> Result<BatchRequest<'_>, NotDirect> {
    let mut batch_id = 0;
    let mut payments = Vec::new();
    let mut fields = FieldReader::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            // A scalar written twice: protobuf keeps the last.
            (1, FieldValue::Varint(id)) => batch_id = id,
            (2, FieldValue::Bytes(payment)) => payments.push(payment),
            _ => return Err(NotDirect),
        }
    }
    Ok(BatchRequest { batch_id, payments })
}

/// Field 1, length-delimited: `SubmitPayments.payments`.
const PAYMENT_KEY: u8 = 1 << 3 | 2;
/// Field 1, varint: `Command.stamp_ms`.
const STAMP_KEY: u8 = 1 << 3;
/// Field 2, length-delimited: `Command.submit`.
const SUBMIT_KEY: u8 = 2 << 3 | 2;

/// The bytes of `Command { stamp_ms, submit: SubmitPayments { payments } }`
/// with each payment given as its encoding: exactly what prost writes for
/// that command when each of `payments` is what prost writes for the
/// payment (tested against prost), so an entry is the same whichever way its
/// leader built it.
pub fn encode_submit_command<P: AsRef<[u8]>>(stamp_ms: u64, payments: &[P]) -> Vec<u8> {
    let submit_len: usize = payments
        .iter()
        .map(|p| {
            let len = p.as_ref().len();
            1 + encoded_len_varint(len as u64) + len
        })
        .sum();
    let stamp_len = if stamp_ms == 0 {
        0
    } else {
        1 + encoded_len_varint(stamp_ms)
    };
    let mut out =
        Vec::with_capacity(stamp_len + 1 + encoded_len_varint(submit_len as u64) + submit_len);
    // proto3 leaves a zero scalar out; prost does.
    if stamp_ms != 0 {
        out.push(STAMP_KEY);
        encode_varint(stamp_ms, &mut out);
    }
    // A oneof member that is set is written even when empty.
    out.push(SUBMIT_KEY);
    encode_varint(submit_len as u64, &mut out);
    for payment in payments {
        let payment = payment.as_ref();
        out.push(PAYMENT_KEY);
        encode_varint(payment.len() as u64, &mut out);
        out.extend_from_slice(payment);
    }
    out
}
