use crate::canonical::CanonicalWriter;
use crate::decode_error::{DecodeError, field};
use crate::ids::{CertId, CounterNullifier, Nullifier, TxId, derived, payment_signing_message};
use crate::limits::INPUTS_PER_PAYMENT_MAX;
use crate::pb;
use crate::types::{IdText, OfflineCertificate, PaymentInput};

/// A device-signed offline payment spending tokens of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub certificate: OfflineCertificate,
    pub inputs: Vec<PaymentInput>,
    pub amount: u64,
    pub payee_id: IdText,
    pub payee_challenge: [u8; 32],
    pub counter: u64,
    pub created_at_ms: u64,
    pub device_signature: [u8; 64],
}

impl Payment {
    /// The canonical body the device signs, docs/PROTOCOL.md §3.2. Merkle paths
    /// and the signature are excluded: a leaf has one path under a given root,
    /// so the leaves alone fix what is spent.
    pub fn canonical_body_for(
        cert_id: &CertId,
        inputs: &[PaymentInput],
        amount: u64,
        payee_id: &IdText,
        payee_challenge: &[u8; 32],
        counter: u64,
        created_at_ms: u64,
    ) -> Vec<u8> {
        let mut w = CanonicalWriter::new(128 + inputs.len() * 12);
        w.fixed(cert_id.as_bytes())
            .u32(u32::try_from(inputs.len()).expect("no payment holds 2^32 inputs in memory"));
        for input in inputs {
            w.u32(input.leaf.index).u64(input.leaf.value);
        }
        w.u64(amount)
            .short_text(payee_id.as_str())
            .fixed(payee_challenge)
            .u64(counter)
            .u64(created_at_ms);
        w.finish()
    }

    pub fn canonical_body(&self) -> Vec<u8> {
        self.canonical_body_with(&self.certificate.cert_id())
    }

    /// As [`Payment::canonical_body`], reusing an already computed `cert_id`.
    pub fn canonical_body_with(&self, cert_id: &CertId) -> Vec<u8> {
        Self::canonical_body_for(
            cert_id,
            &self.inputs,
            self.amount,
            &self.payee_id,
            &self.payee_challenge,
            self.counter,
            self.created_at_ms,
        )
    }

    pub fn tx_id(&self) -> TxId {
        self.tx_id_with(&self.certificate.cert_id())
    }

    pub fn tx_id_with(&self, cert_id: &CertId) -> TxId {
        TxId(derived::TX_ID.hash(&self.canonical_body_with(cert_id)))
    }

    /// The bytes the device signs.
    pub fn signing_message(&self) -> Vec<u8> {
        payment_signing_message(&self.tx_id())
    }

    /// The nullifiers of the tokens this payment spends, in input order.
    pub fn nullifiers(&self) -> Vec<Nullifier> {
        let cert_id = self.certificate.cert_id();
        self.inputs
            .iter()
            .map(|input| cert_id.token_nullifier(input.leaf.index))
            .collect()
    }

    pub fn counter_nullifier(&self) -> CounterNullifier {
        self.certificate.cert_id().counter_nullifier(self.counter)
    }

    /// The payment as the ledger records it (docs/PROTOCOL.md §9.1): without
    /// its Merkle paths. They were checked before anything was recorded,
    /// and neither the `tx_id` nor the device signature covers them (a leaf
    /// has one path under a given root), so the record still identifies the
    /// payment and still proves what its device signed. The paths are most
    /// of a payment's bytes: dropping them shrinks every state write.
    pub fn into_recorded(mut self) -> Payment {
        for input in &mut self.inputs {
            input.path = Vec::new();
        }
        self
    }

    /// As [`Payment::into_recorded`], from a borrowed payment: clones
    /// everything but the paths, which are never copied (the leader applies
    /// its own entries from payments it keeps for the whole entry).
    pub fn recorded(&self) -> Payment {
        Payment {
            certificate: self.certificate.clone(),
            inputs: self
                .inputs
                .iter()
                .map(|input| PaymentInput {
                    leaf: input.leaf,
                    path: Vec::new(),
                })
                .collect(),
            amount: self.amount,
            payee_id: self.payee_id.clone(),
            payee_challenge: self.payee_challenge,
            counter: self.counter,
            created_at_ms: self.created_at_ms,
            device_signature: self.device_signature,
        }
    }
}

impl TryFrom<&pb::Payment> for Payment {
    type Error = DecodeError;

    fn try_from(wire: &pb::Payment) -> Result<Self, DecodeError> {
        let certificate =
            OfflineCertificate::try_from(field::required("certificate", &wire.certificate)?)
                .map_err(|e| e.within("certificate"))?;
        field::at_most("inputs", &wire.inputs, INPUTS_PER_PAYMENT_MAX)?;
        let inputs = wire
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                PaymentInput::try_from(input).map_err(|e| e.within(format!("inputs[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Payment {
            certificate,
            inputs,
            amount: wire.amount,
            payee_id: IdText::new("payee_id", wire.payee_id.clone())?,
            payee_challenge: field::fixed("payee_challenge", &wire.payee_challenge)?,
            counter: wire.counter,
            created_at_ms: wire.created_at_ms,
            device_signature: field::fixed("device_signature", &wire.device_signature)?,
        })
    }
}

impl Payment {
    /// The wire form without its certificate, for stores that keep each
    /// certificate once, apart from the payments made under it.
    pub fn to_pb_without_certificate(&self) -> pb::Payment {
        pb::Payment {
            certificate: None,
            inputs: self.inputs.iter().map(Into::into).collect(),
            amount: self.amount,
            payee_id: self.payee_id.as_str().to_owned(),
            payee_challenge: self.payee_challenge.to_vec(),
            counter: self.counter,
            created_at_ms: self.created_at_ms,
            device_signature: self.device_signature.to_vec(),
        }
    }
}

impl From<&Payment> for pb::Payment {
    fn from(payment: &Payment) -> Self {
        pb::Payment {
            certificate: Some((&payment.certificate).into()),
            ..payment.to_pb_without_certificate()
        }
    }
}
