//! The state machine's rules (DESIGN.md rules 3-5) on the in-memory store:
//! one binary, one module per topic.

mod determinism;
mod hostile;
mod invariants;
mod issuer_ops;
mod payments;
mod precheck;
mod world;
