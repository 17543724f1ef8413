//! The state machine's writes are not fsynced; the Raft log is the durable
//! record (docs/NODE.md, durability contracts). A node whose state came back
//! from a power loss some entries behind its log applies them again at
//! start-up and agrees with the others.

use super::*;

/// Every file under `dir` with its size, to tell whether a tree changed.
fn listing(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => files.push((entry.path(), m.len())),
                Err(_) => {}
            }
        }
    }
    files.sort();
    files
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies a directory tree (the test's stand-in for a disk image). The
/// node was stopped, and shutdown returns only once its databases are
/// closed, so the tree must not change while it is copied.
fn must_copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let before = listing(from);
    copy_tree(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    assert_eq!(
        listing(from),
        before,
        "{} changed after its node stopped",
        from.display()
    );
}

/// The node's applied index, as its state database says.
fn applied_index(node: &LedgerNode) -> u64 {
    node.state
        .current()
        .applied_state()
        .expect("read applied state")
        .applied
        .map_or(0, |id| id.index)
}

/// Starts a stopped node again on its own address and data, at once:
/// shutdown has released its databases.
async fn must_restart(cluster: &mut Cluster, id: u64) {
    let listener = TcpListener::bind(cluster.addrs[&id])
        .await
        .expect("bind the node's own address again");
    let node = start_node(id, cluster.dirs[&id].clone(), listener).await;
    cluster.nodes.insert(id, node);
}

/// Takes an image of `victim`'s state database, settles `entries` more
/// payments, rolls the database back to the image (a power loss: the
/// fsynced log and snapshot files stay) and restarts the node. It must
/// start at or past the index it had reached and agree with the others.
/// Returns whether the victim's log had been purged past the image, i.e.
/// whether the redo had to start from the newest snapshot.
async fn must_redo_lost_applies(cluster: &mut Cluster, victim: u64, entries: u8, salt: u8) -> bool {
    // Only the database: the snapshot files beside it are fsynced when
    // written, so a power loss does not take them back.
    let state_dir = cluster.dirs[&victim].join("state").join("gen-000001");
    let image = cluster._root.path().join(format!("state-image-{salt}"));

    eprintln!("--- node {victim} stops; an image of its state database is taken");
    cluster.stop(victim).await;
    must_copy_dir(&state_dir, &image);
    must_restart(cluster, victim).await;
    let imaged = applied_index(&cluster.nodes[&victim]);
    eprintln!("    the image is at applied index {imaged}");

    eprintln!("--- {entries} more entries are settled and applied everywhere");
    for n in 0..entries {
        let p = wallet(salt + n)
            .pay(5, &id("m"), [salt + n; 32], T0_MS + 60_000)
            .expect("pay");
        let outcomes = cluster.must_submit(&[p]).await;
        assert_eq!(outcomes[0].verdict(), Verdict::Accepted);
    }
    let (index, digest) = cluster.must_converge().await;
    let purged_past_image = cluster.nodes[&victim]
        .raft
        .metrics()
        .borrow_watched()
        .purged
        .is_some_and(|p| p.index >= imaged);

    eprintln!("--- node {victim} stops and its database goes back to the image (a power loss)");
    cluster.stop(victim).await;
    assert!(
        state_dir.is_dir(),
        "node {victim} still runs on its first state generation"
    );
    std::fs::remove_dir_all(&state_dir).expect("remove state");
    must_copy_dir(&image, &state_dir);

    eprintln!("--- on restart it applies the lost entries again, before serving");
    must_restart(cluster, victim).await;
    let restarted = applied_index(&cluster.nodes[&victim]);
    assert!(
        restarted >= index,
        "node {victim} started at applied index {restarted}, below {index}: the lost applies were not redone"
    );
    let (again, digest_again) = cluster.must_converge().await;
    assert!(again >= index);
    if again == index {
        assert_eq!(
            digest_again, digest,
            "the redone applies give the same digest"
        );
    }
    purged_past_image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_state_lost_its_last_applies_applies_them_again() {
    let mut cluster = Cluster::start(3).await;
    cluster.must_write(register_key()).await;
    let leader = cluster.must_leader().await;
    let victim = (1..=3).find(|i| *i != leader).expect("a follower");

    eprintln!("--- from its own log: two entries, no snapshot in between");
    let purged = must_redo_lost_applies(&mut cluster, victim, 2, 40).await;
    assert!(!purged, "the log still held the lost entries");

    eprintln!(
        "--- from the newest snapshot, then the log: enough entries for a snapshot and purge"
    );
    let purged = must_redo_lost_applies(&mut cluster, victim, 12, 60).await;
    assert!(purged, "the log was purged past the image");

    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id).await;
    }
}
