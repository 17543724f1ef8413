//! Outcomes of the state machine as protobuf results.

use spentledger_protocol::pb;

use crate::state_machine::PaymentOutcome;

pub fn payment_result(outcome: &PaymentOutcome) -> pb::PaymentResult {
    let (verdict, reason) = outcome.verdict().to_wire();
    let mut result = pb::PaymentResult {
        tx_id: outcome.tx_id().map(|t| t.0.to_vec()).unwrap_or_default(),
        verdict: verdict as i32,
        reject_reason: reason as i32,
        ..Default::default()
    };
    match outcome {
        PaymentOutcome::Accepted { receipt, .. } | PaymentOutcome::Duplicate { receipt } => {
            result.receipt = Some(receipt.into());
        }
        PaymentOutcome::DoubleSpend { evidence, .. } => {
            result.double_spend = Some(evidence.as_ref().into());
        }
        PaymentOutcome::Rejected { detail, .. } => {
            result.detail = detail.clone().unwrap_or_default();
        }
    }
    result
}
