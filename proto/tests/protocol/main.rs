//! The protocol crate's integration suite: one binary, one module per topic.

mod direct;
mod direct_leader;
mod fixtures;
mod helpers;
mod properties;
mod rules;
mod vectors;
mod wire;
