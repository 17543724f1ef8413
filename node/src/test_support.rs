//! Fixtures the node's unit tests share: a simulated issuer's wallets and
//! the ids they use. (The integration suites have their own in `tests/`.)

use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;

/// An id in the tests' namespace.
pub fn id(text: &str) -> IdText {
    IdText::new("test", text).expect("test ids are short ASCII")
}

/// A device's wallet (its key derived from `device`) funded with `balance`
/// by one fixed issuer, issued at 1,000 ms and never expiring.
pub fn wallet(device: u8, balance: u64) -> Wallet {
    Issuer::from_seed(id("bank"), [1; 32], 0, u64::MAX)
        .fund_device(
            &IssuancePolicy::default(),
            [device; 32],
            &Funding::eur(id(&format!("w{device}")), balance, 1_000),
        )
        .expect("the default policy funds a small balance")
}
