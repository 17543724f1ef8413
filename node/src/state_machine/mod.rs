//! The replicated state machine's rules (DESIGN.md "Rules of the state
//! machine", rules 3-5), as deterministic logic over a read interface.
//!
//! One `apply` call builds a [`WriteSet`] through an [`Overlay`] (reads see
//! the pending writes, so a double spend inside one entry or one apply call is
//! caught), and the storage layer persists the write set together with the
//! applied log id in one atomic RocksDB write batch.
//!
//! Determinism: no wall clock (the entry's leader stamp is the only time), no
//! randomness in any result, ordered maps only (a [`WriteMap`]'s hash index
//! is never iterated). Every replica computes the same outcomes and the same
//! [`StateDigest`] from the same log.

mod command;
mod digest;
mod ledger;
mod ledger_read;
pub mod memory;
mod outcome;
mod overlay;
mod precheck;
mod read_ahead;
mod write_map;

pub use command::{CommandError, LedgerCommand};
pub use digest::StateDigest;
pub use ledger::{Ledger, LedgerConfig, VALIDATION_NICE_DEFAULT};
pub use ledger_read::{
    AcceptedPayment, CertRecord, CounterKey, LedgerRead, NullifierRecord, StoreError,
};
pub use outcome::{CommandOutcome, IssuerOpError, PaymentOutcome};
pub use overlay::{Evidence, Overlay, WriteSet};
pub use precheck::{Prechecked, apply_context};
pub use read_ahead::ReadKeys;
pub use write_map::WriteMap;
