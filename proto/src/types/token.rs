use crate::decode_error::{DecodeError, field};
use crate::limits::MERKLE_PATH_LEN_MAX;
use crate::merkle::Hash;
use crate::pb;

/// One token: leaf `index` of its certificate's Merkle tree, worth `value`
/// minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenLeaf {
    pub index: u32,
    pub value: u64,
}

/// A token a payment spends, with its inclusion path (leaf level first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInput {
    pub leaf: TokenLeaf,
    pub path: Vec<Hash>,
}

impl From<&pb::TokenLeaf> for TokenLeaf {
    fn from(wire: &pb::TokenLeaf) -> Self {
        TokenLeaf {
            index: wire.index,
            value: wire.value,
        }
    }
}

impl From<&TokenLeaf> for pb::TokenLeaf {
    fn from(leaf: &TokenLeaf) -> Self {
        pb::TokenLeaf {
            index: leaf.index,
            value: leaf.value,
        }
    }
}

impl TryFrom<&pb::PaymentInput> for PaymentInput {
    type Error = DecodeError;

    fn try_from(wire: &pb::PaymentInput) -> Result<Self, DecodeError> {
        let leaf = TokenLeaf::from(field::required("leaf", &wire.leaf)?);
        field::at_most("path", &wire.path, MERKLE_PATH_LEN_MAX)?;
        let path = wire
            .path
            .iter()
            .enumerate()
            .map(|(i, hash)| field::fixed::<32>(&format!("path[{i}]"), hash))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PaymentInput { leaf, path })
    }
}

impl From<&PaymentInput> for pb::PaymentInput {
    fn from(input: &PaymentInput) -> Self {
        pb::PaymentInput {
            leaf: Some((&input.leaf).into()),
            path: input.path.iter().map(|hash| hash.to_vec()).collect(),
        }
    }
}
