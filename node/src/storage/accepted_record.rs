//! The payment archive's record format (`accepted` family: tx id → the
//! payment as recorded and its receipt).
//!
//! The archive is never deleted and is most of the state's bytes, so a
//! record holds only what is stored nowhere else and cannot be derived: not
//! the certificate (once per certificate in `cert_bodies`), not the tx id
//! (the key), not the receipt's payee and amount (the payment's).
//!
//! Three formats are read; only the packed one is written:
//! - **packed** (first byte 3): fixed-size fields raw, integers as varints,
//!   no field tags; about 27 bytes less per 2-input payment than compact;
//! - **compact** (first byte 2): a fixed header, then the payment's protobuf
//!   without its certificate;
//! - **first** (first byte 0, the high byte of a big-endian payment length
//!   under 16 MiB): payment length, whole payment, whole receipt.

use prost::Message;
use prost::encoding::{decode_varint, encode_varint};
use spentledger_protocol::limits::{
    ID_TEXT_BYTES_MAX, INPUTS_PER_PAYMENT_MAX, MERKLE_PATH_LEN_MAX,
};
use spentledger_protocol::types::{IdText, PaymentInput, TokenLeaf, receipt_flags};
use spentledger_protocol::{CertId, OfflineCertificate, Payment, Receipt, TxId, pb};

use crate::state_machine::{AcceptedPayment, StoreError};

const PACKED: u8 = 3;
const COMPACT: u8 = 2;
/// Compact: version byte, cert id, log index, stamp, flags.
const COMPACT_HEADER_BYTES: usize = 1 + 32 + 8 + 8 + 4;
/// Packed, before the payee and inputs: the largest a record's fixed part
/// can be (six varints of at most 10 bytes), to size the buffer once.
const PACKED_FIXED_BYTES_MAX: usize = 1 + 32 + 6 * 10 + 32 + 64;

const WHAT: &str = "accepted payment";

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: WHAT,
        detail: detail.to_string(),
    }
}

/// Encodes `a` in the packed format. Writes straight from the payment:
/// no intermediate protobuf message, one allocation.
pub(super) fn encode(a: &AcceptedPayment) -> Vec<u8> {
    let (p, r) = (&a.payment, &a.receipt);
    let payee = p.payee_id.as_str().as_bytes();
    let inputs_bytes: usize = p
        .inputs
        .iter()
        .map(|i| 2 * 10 + 1 + 32 * i.path.len())
        .sum();
    let mut v = Vec::with_capacity(PACKED_FIXED_BYTES_MAX + 10 + payee.len() + 1 + inputs_bytes);
    v.push(PACKED);
    v.extend_from_slice(&r.cert_id.0);
    for n in [
        r.log_index,
        r.settled_at_ms,
        u64::from(r.flags),
        p.amount,
        p.counter,
        p.created_at_ms,
    ] {
        encode_varint(n, &mut v);
    }
    v.extend_from_slice(&p.payee_challenge);
    v.extend_from_slice(&p.device_signature);
    encode_varint(payee.len() as u64, &mut v);
    v.extend_from_slice(payee);
    encode_varint(p.inputs.len() as u64, &mut v);
    for input in &p.inputs {
        encode_varint(u64::from(input.leaf.index), &mut v);
        encode_varint(input.leaf.value, &mut v);
        encode_varint(input.path.len() as u64, &mut v);
        for hash in &input.path {
            v.extend_from_slice(hash);
        }
    }
    v
}

/// Reads a record of any format. `certificate_body` fetches the certificate
/// by id: `commit` writes it in the same batch as the first payment under it.
pub(super) fn decode(
    tx_id: &TxId,
    v: &[u8],
    certificate_body: impl FnOnce(&CertId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<AcceptedPayment, StoreError> {
    match v.first() {
        Some(&PACKED) => decode_packed(tx_id, &v[1..], certificate_body),
        Some(&COMPACT) => decode_compact(tx_id, v, certificate_body),
        _ => decode_first_format(v),
    }
}

/// A cursor over a packed record; every read checks the bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < len {
            return Err(corrupt("short record"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        decode_varint(&mut self.0).map_err(corrupt)
    }

    /// A varint that counts something of at most `max`.
    fn count(&mut self, what: &str, max: usize) -> Result<usize, StoreError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| corrupt(format!("{what}: {n} (at most {max})")))
    }
}

fn decode_packed(
    tx_id: &TxId,
    v: &[u8],
    certificate_body: impl FnOnce(&CertId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<AcceptedPayment, StoreError> {
    let mut r = Reader(v);
    let cert_id = CertId(r.fixed()?);
    let log_index = r.varint()?;
    let settled_at_ms = r.varint()?;
    let flags = u32::try_from(r.varint()?)
        .ok()
        .filter(|f| f & !receipt_flags::KNOWN == 0)
        .ok_or_else(|| corrupt("unknown receipt flags"))?;
    let amount = r.varint()?;
    let counter = r.varint()?;
    let created_at_ms = r.varint()?;
    let payee_challenge = r.fixed()?;
    let device_signature = r.fixed()?;
    let payee_len = r.count("payee id bytes", ID_TEXT_BYTES_MAX)?;
    let payee = std::str::from_utf8(r.take(payee_len)?).map_err(corrupt)?;
    let payee_id = IdText::new("payee_id", payee).map_err(corrupt)?;
    let input_count = r.count("inputs", INPUTS_PER_PAYMENT_MAX)?;
    let mut inputs = Vec::with_capacity(input_count);
    for _ in 0..input_count {
        let index = u32::try_from(r.varint()?).map_err(|_| corrupt("token index above 32 bits"))?;
        let value = r.varint()?;
        let path_len = r.count("path hashes", MERKLE_PATH_LEN_MAX)?;
        let path = (0..path_len)
            .map(|_| r.fixed())
            .collect::<Result<Vec<_>, _>>()?;
        inputs.push(PaymentInput {
            leaf: TokenLeaf { index, value },
            path,
        });
    }
    if !r.0.is_empty() {
        return Err(corrupt(format!("{} bytes after the record", r.0.len())));
    }
    let certificate = certificate(&cert_id, certificate_body)?;
    let payment = Payment {
        certificate,
        inputs,
        amount,
        payee_id,
        payee_challenge,
        counter,
        created_at_ms,
        device_signature,
    };
    Ok(AcceptedPayment {
        receipt: Receipt::of(&payment, *tx_id, cert_id, log_index, settled_at_ms, flags),
        payment,
    })
}

fn certificate(
    cert_id: &CertId,
    certificate_body: impl FnOnce(&CertId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<OfflineCertificate, StoreError> {
    let wire = certificate_wire(cert_id, certificate_body)?;
    OfflineCertificate::try_from(&wire).map_err(|e| StoreError::Corrupt {
        what: "certificate",
        detail: e.to_string(),
    })
}

/// The stored certificate body, decoded as protobuf only (the compact
/// format checks it with the whole payment).
fn certificate_wire(
    cert_id: &CertId,
    certificate_body: impl FnOnce(&CertId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<pb::OfflineCertificate, StoreError> {
    let body =
        certificate_body(cert_id)?.ok_or_else(|| corrupt("its certificate body is missing"))?;
    pb::OfflineCertificate::decode(body.as_slice()).map_err(|e| StoreError::Corrupt {
        what: "certificate",
        detail: e.to_string(),
    })
}

fn decode_compact(
    tx_id: &TxId,
    v: &[u8],
    certificate_body: impl FnOnce(&CertId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<AcceptedPayment, StoreError> {
    if v.len() < COMPACT_HEADER_BYTES {
        return Err(corrupt("short record"));
    }
    let field = |from: usize, len: usize| &v[from..from + len];
    let cert_id = CertId(field(1, 32).try_into().expect("32 bytes"));
    let log_index = u64::from_be_bytes(field(33, 8).try_into().expect("8 bytes"));
    let settled_at_ms = u64::from_be_bytes(field(41, 8).try_into().expect("8 bytes"));
    let flags = u32::from_be_bytes(field(49, 4).try_into().expect("4 bytes"));
    let mut wire = pb::Payment::decode(&v[COMPACT_HEADER_BYTES..]).map_err(corrupt)?;
    wire.certificate = Some(certificate_wire(&cert_id, certificate_body)?);
    let payment = Payment::try_from(&wire).map_err(corrupt)?;
    Ok(AcceptedPayment {
        receipt: Receipt::of(&payment, *tx_id, cert_id, log_index, settled_at_ms, flags),
        payment,
    })
}

fn decode_first_format(v: &[u8]) -> Result<AcceptedPayment, StoreError> {
    let len = v
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| corrupt("short record"))?;
    let payment_bytes = v.get(4..4 + len).ok_or_else(|| corrupt("short record"))?;
    let receipt_bytes = &v[4 + len..];
    let payment = pb::Payment::decode(payment_bytes)
        .map_err(corrupt)
        .and_then(|w| Payment::try_from(&w).map_err(corrupt))?;
    let receipt = pb::Receipt::decode(receipt_bytes)
        .map_err(corrupt)
        .and_then(|r| Receipt::try_from(&r).map_err(corrupt))?;
    Ok(AcceptedPayment { payment, receipt })
}

/// Writers of the formats no longer written, for tests that show they
/// still read.
#[cfg(test)]
pub(super) mod older_formats {
    use super::*;

    pub fn compact(a: &AcceptedPayment) -> Vec<u8> {
        let payment = a.payment.to_pb_without_certificate();
        let r = &a.receipt;
        let mut v = vec![COMPACT];
        v.extend_from_slice(&r.cert_id.0);
        v.extend_from_slice(&r.log_index.to_be_bytes());
        v.extend_from_slice(&r.settled_at_ms.to_be_bytes());
        v.extend_from_slice(&r.flags.to_be_bytes());
        payment.encode(&mut v).expect("a Vec grows to fit");
        v
    }

    pub fn first(a: &AcceptedPayment) -> Vec<u8> {
        let payment = pb::Payment::from(&a.payment).encode_to_vec();
        let mut v = (payment.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&payment);
        v.extend_from_slice(&pb::Receipt::from(&a.receipt).encode_to_vec());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{accepted_as, id, wallet};

    /// Payments of one device as the ledger records them (`recorded`: no
    /// paths) or as submitted (`submitted`: with paths), with receipts of a
    /// busy ledger's sizes (log index near a million, stamps of 2027).
    fn accepted(count: u64) -> (Vec<AcceptedPayment>, Vec<AcceptedPayment>) {
        let mut w = wallet(7, 2_000);
        let submitted: Vec<_> = (0..count)
            .map(|k| {
                let payment = w
                    .pay(3 + k, &id("a-shop"), [k as u8; 32], 2_000 + k)
                    .expect("pay");
                let flags = (k % 2) as u32 * receipt_flags::CLONE_DETECTED;
                accepted_as(payment, 1_000_000 + k, 1_800_000_000_000 + k, flags)
            })
            .collect();
        let recorded = submitted
            .iter()
            .map(|a| AcceptedPayment {
                payment: a.payment.recorded(),
                receipt: a.receipt.clone(),
            })
            .collect();
        (recorded, submitted)
    }

    fn body_of(a: &AcceptedPayment) -> Vec<u8> {
        pb::OfflineCertificate::from(&a.payment.certificate).encode_to_vec()
    }

    fn read(a: &AcceptedPayment, record: &[u8]) -> Result<AcceptedPayment, StoreError> {
        let body = body_of(a);
        decode(&a.receipt.tx_id, record, |c| {
            assert_eq!(c, &a.receipt.cert_id, "asks for its own certificate");
            Ok(Some(body))
        })
    }

    /// Panics unless `result` is a corruption whose detail names `what`.
    fn must_be_corrupt(result: Result<AcceptedPayment, StoreError>, what: &str) {
        match result {
            Err(StoreError::Corrupt { detail, .. }) => {
                assert!(detail.contains(what), "{what} not in {detail}")
            }
            other => panic!("expected corruption about {what}: {other:?}"),
        }
    }

    #[test]
    fn every_format_reads_back_what_was_written_with_or_without_paths() {
        let (recorded, submitted) = accepted(3);
        for a in recorded.iter().chain(&submitted) {
            for (format, record) in [
                ("packed", encode(a)),
                ("compact", older_formats::compact(a)),
                ("first", older_formats::first(a)),
            ] {
                assert_eq!(read(a, &record).as_ref().ok(), Some(a), "{format}");
            }
        }
        // Integers at their widest: varints of 10 bytes read back too.
        let mut wide = submitted[0].clone();
        wide.receipt.log_index = u64::MAX;
        wide.receipt.settled_at_ms = u64::MAX;
        wide.payment.created_at_ms = u64::MAX;
        wide.payment.counter = u64::MAX;
        wide.payment.inputs[0].leaf = TokenLeaf {
            index: u32::MAX,
            value: u64::MAX,
        };
        assert_eq!(read(&wide, &encode(&wide)).ok(), Some(wide));
    }

    #[test]
    fn the_packed_record_is_smaller_than_the_compact_one() {
        let (recorded, _) = accepted(1);
        let a = &recorded[0];
        let (packed, compact) = (encode(a), older_formats::compact(a));
        // Tags and lengths of 2 inputs, payee, challenge and signature, and
        // the fixed-width header integers: at least 20 bytes.
        assert!(
            packed.len() + 20 <= compact.len(),
            "packed {} bytes, compact {}",
            packed.len(),
            compact.len()
        );
    }

    #[test]
    fn a_cut_or_padded_or_missing_body_record_is_corruption_not_a_panic() {
        let (recorded, submitted) = accepted(1);
        for a in [&recorded[0], &submitted[0]] {
            let record = encode(a);
            for cut in 1..record.len() {
                assert!(
                    matches!(read(a, &record[..cut]), Err(StoreError::Corrupt { .. })),
                    "cut at {cut} of {}",
                    record.len()
                );
            }
            let mut padded = record.clone();
            padded.push(0);
            assert!(matches!(read(a, &padded), Err(StoreError::Corrupt { .. })));
            must_be_corrupt(
                decode(&a.receipt.tx_id, &record, |_| Ok(None)),
                "certificate body",
            );
        }
    }

    #[test]
    fn unknown_receipt_flags_are_corruption() {
        let (mut recorded, _) = accepted(1);
        let a = &mut recorded[0];
        a.receipt.flags = receipt_flags::KNOWN + 1;
        must_be_corrupt(read(a, &encode(a)), "flags");
    }

    #[test]
    fn counts_past_the_protocol_limits_are_corruption() {
        let (recorded, _) = accepted(1);
        let a = &recorded[0];
        let record = encode(a);
        // The input count is the last byte of the record of the same
        // payment without inputs: everything before it is the same.
        let mut no_inputs = a.clone();
        no_inputs.payment.inputs.clear();
        let at = encode(&no_inputs).len() - 1;
        assert_eq!(usize::from(record[at]), a.payment.inputs.len());
        let mut too_many = record.clone();
        too_many[at] = INPUTS_PER_PAYMENT_MAX as u8 + 1;
        must_be_corrupt(read(a, &too_many), "inputs");
    }
}
