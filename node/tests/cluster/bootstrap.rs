//! Initialising a cluster exactly once.

use spentledger_node::bootstrap::bootstrap_once;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_is_refused_when_a_listed_peer_already_belongs_to_a_cluster() {
    let mut cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;

    eprintln!("--- a fresh node is started with --bootstrap and a member list naming node 1");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fresh = start_node(9, cluster._root.path().join("node-9"), listener).await;
    let members = BTreeMap::from([(9, addr.to_string()), (1, cluster.addrs[&1].to_string())]);
    bootstrap_once(&fresh, &members, &[])
        .await
        .expect("bootstrap declines without error");
    assert!(
        !fresh.raft.is_initialized().await.expect("raft"),
        "node 9 must not found a second cluster next to node 1's"
    );

    eprintln!("--- with no initialised peer listed, the same call initialises");
    let lonely = BTreeMap::from([(9, addr.to_string())]);
    bootstrap_once(&fresh, &lonely, &[])
        .await
        .expect("bootstrap");
    assert!(fresh.raft.is_initialized().await.expect("raft"));
    fresh.shutdown().await;
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id).await;
    }
}
