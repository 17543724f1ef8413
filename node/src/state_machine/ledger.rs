use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use spentledger_protocol::decode_error::DecodeError;
use spentledger_protocol::limits::CLOCK_SKEW_MS_DEFAULT;
use spentledger_protocol::types::{Revocation, RevocationReason, receipt_flags};
use spentledger_protocol::validate::Checked;
use spentledger_protocol::{
    CertId, CertificateSettlement, CertificateState, CloneEvidence, DoubleSpendEvidence, IssuerKey,
    Payment, Receipt, RejectReason, StatelessVerdict, TxId, ValidationMode, Validator,
    ValidatorError, direct, pb,
};

use super::command::LedgerCommand;
use super::ledger_read::{AcceptedPayment, CertRecord, CounterKey, NullifierRecord, StoreError};
use super::outcome::{CommandOutcome, IssuerOpError, PaymentOutcome};
use super::overlay::{Evidence, Overlay};
use super::precheck::{Prechecked, apply_context};
use super::read_ahead::ReadKeys;

/// Settings of the state machine. Everything here must be identical on every
/// replica, so nothing is read from a node's own configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Threads for deterministic validation in apply (any count gives the
    /// same verdicts; this only sets speed).
    pub validation_threads: usize,
    /// Certificate-verification cache entries.
    pub certificate_cache_entries: usize,
    /// Nice value of the validation threads (0 = normal priority, up to
    /// 19): speed only, like the thread count (`ops::thread_priority`).
    pub validation_nice: i32,
}

/// Apply's validation runs below normal priority by default: a follower's
/// re-validation waits for what clients wait for (docs/NODE.md).
pub const VALIDATION_NICE_DEFAULT: i32 = 10;

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            validation_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            certificate_cache_entries: 65_536,
            validation_nice: VALIDATION_NICE_DEFAULT,
        }
    }
}

/// Device clock allowance used in apply. A protocol constant rather than
/// node configuration: replicas configured differently would disagree.
pub(super) const APPLY_SKEW_MS: u64 = CLOCK_SKEW_MS_DEFAULT;

/// The ledger rules: applies commands to an [`Overlay`].
pub struct Ledger {
    validator: Validator,
    /// Payments whose stateless verdicts came from their entry's precheck.
    prechecked_payments: AtomicU64,
    /// Payments decoded straight from their entry's bytes (`apply_encoded`).
    direct_decoded_payments: AtomicU64,
}

/// A thread start that lowers each validation thread to `nice`; none for 0.
fn lowered_priority(nice: i32) -> Option<spentledger_protocol::validate::ThreadStart> {
    if nice <= 0 {
        return None;
    }
    Some(std::sync::Arc::new(move |i| {
        if let Err(e) = crate::ops::thread_priority::lower_current_thread(nice) {
            tracing::warn!(thread = i, nice, error = %e, "apply validation thread keeps normal priority");
        }
    }))
}

impl Ledger {
    pub fn new(config: LedgerConfig) -> Result<Self, ValidatorError> {
        Ok(Ledger {
            validator: Validator::with_threads(
                "apply-val",
                config.validation_threads,
                config.certificate_cache_entries,
                lowered_priority(config.validation_nice),
            )?,
            prechecked_payments: AtomicU64::new(0),
            direct_decoded_payments: AtomicU64::new(0),
        })
    }

    /// Payments applied so far with the verdicts their proposer computed
    /// (see [`Prechecked`]) instead of validating them again.
    pub fn prechecked_payments(&self) -> u64 {
        self.prechecked_payments.load(Ordering::Relaxed)
    }

    /// Payments applied so far that [`Ledger::apply_encoded`] decoded
    /// straight from their entry's bytes.
    pub fn direct_decoded_payments(&self) -> u64 {
        self.direct_decoded_payments.load(Ordering::Relaxed)
    }

    /// Applies the command of log entry `log_index`. The entry's stamp is
    /// raised to the largest stamp applied so far, so time never goes back
    /// along the log even across leaders with skewed clocks.
    ///
    /// `precheck`: the stateless verdicts the proposer computed for a submit
    /// command (the leader's own entries); used only when they were computed
    /// in the context apply has now.
    pub fn apply(
        &self,
        overlay: &mut Overlay<'_>,
        log_index: u64,
        command: &pb::Command,
        precheck: Option<&Prechecked>,
    ) -> Result<CommandOutcome, StoreError> {
        let at = stamp(overlay, log_index, command.stamp_ms)?;
        let stamp_ms = at.stamp_ms;
        let command = match LedgerCommand::decode(command) {
            Ok(c) => c,
            Err(e) => return Ok(CommandOutcome::Malformed(e.to_string())),
        };
        Ok(match command {
            LedgerCommand::Submit(payments) => {
                CommandOutcome::Submitted(self.submit(overlay, at, payments, precheck)?)
            }
            LedgerCommand::Settle {
                certificate,
                force_reason,
            } => CommandOutcome::Settled(self.settle(overlay, at, &certificate, force_reason)?),
            LedgerCommand::Revoke { cert_id, reason } => {
                let mut record = cert_record(overlay, &cert_id)?;
                let revocation = revoke(overlay, &mut record, reason, at)?;
                overlay.put_certificate(record);
                CommandOutcome::Revoked(Ok(revocation))
            }
            LedgerCommand::RegisterKey(key) => {
                CommandOutcome::KeyRegistered(register_key(overlay, key)?)
            }
            LedgerCommand::RetireKey {
                key_id,
                retired_at_ms,
            } => CommandOutcome::KeyRetired(retire_key(
                overlay,
                key_id.as_str(),
                retired_at_ms.unwrap_or(stamp_ms),
            )?),
        })
    }

    /// Applies a command given as its log bytes, as a follower receives it.
    /// A submit command in the encoding gateways and leaders produce is
    /// decoded once, straight to domain payments
    /// ([`spentledger_protocol::direct`]); anything else is decoded into
    /// protobuf structs and applied by [`Ledger::apply`]. The direct way's
    /// contract makes both give the same outcome for the same bytes, so
    /// replicas agree whichever way each one took.
    ///
    /// `precheck`: as for [`Ledger::apply`]; when it matches, the submit
    /// command's payments are not decoded at all.
    pub fn apply_encoded(
        &self,
        overlay: &mut Overlay<'_>,
        log_index: u64,
        encoded: &[u8],
        precheck: Option<&Prechecked>,
    ) -> Result<CommandOutcome, StoreError> {
        if let Ok(submit) = direct::submit_command(encoded) {
            // Stamping twice is harmless (the general way below stamps
            // again, to the same value): the stamp only ever rises.
            let at = stamp(overlay, log_index, submit.stamp_ms)?;
            let keys = overlay.issuer_keys()?;
            let count = submit.payments.len();
            if let Some(prechecked) = precheck.and_then(|p| p.matching(at.stamp_ms, &keys, count)) {
                return Ok(CommandOutcome::Submitted(
                    self.submit_prechecked(overlay, at, prechecked)?,
                ));
            }
            if let Some(payments) = self.validator.decode_direct(&submit.payments) {
                self.direct_decoded_payments
                    .fetch_add(payments.len() as u64, Ordering::Relaxed);
                let slots = std::iter::repeat_with(|| None).take(payments.len());
                return Ok(CommandOutcome::Submitted(
                    self.submit_decoded(overlay, at, &keys, payments, slots)?,
                ));
            }
        }
        match pb::Command::decode(encoded) {
            Ok(command) => self.apply(overlay, log_index, &command, precheck),
            Err(e) => Ok(CommandOutcome::Malformed(format!(
                "command: invalid protobuf: {e}"
            ))),
        }
    }

    /// DESIGN rule 3, payment by payment in entry order.
    fn submit(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        wire: &[pb::Payment],
        precheck: Option<&Prechecked>,
    ) -> Result<Vec<PaymentOutcome>, StoreError> {
        let keys = overlay.issuer_keys()?;
        if let Some(prechecked) = precheck.and_then(|p| p.matching(at.stamp_ms, &keys, wire.len()))
        {
            return self.submit_prechecked(overlay, at, prechecked);
        }
        let (payments, decode_errors) = self.validator.decode_split(wire);
        self.submit_decoded(overlay, at, &keys, payments, decode_errors.into_iter())
    }

    /// DESIGN rule 3 for payments whose stateless verdicts the proposer
    /// computed in the context apply has now ([`Prechecked::matching`]).
    fn submit_prechecked(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        prechecked: &[(Payment, Checked)],
    ) -> Result<Vec<PaymentOutcome>, StoreError> {
        self.prechecked_payments
            .fetch_add(prechecked.len() as u64, Ordering::Relaxed);
        let inputs = prechecked.first().map_or(0, |(p, _)| p.inputs.len());
        overlay.reserve_payments(prechecked.len(), inputs);
        let mut outcomes = Vec::with_capacity(prechecked.len());
        for group in prechecked.chunks(READ_AHEAD_PAYMENTS) {
            let mut nullifiers = read_ahead(overlay, group.iter().map(|(p, c)| (p, c)))?;
            for (payment, checked) in group {
                let spent = nullifiers.next_payment(payment);
                outcomes.push(self.submit_one(
                    overlay,
                    at,
                    payment.recorded(),
                    Ok(*checked),
                    spent,
                )?);
            }
        }
        Ok(outcomes)
    }

    /// The payments of a submit command, decoded: those that decoded, in
    /// order, and one slot per wire payment (`None` where it decoded, its
    /// error where it did not), as [`Validator::decode_split`] gives them.
    fn submit_decoded(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        keys: &BTreeMap<String, IssuerKey>,
        payments: Vec<Payment>,
        decode_errors: impl ExactSizeIterator<Item = Option<DecodeError>>,
    ) -> Result<Vec<PaymentOutcome>, StoreError> {
        let ctx = apply_context(at.stamp_ms, keys);
        // Every decoded payment is validated (deterministic mode), duplicates
        // included, so the signature chunks depend on the entry's bytes alone.
        let verdicts =
            self.validator
                .validate_batch(&payments, &ctx, ValidationMode::Deterministic);
        let inputs = payments.first().map_or(0, |p| p.inputs.len());
        overlay.reserve_payments(payments.len(), inputs);
        let mut decoded: VecDeque<(Payment, StatelessVerdict)> =
            payments.into_iter().zip(verdicts).collect();
        // Decoded payments left in the group whose reads were fetched.
        let mut fetched_ahead = 0;
        let mut nullifiers = GroupNullifiers::default();
        let mut outcomes = Vec::with_capacity(decode_errors.len());
        for error in decode_errors {
            let outcome = match error {
                Some(e) => PaymentOutcome::Rejected {
                    tx_id: None,
                    reason: RejectReason::for_decode_error(&e),
                    detail: Some(e.to_string()),
                },
                None => {
                    if fetched_ahead == 0 {
                        let group = decoded.iter().take(READ_AHEAD_PAYMENTS);
                        fetched_ahead = group.len();
                        nullifiers = read_ahead(
                            overlay,
                            group.filter_map(|(p, v)| v.as_ref().ok().map(|c| (p, c))),
                        )?;
                    }
                    fetched_ahead -= 1;
                    let (payment, verdict) = decoded
                        .pop_front()
                        .expect("one verdict per decoded payment");
                    // Only the payments that passed were read ahead.
                    let spent = match verdict {
                        Ok(_) => nullifiers.next_payment(&payment),
                        Err(_) => Vec::new(),
                    };
                    self.submit_one(overlay, at, payment, verdict, spent)?
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// `nullifiers`: those of the payment's inputs, in input order, when it
    /// passed the stateless rules (computed once, when its reads were
    /// fetched ahead); anything else is ignored.
    fn submit_one(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        payment: Payment,
        verdict: StatelessVerdict,
        nullifiers: Vec<(spentledger_protocol::Nullifier, u64)>,
    ) -> Result<PaymentOutcome, StoreError> {
        let tx_id = match &verdict {
            Ok(checked) => checked.tx_id,
            Err(_) => payment.tx_id(),
        };
        // A retry of a recorded payment is answered first, whatever the
        // clock says now (docs/PROTOCOL.md §9).
        if let Some(recorded) = overlay.accepted(&tx_id)? {
            return Ok(PaymentOutcome::Duplicate {
                receipt: recorded.receipt,
            });
        }
        let cert_id = match verdict {
            Ok(checked) => checked.cert_id,
            Err(reason) => {
                return Ok(PaymentOutcome::Rejected {
                    tx_id: Some(tx_id),
                    reason,
                    detail: None,
                });
            }
        };
        let mut record = cert_record(overlay, &cert_id)?;
        if record.state.settled {
            return Ok(PaymentOutcome::Rejected {
                tx_id: Some(tx_id),
                reason: RejectReason::CertificateSettled,
                detail: None,
            });
        }
        debug_assert_eq!(nullifiers.len(), payment.inputs.len());
        let mut scan = NullifierScan::default();
        for &(nullifier, value) in &nullifiers {
            match overlay.nullifier(&nullifier)? {
                Some(rec) if rec.tx_id != tx_id => scan.conflicts.push((nullifier, rec)),
                Some(_) => {}
                None => scan.fresh.push((nullifier, value)),
            }
        }
        // Everything below records or returns the payment: as recorded, without
        // its Merkle paths (PROTOCOL.md §9.1; they were checked above).
        let payment = payment.into_recorded();
        let outcome = if scan.conflicts.is_empty() {
            self.accept(overlay, at, &mut record, payment, tx_id, &nullifiers)?
        } else {
            self.double_spend(overlay, at, &mut record, payment, tx_id, &scan)?
        };
        overlay.put_certificate(record);
        Ok(outcome)
    }

    fn accept(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        record: &mut CertRecord,
        payment: Payment,
        tx_id: TxId,
        nullifiers: &[(spentledger_protocol::Nullifier, u64)],
    ) -> Result<PaymentOutcome, StoreError> {
        let cert_id = record.state.cert_id;
        // Written with the payment's record, always: apply's read-ahead
        // takes a payment whose nullifiers are all unspent (under a
        // certificate not settled) as unrecorded without reading its record
        // (`read_ahead.rs`, `ReadAhead::proves_unrecorded`).
        for &(nullifier, _) in nullifiers {
            overlay.put_nullifier(nullifier, NullifierRecord { tx_id, held: false });
        }
        let counter = CounterKey {
            cert_id,
            counter: payment.counter,
        };
        let mut flags = 0;
        let mut clone_evidence = None;
        match overlay.counter(&counter)? {
            Some(first_tx) if first_tx != tx_id => {
                // Fresh tokens, so no value is created: accept, but the device
                // is cloned. Flag, keep evidence, revoke.
                let first = overlay
                    .accepted(&first_tx)?
                    .ok_or_else(|| corrupt("counter names a payment that is not recorded"))?;
                let evidence = CloneEvidence {
                    counter_nullifier: counter.nullifier(),
                    first_payment: first.payment,
                    second_payment: payment.clone(),
                    detected_log_index: at.log_index,
                };
                overlay.put_evidence(cert_id, at.log_index, Evidence::Clone(evidence.clone()));
                revoke(overlay, record, RevocationReason::ClonedDevice, at)?;
                flags |= receipt_flags::CLONE_DETECTED;
                clone_evidence = Some(Box::new(evidence));
            }
            Some(_) => {}
            None => overlay.put_counter(counter, tx_id),
        }
        let receipt = Receipt::of(&payment, tx_id, cert_id, at.log_index, at.stamp_ms, flags);
        record.state.spent_value = record.state.spent_value.saturating_add(payment.amount);
        record.state.payment_count += 1;
        overlay.put_accepted(AcceptedPayment {
            payment,
            receipt: receipt.clone(),
        });
        Ok(PaymentOutcome::Accepted {
            receipt,
            clone_evidence,
        })
    }

    fn double_spend(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        record: &mut CertRecord,
        payment: Payment,
        tx_id: TxId,
        scan: &NullifierScan,
    ) -> Result<PaymentOutcome, StoreError> {
        let (conflicts, fresh) = (&scan.conflicts, &scan.fresh);
        let cert_id = record.state.cert_id;
        // Prefer a conflict with an accepted payment: its receipt completes the evidence.
        let (nullifier, first) = conflicts
            .iter()
            .find(|(_, rec)| !rec.held)
            .unwrap_or(&conflicts[0]);
        let (first_payment, first_receipt) = match overlay.accepted(&first.tx_id)? {
            Some(a) => (a.payment, Some(a.receipt)),
            None => (
                overlay
                    .held_payment(&first.tx_id)?
                    .ok_or_else(|| corrupt("nullifier names a payment that is not recorded"))?,
                None,
            ),
        };
        let evidence = DoubleSpendEvidence {
            nullifier: *nullifier,
            first_payment,
            first_receipt,
            second_payment: payment.clone(),
            detected_log_index: at.log_index,
        };
        // A retried losing payment changes nothing more: its tokens are held already.
        if overlay.held_payment(&tx_id)?.is_none() {
            for &(n, value) in fresh {
                overlay.put_nullifier(n, NullifierRecord { tx_id, held: true });
                record.state.held_value = record.state.held_value.saturating_add(value);
            }
            overlay.put_held_payment(tx_id, payment);
            overlay.put_evidence(
                cert_id,
                at.log_index,
                Evidence::DoubleSpend(evidence.clone()),
            );
            record.double_spend_detected = true;
            revoke(overlay, record, RevocationReason::DoubleSpend, at)?;
        }
        Ok(PaymentOutcome::DoubleSpend {
            tx_id,
            evidence: Box::new(evidence),
        })
    }

    /// DESIGN rule 4: settle once past `settle_until`, or earlier by force;
    /// idempotent; compacts the certificate's nullifiers and counters.
    fn settle(
        &self,
        overlay: &mut Overlay<'_>,
        at: Stamp,
        certificate: &spentledger_protocol::OfflineCertificate,
        force_reason: Option<String>,
    ) -> Result<Result<CertificateSettlement, IssuerOpError>, StoreError> {
        let keys = overlay.issuer_keys()?;
        let ctx = apply_context(at.stamp_ms, &keys);
        let cert_id = match self.validator.check_certificate(certificate, &ctx) {
            Ok(id) => id,
            Err(reason) => return Ok(Err(IssuerOpError::InvalidCertificate(reason))),
        };
        if let Some(existing) = overlay.settlement(&cert_id)? {
            return Ok(Ok(existing));
        }
        if at.stamp_ms <= certificate.settle_until_ms && force_reason.is_none() {
            return Ok(Err(IssuerOpError::NotYetSettleable {
                settle_until_ms: certificate.settle_until_ms,
                stamp_ms: at.stamp_ms,
            }));
        }
        let mut record = cert_record(overlay, &cert_id)?;
        let settlement = match CertificateSettlement::compute(
            certificate,
            &record.state,
            record.double_spend_detected,
            at.stamp_ms,
            at.log_index,
            force_reason,
        ) {
            Ok(s) => s,
            Err(e) => return Ok(Err(IssuerOpError::Inconsistent(e.to_string()))),
        };
        record.state.settled = true;
        overlay.put_certificate(record);
        overlay.put_settlement(settlement.clone());
        overlay.compact(&cert_id, certificate.token_count)?;
        Ok(Ok(settlement))
    }
}

/// Payments whose reads are fetched together before they are judged
/// ([`Overlay::read_ahead`]): enough for a batched lookup to pay off, few
/// enough to bound what one fetch holds (about five keys a payment).
const READ_AHEAD_PAYMENTS: usize = 512;

/// Fetches what judging `group` (payments that passed the stateless rules)
/// will read.
fn read_ahead<'p>(
    overlay: &mut Overlay<'_>,
    group: impl Iterator<Item = (&'p Payment, &'p Checked)>,
) -> Result<GroupNullifiers, StoreError> {
    let mut keys = ReadKeys::default();
    let mut nullifiers = GroupNullifiers::default();
    for (payment, checked) in group {
        let start = nullifiers.all.len();
        nullifiers.all.extend(
            payment
                .inputs
                .iter()
                .map(|input| checked.cert_id.token_nullifier(input.leaf.index)),
        );
        keys.add_payment(payment, checked, &nullifiers.all[start..]);
    }
    overlay.read_ahead(keys)?;
    Ok(nullifiers)
}

/// The token nullifiers of a read-ahead group's payments that passed the
/// stateless rules, in order: each is a BLAKE3 hash, computed once for the
/// reads and used again to judge (docs/BENCHMARKS.md, twenty-first round).
#[derive(Default)]
struct GroupNullifiers {
    all: Vec<spentledger_protocol::Nullifier>,
    /// The first not yet handed out.
    next: usize,
}

impl GroupNullifiers {
    /// The next payment's nullifiers with its tokens' values. `payment` must
    /// be the next of the group's payments that passed; a payment the group
    /// does not cover (which the callers never pass) gets its nullifiers
    /// computed here, so the answer is always the payment's own.
    fn next_payment(&mut self, payment: &Payment) -> Vec<(spentledger_protocol::Nullifier, u64)> {
        let inputs = &payment.inputs;
        match self.all.get(self.next..self.next + inputs.len()) {
            Some(ours) => {
                self.next += inputs.len();
                ours.iter()
                    .zip(inputs)
                    .map(|(n, input)| (*n, input.leaf.value))
                    .collect()
            }
            None => payment
                .nullifiers()
                .into_iter()
                .zip(inputs)
                .map(|(n, input)| (n, input.leaf.value))
                .collect(),
        }
    }
}

/// A payment's tokens split by what the ledger already knows of them.
#[derive(Default)]
struct NullifierScan {
    /// Consumed by another payment (the payment consuming it is recorded).
    conflicts: Vec<(spentledger_protocol::Nullifier, NullifierRecord)>,
    /// Never consumed, with the token's value.
    fresh: Vec<(spentledger_protocol::Nullifier, u64)>,
}

/// Where in the log a command is applied, and its (monotonic) time.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    log_index: u64,
    stamp_ms: u64,
}

/// The stamp of the command at `log_index`: its leader's stamp raised to the
/// largest applied so far, and recorded, so time never goes back along the
/// log even across leaders with skewed clocks. Every command takes one,
/// even one that turns out malformed.
fn stamp(overlay: &mut Overlay<'_>, log_index: u64, stamp_ms: u64) -> Result<Stamp, StoreError> {
    let stamp_ms = stamp_ms.max(overlay.last_stamp_ms()?);
    overlay.put_last_stamp_ms(stamp_ms);
    Ok(Stamp {
        log_index,
        stamp_ms,
    })
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        what: "ledger",
        detail: detail.to_owned(),
    }
}

fn cert_record(overlay: &Overlay<'_>, cert_id: &CertId) -> Result<CertRecord, StoreError> {
    Ok(overlay.certificate(cert_id)?.unwrap_or_else(|| CertRecord {
        state: CertificateState::new(*cert_id),
        double_spend_detected: false,
        revocation_sequence: None,
    }))
}

/// Revokes once: a certificate already revoked keeps its first revocation.
fn revoke(
    overlay: &mut Overlay<'_>,
    record: &mut CertRecord,
    reason: RevocationReason,
    at: Stamp,
) -> Result<Revocation, StoreError> {
    if let Some(sequence) = record.revocation_sequence {
        return overlay
            .revocation(sequence)?
            .ok_or_else(|| corrupt("certificate names a revocation that is not recorded"));
    }
    let revocation = Revocation {
        sequence: overlay.last_revocation_sequence()? + 1,
        cert_id: record.state.cert_id,
        reason,
        revoked_at_ms: at.stamp_ms,
        log_index: at.log_index,
    };
    record.state.revoked = Some(reason);
    record.revocation_sequence = Some(revocation.sequence);
    overlay.put_revocation(revocation.clone());
    Ok(revocation)
}

fn register_key(
    overlay: &mut Overlay<'_>,
    key: IssuerKey,
) -> Result<Result<IssuerKey, IssuerOpError>, StoreError> {
    if let Some(existing) = overlay.issuer_keys()?.get(key.key_id.as_str())
        && existing.public_key != key.public_key
    {
        return Ok(Err(IssuerOpError::KeyConflict {
            key_id: key.key_id.to_string(),
        }));
    }
    overlay.put_issuer_key(key.clone());
    Ok(Ok(key))
}

fn retire_key(
    overlay: &mut Overlay<'_>,
    key_id: &str,
    retired_at_ms: u64,
) -> Result<Result<IssuerKey, IssuerOpError>, StoreError> {
    let Some(mut key) = overlay.issuer_keys()?.get(key_id).cloned() else {
        return Ok(Err(IssuerOpError::UnknownKey {
            key_id: key_id.to_owned(),
        }));
    };
    if retired_at_ms < key.valid_from_ms {
        return Ok(Err(IssuerOpError::RetiredBeforeValid {
            retired_at_ms,
            valid_from_ms: key.valid_from_ms,
        }));
    }
    key.valid_until_ms = key.valid_until_ms.min(retired_at_ms);
    overlay.put_issuer_key(key.clone());
    Ok(Ok(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{id, wallet};

    fn payment(indices: &[u32]) -> Payment {
        wallet(7, 1_000)
            .sign_payment(indices, 1, &id("m"), [0; 32], 2_000)
            .expect("within limits")
    }

    fn expected(p: &Payment) -> Vec<(spentledger_protocol::Nullifier, u64)> {
        let cert_id = p.certificate.cert_id();
        p.inputs
            .iter()
            .map(|i| (cert_id.token_nullifier(i.leaf.index), i.leaf.value))
            .collect()
    }

    #[test]
    fn a_groups_nullifiers_are_handed_out_payment_by_payment_and_computed_when_missing() {
        let (a, b) = (payment(&[0, 1]), payment(&[2, 3, 4]));
        let mut group = GroupNullifiers::default();
        for p in [&a, &b] {
            group.all.extend(expected(p).into_iter().map(|(n, _)| n));
        }
        assert_eq!(group.next_payment(&a), expected(&a));
        assert_eq!(group.next_payment(&b), expected(&b));
        // Past the group's end: computed, not taken from elsewhere.
        assert_eq!(group.next_payment(&a), expected(&a));
        assert_eq!(GroupNullifiers::default().next_payment(&b), expected(&b));
    }
}
