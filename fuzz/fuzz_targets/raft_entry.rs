//! Arbitrary bytes as what a node reads from a peer or its own log: every
//! Raft decoder must answer with a value or an error, and a command that
//! decodes must be applied by the state machine without panicking, with
//! the same outcome and digest on two replicas (one and two validation
//! threads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use openraft::EntryPayload;
use spentledger_node::consensus::{
    decode_entry, decode_log_id, decode_membership, decode_snapshot_meta,
    decode_vote,
};
use spentledger_node::state_machine::memory::MemLedger;
use spentledger_node::state_machine::{Ledger, LedgerConfig, Overlay, StateDigest};
use spentledger_protocol::pb;
use spentledger_protocol::sim::Issuer;
use spentledger_protocol::types::IdText;

/// The issuer of the payment test vectors, registered on each replica.
fn register_key() -> pb::Command {
    let id = IdText::new("key_id", "bank-a-2026").expect("valid id");
    let t0 = 1_767_225_600_000;
    let key = Issuer::from_seed(id, [0x11; 32], t0 - 86_400_000, t0 + 365 * 86_400_000).issuer_key();
    pb::Command {
        stamp_ms: t0,
        kind: Some(pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand {
            key: Some((&key).into()),
        })),
    }
}

/// Applies `commands` on a fresh replica; returns the outcomes (as text) and digest.
fn replica(threads: usize, commands: &[pb::Command]) -> (Vec<String>, StateDigest) {
    let ledger = Ledger::new(LedgerConfig {
        validation_threads: threads,
        certificate_cache_entries: 64,
    })
    .expect("validation threads");
    let mut store = MemLedger::default();
    let mut digest = StateDigest::default();
    let mut outcomes = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let index = i as u64 + 1;
        let mut overlay = Overlay::new(&store);
        let outcome = ledger
            .apply(&mut overlay, index, cmd)
            .expect("the in-memory store does not fail");
        digest = digest.fold(index, Some(&outcome));
        outcomes.push(format!("{outcome:?}"));
        store.commit(overlay.into_writes());
    }
    (outcomes, digest)
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_vote(data);
    let _ = decode_log_id(data);
    let _ = decode_membership(data);
    let _ = decode_snapshot_meta(data);
    let Ok(entry) = decode_entry(data) else {
        return;
    };
    if let EntryPayload::Normal(request) = entry.payload {
        // Bytes that are no Command are applied as Malformed on every
        // replica alike; the ledger's rules are exercised by those that are.
        let Ok(cmd) = request.command() else {
            return;
        };
        let commands = [register_key(), cmd.into_owned()];
        assert_eq!(
            replica(1, &commands),
            replica(2, &commands),
            "replicas disagree on the same entry"
        );
    }
});
