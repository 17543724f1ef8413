//! Issuer, wallet and merchant helpers: the offline half of the protocol, as
//! the CLI's simulations, the tests and the benchmarks use it. Randomness is
//! always passed in (seeds, entropy), so this module stays pure and its
//! outputs reproducible.

mod issuer;
mod merchant;
mod wallet;

pub use issuer::{
    Funding, IssuanceError, IssuancePolicy, IssuanceRequest, IssuedCertificate, Issuer,
};
pub use merchant::{MerchantRejection, MerchantTerminal};
pub use wallet::{Wallet, WalletError};
