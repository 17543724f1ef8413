//! A node takes Raft messages of its own cluster only (docs/NODE.md,
//! "Cluster id"): votes and log ids are small integers, the same values in
//! every cluster, so another cluster's leader reaching one of our addresses
//! would otherwise pass for ours.

use spentledger_node::network::CLUSTER_HEADER;

use super::*;

fn request_from<T>(message: T, cluster: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(id) = cluster {
        request
            .metadata_mut()
            .insert(CLUSTER_HEADER, id.parse().expect("ascii id"));
    }
    request
}

/// A vote of node 2 at `term`, committed: a leader's.
fn leader_vote(term: u64) -> pb::Vote {
    pb::Vote {
        leader_id: Some(pb::LeaderId { term, node_id: 2 }),
        committed: true,
    }
}

fn must_be_wrong_cluster(status: &tonic::Status, what: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "{what}: {status}"
    );
    assert_eq!(
        status
            .metadata()
            .get(spentledger_node::api::REASON_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("wrong-cluster"),
        "{what}: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_refuses_raft_messages_of_another_cluster() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.must_leader().await;
    let target = (1..=3).find(|i| *i != leader).expect("a follower");
    let own_id = cluster.nodes[&target].cluster_id.clone();
    assert_eq!(
        own_id,
        cluster_id_of(&cluster.dirs[&target]),
        "each test cluster its own id"
    );
    let term = || {
        cluster.nodes[&target]
            .raft
            .metrics()
            .borrow_watched()
            .current_term
    };
    let term_before = term();
    let higher = term_before + 10;
    let mut client = pb::raft_client::RaftClient::new(connect(cluster.addrs[&target]).await);

    eprintln!("--- another cluster's leader, ten terms ahead, and a sender without an id");
    for theirs in [Some("another-cluster"), None] {
        let append = pb::AppendEntriesRequest {
            vote: Some(leader_vote(higher)),
            ..Default::default()
        };
        let refused = client
            .append_entries(request_from(append, theirs))
            .await
            .expect_err("AppendEntries refused");
        must_be_wrong_cluster(&refused, "append");
        let vote = pb::VoteRequest {
            vote: Some(pb::Vote {
                leader_id: Some(pb::LeaderId {
                    term: higher,
                    node_id: 2,
                }),
                committed: false,
            }),
            ..Default::default()
        };
        let refused = client
            .vote(request_from(vote, theirs))
            .await
            .expect_err("vote refused");
        must_be_wrong_cluster(&refused, "vote");
        let refused = client
            .applied(request_from(pb::AppliedRequest {}, theirs))
            .await
            .expect_err("applied refused");
        must_be_wrong_cluster(&refused, "applied");
    }
    assert_eq!(term(), term_before, "the foreign vote was not taken");
    assert_eq!(
        cluster.must_leader().await,
        leader,
        "leadership is untouched"
    );

    eprintln!(
        "--- the very same AppendEntries with this cluster's id is taken: the gate refused it"
    );
    let append = pb::AppendEntriesRequest {
        vote: Some(leader_vote(higher)),
        ..Default::default()
    };
    client
        .append_entries(request_from(append, Some(own_id.as_str())))
        .await
        .expect("a message of this cluster is answered");
    assert_eq!(
        term(),
        higher,
        "a message of its own cluster moves its term"
    );

    eprintln!("--- Admin.Status names the cluster, for operators and peers' audits");
    let status = pb::admin_client::AdminClient::new(connect(cluster.addrs[&target]).await)
        .status(pb::StatusRequest {
            include_peers: false,
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.self_.expect("self").cluster_id, own_id.as_str());
    eprintln!("--- a member's address answering for another cluster is no peer (audit, status)");
    let asker = &cluster.nodes[&leader];
    let address = cluster.addrs[&target].to_string();
    spentledger_node::api::peer_status(&asker.dialer, &address, &own_id)
        .await
        .expect("a peer of this cluster");
    let other = ClusterId::new("another-cluster").expect("id");
    let refused = spentledger_node::api::peer_status(&asker.dialer, &address, &other)
        .await
        .expect_err("not a peer of another cluster");
    assert!(refused.contains("belongs to cluster"), "{refused}");
    for id in 1..=3 {
        cluster.stop(id).await;
    }
}
