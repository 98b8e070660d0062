//! Opening a partition's files after a start: what to trust, what to scan, where to cut, decided
//! here and carried out by the storage layer (the broker's `PartitionStore::open` and the
//! simulator's node run this same plan over real files and over the simulated disk).
//!
//! The driver lists the segment files (base offset, size, creation time) and the producer
//! snapshots, then loops: [`PartitionRecovery::poll`] names one step of I/O, the driver performs
//! it and hands the result to the matching `on_*` method, until `poll` says [`Step::Done`]; then
//! [`PartitionRecovery::finish`] gives the log.
//!
//! The rules:
//! - A sealed segment's indexes are trusted (then only the bytes after the last index point are
//!   scanned) unless the last stop was not clean and it is the active segment, or the driver says
//!   the indexes predate the check of batch timestamps; a scan that contradicts the indexes
//!   rescans the whole segment. Indexes rebuilt from a scan are written for sealed segments.
//! - A scan stops at the first batch that fails its CRC or breaks the offset sequence: the file is
//!   cut there, and if it was not the active segment every later segment is removed (offsets
//!   after a hole could never be reached).
//! - A gap between two segments can only be left by an interrupted retention (its deletions become
//!   durable with one directory sync at the end, so a crash can bring back some of the oldest
//!   deleted segments); the newer side holds the data, so the segments before a gap are removed.
//! - The directory is synced after recovery's own removals, before anything new is written.
//! - Producer state comes from the newest snapshot at or below the log end that parses, plus the
//!   batches after it; snapshots past the log end are removed. The leader-epoch history is the
//!   saved checkpoint extended by the epochs of the replayed batches (the checkpoint write for a
//!   new epoch may have been lost in a crash).
//!
//! Invariants: steps come in file order; each answer must match the step asked for (asserted); the
//! recovered segments are contiguous and at least one.

use std::collections::VecDeque;

use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::log::{PartitionLog, Segment, SegmentScan};
use crate::producer::ProducerStates;

/// One segment file found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFile {
    /// Base offset (from the file name).
    pub base: i64,
    /// Bytes in the `.log` file.
    pub size: u64,
    /// When it was last written (the file's mtime; the start time when unknown).
    pub modified_ms: u64,
}

/// One piece of I/O the driver must carry out next.
#[derive(Debug)]
pub enum Step {
    /// Read `<base>.index` and `<base>.timeindex`; answer [`PartitionRecovery::on_indexes`].
    ReadIndexes {
        /// The segment.
        base: i64,
    },
    /// Push every whole batch of `<base>.log` from `scan.position()` up to `size` bytes into
    /// `scan`, stopping at the first refused or incomplete one; answer
    /// [`PartitionRecovery::on_scanned`] with the finished scan and whether all bytes were valid.
    Scan {
        /// The segment.
        base: i64,
        /// Bytes of the file to scan up to.
        size: u64,
        /// The scan to feed.
        scan: SegmentScan,
        /// True when this rescans a segment whose indexes contradicted its log (worth a warning).
        after_bad_index: bool,
    },
    /// Write the segment's rebuilt `.index` and `.timeindex` files.
    WriteIndexes(Box<Segment>),
    /// Cut `<base>.log` to `len` bytes (a torn or corrupt tail from `size`) and sync it.
    Truncate {
        /// The segment.
        base: i64,
        /// Bytes kept.
        len: u64,
        /// Bytes the file had.
        size: u64,
    },
    /// Remove every file of segment `base`.
    RemoveSegment {
        /// The segment.
        base: i64,
        /// Why.
        why: Removal,
    },
    /// Sync the partition directory (recovery's removals become durable).
    SyncDir,
    /// Read `<offset>.snapshot`; answer [`PartitionRecovery::on_snapshot`].
    ReadSnapshot {
        /// The snapshot's offset.
        offset: i64,
    },
    /// Remove `<offset>.snapshot` (it lies past the log end).
    RemoveSnapshot {
        /// The snapshot's offset.
        offset: i64,
    },
    /// Read the header of every batch in the first `size` bytes of `<base>.log`; answer
    /// [`PartitionRecovery::on_headers`].
    ReadHeaders {
        /// The segment.
        base: i64,
        /// Bytes of valid batches in it.
        size: u64,
    },
    /// Nothing more to do: call [`PartitionRecovery::finish`].
    Done,
}

/// Why recovery removes a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// It lies before a gap left by an interrupted retention.
    BeforeGap,
    /// It lies after a sealed segment whose tail was cut.
    AfterCut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Nothing,
    Indexes,
    Scan { from_index: bool },
    Snapshot(i64),
    Headers,
}

/// Recovery of one partition, as a sequence of I/O steps (see the module docs).
#[derive(Debug)]
pub struct PartitionRecovery {
    files: Vec<SegmentFile>,
    next: usize,
    clean: bool,
    trust_indexes: bool,
    interval: u32,
    now_ms: u64,
    segs: Vec<Segment>,
    cut: bool,
    waiting: Waiting,
    queue: VecDeque<Step>,
    snapshots: Vec<i64>,
    phase: Phase,
    producers: ProducerStates,
    replay_from: i64,
    replay: Vec<Segment>,
    tail_epochs: Vec<(i32, i64)>,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Segments,
    Snapshots,
    Replay,
    Done,
}

impl PartitionRecovery {
    /// Starts recovery of the segment files `files` (any order; at least one) and the producer
    /// snapshots at `snapshots`. `clean` says the last stop completed; `trust_indexes` that the
    /// sealed segments' indexes were built from their records' timestamps.
    pub fn new(
        mut files: Vec<SegmentFile>,
        mut snapshots: Vec<i64>,
        clean: bool,
        trust_indexes: bool,
        config: &LogConfig,
        now_ms: u64,
    ) -> Self {
        assert!(
            !files.is_empty(),
            "a partition has at least one segment file"
        );
        files.sort_by_key(|f| f.base);
        snapshots.sort_unstable();
        Self {
            files,
            next: 0,
            clean,
            trust_indexes,
            interval: config.index_interval_bytes,
            now_ms,
            segs: Vec::new(),
            cut: false,
            waiting: Waiting::Nothing,
            queue: VecDeque::new(),
            snapshots,
            phase: Phase::Segments,
            producers: ProducerStates::new(),
            replay_from: 0,
            replay: Vec::new(),
            tail_epochs: Vec::new(),
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns a planted bug on in the scans it hands out (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    /// True when the segment at `i` is the newest one on disk.
    fn is_last(&self, i: usize) -> bool {
        i + 1 == self.files.len()
    }

    fn new_scan(&self, f: &SegmentFile, loaded: Option<Segment>) -> SegmentScan {
        #[cfg_attr(not(feature = "canary"), allow(unused_mut))]
        // A segment the cleaner wrote has gaps between its batches (offsets still increase).
        let mut s = match loaded {
            Some(s) => SegmentScan::resume(s, self.interval),
            None => SegmentScan::new(f.base, f.modified_ms, self.interval),
        }
        .allow_gaps();
        #[cfg(feature = "canary")]
        s.set_canary(self.canary);
        s
    }

    /// The next step of I/O. Answer it (where it asks for an answer) before polling again.
    pub fn poll(&mut self) -> Step {
        assert_eq!(self.waiting, Waiting::Nothing, "answer the last step first");
        if let Some(s) = self.queue.pop_front() {
            if matches!(s, Step::Scan { .. }) {
                self.waiting = Waiting::Scan { from_index: false };
            }
            return s;
        }
        match self.phase {
            Phase::Segments => self.next_segment(),
            Phase::Snapshots => self.next_snapshot(),
            Phase::Replay => self.next_replay(),
            Phase::Done => Step::Done,
        }
    }

    fn next_segment(&mut self) -> Step {
        if self.cut || self.next == self.files.len() {
            return self.end_segments();
        }
        let i = self.next;
        let f = self.files[i];
        if (self.is_last(i) && !self.clean) || !self.trust_indexes {
            self.waiting = Waiting::Scan { from_index: false };
            let scan = self.new_scan(&f, None);
            return Step::Scan {
                base: f.base,
                size: f.size,
                scan,
                after_bad_index: false,
            };
        }
        self.waiting = Waiting::Indexes;
        Step::ReadIndexes { base: f.base }
    }

    /// The answer to [`Step::ReadIndexes`]: both files' bytes, `None` when either is missing.
    pub fn on_indexes(&mut self, indexes: Option<(Vec<u8>, Vec<u8>)>) -> Step {
        assert_eq!(self.waiting, Waiting::Indexes, "no indexes were asked for");
        let f = self.files[self.next];
        let loaded =
            indexes.and_then(|(o, t)| Segment::from_indexes(f.base, f.size, &o, &t, f.modified_ms));
        self.waiting = Waiting::Scan {
            from_index: loaded.is_some(),
        };
        let scan = self.new_scan(&f, loaded);
        Step::Scan {
            base: f.base,
            size: f.size,
            scan,
            after_bad_index: false,
        }
    }

    /// The answer to [`Step::Scan`]: the scan's segment and whether every byte was valid.
    pub fn on_scanned(&mut self, seg: Segment, complete: bool) {
        let Waiting::Scan { from_index } = self.waiting else {
            panic!("no scan was asked for");
        };
        self.waiting = Waiting::Nothing;
        let i = self.next;
        let f = self.files[i];
        if !complete && from_index {
            // The indexes disagree with the log: rebuild from the records.
            let scan = self.new_scan(&f, None);
            self.queue.push_back(Step::Scan {
                base: f.base,
                size: f.size,
                scan,
                after_bad_index: true,
            });
            return;
        }
        if !from_index && !self.is_last(i) {
            self.queue
                .push_back(Step::WriteIndexes(Box::new(seg.clone())));
        }
        if self
            .segs
            .last()
            .is_some_and(|prev| seg.base_offset != prev.next_offset)
        {
            for old in self.segs.drain(..) {
                self.queue.push_back(Step::RemoveSegment {
                    base: old.base_offset,
                    why: Removal::BeforeGap,
                });
            }
        }
        let keep = seg.size;
        self.segs.push(seg);
        if !complete {
            self.queue.push_back(Step::Truncate {
                base: f.base,
                len: keep,
                size: f.size,
            });
            if !self.is_last(i) {
                self.cut = true;
                for later in &self.files[i + 1..] {
                    self.queue.push_back(Step::RemoveSegment {
                        base: later.base,
                        why: Removal::AfterCut,
                    });
                }
            }
        }
        self.next += 1;
    }

    fn end_segments(&mut self) -> Step {
        if self.segs.is_empty() {
            // Everything was unreadable: start over at the first base so offsets never repeat.
            self.segs
                .push(Segment::new(self.files[0].base, self.now_ms));
        }
        self.phase = Phase::Snapshots;
        let log_end = self.log_end();
        self.replay_from = self.segs[0].base_offset;
        // Newest first; those past the log end go.
        self.snapshots.reverse();
        while let Some(&off) = self.snapshots.first() {
            if off <= log_end {
                break;
            }
            self.snapshots.remove(0);
            self.queue.push_back(Step::RemoveSnapshot { offset: off });
        }
        Step::SyncDir
    }

    fn log_end(&self) -> i64 {
        self.segs.last().map_or(0, |s| s.next_offset)
    }

    fn next_snapshot(&mut self) -> Step {
        if self.snapshots.is_empty() {
            return self.start_replay();
        }
        let off = self.snapshots.remove(0);
        self.waiting = Waiting::Snapshot(off);
        Step::ReadSnapshot { offset: off }
    }

    /// The answer to [`Step::ReadSnapshot`]: its bytes, `None` if unreadable.
    pub fn on_snapshot(&mut self, bytes: Option<Vec<u8>>) {
        let Waiting::Snapshot(off) = self.waiting else {
            panic!("no snapshot was asked for");
        };
        self.waiting = Waiting::Nothing;
        if let Some(p) = bytes.and_then(|b| ProducerStates::from_snapshot(&b)) {
            self.producers = p;
            self.replay_from = off.max(self.segs[0].base_offset);
            self.snapshots.clear();
        }
    }

    fn start_replay(&mut self) -> Step {
        self.phase = Phase::Replay;
        self.replay = self
            .segs
            .iter()
            .filter(|s| s.next_offset > self.replay_from)
            .cloned()
            .collect();
        self.replay.reverse();
        self.next_replay()
    }

    fn next_replay(&mut self) -> Step {
        let Some(seg) = self.replay.pop() else {
            self.phase = Phase::Done;
            return Step::Done;
        };
        self.waiting = Waiting::Headers;
        Step::ReadHeaders {
            base: seg.base_offset,
            size: seg.size,
        }
    }

    /// The answer to [`Step::ReadHeaders`]: the headers in file order.
    pub fn on_headers(&mut self, headers: &[BatchHeader]) {
        assert_eq!(self.waiting, Waiting::Headers, "no headers were asked for");
        self.waiting = Waiting::Nothing;
        for h in headers.iter().filter(|h| h.base_offset >= self.replay_from) {
            self.producers.record(h, self.now_ms);
            if self
                .tail_epochs
                .last()
                .is_none_or(|(e, _)| h.leader_epoch > *e)
            {
                self.tail_epochs.push((h.leader_epoch, h.base_offset));
            }
        }
    }

    /// The recovered log, its epoch history the saved checkpoint `saved_epochs` extended by the
    /// replayed batches' epochs. Call after [`Step::Done`].
    pub fn finish(self, config: LogConfig, saved_epochs: &[(i32, i64)]) -> PartitionLog {
        assert_eq!(self.phase, Phase::Done, "recovery is not done");
        let mut log = PartitionLog::recovered(config, self.segs, self.producers, 0);
        let mut history = saved_epochs.to_vec();
        for (e, start) in self.tail_epochs {
            if history.last().is_none_or(|(le, _)| e > *le) {
                history.push((e, start));
            }
        }
        log.restore_epochs(&history);
        log
    }
}
