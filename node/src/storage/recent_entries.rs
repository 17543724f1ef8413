//! The newest log entries, kept in memory as they were appended.
//!
//! Raft reads an entry back soon after appending it: to replicate it, and to
//! apply it once committed. Served from here, those reads skip RocksDB and
//! decoding, and on the node that proposed an entry they get the very object
//! it proposed: its decoded command and its ingress verdicts
//! ([`crate::state_machine::Prechecked`]), which the log's bytes do not carry.

use std::collections::VecDeque;

use openraft::EntryPayload;

use crate::consensus::Entry;

/// Bounds of the cache: entries, and weighed bytes (see [`weight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentEntriesLimits {
    pub entries_max: usize,
    pub weight_bytes_max: usize,
}

impl Default for RecentEntriesLimits {
    fn default() -> Self {
        RecentEntriesLimits {
            entries_max: 64,
            weight_bytes_max: 64 << 20,
        }
    }
}

/// What an entry pins in memory, roughly: its encoded bytes, and three times
/// as much again when it holds its decoded command or verdicts.
fn weight(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(request) => {
            let encoded = request.encoded().len();
            if request.decoded().is_some() || request.precheck().is_some() {
                encoded * 4
            } else {
                encoded
            }
        }
        _ => 64,
    }
}

/// An entry's bytes on the wire, near enough: its encoded command (what the
/// log stores and AppendEntries carries), or a small constant for blank and
/// membership entries.
pub fn wire_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(request) => request.encoded().len(),
        _ => 64,
    }
}

/// How many bytes of entries one read for replication returns: entries are
/// taken in order while their total stays within `bytes_max`, and the first
/// one always, so a read never comes back empty (openraft's contract for
/// `limited_get_log_entries`) and never stops a follower on one big entry.
#[derive(Debug)]
pub struct EntryBytesBudget {
    bytes_max: usize,
    taken_bytes: usize,
    taken: usize,
}

impl EntryBytesBudget {
    pub fn new(bytes_max: usize) -> Self {
        EntryBytesBudget {
            bytes_max,
            taken_bytes: 0,
            taken: 0,
        }
    }

    /// Whether an entry of `bytes` still fits; if so it counts as taken.
    pub fn admits(&mut self, bytes: usize) -> bool {
        let total = self.taken_bytes.saturating_add(bytes);
        if self.taken > 0 && total > self.bytes_max {
            return false;
        }
        self.taken_bytes = total;
        self.taken += 1;
        true
    }
}

/// A contiguous run of the log's newest entries.
///
/// Contract: whenever it is not empty, its entries are exactly the log's
/// entries from its first index to the log's last index. The log store keeps
/// this by reporting every append, truncation and purge, in order, while it
/// holds the lock that serializes them with reads.
#[derive(Debug)]
pub struct RecentEntries {
    entries: VecDeque<Entry>,
    weight_bytes: usize,
    limits: RecentEntriesLimits,
}

impl RecentEntries {
    pub fn new(limits: RecentEntriesLimits) -> Self {
        RecentEntries {
            entries: VecDeque::new(),
            weight_bytes: 0,
            limits,
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index())
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|e| e.log_id.index())
    }

    /// `entry` was appended to the log (after everything before it).
    pub fn appended(&mut self, entry: Entry) {
        let index = entry.log_id.index();
        if self.last_index().is_some_and(|last| last + 1 != index) {
            // Not the next one: what is held no longer ends at the log's end.
            self.clear();
        }
        self.weight_bytes += weight(&entry);
        self.entries.push_back(entry);
        while self.entries.len() > self.limits.entries_max
            || (self.weight_bytes > self.limits.weight_bytes_max && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    /// The log dropped every entry from `from` on.
    pub fn truncated_from(&mut self, from: u64) {
        while self.last_index().is_some_and(|last| last >= from) {
            if let Some(entry) = self.entries.pop_back() {
                self.weight_bytes -= weight(&entry);
            }
        }
    }

    /// The log dropped every entry up to `upto`, inclusive.
    pub fn purged_upto(&mut self, upto: u64) {
        while self.first_index().is_some_and(|first| first <= upto) {
            self.pop_front();
        }
    }

    /// Entries `start..end` (`end` exclusive; `None`: to the log's end) when
    /// all of them are held, `None` when some must come from the log;
    /// stopping before the entry that would take their wire bytes past
    /// `bytes_max` (the first entry is always included, whatever its size):
    /// see [`EntryBytesBudget`].
    pub fn range(&self, start: u64, end: Option<u64>, bytes_max: usize) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        let last = self.last_index()?;
        let end = end.unwrap_or(last + 1);
        if start < first || end > last + 1 {
            return None;
        }
        if start >= end {
            return Some(Vec::new());
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        let mut budget = EntryBytesBudget::new(bytes_max);
        Some(
            self.entries
                .range(from..to)
                .take_while(|entry| budget.admits(wire_bytes(entry)))
                .cloned()
                .collect(),
        )
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.weight_bytes -= weight(&entry);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.weight_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::leader_id_std::CommittedLeaderId;

    use super::*;
    use crate::consensus::{ClientRequest, LogId};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1), index),
            payload: EntryPayload::Normal(ClientRequest::from_encoded(vec![7u8; bytes].into())),
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index()).collect()
    }

    fn limits(entries_max: usize, weight_bytes_max: usize) -> RecentEntriesLimits {
        RecentEntriesLimits {
            entries_max,
            weight_bytes_max,
        }
    }

    #[test]
    fn serves_only_ranges_it_holds_entirely() {
        let mut recent = RecentEntries::new(limits(4, 1 << 20));
        for i in 1..=6 {
            recent.appended(entry(i, 10));
        }
        assert_eq!(recent.entries.len(), 4, "bounded by count: 3..=6");
        assert_eq!(
            indexes(&recent.range(3, Some(5), usize::MAX).expect("held")),
            [3, 4]
        );
        assert_eq!(
            indexes(&recent.range(4, None, usize::MAX).expect("held")),
            [4, 5, 6]
        );
        assert_eq!(
            recent
                .range(7, None, usize::MAX)
                .expect("past the end")
                .len(),
            0
        );
        assert!(
            recent.range(2, Some(4), usize::MAX).is_none(),
            "2 was evicted"
        );
        assert!(
            recent.range(5, Some(8), usize::MAX).is_none(),
            "8 is past the log's end"
        );
    }

    #[test]
    fn truncation_purge_and_a_gap_keep_it_a_suffix_of_the_log() {
        let mut recent = RecentEntries::new(limits(16, 1 << 20));
        for i in 1..=5 {
            recent.appended(entry(i, 10));
        }
        recent.truncated_from(4);
        assert_eq!(
            indexes(&recent.range(1, None, usize::MAX).expect("held")),
            [1, 2, 3]
        );
        recent.appended(entry(4, 10));
        recent.purged_upto(2);
        assert_eq!(
            indexes(&recent.range(3, None, usize::MAX).expect("held")),
            [3, 4]
        );
        assert!(recent.range(2, None, usize::MAX).is_none());
        recent.appended(entry(9, 10));
        assert_eq!(
            indexes(&recent.range(9, None, usize::MAX).expect("held")),
            [9]
        );
        assert!(
            recent.range(4, None, usize::MAX).is_none(),
            "dropped at the gap"
        );
    }

    #[test]
    fn limited_ranges_stop_at_the_byte_budget_but_never_come_back_empty() {
        let mut recent = RecentEntries::new(limits(16, 1 << 20));
        for (i, bytes) in [(1, 40), (2, 40), (3, 40), (4, 500), (5, 10)] {
            recent.appended(entry(i, bytes));
        }
        let first_two = recent.range(1, None, 100).expect("held");
        assert_eq!(indexes(&first_two), [1, 2], "a third would make 120 > 100");
        let big_alone = recent.range(4, None, 100).expect("held");
        assert_eq!(
            indexes(&big_alone),
            [4],
            "one entry over the budget still goes"
        );
        let exact = recent.range(1, Some(4), 120).expect("held");
        assert_eq!(indexes(&exact), [1, 2, 3], "exactly the budget fits");
        assert_eq!(
            indexes(&recent.range(1, None, usize::MAX).expect("held")),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn weight_bound_keeps_at_least_the_newest_entry() {
        let mut recent = RecentEntries::new(limits(16, 100));
        recent.appended(entry(1, 60));
        recent.appended(entry(2, 60));
        assert_eq!(
            indexes(&recent.range(2, None, usize::MAX).expect("held")),
            [2]
        );
        recent.appended(entry(3, 500));
        assert_eq!(
            recent.entries.len(),
            1,
            "one entry over the bound is still kept"
        );
        assert_eq!(
            indexes(&recent.range(3, None, usize::MAX).expect("held")),
            [3]
        );
    }
}
