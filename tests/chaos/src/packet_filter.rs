//! Network faults between node namespaces made by the kernel's packet
//! filter (nftables), the way a real network fails: partitions, one-way
//! (asymmetric) blocks and random loss. Each node's namespace gets one
//! table, `inet chaos`, replaced atomically on every change.
//!
//! A block of `a -> b` drops, in `a`'s namespace, every packet `a` sends to
//! `b`; a partition is both directions. Loss drops a share of the packets a
//! node receives from other nodes. The test's clients (the bridge's host
//! address) are never blocked: gateways reach every node, as they would
//! through a load balancer on the far side of a partition.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::sandbox::SandboxError;

/// Which node may send to which, and the loss rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRules {
    /// (from, to): packets from `from` to `to` are dropped.
    pub blocked: BTreeSet<(u64, u64)>,
    /// Packets between nodes lost at random, per thousand.
    pub loss_per_mille: u32,
}

impl LinkRules {
    /// Nodes in different groups cannot reach each other, either way.
    pub fn partition(groups: &[Vec<u64>]) -> LinkRules {
        let mut rules = LinkRules::default();
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for x in a {
                    for y in b {
                        rules.blocked.insert((*x, *y));
                        rules.blocked.insert((*y, *x));
                    }
                }
            }
        }
        rules
    }

    /// Each node reaches only itself and its neighbours in `ring` order: every
    /// node sees a majority of 5, but no two nodes see the same one.
    pub fn ring(ring: &[u64]) -> LinkRules {
        let n = ring.len();
        let mut rules = LinkRules::default();
        for (i, a) in ring.iter().enumerate() {
            for (j, b) in ring.iter().enumerate() {
                let distance = i.abs_diff(j).min(n - i.abs_diff(j));
                if distance > 1 {
                    rules.blocked.insert((*a, *b));
                }
            }
        }
        rules
    }

    /// Two groups that cannot reach each other; every node in neither (the
    /// bridge) reaches both.
    pub fn bridge(left: &[u64], right: &[u64]) -> LinkRules {
        LinkRules::partition(&[left.to_vec(), right.to_vec()])
    }

    /// Packets from `from` to each of `to` are dropped; the other way works.
    pub fn one_way(from: u64, to: &[u64]) -> LinkRules {
        LinkRules {
            blocked: to.iter().map(|t| (from, *t)).collect(),
            loss_per_mille: 0,
        }
    }

    /// Random loss between all nodes.
    pub fn loss(per_mille: u32) -> LinkRules {
        LinkRules {
            blocked: BTreeSet::new(),
            loss_per_mille: per_mille.min(1_000),
        }
    }
}

/// The nodes' namespaces and addresses. Rules only ever name node
/// addresses, so the test's clients are never blocked.
#[derive(Debug, Clone, Default)]
pub struct PacketFilter {
    nodes: BTreeMap<u64, (String, Ipv4Addr)>,
}

impl PacketFilter {
    /// Node `id` lives in namespace `ns` at `addr`.
    pub fn add_node(&mut self, id: u64, ns: &str, addr: Ipv4Addr) {
        self.nodes.insert(id, (ns.to_owned(), addr));
    }

    /// The nftables script for `node` under `rules`: the whole table,
    /// replaced in one transaction.
    pub fn script(&self, node: u64, rules: &LinkRules) -> String {
        let unreachable: Vec<String> = rules
            .blocked
            .iter()
            .filter(|(from, _)| *from == node)
            .filter_map(|(_, to)| self.nodes.get(to).map(|(_, a)| a.to_string()))
            .collect();
        let mut out = String::from(
            "table inet chaos\ndelete table inet chaos\ntable inet chaos {\n  chain output {\n    type filter hook output priority 0; policy accept;\n",
        );
        if !unreachable.is_empty() {
            out.push_str(&format!(
                "    ip daddr {{ {} }} drop\n",
                unreachable.join(", ")
            ));
        }
        out.push_str(
            "  }\n  chain input {\n    type filter hook input priority 0; policy accept;\n",
        );
        if rules.loss_per_mille > 0 {
            let peers: Vec<String> = self
                .nodes
                .iter()
                .filter(|(id, _)| **id != node)
                .map(|(_, (_, a))| a.to_string())
                .collect();
            if !peers.is_empty() {
                out.push_str(&format!(
                    "    ip saddr {{ {} }} numgen random mod 1000 < {} drop\n",
                    peers.join(", "),
                    rules.loss_per_mille
                ));
            }
        }
        out.push_str("  }\n}\n");
        out
    }

    /// Puts `rules` in force on every node.
    pub fn apply(&self, rules: &LinkRules) -> Result<(), SandboxError> {
        for (id, (ns, _)) in &self.nodes {
            let script = self.script(*id, rules);
            let what = format!("nft in {ns}");
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| SandboxError::Spawn {
                    what: what.clone(),
                    source,
                })?;
            child
                .stdin
                .take()
                .expect("stdin was piped")
                .write_all(script.as_bytes())
                .map_err(|source| SandboxError::Io {
                    what: "write the nft script",
                    source,
                })?;
            let out = child
                .wait_with_output()
                .map_err(|source| SandboxError::Io {
                    what: "wait for nft",
                    source,
                })?;
            if !out.status.success() {
                return Err(SandboxError::Failed {
                    what,
                    stderr: format!(
                        "{}\nscript:\n{script}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Ends every network fault.
    pub fn heal(&self) -> Result<(), SandboxError> {
        self.apply(&LinkRules::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_of_five_gives_every_node_a_different_majority() {
        let rules = LinkRules::ring(&[1, 2, 3, 4, 5]);
        let reach = |n: u64| -> BTreeSet<u64> {
            (1..=5)
                .filter(|m| *m == n || !rules.blocked.contains(&(n, *m)))
                .collect()
        };
        for n in 1..=5 {
            assert_eq!(reach(n).len(), 3, "node {n} sees {:?}", reach(n));
        }
        assert_eq!(reach(1), BTreeSet::from([1, 2, 5]));
        assert_eq!(reach(3), BTreeSet::from([2, 3, 4]));
    }

    #[test]
    fn scripts_block_only_what_the_rules_say() {
        let mut filter = PacketFilter::default();
        for id in 1..=3u8 {
            filter.add_node(
                u64::from(id),
                &format!("n{id}"),
                Ipv4Addr::new(10, 0, 0, id),
            );
        }
        let rules = LinkRules::one_way(1, &[2, 3]);
        assert!(
            filter
                .script(1, &rules)
                .contains("ip daddr { 10.0.0.2, 10.0.0.3 } drop")
        );
        assert!(!filter.script(2, &rules).contains("drop"));
        let split = LinkRules::partition(&[vec![1], vec![2, 3]]);
        assert!(
            filter
                .script(2, &split)
                .contains("ip daddr { 10.0.0.1 } drop")
        );
        let lossy = filter.script(3, &LinkRules::loss(150));
        assert!(
            lossy.contains("ip saddr { 10.0.0.1, 10.0.0.2 } numgen random mod 1000 < 150 drop")
        );
        assert!(!lossy.contains("10.0.0.254"), "clients are never blocked");
        let bridged = LinkRules::bridge(&[1], &[3]);
        assert!(!bridged.blocked.iter().any(|(a, b)| *a == 2 || *b == 2));
    }
}
