use ed25519_dalek::{Signer, SigningKey};

use super::Wallet;
use crate::merkle::{MerkleError, MerkleTree};
use crate::types::{Currency, IdText, IssuerKey, OfflineCertificate, TokenLeaf};

/// How an issuer funds devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuancePolicy {
    /// Cap on one certificate's offline limit, whatever the balance.
    pub offline_limit_max: u64,
    /// Token denominations, any order; must include 1 so every limit splits exactly.
    pub denominations: Vec<u64>,
    /// Small tokens set aside per denomination before the greedy split, so
    /// the wallet can pay most amounts exactly (there is no change offline).
    pub change_tokens_per_denomination: u32,
    pub tokens_max: u32,
    /// `spend_until = issued_at + spend_window_ms`.
    pub spend_window_ms: u64,
    /// `settle_until = spend_until + settle_grace_ms`: time for merchants to
    /// come online and submit.
    pub settle_grace_ms: u64,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        IssuancePolicy {
            offline_limit_max: 50_000,
            denominations: vec![
                1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000,
            ],
            change_tokens_per_denomination: 4,
            tokens_max: 256,
            spend_window_ms: 7 * 24 * 3_600_000,
            settle_grace_ms: 7 * 24 * 3_600_000,
        }
    }
}

/// A device asking to be funded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceRequest {
    pub wallet_id: IdText,
    pub device_key: [u8; 32],
    pub currency: Currency,
    pub balance: u64,
    pub credit_line: u64,
    pub issued_at_ms: u64,
}

/// A funding in a simulation, where the device's secret key is at hand:
/// everything an [`IssuanceRequest`] holds but the device key, which
/// [`Issuer::fund_device`] derives from the device's seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    pub wallet_id: IdText,
    pub currency: Currency,
    pub balance: u64,
    pub credit_line: u64,
    pub issued_at_ms: u64,
}

impl Funding {
    /// `balance` in `currency`, no credit line, issued at `issued_at_ms`.
    pub fn new(wallet_id: IdText, currency: Currency, balance: u64, issued_at_ms: u64) -> Self {
        Funding {
            wallet_id,
            currency,
            balance,
            credit_line: 0,
            issued_at_ms,
        }
    }

    /// The simulations' usual funding: `balance` euros, no credit line.
    pub fn eur(wallet_id: IdText, balance: u64, issued_at_ms: u64) -> Self {
        let eur = Currency::new("currency", "EUR").expect("EUR is a currency code");
        Funding::new(wallet_id, eur, balance, issued_at_ms)
    }

    pub fn with_credit_line(self, credit_line: u64) -> Self {
        Funding {
            credit_line,
            ..self
        }
    }

    /// The request the device with `device_key` sends for this funding.
    pub fn request(&self, device_key: [u8; 32]) -> IssuanceRequest {
        IssuanceRequest {
            wallet_id: self.wallet_id.clone(),
            device_key,
            currency: self.currency,
            balance: self.balance,
            credit_line: self.credit_line,
            issued_at_ms: self.issued_at_ms,
        }
    }
}

/// A signed certificate and the token leaves the device needs to spend it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub certificate: OfflineCertificate,
    pub tokens: Vec<TokenLeaf>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuanceError {
    #[error("nothing to fund: balance plus credit line is zero")]
    NothingToFund,
    #[error("the policy's denominations must be non-zero and include 1")]
    BadDenominations,
    #[error("the limit {limit} needs {needed} tokens, more than the policy's {max}")]
    TooManyTokens { limit: u64, needed: usize, max: u32 },
    #[error("time window overflows: {0}")]
    TimeOverflow(&'static str),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

/// An issuer holding its ed25519 signing key.
#[derive(Clone)]
pub struct Issuer {
    key_id: IdText,
    signing_key: SigningKey,
    valid_from_ms: u64,
    valid_until_ms: u64,
}

impl Issuer {
    /// `seed` is the 32-byte ed25519 secret key.
    pub fn from_seed(
        key_id: IdText,
        seed: [u8; 32],
        valid_from_ms: u64,
        valid_until_ms: u64,
    ) -> Self {
        Issuer {
            key_id,
            signing_key: SigningKey::from_bytes(&seed),
            valid_from_ms,
            valid_until_ms,
        }
    }

    /// The public half, as the ledger registers it.
    pub fn issuer_key(&self) -> IssuerKey {
        IssuerKey {
            key_id: self.key_id.clone(),
            public_key: self.signing_key.verifying_key().to_bytes(),
            valid_from_ms: self.valid_from_ms,
            valid_until_ms: self.valid_until_ms,
        }
    }

    /// The offline limit: balance plus credit line, capped by the policy.
    pub fn offline_limit(policy: &IssuancePolicy, request: &IssuanceRequest) -> u64 {
        request
            .balance
            .saturating_add(request.credit_line)
            .min(policy.offline_limit_max)
    }

    /// Splits `limit` into token values: a few small "change" tokens of each
    /// denomination first, then greedily from the largest.
    pub fn split(policy: &IssuancePolicy, limit: u64) -> Result<Vec<u64>, IssuanceError> {
        let mut denominations = policy.denominations.clone();
        denominations.sort_unstable();
        denominations.dedup();
        if denominations.first() != Some(&1) {
            return Err(IssuanceError::BadDenominations);
        }
        let mut remaining = limit;
        let mut values = Vec::new();
        let smaller = &denominations[..denominations.len() - 1];
        for &d in smaller {
            for _ in 0..policy.change_tokens_per_denomination {
                if remaining >= d {
                    values.push(d);
                    remaining -= d;
                }
            }
        }
        for &d in denominations.iter().rev() {
            let count = remaining / d;
            if values.len() as u64 + count > u64::from(policy.tokens_max) {
                return Err(IssuanceError::TooManyTokens {
                    limit,
                    needed: values
                        .len()
                        .saturating_add(usize::try_from(count).unwrap_or(usize::MAX)),
                    max: policy.tokens_max,
                });
            }
            values.extend(std::iter::repeat_n(d, count as usize));
            remaining -= count * d;
        }
        debug_assert_eq!(remaining, 0, "denomination 1 absorbs any remainder");
        Ok(values)
    }

    /// Funds a device: computes the limit, splits it into tokens, builds the
    /// Merkle tree and signs the certificate.
    pub fn issue(
        &self,
        policy: &IssuancePolicy,
        request: &IssuanceRequest,
    ) -> Result<IssuedCertificate, IssuanceError> {
        let limit = Self::offline_limit(policy, request);
        if limit == 0 {
            return Err(IssuanceError::NothingToFund);
        }
        let tokens: Vec<TokenLeaf> = Self::split(policy, limit)?
            .into_iter()
            .enumerate()
            .map(|(index, value)| TokenLeaf {
                index: u32::try_from(index).expect("token count is bounded by tokens_max"),
                value,
            })
            .collect();
        let tree = MerkleTree::build(&tokens)?;
        let spend_until_ms = request
            .issued_at_ms
            .checked_add(policy.spend_window_ms)
            .ok_or(IssuanceError::TimeOverflow("spend_until"))?;
        let settle_until_ms = spend_until_ms
            .checked_add(policy.settle_grace_ms)
            .ok_or(IssuanceError::TimeOverflow("settle_until"))?;
        let certificate = self.sign(OfflineCertificate {
            issuer_key_id: self.key_id.clone(),
            wallet_id: request.wallet_id.clone(),
            device_key: request.device_key,
            currency: request.currency,
            token_root: tree.root(),
            token_count: tree.leaf_count(),
            total_value: limit,
            issued_at_ms: request.issued_at_ms,
            spend_until_ms,
            settle_until_ms,
            issuer_signature: [0; 64],
        });
        Ok(IssuedCertificate {
            certificate,
            tokens,
        })
    }

    /// Funds the device whose secret key is `device_seed` and returns its
    /// wallet: both sides of an issuance in one call, for simulations,
    /// tests and benchmarks, which hold the device's seed.
    pub fn fund_device(
        &self,
        policy: &IssuancePolicy,
        device_seed: [u8; 32],
        funding: &Funding,
    ) -> Result<Wallet, IssuanceError> {
        let issued = self.issue(
            policy,
            &funding.request(Wallet::device_key_for(&device_seed)),
        )?;
        Ok(Wallet::new(device_seed, issued.certificate, issued.tokens)
            .expect("an issuer's certificate matches the tokens and device key it was made from"))
    }

    /// Signs (or re-signs) a certificate body with this issuer's key.
    pub fn sign(&self, mut certificate: OfflineCertificate) -> OfflineCertificate {
        certificate.issuer_signature = self
            .signing_key
            .sign(&certificate.signing_message())
            .to_bytes();
        certificate
    }
}
