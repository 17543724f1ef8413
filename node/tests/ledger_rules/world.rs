//! A test world: an issuer, funded devices, and a ledger applying commands
//! to an in-memory store the way the node's state machine does.

use spentledger_node::state_machine::memory::MemLedger;
use spentledger_node::state_machine::{
    CommandOutcome, Ledger, LedgerConfig, Overlay, PaymentOutcome, Prechecked, StateDigest,
    StoreError,
};
use spentledger_protocol::sim::{Funding, IssuancePolicy, Issuer, Wallet};
use spentledger_protocol::types::{IdText, RevocationReason};
use spentledger_protocol::{CertId, OfflineCertificate, Payment, pb};

pub const T0_MS: u64 = 1_767_225_600_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;

pub fn id(text: &str) -> IdText {
    IdText::new("test", text).expect("valid test id")
}

pub fn issuer() -> Issuer {
    Issuer::from_seed(
        id("bank-a"),
        [0x11; 32],
        T0_MS - DAY_MS,
        T0_MS + 365 * DAY_MS,
    )
}

pub fn wallet(device: u8, balance: u64) -> Wallet {
    issuer()
        .fund_device(
            &IssuancePolicy::default(),
            [device.wrapping_add(0x40); 32],
            &Funding::eur(id(&format!("wallet-{device}")), balance, T0_MS),
        )
        .expect("fundable")
}

pub fn command(stamp_ms: u64, kind: pb::command::Kind) -> pb::Command {
    pb::Command {
        stamp_ms,
        kind: Some(kind),
    }
}

pub fn submit_cmd(stamp_ms: u64, payments: &[Payment]) -> pb::Command {
    command(
        stamp_ms,
        pb::command::Kind::Submit(pb::SubmitPayments {
            payments: payments.iter().map(pb::Payment::from).collect(),
        }),
    )
}

pub struct World {
    pub ledger: Ledger,
    pub store: MemLedger,
    pub next_index: u64,
    pub digest: StateDigest,
    pub now_ms: u64,
}

impl World {
    /// A ledger with the test issuer's key registered at log index 1.
    pub fn new() -> Self {
        Self::with_threads(2)
    }

    pub fn with_threads(threads: usize) -> Self {
        let mut world = World {
            ledger: Ledger::new(LedgerConfig {
                validation_threads: threads,
                certificate_cache_entries: 1_024,
                ..LedgerConfig::default()
            })
            .expect("validator threads"),
            store: MemLedger::default(),
            next_index: 1,
            digest: StateDigest::default(),
            now_ms: T0_MS + HOUR_MS,
        };
        let key = pb::IssuerKey::from(&issuer().issuer_key());
        let outcome = world.apply(command(
            T0_MS,
            pb::command::Kind::RegisterKey(pb::RegisterIssuerKeyCommand { key: Some(key) }),
        ));
        assert!(
            matches!(outcome, CommandOutcome::KeyRegistered(Ok(_))),
            "{outcome:?}"
        );
        world
    }

    /// A second replica in this one's state, with a ledger of its own (its
    /// caches and counters start empty).
    pub fn clone_state(&self) -> Self {
        World {
            ledger: Ledger::new(LedgerConfig {
                validation_threads: 2,
                certificate_cache_entries: 1_024,
                ..LedgerConfig::default()
            })
            .expect("validator threads"),
            store: self.store.clone(),
            next_index: self.next_index,
            digest: self.digest,
            now_ms: self.now_ms,
        }
    }

    /// Applies one entry in its own apply call.
    pub fn apply(&mut self, cmd: pb::Command) -> CommandOutcome {
        self.apply_group(&[cmd]).pop().expect("one outcome")
    }

    /// Applies several entries in one apply call (one write set), as openraft
    /// may hand a replica several committed entries at once.
    pub fn apply_group(&mut self, cmds: &[pb::Command]) -> Vec<CommandOutcome> {
        self.apply_group_prechecked(cmds.iter().map(|cmd| (cmd, None)))
    }

    /// Applies one entry with the verdicts its proposer computed, as the
    /// leader applies its own entries.
    pub fn apply_prechecked(
        &mut self,
        cmd: &pb::Command,
        precheck: Option<&Prechecked>,
    ) -> CommandOutcome {
        self.apply_group_prechecked([(cmd, precheck)])
            .pop()
            .expect("one outcome")
    }

    fn apply_group_prechecked<'a>(
        &mut self,
        cmds: impl IntoIterator<Item = (&'a pb::Command, Option<&'a Prechecked>)>,
    ) -> Vec<CommandOutcome> {
        self.apply_each(cmds, |ledger, overlay, index, (cmd, precheck)| {
            ledger.apply(overlay, index, cmd, precheck)
        })
    }

    /// Applies one entry given as its log bytes with the verdicts its
    /// proposer computed, as the leader applies the entries it wrote from
    /// its gateways' bytes.
    pub fn apply_encoded_prechecked(
        &mut self,
        bytes: &[u8],
        precheck: Option<&Prechecked>,
    ) -> CommandOutcome {
        self.apply_each([bytes], |ledger, overlay, index, bytes| {
            ledger.apply_encoded(overlay, index, bytes, precheck)
        })
        .pop()
        .expect("one outcome")
    }

    /// Applies entries given as their log bytes in one apply call, as a
    /// follower applies what it received (`Ledger::apply_encoded`).
    pub fn apply_encoded_group(&mut self, entries: &[Vec<u8>]) -> Vec<CommandOutcome> {
        self.apply_each(entries, |ledger, overlay, index, bytes| {
            ledger.apply_encoded(overlay, index, bytes, None)
        })
    }

    /// One apply call: each entry at the next log index, one write set.
    fn apply_each<T>(
        &mut self,
        entries: impl IntoIterator<Item = T>,
        apply: impl Fn(&Ledger, &mut Overlay<'_>, u64, T) -> Result<CommandOutcome, StoreError>,
    ) -> Vec<CommandOutcome> {
        let mut overlay = Overlay::new(&self.store);
        let mut outcomes = Vec::new();
        for entry in entries {
            let outcome = apply(&self.ledger, &mut overlay, self.next_index, entry)
                .expect("in-memory store never fails");
            self.digest = self.digest.fold(self.next_index, Some(&outcome));
            self.next_index += 1;
            outcomes.push(outcome);
        }
        let writes = overlay.into_writes();
        self.store.commit(writes);
        outcomes
    }

    pub fn submit(&mut self, payments: &[Payment]) -> Vec<PaymentOutcome> {
        match self.apply(submit_cmd(self.now_ms, payments)) {
            CommandOutcome::Submitted(outcomes) => outcomes,
            other => panic!("submit gave {other:?}"),
        }
    }

    pub fn must_submit_one(&mut self, payment: &Payment) -> PaymentOutcome {
        let mut outcomes = self.submit(std::slice::from_ref(payment));
        assert_eq!(outcomes.len(), 1);
        outcomes.pop().expect("one outcome")
    }

    pub fn settle(
        &mut self,
        stamp_ms: u64,
        cert: &OfflineCertificate,
        force_reason: Option<&str>,
    ) -> CommandOutcome {
        self.apply(command(
            stamp_ms,
            pb::command::Kind::Settle(pb::SettleCommand {
                certificate: Some(cert.into()),
                force: force_reason.is_some(),
                force_reason: force_reason.unwrap_or_default().to_owned(),
            }),
        ))
    }

    pub fn revoke(&mut self, cert_id: CertId, reason: RevocationReason) -> CommandOutcome {
        self.apply(command(
            self.now_ms,
            pb::command::Kind::Revoke(pb::RevokeCommand {
                cert_id: cert_id.0.to_vec(),
                reason: reason.to_wire() as i32,
            }),
        ))
    }

    pub fn cert_state(&self, cert_id: &CertId) -> spentledger_node::state_machine::CertRecord {
        self.store
            .certificates
            .get(cert_id)
            .cloned()
            .unwrap_or_else(|| panic!("certificate {cert_id} has no record"))
    }
}

pub fn must_accept(outcome: &PaymentOutcome) -> &spentledger_protocol::Receipt {
    match outcome {
        PaymentOutcome::Accepted { receipt, .. } => receipt,
        other => panic!("expected ACCEPTED, got {other:?}"),
    }
}

pub fn must_double_spend(outcome: &PaymentOutcome) -> &spentledger_protocol::DoubleSpendEvidence {
    match outcome {
        PaymentOutcome::DoubleSpend { evidence, .. } => evidence,
        other => panic!("expected DOUBLE_SPEND, got {other:?}"),
    }
}

/// What a clone of the device that paid `first` pays: one token `first` did
/// not spend, under `first`'s counter (merchant "m-b"), as clone detection
/// must catch.
pub fn counter_reuse(clone: &Wallet, first: &Payment) -> Payment {
    let used: Vec<u32> = first.inputs.iter().map(|i| i.leaf.index).collect();
    let fresh: Vec<u32> = clone
        .tokens()
        .iter()
        .map(|t| t.index)
        .filter(|i| !used.contains(i))
        .take(1)
        .collect();
    clone
        .sign_payment(&fresh, first.counter, &id("m-b"), [2; 32], T0_MS + 600_000)
        .expect("a clone signs with its copy of the device key")
}
