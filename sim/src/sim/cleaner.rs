//! The node's log cleaner as events, paced as skein-broker's cleaner thread: every
//! `compaction.pass_ms` (its `log.cleaner.backoff.ms`) a pass starts a clean of the dirtiest
//! partition due for one, unless one runs; the clean then goes on as a chain of events, each
//! carrying out `compaction.steps` of its steps (reads of the dirty segments, writes of the
//! `.cleaned` destination, its seal) or one commit (swap, install, removals, renames), up to
//! `compaction.gap_max_ms` apart. Crashes, clean stops, pauses, full disks, retention passes,
//! deletes and the workload's appends and fetches fall between them; a crash armed for the
//! middle of a storage operation can strike inside one.
//!
//! The checker is told each clean's start: the partition's high watermark and the base of its
//! active segment then (as the node sees them, not as skein-core's choice of what is cleanable
//! does), bounding what any clean may change (`checker/compaction.rs`). A reader that ignores
//! the high watermark (as a follower's fetch does) reads the partition from that bound at the
//! clean's start, and again after each of its commits: every batch it read must still be
//! there, byte for byte ([`check_tail_unchanged`]).

use skein_core::cleaner::CleanerConfig;

use super::*;
use crate::checker::compaction::check_tail_unchanged;
use crate::node::CleanStatus;

/// What a reader ignoring the high watermark read of the partition a clean runs on, at or above
/// the clean's bound, when the clean started.
pub(super) struct TailWatch {
    key: PartKey,
    tid: TopicId,
    inc: u32,
    bound: i64,
    /// (base offset, last offset, bytes) of every batch reaching the bound.
    batches: Vec<(i64, i64, Vec<u8>)>,
}

impl Sim {
    /// A cleaner pass: starts a clean (and runs its first steps), then schedules the next pass.
    pub(super) fn clean_pass(&mut self) -> Verdict {
        let c = self.swarm.compaction.clone();
        if self.node.is_up() && self.node.cleaning().is_none() {
            let cfg = CleanerConfig {
                dedupe_buffer_bytes: c.dedupe_bytes,
                read_buffer_bytes: c.io_bytes,
                write_buffer_bytes: c.io_bytes,
            };
            if let Some(s) = self.node.clean_start(self.now, cfg) {
                self.log(format!(
                    "clean start {}-{} dirty={}..{} hw={} active={}",
                    s.key.0, s.key.1, s.first_dirty, s.first_uncleanable, s.hw, s.active_base
                ));
                let bound = s.hw.min(s.active_base);
                self.history
                    .on_clean_start(&s.key.0, (s.tid, s.key.1), bound);
                let inc = self.node.incarnation;
                self.tail_watch = self
                    .node
                    .batches_from(&s.key, bound)
                    .map(|batches| TailWatch {
                        key: s.key.clone(),
                        tid: s.tid,
                        inc,
                        bound,
                        batches,
                    });
                self.clean_piece(false, inc)?;
            }
        }
        if self.safety() {
            self.at(c.pass_ms, Event::Clean);
        }
        Ok(())
    }

    /// The next piece of the clean in progress: its next steps, or its commit.
    pub(super) fn clean_piece(&mut self, commit: bool, inc: u32) -> Verdict {
        if !self.node.is_up() || self.node.incarnation != inc {
            return Ok(());
        }
        let status = if commit {
            self.node.clean_commit()
        } else {
            self.node.clean_run(self.swarm.compaction.steps as usize)
        };
        if commit {
            self.check_tail()?;
        }
        let next = match status {
            None => return Ok(()),
            Some(CleanStatus::More) => false,
            Some(CleanStatus::Commit) => {
                self.log("clean sealed a destination".into());
                true
            }
            Some(CleanStatus::Done {
                key,
                first_dirty,
                stats,
            }) => {
                let r = stats.records;
                self.log(format!(
                    "clean done {}-{} first_dirty={first_dirty} segments={} kept={} superseded={} tombstones={}",
                    key.0, key.1, stats.segments_written, r.kept, r.superseded, r.tombstones
                ));
                return Ok(());
            }
            Some(CleanStatus::Abandoned { key, why }) => {
                self.log(format!("clean abandoned {}-{}: {why}", key.0, key.1));
                return Ok(());
            }
        };
        let d = self.rng.clean.range(0, self.swarm.compaction.gap_max_ms);
        self.at(d, Event::CleanPiece { commit: next, inc });
        Ok(())
    }

    /// After a commit of the clean watched: what the reader read at its start is still there
    /// (unless retention deleted it since). Skipped once the disk died inside the commit (its
    /// later writes were dropped, and the node crashes after this event).
    fn check_tail(&mut self) -> Verdict {
        let Some(w) = &self.tail_watch else {
            return Ok(());
        };
        let current = self.node.incarnation == w.inc && self.node.holds(&w.key, w.tid);
        if !current || self.node.disk().is_dead() {
            return Ok(());
        }
        let now = self.node.batches_from(&w.key, w.bound).unwrap_or_default();
        let log_start = self.node.offsets(&w.key).map_or(0, |(s, _)| s);
        check_tail_unchanged(w.key.1 as usize, w.bound, &w.batches, &now, log_start)
    }
}
