//! Ingress validation of one gathered entry (DESIGN "Validation happens at
//! every node": the receiving node never proposes garbage).
//!
//! The coalescer gathers gateway batches first and validates the entry they
//! make as a whole, with the deterministic mode and the context this node's
//! apply will have (the entry's stamp, the protocol's clock skew, the issuer
//! keys). One pass then serves twice: payments that fail are answered at once
//! and never proposed, and the verdicts of the rest ride along with the entry
//! ([`Prechecked`]) so this node's apply does not validate them again. The
//! leader checks each device signature once instead of twice.

use std::sync::Arc;

use prost::bytes::Bytes;
use spentledger_protocol::{RejectReason, ValidationMode, Validator};

use crate::consensus::StateHandle;
use crate::state_machine::{LedgerRead, PaymentOutcome, Prechecked, StoreError, apply_context};

/// Where one payment of the gathered batches goes.
#[derive(Debug)]
pub enum Route {
    /// Answered at once: malformed, invalid, or a retry of a recorded payment.
    Answered(PaymentOutcome),
    /// Valid: proposed at this position of the entry.
    Proposed(usize),
}

/// The gathered payments after ingress validation.
#[derive(Debug)]
pub struct CheckedEntry {
    /// The stamp the entry must carry: the verdicts were computed with it.
    pub stamp_ms: u64,
    /// One route per gathered payment, in order.
    pub routes: Vec<Route>,
    /// The payments to propose, in order, as their encodings.
    pub proposed: Vec<Bytes>,
    /// Their verdicts for this node's apply; `None` when a payment with a
    /// device signature was dropped, which changes how apply groups the
    /// signatures of the others into batches (then apply checks them itself).
    pub precheck: Option<Prechecked>,
}

/// Validates gathered entries on the ingress pool; cheap to clone.
#[derive(Clone)]
pub struct IngressCheck {
    validator: Arc<Validator>,
    state: StateHandle,
}

impl IngressCheck {
    pub fn new(validator: Arc<Validator>, state: StateHandle) -> Self {
        IngressCheck { validator, state }
    }

    /// Validates `wire` as one entry stamped `stamp_ms`. Blocking (CPU on
    /// the validator's pool, RocksDB reads): call from a blocking thread.
    pub fn check(&self, wire: Vec<Bytes>, stamp_ms: u64) -> Result<CheckedEntry, StoreError> {
        let store = self.state.current();
        let keys = store.issuer_keys()?;
        let ctx = apply_context(stamp_ms, &keys);
        // Apply validates the decoded payments of an entry together (the
        // undecodable take no part), so the same is done here.
        let (payments, slots) = self.validator.decode_split_encoded(&wire);
        let verdicts =
            self.validator
                .validate_batch(&payments, &ctx, ValidationMode::Deterministic);
        let mut decoded = payments.into_iter().zip(verdicts);
        let mut routes = Vec::with_capacity(wire.len());
        let mut proposed = Vec::with_capacity(wire.len());
        let mut passed = Vec::with_capacity(wire.len());
        let mut signature_dropped = false;
        for (payment_wire, slot) in wire.into_iter().zip(slots) {
            let (payment, verdict) = match slot {
                Some(e) => {
                    routes.push(Route::Answered(PaymentOutcome::Rejected {
                        tx_id: None,
                        reason: RejectReason::for_decode_error(&e),
                        detail: Some(e.to_string()),
                    }));
                    continue;
                }
                None => decoded.next().expect("one verdict per decoded payment"),
            };
            match verdict {
                Ok(checked) => {
                    routes.push(Route::Proposed(proposed.len()));
                    proposed.push(payment_wire);
                    passed.push((payment, checked));
                }
                Err(reason) => {
                    // Only a payment that reached the signature check held a
                    // place in apply's signature batches.
                    signature_dropped |= reason == RejectReason::BadDeviceSignature;
                    let tx_id = payment.tx_id();
                    // A retry of a recorded payment is DUPLICATE even after
                    // its windows closed (docs/PROTOCOL.md §9).
                    let outcome = match store.accepted(&tx_id)? {
                        Some(recorded) => PaymentOutcome::Duplicate {
                            receipt: recorded.receipt,
                        },
                        None => PaymentOutcome::Rejected {
                            tx_id: Some(tx_id),
                            reason,
                            detail: None,
                        },
                    };
                    routes.push(Route::Answered(outcome));
                }
            }
        }
        let precheck = (!signature_dropped).then(|| Prechecked::new(stamp_ms, keys, passed));
        Ok(CheckedEntry {
            stamp_ms,
            routes,
            proposed,
            precheck,
        })
    }
}
