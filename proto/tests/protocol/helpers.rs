//! Issuer, wallet and merchant helpers, and offline checking of evidence.

use spentledger_protocol::sim::{
    Funding, IssuanceError, IssuancePolicy, IssuanceRequest, Issuer, MerchantRejection,
    MerchantTerminal, Wallet, WalletError,
};
use spentledger_protocol::types::EvidenceError;
use spentledger_protocol::{
    CertificateSettlement, CertificateState, CloneEvidence, DoubleSpendEvidence, Receipt,
    RejectReason, ValidationContext,
};

use crate::fixtures::*;

fn request(balance: u64, credit_line: u64) -> IssuanceRequest {
    IssuanceRequest {
        wallet_id: id("wallet-x"),
        device_key: Wallet::device_key_for(&device_seed(7)),
        currency: eur(),
        balance,
        credit_line,
        issued_at_ms: T0_MS,
    }
}

#[test]
fn the_offline_limit_is_balance_plus_credit_capped_by_policy() {
    let policy = IssuancePolicy::default();
    let issued = issuer()
        .issue(&policy, &request(1_000, 250))
        .expect("fundable");
    assert_eq!(issued.certificate.total_value, 1_250);
    assert_eq!(issued.tokens.iter().map(|t| t.value).sum::<u64>(), 1_250);
    assert_eq!(issued.certificate.token_count as usize, issued.tokens.len());
    let capped = issuer()
        .issue(&policy, &request(10_000_000, 5_000))
        .expect("fundable");
    assert_eq!(capped.certificate.total_value, policy.offline_limit_max);
    assert_eq!(
        issuer().issue(&policy, &request(0, 0)),
        Err(IssuanceError::NothingToFund)
    );
}

#[test]
fn funding_a_device_issues_what_the_request_would_and_hands_the_device_its_wallet() {
    let policy = IssuancePolicy::default();
    let funding = Funding::new(id("wallet-x"), eur(), 1_000, T0_MS).with_credit_line(250);
    assert_eq!(
        funding.request(Wallet::device_key_for(&device_seed(7))),
        request(1_000, 250)
    );
    let wallet = issuer()
        .fund_device(&policy, device_seed(7), &funding)
        .expect("fundable");
    let issued = issuer()
        .issue(&policy, &request(1_000, 250))
        .expect("fundable");
    assert_eq!(wallet.certificate(), &issued.certificate);
    assert_eq!(wallet.tokens(), issued.tokens.as_slice());
    assert_eq!(
        Funding::eur(id("wallet-x"), 1_000, T0_MS).currency,
        eur(),
        "the simulations' currency"
    );
    assert!(matches!(
        issuer().fund_device(
            &policy,
            device_seed(7),
            &Funding::new(id("w"), eur(), 0, T0_MS)
        ),
        Err(IssuanceError::NothingToFund)
    ));
}

#[test]
fn issuance_refuses_bad_policies() {
    let policy = IssuancePolicy {
        denominations: vec![2, 5],
        ..Default::default()
    };
    assert_eq!(
        issuer().issue(&policy, &request(10, 0)),
        Err(IssuanceError::BadDenominations)
    );
    let policy = IssuancePolicy {
        denominations: vec![1],
        tokens_max: 10,
        ..Default::default()
    };
    assert!(matches!(
        issuer().issue(&policy, &request(11, 0)),
        Err(IssuanceError::TooManyTokens { limit: 11, .. })
    ));
}

#[test]
fn a_wallet_pays_exact_amounts_until_it_cannot() {
    let mut wallet = funded_wallet(3, 5_000);
    let merchant = id("merchant-9");
    let mut paid = 0;
    for (n, amount) in [1u64, 7, 99, 1_234, 333, 2_000].into_iter().enumerate() {
        let p = wallet
            .pay(amount, &merchant, [n as u8; 32], T0_MS + HOUR_MS)
            .expect("exact change");
        assert_eq!(p.amount, amount);
        assert_eq!(p.counter, n as u64, "counter increments per payment");
        assert!(
            p.inputs
                .windows(2)
                .all(|w| w[0].leaf.index < w[1].leaf.index)
        );
        paid += amount;
        assert_eq!(wallet.balance(), 5_000 - paid);
    }
    let balance = wallet.balance();
    assert!(matches!(
        wallet.pay(balance + 1, &merchant, [0; 32], T0_MS),
        Err(WalletError::NoExactChange { .. })
    ));
    assert_eq!(
        wallet.pay(0, &merchant, [0; 32], T0_MS).err(),
        Some(WalletError::ZeroAmount)
    );
    let rest = wallet
        .pay(balance, &merchant, [9; 32], T0_MS + HOUR_MS)
        .expect("spend the rest");
    assert_eq!(rest.amount, balance);
    assert_eq!(wallet.balance(), 0);
}

#[test]
fn a_wallet_refuses_tokens_of_another_certificate_or_device() {
    let a = funded_wallet(1, 100);
    let b = funded_wallet(2, 200);
    assert_eq!(
        Wallet::new(device_seed(1), a.certificate().clone(), b.tokens().to_vec()).err(),
        Some(WalletError::TokensDoNotMatchCertificate)
    );
    assert_eq!(
        Wallet::new(device_seed(2), a.certificate().clone(), a.tokens().to_vec()).err(),
        Some(WalletError::WrongDeviceKey)
    );
}

#[test]
fn a_merchant_terminal_verifies_offline_with_its_own_challenge() {
    let keys = issuer_keys();
    let ctx = ValidationContext::new(T0_MS + HOUR_MS, SKEW_MS, &keys);
    let mut terminal = MerchantTerminal::new(id("cafe-17"));
    let mut other = MerchantTerminal::new(id("bakery-3"));
    let mut wallet = funded_wallet(4, 1_000);

    eprintln!("--- a payment answering the terminal's challenge is accepted once");
    let challenge = terminal.challenge([1; 32]);
    let p = wallet
        .pay(250, &id("cafe-17"), challenge, T0_MS + HOUR_MS)
        .expect("pay");
    assert!(terminal.verify(&p, &ctx).is_ok());
    assert_eq!(
        terminal.verify(&p, &ctx),
        Err(MerchantRejection::UnknownChallenge)
    );

    eprintln!("--- another terminal refuses it: wrong payee");
    assert!(matches!(
        other.verify(&p, &ctx),
        Err(MerchantRejection::WrongPayee { .. })
    ));

    eprintln!("--- a made-up challenge is refused");
    let p2 = wallet
        .pay(10, &id("cafe-17"), [7; 32], T0_MS + HOUR_MS)
        .expect("pay");
    assert_eq!(
        terminal.verify(&p2, &ctx),
        Err(MerchantRejection::UnknownChallenge)
    );

    eprintln!("--- a revoked certificate is refused");
    let challenge = terminal.challenge([2; 32]);
    let p3 = wallet
        .pay(20, &id("cafe-17"), challenge, T0_MS + HOUR_MS)
        .expect("pay");
    terminal.sync_revocations([p3.certificate.cert_id()]);
    assert_eq!(
        terminal.verify(&p3, &ctx),
        Err(MerchantRejection::Revoked(p3.certificate.cert_id()))
    );

    eprintln!("--- a tampered payment is refused with its reason, and the challenge stays open");
    terminal.sync_revocations([]);
    let mut tampered = p3.clone();
    tampered.inputs[0].path[0][3] ^= 1;
    assert_eq!(
        terminal.verify(&tampered, &ctx),
        Err(MerchantRejection::Invalid(RejectReason::BadMerklePath))
    );
    assert!(terminal.verify(&p3, &ctx).is_ok());
}

fn receipt_for(p: &spentledger_protocol::Payment) -> Receipt {
    Receipt {
        tx_id: p.tx_id(),
        log_index: 42,
        settled_at_ms: T0_MS + 2 * HOUR_MS,
        payee_id: p.payee_id.clone(),
        amount: p.amount,
        cert_id: p.certificate.cert_id(),
        flags: 0,
    }
}

#[test]
fn double_spend_evidence_verifies_offline_and_forgeries_do_not() {
    let mut wallet = funded_wallet(5, 1_000);
    let first = wallet
        .pay(300, &id("m-a"), [1; 32], T0_MS + HOUR_MS)
        .expect("pay");
    let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    eprintln!("--- the tampered device signs the same tokens again for another merchant");
    let second = wallet
        .sign_payment(&tokens, 1, &id("m-b"), [2; 32], T0_MS + HOUR_MS)
        .expect("sign");
    let nullifier = first.nullifiers()[0];
    let evidence = DoubleSpendEvidence {
        nullifier,
        first_payment: first.clone(),
        first_receipt: Some(receipt_for(&first)),
        second_payment: second.clone(),
        detected_log_index: 43,
    };
    let issuer_pk = issuer().issuer_key().public_key;
    assert_eq!(evidence.verify(&issuer_pk), Ok(()));

    eprintln!("--- forged or inconsistent evidence is refused");
    let mut e = evidence.clone();
    e.second_payment = first.clone();
    assert_eq!(e.verify(&issuer_pk), Err(EvidenceError::SamePayment));
    let mut e = evidence.clone();
    e.second_payment.payee_id = id("m-c");
    assert_eq!(
        e.verify(&issuer_pk),
        Err(EvidenceError::BadDeviceSignature { which: "second" })
    );
    let mut e = evidence.clone();
    e.nullifier = first.certificate.cert_id().token_nullifier(9_999);
    assert_eq!(e.verify(&issuer_pk), Err(EvidenceError::NullifierNotShared));
    let mut e = evidence.clone();
    e.first_receipt.as_mut().expect("has receipt").tx_id = second.tx_id();
    assert_eq!(e.verify(&issuer_pk), Err(EvidenceError::ReceiptMismatch));
    assert_eq!(
        evidence.verify(&[9; 32]),
        Err(EvidenceError::BadIssuerSignature)
    );
    let other = funded_wallet(6, 1_000)
        .pay(300, &id("m-a"), [1; 32], T0_MS)
        .expect("pay");
    let mut e = evidence;
    e.second_payment = other;
    assert_eq!(
        e.verify(&issuer_pk),
        Err(EvidenceError::DifferentCertificates)
    );
}

#[test]
fn clone_evidence_verifies_offline() {
    let mut wallet = funded_wallet(8, 1_000);
    let mut clone = wallet.clone();
    eprintln!("--- the original and its clone both pay with counter 0, different tokens");
    let a = wallet
        .pay(100, &id("m-a"), [1; 32], T0_MS + HOUR_MS)
        .expect("pay");
    let used: Vec<u32> = a.inputs.iter().map(|i| i.leaf.index).collect();
    let fresh: Vec<u32> = clone
        .tokens()
        .iter()
        .map(|t| t.index)
        .filter(|i| !used.contains(i))
        .take(2)
        .collect();
    let b = clone
        .sign_payment(&fresh, 0, &id("m-b"), [2; 32], T0_MS + HOUR_MS)
        .expect("sign");
    assert_eq!(a.counter, b.counter);
    let evidence = CloneEvidence {
        counter_nullifier: a.counter_nullifier(),
        first_payment: a.clone(),
        second_payment: b.clone(),
        detected_log_index: 7,
    };
    let issuer_pk = issuer().issuer_key().public_key;
    assert_eq!(evidence.verify(&issuer_pk), Ok(()));
    let c = clone
        .pay(100, &id("m-b"), [3; 32], T0_MS + HOUR_MS)
        .expect("pay");
    let mut e = evidence;
    e.second_payment = wallet
        .sign_payment(&fresh, 5, &id("m-b"), [2; 32], T0_MS)
        .expect("sign");
    assert_eq!(e.verify(&issuer_pk), Err(EvidenceError::CounterNotShared));
    drop(c);
}

#[test]
fn settlement_balances_total_spent_held_and_unspent() {
    let wallet = funded_wallet(9, 1_000);
    let cert = wallet.certificate();
    let mut state = CertificateState::new(cert.cert_id());
    state.spent_value = 600;
    state.held_value = 150;
    state.payment_count = 4;
    let s = CertificateSettlement::compute(cert, &state, true, T0_MS, 10, None).expect("balanced");
    assert_eq!(
        (s.spent_value, s.held_value, s.unspent_value),
        (600, 150, 250)
    );
    assert_eq!(
        s.total_value,
        s.spent_value + s.held_value + s.unspent_value
    );
    state.held_value = 401;
    assert!(CertificateSettlement::compute(cert, &state, true, T0_MS, 10, None).is_err());
    let other = CertificateState::new(funded_wallet(10, 5).certificate().cert_id());
    assert!(CertificateSettlement::compute(cert, &other, false, T0_MS, 10, None).is_err());
}

#[test]
fn issuer_key_from_the_helper_is_what_the_ledger_registers() {
    let key = issuer().issuer_key();
    let wire = spentledger_protocol::pb::IssuerKey::from(&key);
    assert_eq!(spentledger_protocol::IssuerKey::try_from(&wire), Ok(key));
    let _ = Issuer::offline_limit(&IssuancePolicy::default(), &request(1, 1));
}

#[test]
fn a_certificate_is_checked_on_its_own_for_issuer_operations() {
    let validator = spentledger_protocol::Validator::new(1, 8).expect("one thread");
    let keys = issuer_keys();
    let ctx = ValidationContext::new(T0_MS, SKEW_MS, &keys);
    let cert = funded_wallet(11, 500).certificate().clone();
    assert_eq!(validator.check_certificate(&cert, &ctx), Ok(cert.cert_id()));
    let mut forged = cert.clone();
    forged.total_value += 1;
    assert_eq!(
        validator.check_certificate(&forged, &ctx),
        Err(RejectReason::BadIssuerSignature)
    );
    let empty = vec![];
    let ctx = ValidationContext::new(T0_MS, SKEW_MS, &empty);
    assert_eq!(
        validator.check_certificate(&cert, &ctx),
        Err(RejectReason::UnknownIssuerKey)
    );
}

#[test]
fn evidence_against_a_held_first_payment_has_no_receipt() {
    let mut wallet = funded_wallet(12, 1_000);
    let first = wallet
        .pay(300, &id("m-a"), [1; 32], T0_MS + HOUR_MS)
        .expect("pay");
    let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let second = wallet
        .sign_payment(&tokens, 7, &id("m-b"), [2; 32], T0_MS)
        .expect("sign");
    let evidence = DoubleSpendEvidence {
        nullifier: first.nullifiers()[0],
        first_payment: first,
        first_receipt: None,
        second_payment: second,
        detected_log_index: 3,
    };
    assert_eq!(evidence.verify(&issuer().issuer_key().public_key), Ok(()));
    let wire = spentledger_protocol::pb::DoubleSpendEvidence::from(&evidence);
    assert!(wire.first_receipt.is_none());
    assert_eq!(DoubleSpendEvidence::try_from(&wire), Ok(evidence));
}

/// Byte-level edits: flip, cut, insert, delete, or copy a run of the
/// bytes elsewhere (which can write a field twice).
pub fn mutate(mut bytes: Vec<u8>, edits: &[(usize, usize, u8, u8)]) -> Vec<u8> {
    for &(pos, len, value, how) in edits {
        if bytes.is_empty() {
            bytes.push(value);
            continue;
        }
        let at = pos % bytes.len();
        match how % 5 {
            0 => bytes[at] ^= value | 1,
            1 => bytes.truncate(at),
            2 => bytes.insert(at, value),
            3 => {
                bytes.remove(at);
            }
            _ => {
                let end = (at + len % 64).min(bytes.len());
                let run = bytes[at..end].to_vec();
                let to = usize::from(value) % (bytes.len() + 1);
                bytes.splice(to..to, run);
            }
        }
    }
    bytes
}
