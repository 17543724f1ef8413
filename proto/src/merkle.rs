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
    if token_count == 0
        || token_count > TOKENS_PER_CERTIFICATE_MAX
        || leaf.index >= token_count
        || path.len() > MERKLE_PATH_LEN_MAX
    {
        return false;
    }
    let mut hash = leaf_hash(leaf);
    let mut position = leaf.index;
    let mut width = token_count;
    let mut siblings = path.iter();
    while width > 1 {
        if position % 2 == 1 {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            hash = node_hash(sibling, &hash);
        } else if position + 1 < width {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            hash = node_hash(&hash, sibling);
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && hash == *root
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
}
