//! A small deterministic world: one issuer, funded devices, merchants.

use ed25519_dalek::{Signer, SigningKey};
use spentledger_protocol::merkle::MerkleTree;
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::{Currency, IdText};
use spentledger_protocol::{IssuerKey, OfflineCertificate, Payment, PaymentInput, TokenLeaf};

/// 2026-01-01T00:00:00Z.
pub const T0_MS: u64 = 1_767_225_600_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const SKEW_MS: u64 = 300_000;
pub const ISSUER_SEED: [u8; 32] = [0x11; 32];

pub fn id(text: &str) -> IdText {
    IdText::new("test", text).expect("test ids are valid")
}

pub fn eur() -> Currency {
    Currency::new("currency", "EUR").expect("EUR is a currency")
}

pub fn issuer() -> Issuer {
    Issuer::from_seed(
        id("bank-a-2026"),
        ISSUER_SEED,
        T0_MS - 24 * HOUR_MS,
        T0_MS + 365 * 24 * HOUR_MS,
    )
}

pub fn issuer_keys() -> Vec<IssuerKey> {
    vec![issuer().issuer_key()]
}

pub fn device_seed(n: u8) -> [u8; 32] {
    [n.wrapping_add(0x40); 32]
}

/// A device funded with `balance` at T0 under the default policy.
pub fn funded_wallet(device: u8, balance: u64) -> Wallet {
    let funding = Funding::new(id(&format!("wallet-{device}")), eur(), balance, T0_MS);
    issuer()
        .fund_device(&IssuancePolicy::default(), device_seed(device), &funding)
        .expect("default policy funds a positive balance")
}

/// A certificate over arbitrary token values (possibly ones no honest issuer
/// would make), signed by the test issuer, and a payment spending `spend`.
pub fn custom_payment(values: &[u64], spend: &[u32], device_key: Option<[u8; 32]>) -> Payment {
    let seed = device_seed(200);
    let leaves: Vec<TokenLeaf> = values
        .iter()
        .enumerate()
        .map(|(i, &value)| TokenLeaf {
            index: i as u32,
            value,
        })
        .collect();
    let tree = MerkleTree::build(&leaves).expect("test trees are non-empty");
    let certificate = issuer().sign(OfflineCertificate {
        issuer_key_id: id("bank-a-2026"),
        wallet_id: id("custom"),
        device_key: device_key.unwrap_or_else(|| Wallet::device_key_for(&seed)),
        currency: eur(),
        token_root: tree.root(),
        token_count: leaves.len() as u32,
        total_value: values.iter().fold(0u64, |a, v| a.saturating_add(*v)).max(1),
        issued_at_ms: T0_MS,
        spend_until_ms: T0_MS + 24 * HOUR_MS,
        settle_until_ms: T0_MS + 48 * HOUR_MS,
        issuer_signature: [0; 64],
    });
    let inputs: Vec<PaymentInput> = spend
        .iter()
        .map(|&i| PaymentInput {
            leaf: leaves[i as usize],
            path: tree.path(i).expect("spent index is in range"),
        })
        .collect();
    let amount = inputs
        .iter()
        .fold(0u64, |a, i| a.wrapping_add(i.leaf.value));
    let payment = Payment {
        certificate,
        inputs,
        amount,
        payee_id: id("merchant-1"),
        payee_challenge: [0x33; 32],
        counter: 0,
        created_at_ms: T0_MS + HOUR_MS,
        device_signature: [0; 64],
    };
    sign_as_device(payment, &seed)
}

/// Re-signs a payment (after a test changed it) with the device key of `seed`.
pub fn sign_as_device(mut payment: Payment, seed: &[u8; 32]) -> Payment {
    payment.device_signature = SigningKey::from_bytes(seed)
        .sign(&payment.signing_message())
        .to_bytes();
    payment
}

/// Re-signs the certificate with the issuer key, then the payment with the device key.
pub fn resign_all(mut payment: Payment, device_seed: &[u8; 32]) -> Payment {
    payment.certificate = issuer().sign(payment.certificate);
    sign_as_device(payment, device_seed)
}

/// A valid payment of `amount` from a fresh device `device` to `merchant-1`.
pub fn valid_payment(device: u8, amount: u64) -> Payment {
    let mut wallet = funded_wallet(device, 10_000);
    wallet
        .pay(amount, &id("merchant-1"), [0x33; 32], T0_MS + HOUR_MS)
        .expect("a fresh wallet can pay")
}
