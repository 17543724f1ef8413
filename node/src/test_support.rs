//! Fixtures the node's unit tests share: a simulated issuer's wallets and
//! the ids they use. (The integration suites have their own in `tests/`.)

use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{Payment, Receipt};

use crate::state_machine::AcceptedPayment;

/// `payment` as the ledger records it when accepted by the entry at
/// `log_index` stamped `settled_at_ms` (paths and all, as given).
pub fn accepted_as(
    payment: Payment,
    log_index: u64,
    settled_at_ms: u64,
    flags: u32,
) -> AcceptedPayment {
    let (tx_id, cert_id) = (payment.tx_id(), payment.certificate.cert_id());
    let receipt = Receipt::of(&payment, tx_id, cert_id, log_index, settled_at_ms, flags);
    AcceptedPayment { payment, receipt }
}

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
