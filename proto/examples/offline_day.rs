//! A day of offline payments, end to end on the protocol layer:
//! an issuer funds devices, devices pay merchant terminals offline (each
//! terminal verifies with its own challenge), a tampered device spends the
//! same tokens at two merchants, a cloned device reuses a counter, and the
//! merchants' gateways validate everything as a ledger node would (ingress
//! and deterministic modes). The ledger cluster that records nullifiers and
//! adjudicates double spends is the node crate (see README "Status").
//!
//! Run: `cargo run --release -p spentledger-protocol --example offline_day -- [devices] [payments-per-device]`

use std::collections::BTreeMap;
use std::time::Instant;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, MerchantTerminal, Wallet};
use spentledger_protocol::types::IdText;
use spentledger_protocol::{
    Nullifier, Payment, TxId, ValidationContext, ValidationMode, Validator,
};

const T0_MS: u64 = 1_767_225_600_000;
const MERCHANTS: usize = 20;

fn id(text: &str) -> IdText {
    IdText::new("id", text).expect("example ids are valid")
}

/// Deterministic "entropy" for the example; real terminals and devices use a CSPRNG.
fn entropy(label: &str, n: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("spentledger example entropy");
    hasher.update(label.as_bytes());
    hasher.update(&n.to_le_bytes());
    *hasher.finalize().as_bytes()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2_000);
    let per_device: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    if devices == 0 || devices > 1_000_000 || per_device == 0 || per_device > 100 {
        return Err("devices must be 1..=1000000 and payments-per-device 1..=100".into());
    }

    println!("--- issuer funds {devices} devices (balance + credit line, capped by policy)");
    let issuer = Issuer::from_seed(
        id("bank-a-2026"),
        entropy("issuer", 0),
        T0_MS - 86_400_000,
        T0_MS + 365 * 86_400_000,
    );
    let keys = vec![issuer.issuer_key()];
    let policy = IssuancePolicy::default();
    let mut wallets: Vec<Wallet> = (0..devices as u64)
        .map(|d| {
            let balance = 5_000 + (d % 7) * 3_000;
            let funding =
                Funding::eur(id(&format!("wallet-{d:06}")), balance, T0_MS).with_credit_line(2_000);
            issuer
                .fund_device(&policy, entropy("device", d), &funding)
                .expect("policy funds every device")
        })
        .collect();
    let funded: u64 = wallets.iter().map(|w| w.certificate().total_value).sum();

    println!("--- devices pay {MERCHANTS} merchant terminals offline");
    let mut terminals: Vec<MerchantTerminal> = (0..MERCHANTS)
        .map(|m| MerchantTerminal::new(id(&format!("merchant-{m:02}"))))
        .collect();
    let mut accepted_offline: Vec<Payment> = Vec::new();
    let mut refused_offline = 0usize;
    let started = Instant::now();
    for round in 0..per_device as u64 {
        for (d, wallet) in wallets.iter_mut().enumerate() {
            let m = (d + round as usize * 7) % MERCHANTS;
            let now = T0_MS + 3_600_000 + round * 600_000;
            let challenge =
                terminals[m].challenge(entropy("challenge", round * 1_000_000 + d as u64));
            let amount = 1 + (d as u64 * 37 + round * 101) % 900;
            let Ok(payment) = wallet.pay(amount, terminals[m].payee_id(), challenge, now) else {
                refused_offline += 1;
                continue;
            };
            let ctx = ValidationContext::new(now, 300_000, &keys);
            match terminals[m].verify(&payment, &ctx) {
                Ok(_) => accepted_offline.push(payment),
                Err(_) => refused_offline += 1,
            }
        }
    }
    let offline_elapsed = started.elapsed();

    println!("--- a tampered device spends the same tokens at a second merchant");
    let cheat = &wallets[0];
    let first = accepted_offline
        .iter()
        .find(|p| p.certificate == *cheat.certificate())
        .expect("device 0 paid")
        .clone();
    let tokens: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let other = (0..MERCHANTS)
        .find(|m| terminals[*m].payee_id() != &first.payee_id)
        .expect("20 merchants");
    let challenge = terminals[other].challenge(entropy("double", 0));
    let second = cheat.sign_payment(
        &tokens,
        cheat.next_counter(),
        terminals[other].payee_id(),
        challenge,
        T0_MS + 7_200_000,
    )?;
    let ctx = ValidationContext::new(T0_MS + 7_200_000, 300_000, &keys);
    terminals[other]
        .verify(&second, &ctx)
        .map_err(|e| format!("offline terminal should accept: {e}"))?;
    accepted_offline.push(second);

    println!("--- a cloned secure element reuses counter 0 on fresh tokens");
    let clone = wallets[1].clone();
    let spent: Vec<u32> = clone
        .tokens()
        .iter()
        .map(|t| t.index)
        .filter(|i| clone.is_spent(*i))
        .collect();
    let fresh: Vec<u32> = clone
        .tokens()
        .iter()
        .map(|t| t.index)
        .filter(|i| !spent.contains(i))
        .take(1)
        .collect();
    let challenge = terminals[3].challenge(entropy("clone", 0));
    let cloned = clone.sign_payment(
        &fresh,
        0,
        terminals[3].payee_id(),
        challenge,
        T0_MS + 7_200_000,
    )?;
    terminals[3]
        .verify(&cloned, &ctx)
        .map_err(|e| format!("offline terminal should accept: {e}"))?;
    accepted_offline.push(cloned);

    println!("--- a forged payment (amount raised after signing) reaches a gateway");
    let mut forged = accepted_offline[5].clone();
    forged.amount += 100;
    accepted_offline.push(forged);

    println!(
        "--- gateways submit; a node validates at ingress, then every replica in deterministic mode"
    );
    let validator = Validator::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        65_536,
    )?;
    let stamp = T0_MS + 86_400_000;
    let ctx = ValidationContext::new(stamp, 300_000, &keys);
    let timer = Instant::now();
    let ingress = validator.validate_batch(&accepted_offline, &ctx, ValidationMode::Ingress);
    let ingress_elapsed = timer.elapsed();
    let timer = Instant::now();
    let replica = validator.validate_batch(&accepted_offline, &ctx, ValidationMode::Deterministic);
    let replica_elapsed = timer.elapsed();
    assert_eq!(ingress, replica, "ingress and replica verdicts agree");

    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for v in &replica {
        let key = match v {
            Ok(_) => "VALID".to_owned(),
            Err(reason) => format!("REJECTED({reason})"),
        };
        *verdicts.entry(key).or_default() += 1;
    }
    // What the ledger's state machine will see: nullifiers and counters claimed twice.
    let mut by_nullifier: BTreeMap<Nullifier, TxId> = BTreeMap::new();
    let mut conflicts = 0usize;
    let mut counters: BTreeMap<_, TxId> = BTreeMap::new();
    let mut counter_reuse = 0usize;
    for (p, v) in accepted_offline.iter().zip(&replica) {
        let Ok(checked) = v else { continue };
        if p.nullifiers()
            .iter()
            .any(|n| by_nullifier.get(n).is_some_and(|t| *t != checked.tx_id))
        {
            conflicts += 1;
        }
        for n in p.nullifiers() {
            by_nullifier.entry(n).or_insert(checked.tx_id);
        }
        if counters
            .insert(p.counter_nullifier(), checked.tx_id)
            .is_some()
        {
            counter_reuse += 1;
        }
    }

    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["offline day", "value"]);
    let rate = |n: usize, secs: f64| format!("{:.0}/s", n as f64 / secs.max(1e-9));
    table.add_row(vec![
        "devices funded".into(),
        format!("{devices} ({} minor units)", funded),
    ]);
    table.add_row(vec![
        "payments accepted by terminals".into(),
        accepted_offline.len().to_string(),
    ]);
    table.add_row(vec![
        "payments refused offline (no exact change)".into(),
        refused_offline.to_string(),
    ]);
    table.add_row(vec![
        "device pays + terminal verifies (1 thread)".into(),
        rate(accepted_offline.len(), offline_elapsed.as_secs_f64()),
    ]);
    table.add_row(vec![
        format!(
            "ingress validation ({} threads, cold certificate cache)",
            validator.threads()
        ),
        rate(accepted_offline.len(), ingress_elapsed.as_secs_f64()),
    ]);
    table.add_row(vec![
        "deterministic (replica) validation, warm cache".into(),
        rate(accepted_offline.len(), replica_elapsed.as_secs_f64()),
    ]);
    for (verdict, count) in &verdicts {
        table.add_row(vec![
            format!("stateless verdict {verdict}"),
            count.to_string(),
        ]);
    }
    table.add_row(vec![
        "token nullifiers claimed twice (double spends for the ledger)".into(),
        conflicts.to_string(),
    ]);
    table.add_row(vec![
        "device counters used twice (cloned device for the ledger)".into(),
        counter_reuse.to_string(),
    ]);
    println!("{table}");
    if conflicts != 1 || counter_reuse != 1 || verdicts.get("REJECTED(AMOUNT_MISMATCH)") != Some(&1)
    {
        return Err("expected exactly one double spend, one clone and one forgery".into());
    }
    println!(
        "offline day complete: every terminal-accepted payment validated identically at ingress and on replicas"
    );
    Ok(())
}
