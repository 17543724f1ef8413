//! Operator commands: status, membership, leadership, snapshots.

use clap::Subcommand;
use spentledger_protocol::pb;

use super::{CliError, Output, connect};

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add a node as a learner (it catches up without voting).
    Add {
        node_id: u64,
        /// host:port the node is reachable at.
        address: String,
    },
    /// Make a learner a voter (the current voters stay).
    Promote { node_id: u64 },
    /// Remove a node from the cluster.
    Remove { node_id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum LeaderCommand {
    /// Hand leadership to NODE_ID (0: any up-to-date voter).
    Transfer { node_id: u64 },
}

fn role_name(role: i32) -> String {
    pb::NodeRole::try_from(role)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("NODE_ROLE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn status(endpoints: &[String], out: &Output) -> Result<(), CliError> {
    let (_, ch) = connect::any(endpoints).await?;
    let reply = pb::admin_client::AdminClient::new(ch)
        .status(pb::StatusRequest {
            include_peers: true,
        })
        .await?
        .into_inner();
    let mut nodes: Vec<pb::NodeStatus> = reply.self_.into_iter().chain(reply.peers).collect();
    nodes.sort_by_key(|n| n.node_id);
    let voters: std::collections::BTreeSet<u64> = reply
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.to_string(),
                n.address.clone(),
                if n.reachable {
                    role_name(n.role)
                } else {
                    format!("unreachable: {}", n.error)
                },
                if voters.contains(&n.node_id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                n.term.to_string(),
                n.leader_id.to_string(),
                n.last_log_index.to_string(),
                n.applied_index.to_string(),
                hex::encode(&n.state_digest),
                if n.digest_mismatch { "MISMATCH" } else { "" }.into(),
            ]
        })
        .collect();
    let json = serde_json::json!({
        "nodes": nodes.iter().map(|n| serde_json::json!({
            "node_id": n.node_id, "address": n.address, "reachable": n.reachable,
            "role": role_name(n.role), "voter": voters.contains(&n.node_id), "term": n.term,
            "leader_id": n.leader_id, "last_log_index": n.last_log_index,
            "committed_index": n.committed_index, "applied_index": n.applied_index,
            "state_digest": hex::encode(&n.state_digest), "digest_mismatch": n.digest_mismatch,
            "error": n.error,
        })).collect::<Vec<_>>(),
    });
    out.table(
        &[
            "node",
            "address",
            "role",
            "member",
            "term",
            "leader",
            "last log",
            "applied",
            "state digest",
            "",
        ],
        rows,
        json,
    );
    Ok(())
}

fn admin_reply(reply: pb::AdminResponse, out: &Output) {
    out.fields(vec![
        ("log index", serde_json::json!(reply.log_index)),
        ("message", serde_json::json!(reply.message)),
        (
            "members",
            serde_json::json!(
                reply
                    .members
                    .iter()
                    .map(|m| format!(
                        "{}={}{}",
                        m.node_id,
                        m.address,
                        if m.voter { "" } else { " (learner)" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ]);
}

pub async fn members(
    command: &MembersCommand,
    endpoints: &[String],
    out: &Output,
) -> Result<(), CliError> {
    let mut admin = pb::admin_client::AdminClient::new(connect::leader(endpoints).await?);
    let reply = match command {
        MembersCommand::Add { node_id, address } => {
            admin
                .add_learner(pb::AddLearnerRequest {
                    node_id: *node_id,
                    address: address.clone(),
                    wait_caught_up: true,
                })
                .await?
        }
        MembersCommand::Promote { node_id } => {
            admin
                .change_membership(pb::ChangeMembershipRequest {
                    voters: vec![],
                    retain_removed_as_learners: false,
                    add_voters: vec![*node_id],
                })
                .await?
        }
        MembersCommand::Remove { node_id } => {
            admin
                .remove_node(pb::RemoveNodeRequest { node_id: *node_id })
                .await?
        }
    };
    admin_reply(reply.into_inner(), out);
    Ok(())
}

pub async fn leader(
    command: &LeaderCommand,
    endpoints: &[String],
    out: &Output,
) -> Result<(), CliError> {
    let LeaderCommand::Transfer { node_id } = command;
    let reply = pb::admin_client::AdminClient::new(connect::leader(endpoints).await?)
        .transfer_leader(pb::TransferLeaderRequest {
            to_node_id: *node_id,
        })
        .await?
        .into_inner();
    admin_reply(reply, out);
    Ok(())
}

pub async fn snapshot(endpoints: &[String], out: &Output) -> Result<(), CliError> {
    let reply = pb::admin_client::AdminClient::new(connect::leader(endpoints).await?)
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await?
        .into_inner();
    admin_reply(reply, out);
    Ok(())
}
