//! The in-memory Raft log: the latest snapshot plus the dense entries after it.
//!
//! Invariants: `entries[k].index == snapshot.index + 1 + k`; terms never decrease along the
//! log and the first entry's term is at least the snapshot's term.

use super::types::{Entry, Snapshot};

/// Snapshot plus the entries after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct RaftLog {
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl RaftLog {
    /// A log recovered from disk; panics if the entries are not dense after the snapshot.
    pub(crate) fn new(snapshot: Snapshot, entries: Vec<Entry>) -> Self {
        let log = Self { snapshot, entries };
        log.check();
        log
    }

    /// Panics unless the log invariants hold.
    pub(crate) fn check(&self) {
        let mut prev_term = self.snapshot.term;
        for (k, e) in self.entries.iter().enumerate() {
            assert_eq!(
                e.index,
                self.snapshot.index + 1 + k as u64,
                "raft log: indices not dense"
            );
            assert!(
                e.term >= prev_term,
                "raft log: term decreases at {}",
                e.index
            );
            assert!(e.term > 0, "raft log: entry {} has term 0", e.index);
            prev_term = e.term;
        }
    }

    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.index
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// Term of the entry at `index`: known for the snapshot's index and every entry after it.
    pub(crate) fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            Some(self.snapshot.term)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index - self.snapshot.index - 1) as usize)
    }

    /// Entries `lo..=hi`, which must all be present.
    pub(crate) fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        assert!(lo > self.snapshot.index && hi <= self.last_index() && lo <= hi + 1);
        let base = self.snapshot.index + 1;
        &self.entries[(lo - base) as usize..(hi + 1 - base) as usize]
    }

    /// Appends entries that continue the log exactly.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            assert_eq!(
                e.index,
                self.last_index() + 1,
                "raft log: append leaves a gap"
            );
            assert!(
                e.term >= self.last_term(),
                "raft log: append lowers the term"
            );
            self.entries.push(e.clone());
        }
    }

    /// Drops entries with index >= `index` (never the snapshot).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.snapshot.index,
            "raft log: truncating into the snapshot"
        );
        self.entries
            .truncate((index - self.snapshot.index - 1) as usize);
    }

    /// Takes `snapshot` and drops the entries it covers; entries after it stay only if
    /// `keep_suffix` (the log holds the snapshot's last entry with the same term).
    pub(crate) fn install(&mut self, snapshot: Snapshot, keep_suffix: bool) {
        assert!(
            snapshot.index > self.snapshot.index,
            "raft log: snapshot goes back"
        );
        if keep_suffix {
            assert_eq!(self.term_at(snapshot.index), Some(snapshot.term));
            let drop = (snapshot.index - self.snapshot.index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot = snapshot;
    }

    /// Last index whose entry has term `term`, if this log can tell.
    pub(crate) fn last_index_of_term(&self, term: u64) -> Option<u64> {
        // Terms are non-decreasing along the log, so this is a binary search.
        let k = self.entries.partition_point(|e| e.term <= term);
        if k > 0 && self.entries[k - 1].term == term {
            Some(self.snapshot.index + k as u64)
        } else if k == 0 && self.snapshot.term == term && self.snapshot.index > 0 {
            Some(self.snapshot.index)
        } else {
            None
        }
    }

    /// First index of `term` among the entries (the conflict hint a follower sends back).
    pub(crate) fn first_index_of_term(&self, term: u64) -> u64 {
        let k = self.entries.partition_point(|e| e.term < term);
        self.snapshot.index + 1 + k as u64
    }
}
