//! One family's pending writes in an apply call: found by key in constant
//! time, handed to the store in key order.
//!
//! Why not a `BTreeMap`: the two families every payment writes (its record
//! and its nullifiers) were B-tree inserts and look-ups of random 32-byte
//! keys, with the payment records (several hundred bytes each) moved along
//! inside the nodes on every insert; B-tree work under the ledger was about
//! 6% of all CPU under load (docs/BENCHMARKS.md, twenty-first round). Here
//! values stay where they were pushed and a hash index finds them.
//!
//! Determinism: nothing is ever read in the index's order. Every way out
//! ([`WriteMap::sorted`], `into_iter`) is in key order, as the B-tree's was,
//! so what is persisted and in which order does not depend on the hasher
//! (randomly keyed, so that keys an attacker ground to collide cannot
//! degrade it).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

/// Pending writes keyed by `K`; a second insert of a key replaces the value.
#[derive(Clone)]
pub struct WriteMap<K, V> {
    /// In first-insertion order.
    entries: Vec<(K, V)>,
    /// Each key's position in `entries`.
    index: HashMap<K, usize>,
}

impl<K, V> Default for WriteMap<K, V> {
    fn default() -> Self {
        WriteMap {
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Copy, V> WriteMap<K, V> {
    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.index.entry(key) {
            Entry::Occupied(at) => Some(std::mem::replace(&mut self.entries[*at.get()].1, value)),
            Entry::Vacant(slot) => {
                slot.insert(self.entries.len());
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Room for `additional` more keys without growing (a submit command
    /// knows how many payments it brings; growing a vector of payment
    /// records copies them all).
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        self.index.reserve(additional);
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|&at| &self.entries[at].1)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in key order (keys are distinct, so the order is total).
    pub fn sorted(&self) -> Vec<(&K, &V)> {
        let mut sorted: Vec<(&K, &V)> = self.entries.iter().map(|(k, v)| (k, v)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sorted
    }
}

/// Every entry, in key order.
impl<K: Ord, V> IntoIterator for WriteMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        let mut entries = self.entries;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries.into_iter()
    }
}

/// Equal when they hold the same keys with the same values, whatever the
/// order they were written in.
impl<K: Ord + Hash + Copy, V: PartialEq> PartialEq for WriteMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .entries
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|w| w == v))
    }
}

impl<K: Ord + Hash + Copy, V: Eq> Eq for WriteMap<K, V> {}

/// In key order, as a map.
impl<K: Ord + Hash + Copy + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug
    for WriteMap<K, V>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_of_a_key_wins_and_everything_leaves_in_key_order() {
        let mut map = WriteMap::default();
        for (k, v) in [(5u32, "a"), (1, "b"), (9, "c"), (5, "d"), (3, "e")] {
            map.insert(k, v);
        }
        assert_eq!(map.len(), 4);
        map.reserve(100);
        assert_eq!(map.len(), 4, "reserving adds nothing");
        assert_eq!(map.get(&5), Some(&"d"));
        assert!(map.contains_key(&9));
        assert!(!map.contains_key(&2));
        assert_eq!(map.get(&2), None);
        let sorted: Vec<(u32, &str)> = map.sorted().into_iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(sorted, [(1, "b"), (3, "e"), (5, "d"), (9, "c")]);
        assert_eq!(map.clone().into_iter().collect::<Vec<_>>(), sorted);
        assert_eq!(format!("{map:?}"), r#"{1: "b", 3: "e", 5: "d", 9: "c"}"#);
    }

    #[test]
    fn maps_with_the_same_entries_are_equal_whatever_the_write_order() {
        let mut a = WriteMap::default();
        let mut b = WriteMap::default();
        for k in 0..100u64 {
            a.insert(k, k * 2);
            b.insert(99 - k, (99 - k) * 2);
        }
        assert_eq!(a, b);
        b.insert(7, 0);
        assert_ne!(a, b);
        b.insert(7, 14);
        b.insert(100, 200);
        assert_ne!(a, b);
        assert!(WriteMap::<u64, u64>::default().is_empty());
    }
}
