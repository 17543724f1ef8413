//! The BLAKE3 Merkle tree over a certificate's token leaves.
//!
//! Leaves and inner nodes hash under different `derive_key` contexts, so a
//! node can never be passed off as a leaf. At a level with an odd number of
//! nodes the last one is promoted unchanged to the next level (never
//! duplicated, so no two leaf lists share a root). The shape therefore depends
//! only on `token_count`, and a path's length is fixed by `(index, token_count)`.

use crate::ids::derived;
use crate::limits::{MERKLE_PATH_LEN_MAX, TOKENS_PER_CERTIFICATE_MAX};
use crate::types::TokenLeaf;

/// A 32-byte node or leaf hash.
pub type Hash = [u8; 32];

/// `derive_key(MERKLE_LEAF, u32le(index) ‖ u64le(value))`.
pub fn leaf_hash(leaf: &TokenLeaf) -> Hash {
    derived::MERKLE_LEAF.hash_parts(&[&leaf.index.to_le_bytes(), &leaf.value.to_le_bytes()])
}

/// `derive_key(MERKLE_NODE, left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    derived::MERKLE_NODE.hash_parts(&[left, right])
}

/// Why a tree cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("a token tree needs 1..={max} leaves, got {count}", max = TOKENS_PER_CERTIFICATE_MAX)]
    BadLeafCount { count: usize },
    #[error("leaf at position {position} has index {index}; leaves must be numbered 0, 1, 2, ...")]
    BadLeafIndex { position: usize, index: u32 },
}

/// A full tree, kept by the issuer and the wallet to produce inclusion paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaf hashes; the last level holds the root alone.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves`, which must be numbered 0..n in order.
    pub fn build(leaves: &[TokenLeaf]) -> Result<Self, MerkleError> {
        let count = leaves.len();
        if count == 0 || count > TOKENS_PER_CERTIFICATE_MAX as usize {
            return Err(MerkleError::BadLeafCount { count });
        }
        if let Some((position, leaf)) = leaves
            .iter()
            .enumerate()
            .find(|(position, leaf)| leaf.index as usize != *position)
        {
            return Err(MerkleError::BadLeafIndex {
                position,
                index: leaf.index,
            });
        }
        let mut levels = vec![leaves.iter().map(leaf_hash).collect::<Vec<_>>()];
        while levels.last().expect("levels starts non-empty").len() > 1 {
            let below = levels.last().expect("levels starts non-empty");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [lone] => *lone,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(above);
        }
        Ok(MerkleTree { levels })
    }

    pub fn root(&self) -> Hash {
        self.levels.last().expect("a built tree has a root level")[0]
    }

    pub fn leaf_count(&self) -> u32 {
        u32::try_from(self.levels[0].len()).expect("leaf count is bounded by 65536")
    }

    /// The sibling hashes from the leaf level up, or `None` when `index` is out of range.
    pub fn path(&self, index: u32) -> Option<Vec<Hash>> {
        let mut position = index as usize;
        if position >= self.levels[0].len() {
            return None;
        }
        let mut path = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = position ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            position /= 2;
        }
        Some(path)
    }
}

/// Checks that `leaf` is leaf number `leaf.index` of a tree of `token_count`
/// leaves with root `root`. The path must have exactly the length the tree's
/// shape implies; a longer or shorter path is refused.
pub fn verify_path(root: &Hash, token_count: u32, leaf: &TokenLeaf, path: &[Hash]) -> bool {
    Trail::default().climb(root, token_count, leaf, path, false)
}

/// Levels above the leaves in the tallest tree: a path has at most this many
/// siblings, and a climb at most this many steps.
const LEVELS_MAX: usize = (TOKENS_PER_CERTIFICATE_MAX - 1).ilog2() as usize + 1;

/// Checks several leaves of one tree with the same answer as [`verify_path`]
/// on each in turn (true when every one holds), hashing less.
///
/// Why: a payment's inputs are leaves of one certificate's tree, and paths
/// of nearby leaves meet a few levels up, after which they carry the same
/// siblings to the same root. Each climb keeps, per level, its position,
/// its node and the siblings it has left (the trail). When a later leaf
/// reaches a level at the position, with the node and with the siblings
/// left that the trail holds for that level, the rest of its climb would
/// repeat the trail's, which ended at the root: it holds, without hashing
/// the rest. That is a comparison of the same computation's inputs, not an
/// argument about hashes, so the answer is exactly [`verify_path`]'s for any
/// leaves, in any order, honest or forged. Leaves in increasing index order
/// (as the rules require of a payment's inputs) share the most.
pub fn verify_paths<'a>(
    root: &Hash,
    token_count: u32,
    leaves: impl IntoIterator<Item = (&'a TokenLeaf, &'a [Hash])>,
) -> bool {
    let mut trail = Trail::default();
    let mut have_trail = false;
    for (leaf, path) in leaves {
        if !trail.climb(root, token_count, leaf, path, have_trail) {
            return false;
        }
        have_trail = true;
    }
    true
}

/// The last successful climb's state at each level: the node's position, the
/// node, and the siblings still ahead of it. After any climb that held, every
/// level of the tree holds the state of a climb that reached the root.
struct Trail<'a> {
    positions: [u32; LEVELS_MAX],
    nodes: [Hash; LEVELS_MAX],
    siblings_left: [&'a [Hash]; LEVELS_MAX],
}

impl Default for Trail<'_> {
    fn default() -> Self {
        Trail {
            positions: [0; LEVELS_MAX],
            nodes: [[0; 32]; LEVELS_MAX],
            siblings_left: [&[]; LEVELS_MAX],
        }
    }
}

impl<'a> Trail<'a> {
    /// [`verify_path`] for one leaf, ending early where it joins the trail
    /// (only when `joinable`: the trail holds a climb that reached the root).
    /// On success the trail holds this climb up to where it ended and the
    /// joined climb above, which is the same from there on. On failure the
    /// trail is left part-written: the caller stops.
    fn climb(
        &mut self,
        root: &Hash,
        token_count: u32,
        leaf: &TokenLeaf,
        path: &'a [Hash],
        joinable: bool,
    ) -> bool {
        if token_count == 0
            || token_count > TOKENS_PER_CERTIFICATE_MAX
            || leaf.index >= token_count
            || path.len() > MERKLE_PATH_LEN_MAX
        {
            return false;
        }
        let mut node = leaf_hash(leaf);
        let mut position = leaf.index;
        let mut width = token_count;
        let mut siblings = path;
        let mut level = 0;
        while width > 1 {
            if joinable
                && self.positions[level] == position
                && self.nodes[level] == node
                && self.siblings_left[level] == siblings
            {
                return true;
            }
            self.positions[level] = position;
            self.nodes[level] = node;
            self.siblings_left[level] = siblings;
            if position % 2 == 1 {
                let Some((sibling, rest)) = siblings.split_first() else {
                    return false;
                };
                node = node_hash(sibling, &node);
                siblings = rest;
            } else if position + 1 < width {
                let Some((sibling, rest)) = siblings.split_first() else {
                    return false;
                };
                node = node_hash(&node, sibling);
                siblings = rest;
            }
            position /= 2;
            width = width.div_ceil(2);
            level += 1;
        }
        siblings.is_empty() && node == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u32) -> Vec<TokenLeaf> {
        (0..n)
            .map(|index| TokenLeaf {
                index,
                value: u64::from(index) + 1,
            })
            .collect()
    }

    #[test]
    fn single_leaf_root_is_the_leaf_hash_and_path_is_empty() {
        let tree = MerkleTree::build(&leaves(1)).expect("one leaf is a valid tree");
        assert_eq!(tree.root(), leaf_hash(&leaves(1)[0]));
        assert_eq!(tree.path(0), Some(vec![]));
        assert!(verify_path(&tree.root(), 1, &leaves(1)[0], &[]));
    }

    #[test]
    fn three_leaves_promote_the_last_one() {
        let l = leaves(3);
        let tree = MerkleTree::build(&l).expect("three leaves");
        let expected = node_hash(
            &node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1])),
            &leaf_hash(&l[2]),
        );
        assert_eq!(tree.root(), expected);
        assert_eq!(tree.path(2).expect("in range").len(), 1);
        for leaf in &l {
            let path = tree.path(leaf.index).expect("in range");
            assert!(
                verify_path(&tree.root(), 3, leaf, &path),
                "leaf {}",
                leaf.index
            );
        }
    }

    #[test]
    fn path_with_an_extra_or_missing_sibling_is_refused() {
        let l = leaves(5);
        let tree = MerkleTree::build(&l).expect("five leaves");
        let mut path = tree.path(1).expect("in range");
        assert!(verify_path(&tree.root(), 5, &l[1], &path));
        path.push([0u8; 32]);
        assert!(!verify_path(&tree.root(), 5, &l[1], &path));
        path.truncate(path.len() - 2);
        assert!(!verify_path(&tree.root(), 5, &l[1], &path));
    }

    #[test]
    fn a_leaf_with_another_value_or_count_is_refused() {
        let l = leaves(8);
        let tree = MerkleTree::build(&l).expect("eight leaves");
        let path = tree.path(3).expect("in range");
        let forged = TokenLeaf {
            index: 3,
            value: 1_000,
        };
        assert!(!verify_path(&tree.root(), 8, &forged, &path));
        assert!(!verify_path(&tree.root(), 9, &l[3], &path));
        assert!(!verify_path(
            &tree.root(),
            8,
            &TokenLeaf { index: 8, value: 9 },
            &path
        ));
    }

    #[test]
    fn misnumbered_leaves_and_bad_counts_are_refused() {
        let mut l = leaves(4);
        l.swap(1, 2);
        assert_eq!(
            MerkleTree::build(&l),
            Err(MerkleError::BadLeafIndex {
                position: 1,
                index: 2
            })
        );
        assert_eq!(
            MerkleTree::build(&[]),
            Err(MerkleError::BadLeafCount { count: 0 })
        );
    }

    #[test]
    fn leaves_checked_together_agree_with_each_checked_alone() {
        let l = leaves(58);
        let tree = MerkleTree::build(&l).expect("58 leaves");
        let paths: Vec<Vec<Hash>> = l
            .iter()
            .map(|leaf| tree.path(leaf.index).expect("in range"))
            .collect();
        let pick = |indices: &[usize]| -> Vec<(&TokenLeaf, &[Hash])> {
            indices
                .iter()
                .map(|&i| (&l[i], paths[i].as_slice()))
                .collect()
        };
        let root = tree.root();
        assert!(verify_paths(&root, 58, pick(&[4, 5])));
        assert!(verify_paths(&root, 58, pick(&[0, 1, 2, 3, 56, 57])));
        assert!(verify_paths(&root, 58, pick(&[57, 3, 3, 0])));
        assert!(verify_paths(&root, 58, []));
        // A forged second leaf that joins its sibling's climb one level up
        // with the wrong node is refused, as it is alone.
        let forged = TokenLeaf {
            index: 5,
            value: 99,
        };
        assert!(!verify_path(&root, 58, &forged, &paths[5]));
        assert!(!verify_paths(
            &root,
            58,
            [(&l[4], paths[4].as_slice()), (&forged, paths[5].as_slice())]
        ));
        // The right node with a wrong sibling above the meeting point.
        let mut bad = paths[5].clone();
        let last = bad.len() - 1;
        bad[last][0] ^= 1;
        assert!(!verify_path(&root, 58, &l[5], &bad));
        assert!(!verify_paths(
            &root,
            58,
            [(&l[4], paths[4].as_slice()), (&l[5], bad.as_slice())]
        ));
        // One sibling too many after the meeting point.
        let mut long = paths[5].clone();
        long.push([0; 32]);
        assert!(!verify_paths(
            &root,
            58,
            [(&l[4], paths[4].as_slice()), (&l[5], long.as_slice())]
        ));
    }

    #[test]
    fn the_trail_is_deep_enough_for_the_largest_tree() {
        assert_eq!(LEVELS_MAX, 16);
        assert_eq!(LEVELS_MAX, MERKLE_PATH_LEN_MAX);
    }
}
