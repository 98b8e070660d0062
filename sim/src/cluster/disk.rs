//! One voter's simulated Raft storage: what Raft asked to write, what is durable, and what a
//! crash leaves behind.
//!
//! Model (mirrors storage/src/raft_store.rs): storage operations are carried out in order; an
//! `Output::Sync { seq }` makes every operation written before it durable once the simulated
//! fsync completes; `PersistSnapshot` is durable at once together with everything before it
//! (the real store syncs pending writes, writes the snapshot to a temporary file, fsyncs and
//! renames it, and rewrites the log without the entries the snapshot covers, keeping the ones
//! after it). A crash keeps the durable state plus, at the swarm's choice, a random prefix of the
//! unsynced operations, the last of them possibly torn at an entry boundary (the real log drops
//! a torn frame, and the two-slot hard state keeps the previous slot). With
//! [`CrashLoss::PerFile`] the prefix is drawn separately for the hard-state file and the log
//! file, as the page cache may write back either file's pages before the other's.
//!
//! Invariants: the volatile view is exactly what Raft believes is stored (the driver asserts it
//! against the node's log after every step); the durable state only moves forward through
//! completed syncs, snapshots, or what a crash keeps; nothing unsynced survives a crash unless
//! the partial-loss fault chose to keep it.

use std::collections::{BTreeMap, VecDeque};

use skein_core::raft::{Durable, Entry, HardState, Snapshot};

use crate::rng::Rng;

/// One storage operation, as Raft emitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Overwrite term and vote.
    HardState(HardState),
    /// Append entries after the last stored one.
    Append(Vec<Entry>),
    /// Delete entries at and after this index.
    Truncate(u64),
    /// Replace the snapshot; drop the entries it covers.
    Snapshot(Snapshot),
}

/// Index of the last stored entry (the snapshot's when no entry follows it).
pub fn last_index(d: &Durable) -> u64 {
    d.snapshot.as_ref().map_or(0, |s| s.index) + d.entries.len() as u64
}

/// Term of the entry at `index`, if stored (the snapshot's last entry counts).
pub fn term_at(d: &Durable, index: u64) -> Option<u64> {
    let (si, st) = d.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    if index == si {
        return Some(st);
    }
    if index < si {
        return None;
    }
    d.entries.get((index - si - 1) as usize).map(|e| e.term)
}

/// Carries out `op` on the stored state `d`.
fn apply(d: &mut Durable, op: &DiskOp) {
    match op {
        DiskOp::HardState(h) => d.hard_state = *h,
        DiskOp::Append(entries) => {
            let first = entries.first().expect("an append carries entries").index;
            assert_eq!(
                first,
                last_index(d) + 1,
                "raft storage: append at {first} leaves a gap after {}",
                last_index(d)
            );
            d.entries.extend(entries.iter().cloned());
        }
        DiskOp::Truncate(index) => d.entries.retain(|e| e.index < *index),
        DiskOp::Snapshot(s) => {
            d.entries.retain(|e| e.index > s.index);
            d.snapshot = Some(s.clone());
        }
    }
}

/// What a crash keeps of the writes no sync covered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashLoss {
    /// Nothing.
    All,
    /// A random prefix, in write order (the last append possibly torn).
    Prefix,
    /// A random prefix of each file's writes (hard state; log), independently.
    PerFile,
}

/// A voter's disk.
#[derive(Debug, Clone, Default)]
pub struct RaftDisk {
    durable: Durable,
    volatile: Durable,
    /// Written, not yet durable: (operation number, operation).
    pending: VecDeque<(u64, DiskOp)>,
    /// Operations written so far.
    written: u64,
    /// Requested syncs not completed: seq -> operations they cover.
    syncs: BTreeMap<u64, u64>,
}

impl RaftDisk {
    /// What survives a crash right now.
    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// What the running node has written, durable or not.
    pub fn volatile(&self) -> &Durable {
        &self.volatile
    }

    /// Writes `op` (not durable until a sync covers it, except a snapshot).
    pub fn write(&mut self, op: DiskOp) {
        apply(&mut self.volatile, &op);
        self.written += 1;
        if matches!(op, DiskOp::Snapshot(_)) {
            // RaftStore::install_snapshot syncs what came before, then replaces the snapshot
            // atomically.
            while let Some((_, p)) = self.pending.pop_front() {
                apply(&mut self.durable, &p);
            }
            apply(&mut self.durable, &op);
        } else {
            self.pending.push_back((self.written, op));
        }
    }

    /// Raft asked for sync `seq` of everything written so far.
    pub fn request_sync(&mut self, seq: u64) {
        self.syncs.insert(seq, self.written);
    }

    /// The fsync of `seq` completed: everything written before its request is durable.
    pub fn complete_sync(&mut self, seq: u64) {
        let Some(upto) = self.syncs.remove(&seq) else {
            panic!("raft storage: sync {seq} completed but not pending");
        };
        self.syncs.retain(|&s, _| s > seq);
        while self.pending.front().is_some_and(|(n, _)| *n <= upto) {
            let (_, op) = self.pending.pop_front().expect("checked");
            apply(&mut self.durable, &op);
        }
    }

    /// The process crashed: unsynced writes are lost, except what `loss` keeps. Returns how
    /// many operations were lost.
    pub fn crash(&mut self, rng: &mut Rng, loss: CrashLoss) -> usize {
        let ops: Vec<DiskOp> = self.pending.drain(..).map(|(_, op)| op).collect();
        if loss == CrashLoss::PerFile {
            let is_hard = |op: &DiskOp| matches!(op, DiskOp::HardState(_));
            let hard = ops.iter().filter(|op| is_hard(op)).count() as u64;
            let log = ops.len() as u64 - hard;
            let (keep_hard, keep_log) = (rng.below(hard + 1), rng.below(log + 1));
            let (mut h, mut l, mut kept) = (0, 0, 0);
            for op in &ops {
                let keep = if is_hard(op) {
                    h += 1;
                    h <= keep_hard
                } else {
                    l += 1;
                    l <= keep_log
                };
                if keep {
                    apply(&mut self.durable, op);
                    kept += 1;
                }
            }
            self.syncs.clear();
            self.volatile = self.durable.clone();
            return ops.len() - kept;
        }
        let partial = loss == CrashLoss::Prefix;
        let mut keep = if partial {
            rng.below(ops.len() as u64 + 1) as usize
        } else {
            0
        };
        for op in &ops[..keep] {
            apply(&mut self.durable, op);
        }
        if let Some(DiskOp::Append(entries)) = ops.get(keep) {
            if partial && entries.len() > 1 && rng.chance(500_000) {
                let n = rng.range(1, entries.len() as u64 - 1) as usize;
                apply(&mut self.durable, &DiskOp::Append(entries[..n].to_vec()));
                keep += 1; // counted as survived, in part
            }
        }
        self.syncs.clear();
        self.volatile = self.durable.clone();
        ops.len() - keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_core::raft::EntryKind;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: vec![index as u8],
        }
    }

    #[test]
    fn only_synced_writes_survive_a_full_loss() {
        let mut d = RaftDisk::default();
        let mut rng = Rng::new(1);
        d.write(DiskOp::HardState(HardState {
            term: 1,
            voted_for: Some(1),
        }));
        d.write(DiskOp::Append(vec![e(1, 1), e(2, 1)]));
        d.request_sync(1);
        d.write(DiskOp::Append(vec![e(3, 1)]));
        d.request_sync(2);
        assert_eq!(last_index(d.volatile()), 3);
        assert_eq!(last_index(d.durable()), 0);
        d.complete_sync(1);
        assert_eq!(last_index(d.durable()), 2);
        assert_eq!(d.crash(&mut rng, CrashLoss::All), 1);
        assert_eq!(last_index(d.volatile()), 2);
        assert_eq!(d.durable().hard_state.term, 1);
    }

    #[test]
    fn a_snapshot_is_durable_at_once_and_keeps_later_entries() {
        let mut d = RaftDisk::default();
        let mut rng = Rng::new(2);
        d.write(DiskOp::Append(vec![e(1, 1), e(2, 1), e(3, 1)]));
        d.write(DiskOp::Snapshot(Snapshot {
            index: 2,
            term: 1,
            data: vec![],
        }));
        d.write(DiskOp::Truncate(3));
        d.crash(&mut rng, CrashLoss::All);
        // The truncation after the snapshot was never synced: entry 3 is back.
        assert_eq!(d.durable().snapshot.as_ref().unwrap().index, 2);
        assert_eq!(d.durable().entries, vec![e(3, 1)]);
        assert_eq!(term_at(d.durable(), 2), Some(1));
        assert_eq!(term_at(d.durable(), 1), None);
    }

    #[test]
    fn a_partial_loss_keeps_a_prefix() {
        for seed in 0..50 {
            let mut d = RaftDisk::default();
            let mut rng = Rng::new(seed);
            d.write(DiskOp::Append(vec![e(1, 1), e(2, 1), e(3, 1)]));
            d.write(DiskOp::Append(vec![e(4, 1)]));
            d.crash(&mut rng, CrashLoss::Prefix);
            let kept: Vec<u64> = d.durable().entries.iter().map(|e| e.index).collect();
            let n = kept.len() as u64;
            assert_eq!(kept, (1..=n).collect::<Vec<_>>(), "seed {seed}");
        }
    }
}
