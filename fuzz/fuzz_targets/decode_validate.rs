//! Arbitrary bytes as a protobuf `Payment`: decoding, conversion and every
//! validation path must answer with a verdict, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use spentledger_protocol::sim::Issuer;
use spentledger_protocol::types::IdText;
use spentledger_protocol::{IssuerKey, Payment, ValidationContext, ValidationMode, Validator, pb};

/// The issuer of the seed corpus (docs/protocol-test-vectors.json), so mutated
/// valid payments reach the signature checks.
fn keys() -> &'static Vec<IssuerKey> {
    static KEYS: OnceLock<Vec<IssuerKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let id = IdText::new("key_id", "bank-a-2026").expect("valid id");
        let t0 = 1_767_225_600_000;
        vec![Issuer::from_seed(id, [0x11; 32], t0 - 86_400_000, t0 + 365 * 86_400_000).issuer_key()]
    })
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| Validator::new(1, 64).expect("one thread"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = pb::Payment::decode(data) else {
        return;
    };
    let ctx = ValidationContext::new(1_767_232_800_000, 300_000, keys());
    let batch = [wire.clone(), wire.clone()];
    let a = validator().validate_wire_batch(&batch, &ctx, ValidationMode::Deterministic);
    let b = validator().validate_wire_batch(&batch, &ctx, ValidationMode::Ingress);
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "modes disagree on the same input");
    if let Ok(payment) = Payment::try_from(&wire) {
        let single = validator().validate_one(&payment, &ctx);
        assert_eq!(single.map_err(|r| (r, None)), a[0].clone());
        // Re-encoding a decoded payment gives the same ids.
        let again = Payment::try_from(&pb::Payment::from(&payment)).expect("own encoding converts");
        assert_eq!(again.tx_id(), payment.tx_id());
    }
});
