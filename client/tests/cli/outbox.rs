//! A gateway's durable outbox across crashes: before a batch is submitted,
//! after it was submitted but before its verdicts were stored, and with an
//! interrupted write on disk.

use spentledger_client::outbox::{Outbox, OutboxError};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_crashes_mid_submission_resumes_from_its_outbox_losing_and_doubling_nothing()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let issuer = test_issuer();
    let (mut cluster, endpoints) = must_start_cluster(&dir.path().join("cluster"), &issuer).await;
    let gateway = Gateway::new(GatewayConfig::new(endpoints.clone())).expect("gateway");
    must_wait_for_genesis_key(&gateway, &issuer).await;
    let outbox_dir = dir.path().join("outbox");

    eprintln!("--- three batches are stored before the merchants are told 'received'");
    let all = payments(&issuer, 1..31);
    {
        let mut outbox = Outbox::open(&outbox_dir).expect("open");
        assert!(matches!(outbox.enqueue(&[]), Err(OutboxError::BadBatch(0))));
        for chunk in all.chunks(10) {
            outbox.enqueue(chunk).expect("enqueue");
        }

        eprintln!(
            "--- batch 1 reaches the ledger, then the gateway crashes before storing the verdicts"
        );
        let first = outbox.pending().expect("pending").remove(0);
        let response = gateway
            .submit_batch(first.request.clone())
            .await
            .expect("submit batch 1");
        assert!(
            response
                .results
                .iter()
                .all(|r| r.verdict == pb::Verdict::Accepted as i32)
        );
        // Dropped here without `record`: the crash.
    }
    // An enqueue interrupted mid-write leaves only a temporary file.
    std::fs::write(outbox_dir.join("pending/00000000000000000009.tmp"), b"torn")
        .expect("torn write");

    eprintln!("--- the gateway restarts: all three batches are still pending; it drains them");
    let mut outbox = Outbox::open(&outbox_dir).expect("reopen");
    assert!(
        !outbox_dir.join("pending/00000000000000000009.tmp").exists(),
        "interrupted writes are discarded"
    );
    assert_eq!(outbox.pending().expect("pending").len(), 3);
    assert_eq!(outbox.drain(&gateway).await.expect("drain"), 3);
    assert!(outbox.pending().expect("pending").is_empty());
    let done = outbox.done().expect("done");
    assert_eq!(done.len(), 3);
    let verdicts: Vec<i32> = done
        .iter()
        .flat_map(|d| d.response.results.iter().map(|r| r.verdict))
        .collect();
    assert_eq!(verdicts.len(), all.len(), "every payment answered");
    assert!(
        verdicts[..10]
            .iter()
            .all(|v| *v == pb::Verdict::Duplicate as i32),
        "batch 1 was already recorded: DUPLICATE, with the original receipts"
    );
    assert!(
        verdicts[10..]
            .iter()
            .all(|v| *v == pb::Verdict::Accepted as i32)
    );
    let receipts: std::collections::BTreeSet<Vec<u8>> = done
        .iter()
        .flat_map(|d| d.response.results.iter())
        .map(|r| {
            r.receipt
                .as_ref()
                .expect("settled payments carry a receipt")
                .tx_id
                .clone()
        })
        .collect();
    assert_eq!(
        receipts.len(),
        all.len(),
        "each payment settled exactly once"
    );

    eprintln!("--- new batches continue the sequence; answered ones can be pruned");
    let next = outbox.enqueue(&payments(&issuer, 40..41)).expect("enqueue");
    assert_eq!(next, 4);
    assert_eq!(outbox.prune_done(3).expect("prune"), 3);
    assert!(outbox.done().expect("done").is_empty());
    cluster.stop();
}
