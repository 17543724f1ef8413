//! Fixtures the node's unit tests share: a simulated issuer's wallets and
//! the ids they use. (The integration suites have their own in `tests/`.)

use spentledger_protocol::sim::{IssuancePolicy, IssuanceRequest, Issuer, Wallet};
use spentledger_protocol::types::{Currency, IdText};

/// An id in the tests' namespace.
pub fn id(text: &str) -> IdText {
    IdText::new("test", text).expect("test ids are short ASCII")
}

/// A device's wallet (its key derived from `device`) funded with `balance`
/// by one fixed issuer, issued at 1,000 ms and never expiring.
pub fn wallet(device: u8, balance: u64) -> Wallet {
    let issuer = Issuer::from_seed(id("bank"), [1; 32], 0, u64::MAX);
    let seed = [device; 32];
    let issued = issuer
        .issue(
            &IssuancePolicy::default(),
            &IssuanceRequest {
                wallet_id: id(&format!("w{device}")),
                device_key: Wallet::device_key_for(&seed),
                currency: Currency::new("c", "EUR").expect("EUR is a currency code"),
                balance,
                credit_line: 0,
                issued_at_ms: 1_000,
            },
        )
        .expect("the default policy funds a small balance");
    Wallet::new(seed, issued.certificate, issued.tokens).expect("the issuer's own tokens")
}
