//! One voter's Raft storage: skein-storage's real [`RaftStore`] on the node's own [`SimDisk`]
//! (through [`SimFs`]), so the cluster simulation crashes the store the broker runs.
//!
//! How Raft's storage outputs are carried out: `PersistHardState`, `AppendEntries`,
//! `TruncateFrom` and `PersistSnapshot` go to [`RaftStore::apply`] at once, as
//! broker/src/quorum.rs does (the snapshot is durable on return; the rest sits in the page
//! cache). `Sync { seq }` is an fsync that takes simulated time: the harness completes it later
//! with [`VoterStore::sync`], and only then tells Raft it is persisted. Writes made between the
//! request and the completion become durable with it, which the page cache may do anyway.
//!
//! A crash drops the open store and crashes the disk: each file falls back to what was fsynced,
//! plus, on a partial loss, a random prefix of its own unsynced writes (the page cache writes
//! back the hard-state file and the log independently), the first lost write possibly torn at
//! a sector and zero-filled; on a full loss nothing unsynced survives, directory changes
//! included. The store is then opened on the crashed disk right away (nothing touches the disk
//! while the node is down, so this is the restart's recovery, done early), and the restart
//! hands Raft what it recovered. A disk may also die in the middle of an operation (the swarm's
//! mid-operation crashes, e.g. between a snapshot's rename and the log's rewrite): its later
//! mutations are dropped, the store's errors are the dying process's, and the harness crashes
//! the node as soon as the operation returns, before Raft hears of anything it did.
//!
//! For the commit-safety checker it knows where the log a crash could not take away ends: what
//! the store held at its last fsync or snapshot while up, and while down what it recovered.
//!
//! Invariants: Raft runs on the store only while the node's process is up; Raft hears of a
//! sync only after the disk made it durable; the store holds Raft's log (its end is checked
//! after every step, and before every crash between steps a copy of the disk with every write
//! landed must reopen as the hard state Raft last wrote and exactly Raft's snapshot and
//! entries).

use std::path::Path;

use skein_core::raft::{Durable, Entry, HardState, Output, Raft};
use skein_storage::raft_store::RaftStore;

use crate::disk::{CrashFaults, CrashReport, SimDisk};
use crate::disk_fs::SimFs;
use crate::rng::Rng;

/// The store's directory on the node's disk.
const DIR: &str = "__raft";

/// What a crash keeps of the writes no fsync covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashLoss {
    /// Nothing, directory changes included.
    All,
    /// A random prefix of each file's unsynced writes; the first lost one of a file is torn at
    /// a sector with this chance (ppm), and then zero-filled half the time.
    Partial {
        /// Per file: chance its first lost write is torn.
        torn_write_ppm: u32,
    },
}

impl CrashLoss {
    /// The disk's crash model for this loss.
    fn faults(self) -> CrashFaults {
        match self {
            CrashLoss::All => CrashFaults {
                keep_unsynced: false,
                torn_write_ppm: 0,
                zero_fill_ppm: 0,
                lose_new_file_ppm: 1_000_000,
            },
            CrashLoss::Partial { torn_write_ppm } => CrashFaults {
                keep_unsynced: true,
                torn_write_ppm,
                zero_fill_ppm: 500_000,
                lose_new_file_ppm: 500_000,
            },
        }
    }
}

/// (term, index) of the last entry of `d` (the snapshot's when none follows it).
pub fn end(d: &Durable) -> (u64, u64) {
    match (d.entries.last(), &d.snapshot) {
        (Some(e), _) => (e.term, e.index),
        (None, Some(s)) => (s.term, s.index),
        (None, None) => (0, 0),
    }
}

/// Whether `d` holds entry (`index`, `term`), in its log or under its snapshot.
pub fn holds(d: &Durable, index: u64, term: u64) -> bool {
    let snap = d.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    index < snap.0
        || (index, term) == snap
        || d.entries.iter().any(|e| (e.index, e.term) == (index, term))
}

/// A voter's disk and, while its process runs, the Raft store open on it.
#[derive(Default)]
pub struct VoterStore {
    fs: SimFs,
    store: Option<RaftStore<SimFs>>,
    /// While up: (term, index) of the store's last entry at its last fsync or snapshot.
    durable_end: (u64, u64),
    /// While up: the hard state Raft last wrote (or the one recovered).
    hard_state: HardState,
    /// While down: the store recovered from the crashed disk, or why it refuses the disk.
    recovered: Option<Result<(RaftStore<SimFs>, Durable), String>>,
}

/// Opens the store in [`DIR`] on `fs`.
fn open_on(fs: SimFs) -> Result<(RaftStore<SimFs>, Durable), String> {
    RaftStore::open_on(fs, Path::new(DIR)).map_err(|e| e.to_string())
}

impl VoterStore {
    /// The process starts: the store recovered at the crash (on a fresh disk: opened now) and
    /// what it recovered; `Err` says why the store refused the disk.
    pub fn open(&mut self) -> Result<Durable, String> {
        assert!(self.store.is_none(), "raft store opened twice");
        let recovered = self.recovered.take();
        let (store, durable) = recovered.unwrap_or_else(|| open_on(self.fs.clone()))?;
        self.durable_end = end(&durable);
        self.hard_state = durable.hard_state;
        self.store = Some(store);
        Ok(durable)
    }

    /// What a crash cannot take away, for the commit-safety checker: while up, the end of the
    /// log at the last fsync; while down, what the store will recover.
    pub fn durable_view(&self) -> DurableView<'_> {
        match &self.recovered {
            Some(Ok((_, d))) => DurableView::Recovered(d),
            Some(Err(_)) => DurableView::Unrecoverable,
            None => DurableView::End(self.durable_end),
        }
    }

    fn open_store(&mut self) -> &mut RaftStore<SimFs> {
        self.store
            .as_mut()
            .expect("the raft store is open while the node is up")
    }

    /// Carries out one storage output (written, not yet durable unless a snapshot). The store
    /// must not fail, unless the disk died under it (the node crashes next, as a process whose
    /// disk dies mid-operation never sees the error).
    pub fn apply(&mut self, out: &Output) {
        if let Output::PersistHardState(h) = out {
            self.hard_state = *h;
        }
        if let Err(e) = self.open_store().apply(out) {
            assert!(self.dead(), "raft store: {e}");
            return;
        }
        if matches!(out, Output::PersistSnapshot(_)) && !self.dead() {
            // Durable on return, with everything written before it.
            self.durable_end = self.open_store().last();
        }
    }

    /// The fsync Raft asked for completed: everything written so far is durable.
    pub fn sync(&mut self) {
        if let Err(e) = self.open_store().sync() {
            assert!(self.dead(), "raft store: {e}");
        }
        if !self.dead() {
            self.durable_end = self.open_store().last();
        }
    }

    /// Arms the disk to die at its `n`-th next mutation (0: the next): later ones are dropped
    /// and the harness crashes the node once the operation that hit it returns.
    pub fn die_after(&mut self, n: u32) {
        self.fs.disk_mut().die_after(n);
    }

    /// Disarms a pending [`Self::die_after`].
    pub fn disarm(&mut self) {
        self.fs.disk_mut().disarm();
    }

    /// True once an armed disk died: the node must crash before anything else happens.
    pub fn dead(&self) -> bool {
        self.fs.disk().is_dead()
    }

    /// (term, index) of the last entry written (the snapshot's when none follows it), while up.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.store.as_ref().map(RaftStore::last)
    }

    /// The process died: the store is dropped, the disk loses what `loss` says, and the store
    /// recovers from what is left.
    pub fn crash(&mut self, rng: &mut Rng, loss: CrashLoss) -> CrashReport {
        self.store = None;
        let report = self.fs.disk_mut().crash_with(rng, &loss.faults());
        self.recovered = Some(open_on(self.fs.clone()));
        report
    }

    /// Checks that the store holds what `raft` wrote: a copy of the disk with every write
    /// landed (no crash) must reopen as the hard state Raft last wrote (its term Raft's) and as
    /// Raft's snapshot and entries.
    pub fn check_holds(&self, raft: &Raft) -> Result<(), String> {
        let (_, d) = open_on(SimFs::new(SimDisk::clone(&self.fs.disk())))?;
        if d.hard_state != self.hard_state || d.hard_state.term != raft.term() {
            return Err(format!(
                "hard state {:?}, written {:?}, Raft's term {}",
                d.hard_state,
                self.hard_state,
                raft.term()
            ));
        }
        let snap = raft.snapshot();
        let want = (snap.index > 0).then_some(snap);
        if d.snapshot.as_ref() != want {
            let got = d.snapshot.as_ref().map(|s| (s.index, s.term));
            return Err(format!(
                "snapshot {got:?}, Raft's ({}, {})",
                snap.index, snap.term
            ));
        }
        if d.entries != raft.entries() {
            let ids = |es: &[Entry]| -> Vec<(u64, u64)> {
                es.iter().map(|e| (e.index, e.term)).collect()
            };
            return Err(format!(
                "entries {:?}, Raft's {:?}",
                ids(&d.entries),
                ids(raft.entries())
            ));
        }
        Ok(())
    }
}

/// What a crash cannot take away from a voter's log.
pub enum DurableView<'a> {
    /// Up: (term, index) of the log's end at the last fsync or snapshot.
    End((u64, u64)),
    /// Down: what the store recovers at the restart.
    Recovered(&'a Durable),
    /// Down, and the store refuses the disk (the restart reports it).
    Unrecoverable,
}
