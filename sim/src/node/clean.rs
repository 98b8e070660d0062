//! The node's log cleaner, driven as skein-broker's `cleaner.rs` drives it, one piece at a time:
//! [`Node::clean_start`] picks the dirtiest partition due for a clean (each store's
//! `PartitionStore::cleanable` under its replica's high watermark, then skein-core's
//! `rank_dirtiest`) and starts it (`start_clean`); [`Node::clean_run`] carries out a bounded
//! number of its steps (`Cleaning::run_steps`, the broker's `run` cut into pieces);
//! [`Node::clean_commit`] carries out a sealed destination's commit (`commit_clean`, which the
//! broker runs under the partition lock); a finished clean records its first dirty offset
//! (`set_first_dirty`). The simulator schedules each piece as its own event, so appends,
//! fetches, retention, deletes, crashes (which lose the clean's unsynced files), pauses and full
//! disks fall between them, and a crash armed for the middle of a storage operation can strike
//! inside one.
//!
//! Invariants: at most one clean runs (the broker's one cleaner thread); it belongs to the
//! partition (and topic id) it started on, and ends when the node stops or the partition goes;
//! `commit_clean` is called only after a run said `Commit`.

use skein_core::batch;
use skein_core::cleaner::choose::rank_dirtiest;
use skein_core::cleaner::job::CleanStats;
use skein_core::cleaner::CleanerConfig;
use skein_core::fetch::Grant;
use skein_storage::partition::{read_range, CleanProgress, Cleaning, StorageError};

use super::{Node, PartKey, TopicId};
use crate::disk_fs::SimFs;

/// The clean in progress.
pub(super) struct CleanRun {
    key: PartKey,
    tid: TopicId,
    cleaning: Cleaning<SimFs>,
    /// A run said `Commit`: the next piece is the commit.
    sealed: bool,
}

/// A clean that started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanStarted {
    /// The partition.
    pub key: PartKey,
    /// Its topic id.
    pub tid: TopicId,
    /// The first dirty offset the clean starts from.
    pub first_dirty: i64,
    /// The first offset it must not touch (skein-core's choice).
    pub first_uncleanable: i64,
    /// The partition's high watermark when it started.
    pub hw: i64,
    /// The base offset of the partition's active segment when it started.
    pub active_base: i64,
}

/// Where the clean stands after a piece of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanStatus {
    /// It has more steps to run.
    More,
    /// A destination is sealed: its commit is next.
    Commit,
    /// It finished and recorded `first_dirty`.
    Done {
        /// The partition.
        key: PartKey,
        /// The new first dirty offset.
        first_dirty: i64,
        /// What it did.
        stats: CleanStats,
    },
    /// It stopped early (its `.cleaned` files removed, or left to the next start).
    Abandoned {
        /// The partition.
        key: PartKey,
        /// Why.
        why: String,
    },
}

impl Node {
    /// The partition being cleaned, if a clean runs.
    pub fn cleaning(&self) -> Option<&PartKey> {
        self.clean.as_ref().map(|c| &c.key)
    }

    /// Starts a clean of the dirtiest partition due for one (none while one runs).
    pub fn clean_start(&mut self, now_ms: u64, cfg: CleanerConfig) -> Option<CleanStarted> {
        if !self.up || self.clean.is_some() {
            return None;
        }
        let candidates: Vec<_> = self
            .parts
            .iter()
            .filter_map(|(k, ps)| Some((k.clone(), ps.store.cleanable(now_ms, ps.replica.hw())?)))
            .collect();
        let key = rank_dirtiest(&candidates).into_iter().next()?;
        let (_, range) = candidates.into_iter().find(|(k, _)| *k == key)?;
        let ps = self.parts.get(&key).expect("a candidate is open");
        let started = CleanStarted {
            key: key.clone(),
            tid: ps.topic_id,
            first_dirty: range.first_dirty,
            first_uncleanable: range.first_uncleanable,
            hw: ps.replica.hw(),
            active_base: ps
                .store
                .log()
                .segments()
                .last()
                .expect("active")
                .base_offset,
        };
        let cleaning = ps.store.start_clean(&range, cfg);
        self.clean = Some(CleanRun {
            key,
            tid: started.tid,
            cleaning,
            sealed: false,
        });
        Some(started)
    }

    /// Every whole batch of partition `key` holding an offset at or above `from` (and at or above
    /// its log start), read from the files as a follower's fetch reads them, ignoring the high
    /// watermark: (base offset, last offset, bytes). `None` when the partition is not open.
    pub fn batches_from(&self, key: &PartKey, from: i64) -> Option<Vec<(i64, i64, Vec<u8>)>> {
        let store = &self.parts.get(key)?.store;
        let end = store.log().log_end_offset();
        let mut off = from.max(store.log().log_start_offset());
        let mut out = Vec::new();
        while off < end {
            let Ok(Some(range)) = store.plan_fetch(off, Grant::single(1 << 20)) else {
                break;
            };
            let bytes = read_range(&range).expect("segment file shorter than the log says");
            let before = off;
            for item in batch::iter_headers(&bytes) {
                let Ok((at, h)) = item else { break };
                if h.last_offset() >= from {
                    out.push((
                        h.base_offset,
                        h.last_offset(),
                        bytes[at..at + h.size].to_vec(),
                    ));
                }
                off = h.next_offset();
            }
            if off == before {
                break;
            }
        }
        Some(out)
    }

    /// The clean's partition is gone (deleted, or the node restarted since): the clean ends.
    fn clean_gone(&mut self) -> Option<CleanStatus> {
        let c = self.clean.as_ref()?;
        if self
            .parts
            .get(&c.key)
            .is_some_and(|ps| ps.topic_id == c.tid)
        {
            return None;
        }
        let c = self.clean.take().expect("a clean");
        Some(CleanStatus::Abandoned {
            key: c.key,
            why: "its partition is gone".into(),
        })
    }

    /// Runs at most `steps` steps of the clean (`None`: no clean runs, or its next piece is the
    /// commit).
    pub fn clean_run(&mut self, steps: usize) -> Option<CleanStatus> {
        self.sealed_changed.set(true);
        if let Some(gone) = self.clean_gone() {
            return Some(gone);
        }
        let c = self.clean.as_mut().filter(|c| !c.sealed)?;
        let status = match c.cleaning.run_steps(steps, &mut |_| {}) {
            None => return Some(CleanStatus::More),
            Some(CleanProgress::Commit) => {
                c.sealed = true;
                return Some(CleanStatus::Commit);
            }
            Some(CleanProgress::Done(stats)) => {
                let c = self.clean.take().expect("a clean");
                // As the broker: a clean that recorded no first dirty offset made no progress.
                let Some(first_dirty) = c.cleaning.first_dirty() else {
                    return Some(CleanStatus::Abandoned {
                        key: c.key,
                        why: "no first dirty offset".into(),
                    });
                };
                let ps = self.parts.get_mut(&c.key).expect("checked above");
                ps.store.set_first_dirty(first_dirty);
                CleanStatus::Done {
                    key: c.key,
                    first_dirty,
                    stats,
                }
            }
            Some(CleanProgress::Abandoned(why)) => {
                let c = self.clean.take().expect("a clean");
                CleanStatus::Abandoned { key: c.key, why }
            }
        };
        Some(status)
    }

    /// Commits the sealed destination (`commit_clean`); `None` when no clean waits for its
    /// commit. A commit refused (the log was cut meanwhile) or failed ends the clean.
    pub fn clean_commit(&mut self) -> Option<CleanStatus> {
        self.sealed_changed.set(true);
        if let Some(gone) = self.clean_gone() {
            return Some(gone);
        }
        let c = self.clean.as_mut().filter(|c| c.sealed)?;
        c.sealed = false;
        let ps = self.parts.get_mut(&c.key).expect("checked above");
        let r: Result<bool, StorageError> = ps.store.commit_clean(&mut c.cleaning);
        let why = match r {
            Ok(true) => return Some(CleanStatus::More),
            Ok(false) => "the log was cut since it started".to_string(),
            Err(e) => format!("commit failed: {e}"),
        };
        let c = self.clean.take().expect("a clean");
        Some(CleanStatus::Abandoned { key: c.key, why })
    }
}
