use prost::Message;
use rayon::prelude::*;

use crate::decode_error::{DecodeError, DecodeProblem};
use crate::limits::DETERMINISTIC_CHUNK_SIGNATURES;
use crate::pb;
use crate::types::Payment;
use crate::validate::rules::{self, Prepared};
use crate::validate::signature::{self, SignatureJob};
use crate::validate::{CertificateCache, StatelessVerdict, ValidationContext};
use crate::verdict::RejectReason;

/// How device signatures of a batch are grouped for batch verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationMode {
    /// The receiving node: chunks sized for the thread pool, batch
    /// verification with per-item fallback. Fast; used before proposing.
    Ingress,
    /// The state machine: chunks of exactly `DETERMINISTIC_CHUNK_SIGNATURES`
    /// signatures, taken in entry order from the payments that passed the other
    /// rules; batch verification, per-item `verify_strict` inside a chunk that
    /// fails. The verdicts are a function of the payments alone: the same on
    /// every replica, with any number of threads.
    Deterministic,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("validator needs at least one thread")]
    NoThreads,
    #[error("cannot start the validation thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

/// Ingress chunks: enough per thread to amortise a batch, small enough to
/// spread a batch over every core.
const INGRESS_CHUNK_MIN: usize = 16;
const INGRESS_CHUNK_MAX: usize = 256;
/// Payments checked per task in the first (per-payment rules) stage.
const RULES_CHUNK: usize = 32;

/// Validates payments on its own thread pool, with a shared certificate cache.
pub struct Validator {
    pool: rayon::ThreadPool,
    threads: usize,
    cache: CertificateCache,
}

/// Runs on each of a validator's threads when it starts (the node uses it to
/// lower the priority of apply's pool); the argument is the thread's index.
pub type ThreadStart = std::sync::Arc<dyn Fn(usize) + Send + Sync>;

impl Validator {
    pub fn new(threads: usize, cache_capacity: usize) -> Result<Self, ValidatorError> {
        Self::with_threads("validate", threads, cache_capacity, None)
    }

    /// A validator whose threads are named `<name>-<i>` and run `start`
    /// first.
    pub fn with_threads(
        name: &'static str,
        threads: usize,
        cache_capacity: usize,
        start: Option<ThreadStart>,
    ) -> Result<Self, ValidatorError> {
        if threads == 0 {
            return Err(ValidatorError::NoThreads);
        }
        let mut builder = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("{name}-{i}"));
        if let Some(start) = start {
            builder = builder.start_handler(move |i| start(i));
        }
        let pool = builder.build()?;
        Ok(Validator {
            pool,
            threads,
            cache: CertificateCache::new(cache_capacity),
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn cache(&self) -> &CertificateCache {
        &self.cache
    }

    /// One payment, with a single `verify_strict` for its device signature
    /// (a merchant terminal, a lookup). Same verdict as either batch mode for
    /// every signature an honest device produces.
    pub fn validate_one(&self, payment: &Payment, ctx: &ValidationContext<'_>) -> StatelessVerdict {
        rules::validate_single(payment, ctx, &self.cache)
    }

    /// A certificate alone (issuer operations), with this validator's cache.
    pub fn check_certificate(
        &self,
        cert: &crate::OfflineCertificate,
        ctx: &ValidationContext<'_>,
    ) -> Result<crate::CertId, RejectReason> {
        rules::check_certificate(cert, ctx, &self.cache)
    }

    /// One verdict per payment, in order.
    pub fn validate_batch(
        &self,
        payments: &[Payment],
        ctx: &ValidationContext<'_>,
        mode: ValidationMode,
    ) -> Vec<StatelessVerdict> {
        self.pool.install(|| {
            let prepared: Vec<Result<Prepared, RejectReason>> = payments
                .par_chunks(RULES_CHUNK)
                .flat_map_iter(|chunk| {
                    chunk
                        .iter()
                        .map(|payment| rules::prepare(payment, ctx, &self.cache))
                })
                .collect();
            let jobs: Vec<&SignatureJob> = prepared
                .iter()
                .filter_map(|p| p.as_ref().ok().map(|p| &p.job))
                .collect();
            let chunk_len = match mode {
                ValidationMode::Deterministic => DETERMINISTIC_CHUNK_SIGNATURES,
                ValidationMode::Ingress => jobs
                    .len()
                    .div_ceil(self.threads * 2)
                    .clamp(INGRESS_CHUNK_MIN, INGRESS_CHUNK_MAX),
            };
            let signature_ok: Vec<bool> = jobs
                .par_chunks(chunk_len)
                .flat_map_iter(signature::verify_chunk)
                .collect();
            let mut signature_ok = signature_ok.into_iter();
            prepared
                .into_iter()
                .map(|p| {
                    let p = p?;
                    let ok = signature_ok
                        .next()
                        .expect("one signature result per prepared payment");
                    if ok {
                        Ok(p.checked)
                    } else {
                        Err(RejectReason::BadDeviceSignature)
                    }
                })
                .collect()
        })
    }

    /// Decodes wire payments on the pool. Returns the payments that decode,
    /// in order, and one slot per wire payment: `None` where it decoded (the
    /// next of those payments), its error where it did not. Validating the
    /// decoded ones together is what both ingress and apply do, so signature
    /// chunks depend on the entry's bytes alone.
    pub fn decode_split(&self, wire: &[pb::Payment]) -> (Vec<Payment>, Vec<Option<DecodeError>>) {
        let decoded: Vec<Result<Payment, DecodeError>> = self.pool.install(|| {
            wire.par_chunks(RULES_CHUNK)
                .flat_map_iter(|chunk| chunk.iter().map(Payment::try_from))
                .collect()
        });
        split_decoded(decoded)
    }

    /// Decodes payments from their wire bytes straight to domain types, on
    /// the pool ([`crate::direct::payment`]). `None` when any of them is not
    /// one the direct decoder takes: the caller then decodes the whole
    /// command the general way, which gives every payment its own verdict.
    pub fn decode_direct(&self, wire: &[&[u8]]) -> Option<Vec<Payment>> {
        self.pool.install(|| {
            wire.par_chunks(RULES_CHUNK)
                .flat_map_iter(|chunk| chunk.iter().map(|bytes| crate::direct::payment(bytes)))
                .collect::<Result<Vec<Payment>, _>>()
                .ok()
        })
    }

    /// Decodes payments given as their bytes, on the pool: each straight to
    /// domain types when the direct decoder takes it, else the general way
    /// (prost, then the domain conversion), which gives the precise error.
    /// Returns what [`Validator::decode_split`] returns for the same
    /// payments decoded by prost (the direct decoder's contract), and for
    /// bytes prost cannot decode, a `MALFORMED` error of their own.
    pub fn decode_split_encoded<P: AsRef<[u8]> + Sync>(
        &self,
        wire: &[P],
    ) -> (Vec<Payment>, Vec<Option<DecodeError>>) {
        let decoded: Vec<Result<Payment, DecodeError>> = self.pool.install(|| {
            wire.par_chunks(RULES_CHUNK)
                .flat_map_iter(|chunk| chunk.iter().map(|bytes| decode_payment(bytes.as_ref())))
                .collect()
        });
        split_decoded(decoded)
    }

    /// Decodes wire payments and validates those that decode; an undecodable
    /// payment gets `MALFORMED` (or `TOO_MANY_INPUTS`) with the decode error.
    /// Payments that fail to decode take no part in signature chunking, so the
    /// deterministic mode stays a function of the entry's bytes.
    pub fn validate_wire_batch(
        &self,
        wire: &[pb::Payment],
        ctx: &ValidationContext<'_>,
        mode: ValidationMode,
    ) -> Vec<Result<rules::Checked, (RejectReason, Option<DecodeError>)>> {
        let (payments, decode_errors) = self.decode_split(wire);
        let mut verdicts = self.validate_batch(&payments, ctx, mode).into_iter();
        decode_errors
            .into_iter()
            .map(|error| match error {
                None => verdicts
                    .next()
                    .expect("one verdict per decoded payment")
                    .map_err(|reason| (reason, None)),
                Some(e) => Err((RejectReason::for_decode_error(&e), Some(e))),
            })
            .collect()
    }
}

/// One payment from its bytes: directly when the direct decoder takes them,
/// else the general way.
fn decode_payment(bytes: &[u8]) -> Result<Payment, DecodeError> {
    if let Ok(payment) = crate::direct::payment(bytes) {
        return Ok(payment);
    }
    let wire = pb::Payment::decode(bytes).map_err(|_| {
        DecodeError::new(
            "payment",
            DecodeProblem::Invalid {
                detail: "not a protobuf Payment message",
            },
        )
    })?;
    Payment::try_from(&wire)
}

/// The decoded payments in order, and one slot per payment: `None` where it
/// decoded, its error where it did not.
fn split_decoded(
    decoded: Vec<Result<Payment, DecodeError>>,
) -> (Vec<Payment>, Vec<Option<DecodeError>>) {
    let mut payments = Vec::with_capacity(decoded.len());
    let mut slots = Vec::with_capacity(decoded.len());
    for d in decoded {
        match d {
            Ok(payment) => {
                payments.push(payment);
                slots.push(None);
            }
            Err(e) => slots.push(Some(e)),
        }
    }
    (payments, slots)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn every_thread_runs_the_start_hook_once_under_its_name() {
        let started = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start: ThreadStart = {
            let started = started.clone();
            let names = names.clone();
            Arc::new(move |_| {
                started.fetch_add(1, Ordering::SeqCst);
                let name = std::thread::current().name().unwrap_or("").to_owned();
                names.lock().expect("lock").push(name);
            })
        };
        let validator = Validator::with_threads("hook", 3, 16, Some(start)).expect("pool");
        // Every thread has started once the pool ran one task on each.
        validator.pool.broadcast(|_| ());
        assert_eq!(started.load(Ordering::SeqCst), 3);
        let mut names = names.lock().expect("lock").clone();
        names.sort();
        assert_eq!(names, ["hook-0", "hook-1", "hook-2"]);
        assert!(matches!(
            Validator::with_threads("hook", 0, 16, None),
            Err(ValidatorError::NoThreads)
        ));
    }
}
