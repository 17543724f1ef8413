//! The state machine's rules (DESIGN.md rules 3-5) on the in-memory store:
//! one binary, one module per topic.

mod determinism;
mod direct_decode;
mod hostile;
mod invariants;
mod issuer_ops;
mod payments;
mod precheck;
mod world;
