//! The submit command and its payments, read straight into domain types.
//! Field numbers are those of `proto/spentledger/v1/raft.proto` and
//! `types.proto`; every domain check is the one the `TryFrom<&pb::…>`
//! conversions make, called here on the borrowed fields.

use super::field_reader::{FieldReader, NotDirect, set_once};
use crate::decode_error::field;
use crate::limits::{INPUTS_PER_PAYMENT_MAX, MERKLE_PATH_LEN_MAX};
use crate::merkle::Hash;
use crate::types::{Currency, IdText, OfflineCertificate, Payment, PaymentInput, TokenLeaf};

/// A submit command's stamp and each payment's bytes, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitCommand<'a> {
    pub stamp_ms: u64,
    pub payments: Vec<&'a [u8]>,
}

/// Splits a `Command` holding a submit into its stamp and payment messages.
/// Any other command kind, or none, is [`NotDirect`]: those are rare and
/// small, and take the general way.
pub fn submit_command(command: &[u8]) -> Result<SubmitCommand<'_>, NotDirect> {
    let mut stamp_ms = None;
    let mut submit = None;
    let mut fields = FieldReader::new(command);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => set_once(&mut stamp_ms, value.varint()?)?,
            2 => set_once(&mut submit, value.bytes()?)?,
            _ => return Err(NotDirect),
        }
    }
    let mut payments = Vec::new();
    let mut fields = FieldReader::new(submit.ok_or(NotDirect)?);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => payments.push(value.bytes()?),
            _ => return Err(NotDirect),
        }
    }
    Ok(SubmitCommand {
        stamp_ms: stamp_ms.unwrap_or(0),
        payments,
    })
}

/// One `Payment` message, decoded and checked as `Payment::try_from` does.
pub fn payment(bytes: &[u8]) -> Result<Payment, NotDirect> {
    let mut certificate = None;
    let mut inputs = Vec::new();
    let mut amount = None;
    let mut payee_id = None;
    let mut payee_challenge = None;
    let mut counter = None;
    let mut created_at_ms = None;
    let mut device_signature = None;
    let mut fields = FieldReader::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => set_once(&mut certificate, value.bytes()?)?,
            2 => {
                if inputs.len() == INPUTS_PER_PAYMENT_MAX {
                    return Err(NotDirect);
                }
                inputs.push(payment_input(value.bytes()?)?);
            }
            3 => set_once(&mut amount, value.varint()?)?,
            4 => set_once(&mut payee_id, value.text()?)?,
            5 => set_once(&mut payee_challenge, value.bytes()?)?,
            6 => set_once(&mut counter, value.varint()?)?,
            7 => set_once(&mut created_at_ms, value.varint()?)?,
            8 => set_once(&mut device_signature, value.bytes()?)?,
            _ => return Err(NotDirect),
        }
    }
    Ok(Payment {
        certificate: certificate_message(certificate.ok_or(NotDirect)?)?,
        inputs,
        amount: amount.unwrap_or(0),
        payee_id: id_text("payee_id", payee_id)?,
        payee_challenge: fixed("payee_challenge", payee_challenge)?,
        counter: counter.unwrap_or(0),
        created_at_ms: created_at_ms.unwrap_or(0),
        device_signature: fixed("device_signature", device_signature)?,
    })
}

fn certificate_message(bytes: &[u8]) -> Result<OfflineCertificate, NotDirect> {
    let mut issuer_key_id = None;
    let mut wallet_id = None;
    let mut device_key = None;
    let mut currency = None;
    let mut token_root = None;
    let mut token_count = None;
    let mut total_value = None;
    let mut issued_at_ms = None;
    let mut spend_until_ms = None;
    let mut settle_until_ms = None;
    let mut issuer_signature = None;
    let mut fields = FieldReader::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => set_once(&mut issuer_key_id, value.text()?)?,
            2 => set_once(&mut wallet_id, value.text()?)?,
            3 => set_once(&mut device_key, value.bytes()?)?,
            4 => set_once(&mut currency, value.text()?)?,
            5 => set_once(&mut token_root, value.bytes()?)?,
            6 => set_once(&mut token_count, value.uint32()?)?,
            7 => set_once(&mut total_value, value.varint()?)?,
            8 => set_once(&mut issued_at_ms, value.varint()?)?,
            9 => set_once(&mut spend_until_ms, value.varint()?)?,
            10 => set_once(&mut settle_until_ms, value.varint()?)?,
            11 => set_once(&mut issuer_signature, value.bytes()?)?,
            _ => return Err(NotDirect),
        }
    }
    Ok(OfflineCertificate {
        issuer_key_id: id_text("issuer_key_id", issuer_key_id)?,
        wallet_id: id_text("wallet_id", wallet_id)?,
        device_key: fixed("device_key", device_key)?,
        currency: Currency::new("currency", currency.unwrap_or("")).map_err(|_| NotDirect)?,
        token_root: fixed("token_root", token_root)?,
        token_count: token_count.unwrap_or(0),
        total_value: total_value.unwrap_or(0),
        issued_at_ms: issued_at_ms.unwrap_or(0),
        spend_until_ms: spend_until_ms.unwrap_or(0),
        settle_until_ms: settle_until_ms.unwrap_or(0),
        issuer_signature: fixed("issuer_signature", issuer_signature)?,
    })
}

fn payment_input(bytes: &[u8]) -> Result<PaymentInput, NotDirect> {
    let mut leaf = None;
    let mut path: Vec<Hash> = Vec::new();
    let mut fields = FieldReader::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => set_once(&mut leaf, token_leaf(value.bytes()?)?)?,
            2 => {
                if path.len() == MERKLE_PATH_LEN_MAX {
                    return Err(NotDirect);
                }
                path.push(fixed("path", Some(value.bytes()?))?);
            }
            _ => return Err(NotDirect),
        }
    }
    Ok(PaymentInput {
        leaf: leaf.ok_or(NotDirect)?,
        path,
    })
}

fn token_leaf(bytes: &[u8]) -> Result<TokenLeaf, NotDirect> {
    let mut index = None;
    let mut value = None;
    let mut fields = FieldReader::new(bytes);
    while let Some((number, field_value)) = fields.next_field()? {
        match number {
            1 => set_once(&mut index, field_value.uint32()?)?,
            2 => set_once(&mut value, field_value.varint()?)?,
            _ => return Err(NotDirect),
        }
    }
    Ok(TokenLeaf {
        index: index.unwrap_or(0),
        value: value.unwrap_or(0),
    })
}

/// An absent proto3 field reads as its default, as prost gives it.
fn id_text(name: &str, text: Option<&str>) -> Result<IdText, NotDirect> {
    IdText::new(name, text.unwrap_or("")).map_err(|_| NotDirect)
}

fn fixed<const N: usize>(name: &str, bytes: Option<&[u8]>) -> Result<[u8; N], NotDirect> {
    field::fixed(name, bytes.unwrap_or(&[])).map_err(|_| NotDirect)
}
