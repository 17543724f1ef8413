use std::collections::BTreeSet;

use ed25519_dalek::{Signer, SigningKey};

use crate::limits::INPUTS_PER_PAYMENT_MAX;
use crate::merkle::MerkleTree;
use crate::types::{IdText, OfflineCertificate, Payment, PaymentInput, TokenLeaf};

/// Search steps allowed when choosing tokens for an exact amount.
const SELECTION_STEPS_MAX: u32 = 200_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("the token list does not match the certificate's token root and count")]
    TokensDoNotMatchCertificate,
    #[error("the device key does not match the certificate's device key")]
    WrongDeviceKey,
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("cannot pay {amount} exactly with the unspent tokens (balance {balance})")]
    NoExactChange { amount: u64, balance: u64 },
    #[error("token {0} does not exist")]
    NoSuchToken(u32),
    #[error("a payment spends 1..={max} tokens, {count} asked", max = INPUTS_PER_PAYMENT_MAX)]
    BadInputCount { count: usize },
}

/// A payer device: its secure element's key, its certificate and tokens, the
/// tokens it has spent and its payment counter. `Clone` models a cloned
/// secure element (the clone shares the key and the counter).
#[derive(Clone)]
pub struct Wallet {
    device: SigningKey,
    certificate: OfflineCertificate,
    tokens: Vec<TokenLeaf>,
    tree: MerkleTree,
    spent: BTreeSet<u32>,
    next_counter: u64,
}

impl Wallet {
    /// `device_seed` is the device's 32-byte ed25519 secret key.
    pub fn new(
        device_seed: [u8; 32],
        certificate: OfflineCertificate,
        tokens: Vec<TokenLeaf>,
    ) -> Result<Self, WalletError> {
        let device = SigningKey::from_bytes(&device_seed);
        if device.verifying_key().to_bytes() != certificate.device_key {
            return Err(WalletError::WrongDeviceKey);
        }
        let tree =
            MerkleTree::build(&tokens).map_err(|_| WalletError::TokensDoNotMatchCertificate)?;
        if tree.root() != certificate.token_root || tree.leaf_count() != certificate.token_count {
            return Err(WalletError::TokensDoNotMatchCertificate);
        }
        Ok(Wallet {
            device,
            certificate,
            tokens,
            tree,
            spent: BTreeSet::new(),
            next_counter: 0,
        })
    }

    /// A device restored from storage: which tokens it already spent and its
    /// next counter (a device that forgot them would double-spend or reuse
    /// counters, exactly what the ledger punishes).
    pub fn restore(
        device_seed: [u8; 32],
        certificate: OfflineCertificate,
        tokens: Vec<TokenLeaf>,
        spent: impl IntoIterator<Item = u32>,
        next_counter: u64,
    ) -> Result<Self, WalletError> {
        let mut wallet = Wallet::new(device_seed, certificate, tokens)?;
        for index in spent {
            if index as usize >= wallet.tokens.len() {
                return Err(WalletError::NoSuchToken(index));
            }
            wallet.spent.insert(index);
        }
        wallet.next_counter = next_counter;
        Ok(wallet)
    }

    /// Indices of the tokens this device has spent, ascending.
    pub fn spent(&self) -> impl Iterator<Item = u32> + '_ {
        self.spent.iter().copied()
    }

    /// The public key for a device seed, to put in an issuance request.
    pub fn device_key_for(device_seed: &[u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(device_seed)
            .verifying_key()
            .to_bytes()
    }

    pub fn certificate(&self) -> &OfflineCertificate {
        &self.certificate
    }

    pub fn tokens(&self) -> &[TokenLeaf] {
        &self.tokens
    }

    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    pub fn is_spent(&self, index: u32) -> bool {
        self.spent.contains(&index)
    }

    /// Value of the tokens not yet spent.
    pub fn balance(&self) -> u64 {
        self.unspent().map(|t| t.value).sum()
    }

    fn unspent(&self) -> impl Iterator<Item = &TokenLeaf> {
        self.tokens
            .iter()
            .filter(|t| !self.spent.contains(&t.index))
    }

    /// Indices (ascending) of unspent tokens summing exactly to `amount`:
    /// a depth-first search over tokens from the largest, with a step budget.
    pub fn select_tokens(&self, amount: u64) -> Result<Vec<u32>, WalletError> {
        if amount == 0 {
            return Err(WalletError::ZeroAmount);
        }
        let mut candidates: Vec<TokenLeaf> = self.unspent().copied().collect();
        candidates.sort_by(|a, b| b.value.cmp(&a.value).then(a.index.cmp(&b.index)));
        // suffix[i] = value of candidates[i..], to prune branches that cannot reach the amount.
        let mut suffix = vec![0u64; candidates.len() + 1];
        for i in (0..candidates.len()).rev() {
            suffix[i] = suffix[i + 1].saturating_add(candidates[i].value);
        }
        let mut chosen = Vec::new();
        let mut steps = 0;
        if search(&candidates, &suffix, 0, amount, &mut chosen, &mut steps) {
            let mut indices: Vec<u32> = chosen.iter().map(|&i| candidates[i].index).collect();
            indices.sort_unstable();
            return Ok(indices);
        }
        Err(WalletError::NoExactChange {
            amount,
            balance: self.balance(),
        })
    }

    /// Pays `amount` exactly: chooses unspent tokens, signs with the next
    /// counter, and marks the tokens spent.
    pub fn pay(
        &mut self,
        amount: u64,
        payee_id: &IdText,
        payee_challenge: [u8; 32],
        created_at_ms: u64,
    ) -> Result<Payment, WalletError> {
        let indices = self.select_tokens(amount)?;
        let counter = self.next_counter;
        let payment =
            self.sign_payment(&indices, counter, payee_id, payee_challenge, created_at_ms)?;
        self.spent.extend(indices);
        self.next_counter += 1;
        Ok(payment)
    }

    /// Signs a payment of exactly the tokens `indices` with `counter`, without
    /// looking at or changing what is spent: what a tampered device does to
    /// spend a token twice or reuse a counter (tests and the demo use it).
    pub fn sign_payment(
        &self,
        indices: &[u32],
        counter: u64,
        payee_id: &IdText,
        payee_challenge: [u8; 32],
        created_at_ms: u64,
    ) -> Result<Payment, WalletError> {
        if indices.is_empty() || indices.len() > INPUTS_PER_PAYMENT_MAX {
            return Err(WalletError::BadInputCount {
                count: indices.len(),
            });
        }
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let inputs = sorted
            .iter()
            .map(|&index| {
                let leaf = *self
                    .tokens
                    .get(index as usize)
                    .ok_or(WalletError::NoSuchToken(index))?;
                let path = self
                    .tree
                    .path(index)
                    .ok_or(WalletError::NoSuchToken(index))?;
                Ok(PaymentInput { leaf, path })
            })
            .collect::<Result<Vec<_>, WalletError>>()?;
        let amount = inputs.iter().map(|i| i.leaf.value).sum();
        let mut payment = Payment {
            certificate: self.certificate.clone(),
            inputs,
            amount,
            payee_id: payee_id.clone(),
            payee_challenge,
            counter,
            created_at_ms,
            device_signature: [0; 64],
        };
        payment.device_signature = self.device.sign(&payment.signing_message()).to_bytes();
        Ok(payment)
    }
}

fn search(
    candidates: &[TokenLeaf],
    suffix: &[u64],
    start: usize,
    remaining: u64,
    chosen: &mut Vec<usize>,
    steps: &mut u32,
) -> bool {
    if remaining == 0 {
        return true;
    }
    if chosen.len() == INPUTS_PER_PAYMENT_MAX || suffix[start] < remaining {
        return false;
    }
    let mut previous_value = None;
    for i in start..candidates.len() {
        *steps += 1;
        if *steps > SELECTION_STEPS_MAX {
            return false;
        }
        let value = candidates[i].value;
        // Equal values lead to the same sub-search: try each value once per level.
        if value > remaining || previous_value == Some(value) {
            continue;
        }
        previous_value = Some(value);
        chosen.push(i);
        if search(candidates, suffix, i + 1, remaining - value, chosen, steps) {
            return true;
        }
        chosen.pop();
    }
    false
}
