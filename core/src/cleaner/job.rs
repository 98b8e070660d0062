//! One clean of one partition as a sequence of I/O steps (the shape of [`crate::recovery`]):
//! [`CleanJob::poll`] names one step, the driver carries it out, answers a
//! [`CleanStep::Read`] with [`CleanJob::on_read`], and polls again until [`CleanStep::Done`]
//! (or [`CleanStep::Abort`]).
//!
//! Pass 1 reads the dirty segments below the first uncleanable offset in order and indexes
//! every keyed record of every non-control batch at or after the first dirty offset. Before a
//! batch it checks the map has room for all its records; if not, the pass ends at that batch's
//! base offset (the map covers every offset below it, and the next clean starts there). A first
//! batch that does not fit at all aborts the clean (the map is smaller than one batch).
//!
//! Pass 2 rewrites every segment from the log start below the end of what the map covers, in
//! groups, each into one destination segment named after the group's first base. Per group the
//! steps are, in this order:
//! 1. [`CleanStep::CreateCleaned`]: remove any `<base>.*.cleaned` leftovers, create an empty
//!    `<base>.log.cleaned`.
//! 2. [`CleanStep::Append`] (any number): append the bytes to `<base>.log.cleaned`.
//! 3. [`CleanStep::SealCleaned`]: write the segment's indexes as `<base>.index.cleaned` and
//!    `<base>.timeindex.cleaned`; fsync all three files.
//! 4. [`CleanStep::Swap`]: rename the index files `.cleaned` -> `.swap`, then the log file
//!    `<base>.log.cleaned` -> `<base>.log.swap`; fsync the directory. The durable
//!    `<base>.log.swap` is the commit point of the group.
//! 5. [`CleanStep::Install`]: put the new segment's metadata in place of the old ones
//!    ([`crate::log::PartitionLog::replace_cleaned`]); reads go to the new segment from here.
//! 6. [`CleanStep::DeleteSegment`] for each replaced segment other than `<base>`: remove its
//!    files.
//! 7. [`CleanStep::FinishSwap`]: rename each `<base>.*.swap` over `<base>.*` (index files first,
//!    the log file last); fsync the directory.
//!
//! After the last group, [`CleanStep::WriteCheckpoint`] records the new first dirty offset
//! (written atomically: temp file, fsync, rename). A crash before it only means the next clean
//! redoes work: cleaning is idempotent.
//!
//! Crash safety: before step 4 completes the old segments are untouched and the `.cleaned`
//! files are garbage; from the commit point on, `<base>.log.swap` holds every surviving record
//! of the group and ends at the group's last offset (its last batch is always kept, see
//! [`super::filter`]), so a recovery can finish the replacement: it deletes every segment whose
//! base lies in `(base, swap end)` and renames the swap files in. [`super::leftovers`] decides
//! this from a directory listing.
//!
//! Invariants ([`CleanJob::check_invariants`]): `first_dirty <= map_end <= first_uncleanable`;
//! reads stay below the first uncleanable offset; a destination's offset range is exactly its
//! group's; a `Read` is answered before the next poll.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;

use thiserror::Error;

use super::choose::{Cleanable, SegmentInfo};
use super::filter;
use super::group;
use super::keymap::KeyMap;
use super::rewrite::{self, BatchContext, RecordCounts};
use super::CleanerConfig;
use crate::batch::{self, BatchError, BatchHeader};
use crate::log::{Segment, SegmentScan};

/// One piece of I/O the driver carries out next (see the module docs for the file protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanStep {
    /// Read `len` bytes of `<segment>.log` from `position`; answer [`CleanJob::on_read`].
    Read {
        /// The segment's base offset.
        segment: i64,
        /// Byte position.
        position: u64,
        /// Bytes to read (all of them lie inside the segment).
        len: u64,
    },
    /// Remove any `<base>.*.cleaned` files, then create an empty `<base>.log.cleaned`.
    CreateCleaned {
        /// The destination's base offset.
        base: i64,
    },
    /// Append `bytes` to `<base>.log.cleaned`.
    Append {
        /// The destination's base offset.
        base: i64,
        /// Whole batches.
        bytes: Vec<u8>,
    },
    /// Write the segment's `.index.cleaned` and `.timeindex.cleaned`, fsync all three files, and
    /// set the log file's last-modified time to `segment.modified_ms`.
    SealCleaned {
        /// The destination's metadata.
        segment: Box<Segment>,
    },
    /// Rename `<base>.{index,timeindex}.cleaned` then `<base>.log.cleaned` to `.swap`; fsync
    /// the directory (the commit point).
    Swap {
        /// The destination's base offset.
        base: i64,
    },
    /// Replace the log's metadata of the segments `replaces` with `segment`.
    Install {
        /// The destination's metadata.
        segment: Box<Segment>,
        /// Bases of the segments it replaces, in order (the first is its own base).
        replaces: Vec<i64>,
    },
    /// Remove every file of the old segment `base`.
    DeleteSegment {
        /// The old segment's base offset.
        base: i64,
    },
    /// Rename `<base>.{index,timeindex}.swap` then `<base>.log.swap` over the files without
    /// the suffix; fsync the directory.
    FinishSwap {
        /// The destination's base offset.
        base: i64,
    },
    /// Record the cleaner checkpoint of this partition (atomically).
    WriteCheckpoint {
        /// The new first dirty offset.
        first_dirty: i64,
    },
    /// The clean failed: remove `<base>.*.cleaned` if `cleaned` names one; nothing else.
    Abort {
        /// The destination being written, if any.
        cleaned: Option<i64>,
        /// Why.
        error: CleanError,
    },
    /// Finished.
    Done,
}

/// Why a clean stopped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CleanError {
    /// A stored batch is corrupt.
    #[error("segment {segment} position {position}: {error}")]
    Batch {
        /// Segment base.
        segment: i64,
        /// Byte position.
        position: u64,
        /// What is wrong.
        error: BatchError,
    },
    /// The file held fewer bytes than its metadata says.
    #[error("segment {segment} is shorter than {position} bytes")]
    Truncated {
        /// Segment base.
        segment: i64,
        /// Where the bytes ran out.
        position: u64,
    },
    /// One batch has more records than the whole key map holds.
    #[error("the batch at offset {offset} has {records} records, the key map holds {capacity}")]
    MapTooSmall {
        /// The batch's base offset.
        offset: i64,
        /// Its record count.
        records: i32,
        /// The map's capacity.
        capacity: usize,
    },
}

/// What a clean did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Records' fates in pass 2.
    pub records: RecordCounts,
    /// Bytes read in both passes.
    pub bytes_read: u64,
    /// Bytes written to destinations.
    pub bytes_written: u64,
    /// Keys in the map at the end of pass 1.
    pub map_keys: usize,
    /// Destination segments written.
    pub segments_written: usize,
}

#[derive(Debug)]
struct Dest {
    group: Range<usize>,
    scan: SegmentScan,
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Phase {
    Map { seg: usize, pos: u64 },
    Rewrite { group: usize, src: usize, pos: u64 },
    Done,
}

/// One clean of one partition (see the module docs).
#[derive(Debug)]
pub struct CleanJob {
    segs: Vec<SegmentInfo>,
    first_dirty: i64,
    first_uncleanable: i64,
    delete_horizon_ms: i64,
    producer_last: BTreeSet<i64>,
    cfg: CleanerConfig,
    segment_bytes: u64,
    index_interval: u32,
    map: KeyMap,
    map_end: Option<i64>,
    groups: Vec<Range<usize>>,
    dest: Option<Dest>,
    phase: Phase,
    queue: VecDeque<CleanStep>,
    waiting: Option<(usize, u64, u64)>,
    min_read: u64,
    stats: CleanStats,
    /// A planted bug the simulator turned on (only with the `canary` feature).
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

/// The whole batches at the start of `bytes` (read at `pos` of segment `seg`): each batch's
/// position in `bytes` and header, the bytes they take, and the size of an incomplete batch
/// after them when its header says so.
type Batches = (Vec<(usize, BatchHeader)>, usize, Option<usize>);

fn whole_batches(bytes: &[u8], seg: i64, pos: u64) -> Result<Batches, CleanError> {
    let mut out = Vec::new();
    let mut at = 0;
    let bad = |at: usize, error| CleanError::Batch {
        segment: seg,
        position: pos + at as u64,
        error,
    };
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < batch::LOG_OVERHEAD {
            return Ok((out, at, None));
        }
        let size = batch::peek_size(rest).map_err(|e| bad(at, e))?;
        if size > rest.len() {
            return Ok((out, at, Some(size)));
        }
        let h = batch::verify_stored(&rest[..size]).map_err(|e| bad(at, e))?;
        out.push((at, h));
        at += size;
    }
    Ok((out, at, None))
}

impl CleanJob {
    /// A clean of the log `segments` (all of them in offset order, the active one last) over
    /// `range` (from [`super::choose::cleanable`]), keeping the batches at `producer_last`
    /// (from [`crate::producer::ProducerStates::batch_offsets_to_keep`]) at least as headers.
    pub fn new(
        segments: Vec<SegmentInfo>,
        range: &Cleanable,
        producer_last: BTreeSet<i64>,
        segment_bytes: u64,
        index_interval_bytes: u32,
        cfg: CleanerConfig,
    ) -> CleanJob {
        assert!(
            segments.windows(2).all(|w| w[0].next_offset == w[1].base),
            "segments are contiguous and in order"
        );
        let fu = range.first_uncleanable;
        let phase = match segments
            .iter()
            .position(|s| s.next_offset > range.first_dirty && s.base < fu)
        {
            Some(seg) if range.first_dirty < fu => Phase::Map { seg, pos: 0 },
            _ => Phase::Done,
        };
        // No more keys than offsets in the dirty range: a small partition's clean does not
        // allocate (and zero) the whole dedupe buffer.
        let map = match phase {
            Phase::Done => KeyMap::with_budget(0),
            _ => {
                let offsets = (fu - range.first_dirty).max(0) as u64;
                let need = (offsets.saturating_mul(100) / super::keymap::LOAD_FACTOR_PERCENT + 2)
                    .saturating_mul(super::keymap::ENTRY_BYTES);
                KeyMap::with_budget(cfg.dedupe_buffer_bytes.min(need))
            }
        };
        CleanJob {
            segs: segments,
            first_dirty: range.first_dirty,
            first_uncleanable: fu,
            delete_horizon_ms: range.delete_horizon_ms,
            producer_last,
            cfg,
            segment_bytes,
            index_interval: index_interval_bytes,
            map,
            map_end: None,
            groups: Vec::new(),
            dest: None,
            phase,
            queue: VecDeque::new(),
            waiting: None,
            min_read: 0,
            stats: CleanStats::default(),
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns a planted bug on (simulator only): handed to every batch it cleans.
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    /// What the clean did so far.
    pub fn stats(&self) -> CleanStats {
        self.stats
    }

    /// Where pass 1 ended (the next first dirty offset), once it has.
    pub fn map_end(&self) -> Option<i64> {
        self.map_end
    }

    /// The next step. Answer a [`CleanStep::Read`] before polling again.
    pub fn poll(&mut self) -> CleanStep {
        assert!(self.waiting.is_none(), "answer the read first");
        loop {
            if let Some(s) = self.queue.pop_front() {
                return s;
            }
            let step = match self.phase {
                Phase::Map { seg, pos } => self.next_map_read(seg, pos),
                Phase::Rewrite { group, src, pos } => self.next_rewrite_step(group, src, pos),
                Phase::Done => return CleanStep::Done,
            };
            if let Some(s) = step {
                return s;
            }
        }
    }

    /// A read of segment `seg` from `pos` (at least as large as the batch that did not fit).
    fn read(&mut self, seg: usize, pos: u64) -> CleanStep {
        let s = &self.segs[seg];
        let len = self
            .cfg
            .read_buffer_bytes
            .max(self.min_read)
            .min(s.size - pos);
        self.min_read = 0;
        self.waiting = Some((seg, pos, len));
        CleanStep::Read {
            segment: s.base,
            position: pos,
            len,
        }
    }

    fn next_map_read(&mut self, mut seg: usize, mut pos: u64) -> Option<CleanStep> {
        while seg < self.segs.len() && self.segs[seg].base < self.first_uncleanable {
            if pos < self.segs[seg].size {
                self.phase = Phase::Map { seg, pos };
                return Some(self.read(seg, pos));
            }
            seg += 1;
            pos = 0;
        }
        self.finish_map(self.first_uncleanable);
        None
    }

    /// Ends pass 1 at `end` and plans pass 2.
    fn finish_map(&mut self, end: i64) {
        self.map_end = Some(end);
        self.stats.map_keys = self.map.len();
        let k = self.segs.iter().take_while(|s| s.base < end).count();
        self.groups = group::group_segments(&self.segs[..k], self.segment_bytes);
        self.phase = Phase::Rewrite {
            group: 0,
            src: 0,
            pos: 0,
        };
    }

    fn next_rewrite_step(
        &mut self,
        group: usize,
        mut src: usize,
        mut pos: u64,
    ) -> Option<CleanStep> {
        let Some(range) = self.groups.get(group).cloned() else {
            self.phase = Phase::Done;
            let first_dirty = self.map_end.expect("pass 1 ended");
            return Some(CleanStep::WriteCheckpoint { first_dirty });
        };
        if self.dest.is_none() {
            let base = self.segs[range.start].base;
            let modified = self.group_modified(&range);
            let scan = SegmentScan::new(base, modified, self.index_interval).allow_gaps();
            self.dest = Some(Dest {
                group: range.clone(),
                scan,
                buf: Vec::new(),
            });
            return Some(CleanStep::CreateCleaned { base });
        }
        while src < range.end {
            if pos < self.segs[src].size {
                self.phase = Phase::Rewrite { group, src, pos };
                return Some(self.read(src, pos));
            }
            src += 1;
            pos = 0;
        }
        self.end_group();
        self.phase = Phase::Rewrite {
            group: group + 1,
            src: range.end,
            pos: 0,
        };
        None
    }

    fn group_modified(&self, range: &Range<usize>) -> u64 {
        self.segs[range.clone()]
            .iter()
            .map(|s| s.modified_ms)
            .max()
            .unwrap_or(0)
    }

    /// Queues the commit of the finished destination (module docs, steps 3 to 7).
    fn end_group(&mut self) {
        let mut dest = self.dest.take().expect("a destination is open");
        let base = self.segs[dest.group.start].base;
        if !dest.buf.is_empty() {
            let bytes = std::mem::take(&mut dest.buf);
            self.queue.push_back(CleanStep::Append { base, bytes });
        }
        let mut seg = dest.scan.finish();
        seg.modified_ms = self.group_modified(&dest.group);
        let end = self.segs[dest.group.end - 1].next_offset;
        assert_eq!(
            seg.next_offset, end,
            "a destination keeps its group's offsets"
        );
        self.stats.segments_written += 1;
        self.stats.bytes_written += seg.size;
        let replaces: Vec<i64> = self.segs[dest.group.clone()]
            .iter()
            .map(|s| s.base)
            .collect();
        self.queue.push_back(CleanStep::SealCleaned {
            segment: Box::new(seg.clone()),
        });
        self.queue.push_back(CleanStep::Swap { base });
        self.queue.push_back(CleanStep::Install {
            segment: Box::new(seg),
            replaces: replaces.clone(),
        });
        for old in replaces.into_iter().filter(|b| *b != base) {
            self.queue.push_back(CleanStep::DeleteSegment { base: old });
        }
        self.queue.push_back(CleanStep::FinishSwap { base });
    }

    /// The answer to [`CleanStep::Read`]: the bytes read. On an error the next poll says
    /// [`CleanStep::Abort`].
    pub fn on_read(&mut self, bytes: &[u8]) -> Result<(), CleanError> {
        let (seg, pos, len) = self.waiting.take().expect("no read was asked for");
        let r = if (bytes.len() as u64) < len {
            Err(CleanError::Truncated {
                segment: self.segs[seg].base,
                position: pos + bytes.len() as u64,
            })
        } else {
            self.stats.bytes_read += len;
            match self.phase {
                Phase::Map { .. } => self.index_chunk(seg, pos, bytes),
                Phase::Rewrite { .. } => self.clean_chunk(seg, pos, bytes),
                Phase::Done => unreachable!("a read was answered after the end"),
            }
        };
        if let Err(e) = &r {
            self.fail(e.clone());
        }
        r
    }

    fn fail(&mut self, error: CleanError) {
        // Only the open destination's appends can be queued while a read is answered.
        assert!(self
            .queue
            .iter()
            .all(|s| matches!(s, CleanStep::Append { .. })));
        self.queue.clear();
        let cleaned = self.dest.take().map(|d| self.segs[d.group.start].base);
        self.queue.push_back(CleanStep::Abort { cleaned, error });
        self.phase = Phase::Done;
    }

    /// After the whole batches of a chunk: the position to read from next. A chunk without
    /// a whole batch makes the next read as large as the batch; one past the segment's end is
    /// an error.
    fn advance(
        &mut self,
        seg: usize,
        pos: u64,
        used: usize,
        need: Option<usize>,
    ) -> Result<u64, CleanError> {
        let next = pos + used as u64;
        if used == 0 {
            let need = need.unwrap_or(batch::LOG_OVERHEAD) as u64;
            if next + need > self.segs[seg].size {
                return Err(CleanError::Truncated {
                    segment: self.segs[seg].base,
                    position: next,
                });
            }
            self.min_read = need;
        }
        Ok(next)
    }

    /// Pass 1 over one chunk: indexes its batches until the map is full.
    fn index_chunk(&mut self, seg: usize, pos: u64, bytes: &[u8]) -> Result<(), CleanError> {
        let base = self.segs[seg].base;
        let (batches, used, need) = whole_batches(bytes, base, pos)?;
        for (at, h) in batches {
            if h.is_control() || h.last_offset() < self.first_dirty {
                continue;
            }
            let stored = &bytes[at..at + h.size];
            let d = super::decode::decode(stored, &h).map_err(|error| CleanError::Batch {
                segment: base,
                position: pos + at as u64,
                error,
            })?;
            let keyed: Vec<_> = d
                .records
                .iter()
                .filter(|r| r.offset >= self.first_dirty)
                .filter_map(|r| d.key(r).map(|k| (super::hash::key_hash(k), r.offset)))
                .collect();
            if !self.map.has_room_for(keyed.len()) {
                let end = h.base_offset.max(self.first_dirty);
                if end <= self.first_dirty {
                    return Err(CleanError::MapTooSmall {
                        offset: h.base_offset,
                        records: h.record_count,
                        capacity: self.map.capacity(),
                    });
                }
                self.finish_map(end);
                return Ok(());
            }
            for (hash, offset) in keyed {
                self.map.put(&hash, offset);
            }
        }
        let next = self.advance(seg, pos, used, need)?;
        self.phase = Phase::Map { seg, pos: next };
        Ok(())
    }

    /// Pass 2 over one chunk of source segment `src`: cleans its batches into the destination.
    fn clean_chunk(&mut self, src: usize, pos: u64, bytes: &[u8]) -> Result<(), CleanError> {
        let s = self.segs[src];
        let (batches, used, need) = whole_batches(bytes, s.base, pos)?;
        let dest = self.dest.as_mut().expect("a destination is open");
        let last_src = dest
            .group
            .clone()
            .rev()
            .find(|i| self.segs[*i].size > 0)
            .expect("a source being read is not empty");
        for (at, h) in batches {
            let ends_dest = src == last_src && pos + (at + h.size) as u64 == s.size;
            let ctx = BatchContext {
                map: &self.map,
                first_dirty: self.first_dirty,
                segment_modified_ms: s.modified_ms,
                delete_horizon_ms: self.delete_horizon_ms,
                keep_header: filter::must_keep_header(&h, &self.producer_last, ends_dest),
                #[cfg(feature = "canary")]
                canary: self.canary,
            };
            let stored = &bytes[at..at + h.size];
            let c = rewrite::clean_batch(stored, &h, &ctx).map_err(|error| CleanError::Batch {
                segment: s.base,
                position: pos + at as u64,
                error,
            })?;
            self.stats.records.add(&c.counts);
            if let Some(out) = c.bytes {
                dest.scan.push(&out).expect("a cleaned batch verifies");
                dest.buf.extend_from_slice(&out);
            }
        }
        if dest.buf.len() as u64 >= self.cfg.write_buffer_bytes {
            let base = self.segs[dest.group.start].base;
            let bytes = std::mem::take(&mut dest.buf);
            self.queue.push_back(CleanStep::Append { base, bytes });
        }
        let next = self.advance(src, pos, used, need)?;
        if let Phase::Rewrite { group, .. } = self.phase {
            self.phase = Phase::Rewrite {
                group,
                src,
                pos: next,
            };
        }
        Ok(())
    }

    /// Asserts the module's invariants.
    pub fn check_invariants(&self) {
        if let Some(end) = self.map_end {
            assert!(self.first_dirty <= end && end <= self.first_uncleanable);
        }
        if let Some(l) = self.map.latest_offset() {
            assert!(l >= self.first_dirty && l < self.first_uncleanable);
        }
        if self.waiting.is_some() {
            assert!(
                self.queue.is_empty(),
                "a read is only asked with nothing queued"
            );
        }
        if let Some((seg, pos, len)) = self.waiting {
            assert!(self.segs[seg].base < self.first_uncleanable.max(self.map_end.unwrap_or(0)));
            assert!(pos + len <= self.segs[seg].size);
        }
        self.map.check_invariants();
    }
}
