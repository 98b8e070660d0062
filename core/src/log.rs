//! The partition log: segments, sparse offset and time indexes, offset assignment, rolling,
//! retention and recovery — decided here, carried out by the shell.
//!
//! The shell holds the files. Every mutation here returns the storage work it implies (write these
//! bytes at this position of this segment, seal and index that segment, delete those segments),
//! and the shell performs it before handing the log its next input.
//!
//! Invariants this module keeps (checked by [`PartitionLog::check_invariants`]):
//! - Segments are keyed by base offset, contiguous: each segment's `next_offset` is the next
//!   segment's base; only the last (active) segment takes appends.
//! - Offsets are dense and increasing: the log end offset only grows by whole batches, each given
//!   the offsets `[leo, leo + count)`.
//! - `log_start_offset` is the first segment's base offset and never goes backwards.
//! - Index points are strictly increasing in offset and position and lie inside their segment.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::batch::{self, BatchError, BatchHeader, Stamp};
use crate::config::{LogConfig, TimestampType};
use crate::producer::{CachedBatch, ProducerEntry, ProducerStates, SequenceCheck};
use crate::records;

/// One sparse index point: where a batch starts, and the largest timestamp before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPoint {
    /// Base offset of the batch, relative to the segment base.
    pub rel_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
    /// Largest max-timestamp of all batches before this point (-1 if none).
    pub max_ts_before: i64,
}

/// Bytes per offset-index entry on disk (relative offset, position), as Kafka lays it out.
pub const OFFSET_INDEX_ENTRY: usize = 8;
/// Bytes per time-index entry on disk (timestamp, relative offset), as Kafka lays it out.
pub const TIME_INDEX_ENTRY: usize = 12;

/// One segment's metadata; its bytes live in the shell's `<base>.log` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Offset of its first batch.
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    /// Bytes of batches in it.
    pub size: u64,
    /// Largest batch max-timestamp in it (-1 if empty).
    pub max_timestamp: i64,
    /// Injected time when it was created, for `segment.ms`.
    pub created_ms: u64,
    /// Injected time of its last append (the file's mtime after a restart): what retention
    /// judges it by when no record in it has a timestamp, as Kafka uses the file's mtime.
    pub modified_ms: u64,
    points: Vec<IndexPoint>,
    bytes_since_point: u64,
}

impl Segment {
    /// An empty segment starting at `base_offset`.
    pub fn new(base_offset: i64, created_ms: u64) -> Self {
        Self {
            base_offset,
            next_offset: base_offset,
            size: 0,
            max_timestamp: -1,
            created_ms,
            modified_ms: created_ms,
            points: Vec::new(),
            bytes_since_point: 0,
        }
    }

    /// True when it holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The time retention judges it by: its newest record's timestamp, or when none of its
    /// records has one, the time of its last append.
    pub fn newest_ms(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            i64::try_from(self.modified_ms).unwrap_or(i64::MAX)
        }
    }

    /// Index points (for tests and describing).
    pub fn points(&self) -> &[IndexPoint] {
        &self.points
    }

    /// Adds a batch that sits at `position`; keeps the sparse index every `interval` bytes.
    fn push(&mut self, h: &BatchHeader, position: u64, interval: u32) {
        debug_assert_eq!(position, self.size);
        debug_assert!(h.base_offset >= self.next_offset);
        if position > 0 && self.bytes_since_point >= u64::from(interval) {
            self.points.push(IndexPoint {
                rel_offset: (h.base_offset - self.base_offset) as u32,
                position: position as u32,
                max_ts_before: self.max_timestamp,
            });
            self.bytes_since_point = 0;
        }
        self.bytes_since_point += h.size as u64;
        self.size = position + h.size as u64;
        self.next_offset = h.next_offset();
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
    }

    /// Position to start reading from to find `offset` (the floor index point).
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let rel = (offset - self.base_offset).max(0);
        let i = self
            .points
            .partition_point(|p| i64::from(p.rel_offset) <= rel);
        if i == 0 {
            0
        } else {
            u64::from(self.points[i - 1].position)
        }
    }

    /// Position to start scanning from to find the first batch with max timestamp >= `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self.points.partition_point(|p| p.max_ts_before < ts);
        if i == 0 {
            0
        } else {
            u64::from(self.points[i - 1].position)
        }
    }

    /// The `.index` file bytes: (relative offset u32, position u32) big-endian per point.
    pub fn encode_offset_index(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.points.len() * OFFSET_INDEX_ENTRY);
        for p in &self.points {
            out.extend_from_slice(&p.rel_offset.to_be_bytes());
            out.extend_from_slice(&p.position.to_be_bytes());
        }
        out
    }

    /// The `.timeindex` file bytes: (timestamp i64, relative offset u32) big-endian per point.
    pub fn encode_time_index(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.points.len() * TIME_INDEX_ENTRY);
        for p in &self.points {
            out.extend_from_slice(&p.max_ts_before.to_be_bytes());
            out.extend_from_slice(&p.rel_offset.to_be_bytes());
        }
        out
    }

    /// Loads a sealed segment from its index files and its size; `None` if they are damaged.
    ///
    /// The result still needs [`SegmentScan::resume`] over the bytes after the last index point
    /// to learn the next offset and newest timestamps.
    pub fn from_indexes(
        base_offset: i64,
        size: u64,
        offset_index: &[u8],
        time_index: &[u8],
        created_ms: u64,
    ) -> Option<Segment> {
        if !offset_index.len().is_multiple_of(OFFSET_INDEX_ENTRY)
            || !time_index.len().is_multiple_of(TIME_INDEX_ENTRY)
            || offset_index.len() / OFFSET_INDEX_ENTRY != time_index.len() / TIME_INDEX_ENTRY
            || size > u64::from(u32::MAX)
        {
            return None;
        }
        let mut points: Vec<IndexPoint> = Vec::new();
        for (o, t) in offset_index
            .chunks_exact(OFFSET_INDEX_ENTRY)
            .zip(time_index.chunks_exact(TIME_INDEX_ENTRY))
        {
            let rel_offset = u32::from_be_bytes(o[0..4].try_into().ok()?);
            let position = u32::from_be_bytes(o[4..8].try_into().ok()?);
            let max_ts_before = i64::from_be_bytes(t[0..8].try_into().ok()?);
            let t_rel = u32::from_be_bytes(t[8..12].try_into().ok()?);
            if t_rel != rel_offset || u64::from(position) >= size || position == 0 {
                return None;
            }
            if let Some(prev) = points.last() {
                if rel_offset <= prev.rel_offset
                    || position <= prev.position
                    || max_ts_before < prev.max_ts_before
                {
                    return None;
                }
            }
            points.push(IndexPoint {
                rel_offset,
                position,
                max_ts_before,
            });
        }
        let (next_offset, start, max_ts) = match points.last() {
            Some(p) => (
                base_offset + i64::from(p.rel_offset),
                u64::from(p.position),
                p.max_ts_before,
            ),
            None => (base_offset, 0, -1),
        };
        Some(Segment {
            base_offset,
            next_offset,
            size: start,
            max_timestamp: max_ts,
            created_ms,
            modified_ms: created_ms,
            points,
            bytes_since_point: 0,
        })
    }
}

/// Rebuilds a segment's metadata from its batches, read in order from the shell's file.
///
/// Feed each stored batch to [`SegmentScan::push`]; the first error marks where the valid log
/// ends (a torn or corrupt tail) and the shell truncates the file there.
#[derive(Debug)]
pub struct SegmentScan {
    segment: Segment,
    interval: u32,
    /// Whether a batch may start past the previous one's end (a cleaned segment's gaps).
    gaps: bool,
    /// The last batch pushed (what the `truncate-acked` canary cuts).
    #[cfg(feature = "canary")]
    last: Option<BatchHeader>,
    /// A planted bug the simulator turned on (only with the `canary` feature).
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

impl SegmentScan {
    /// Starts a scan of an empty segment.
    pub fn new(base_offset: i64, created_ms: u64, index_interval_bytes: u32) -> Self {
        Self::resume(Segment::new(base_offset, created_ms), index_interval_bytes)
    }

    /// Continues a segment loaded from its indexes, from `segment.size`.
    pub fn resume(segment: Segment, index_interval_bytes: u32) -> Self {
        Self {
            segment,
            interval: index_interval_bytes,
            gaps: false,
            #[cfg(feature = "canary")]
            last: None,
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns a planted bug on (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    /// Accepts gaps between batches (offsets still strictly increasing), as a segment the
    /// cleaner wrote has: see [`crate::cleaner`].
    pub fn allow_gaps(mut self) -> Self {
        self.gaps = true;
        self
    }

    /// Byte position where the next batch is expected.
    pub fn position(&self) -> u64 {
        self.segment.size
    }

    /// Checks one stored batch (CRC, header, offset continuity) and adds it.
    pub fn push(&mut self, stored: &[u8]) -> Result<BatchHeader, BatchError> {
        #[cfg(feature = "canary")]
        let h = if self.canary == Some(crate::canary::Canary::SkipCrcOnRecovery) {
            batch::parse_header(stored)?
        } else {
            batch::verify_stored(stored)?
        };
        #[cfg(not(feature = "canary"))]
        let h = batch::verify_stored(stored)?;
        if h.size != stored.len() {
            return Err(BatchError::Invalid(
                "batch length disagrees with bytes read",
            ));
        }
        if h.base_offset < self.segment.next_offset
            || (!self.gaps && self.segment.size > 0 && h.base_offset != self.segment.next_offset)
        {
            return Err(BatchError::Invalid(
                "batch offset breaks the log's offset sequence",
            ));
        }
        if h.next_offset() - self.segment.base_offset > i64::from(u32::MAX) {
            return Err(BatchError::Invalid(
                "batch offset too far from segment base",
            ));
        }
        if self.segment.size + h.size as u64 > u64::from(u32::MAX) {
            return Err(BatchError::Invalid("segment larger than 4 GiB"));
        }
        // Judge the batch by its records, not its header: data written before the leader checked
        // timestamps may carry a max of -1 or a wrong one (so recovery heals it).
        #[cfg(feature = "canary")]
        let trust = self.canary == Some(crate::canary::Canary::TrustHeaderTimestamps);
        #[cfg(not(feature = "canary"))]
        let trust = false;
        let h = if trust {
            h
        } else {
            BatchHeader {
                max_timestamp: records::stored_max_timestamp(stored, &h),
                ..h
            }
        };
        let pos = self.segment.size;
        self.segment.push(&h, pos, self.interval);
        #[cfg(feature = "canary")]
        {
            self.last = Some(h);
        }
        Ok(h)
    }

    /// The segment as rebuilt.
    #[cfg_attr(not(feature = "canary"), allow(unused_mut))]
    pub fn finish(mut self) -> Segment {
        #[cfg(feature = "canary")]
        if self.canary == Some(crate::canary::Canary::TruncateAcked) {
            if let Some(h) = self.last.take() {
                let seg = &mut self.segment;
                seg.size -= h.size as u64;
                seg.next_offset = h.base_offset;
                seg.points.retain(|p| u64::from(p.position) < seg.size);
            }
        }
        self.segment
    }
}

/// Why a leader refuses a produced record with a null key on a topic whose cleanup.policy
/// includes `compact` (as [`AppendError::InvalidRecord`]: INVALID_RECORD, Kafka's wording).
pub const COMPACTED_NULL_KEY: &str = "compacted topic cannot accept message without key";

/// Why an append was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppendError {
    /// CRC or structure failed: CORRUPT_MESSAGE.
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] BatchError),
    /// Valid bytes, but not a record set the log takes: INVALID_RECORD.
    #[error("invalid record set: {0}")]
    InvalidRecord(&'static str),
    /// Larger than max.message.bytes: MESSAGE_TOO_LARGE.
    #[error("batch of {size} bytes is larger than max.message.bytes {max}")]
    TooLarge {
        /// Batch size.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// Larger than a whole segment: RECORD_LIST_TOO_LARGE.
    #[error("batch of {size} bytes is larger than segment.bytes {max}")]
    LargerThanSegment {
        /// Batch size.
        size: usize,
        /// The limit.
        max: u64,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error("out of order sequence for producer {0}")]
    OutOfOrderSequence(i64),
    /// INVALID_PRODUCER_EPOCH.
    #[error("producer {0} epoch is older than the current one")]
    InvalidProducerEpoch(i64),
    /// A record's timestamp outside message.timestamp.before/after.max.ms: INVALID_TIMESTAMP.
    #[error("record timestamp {timestamp} is out of range of the broker's time {now}")]
    InvalidTimestamp {
        /// The record's timestamp.
        timestamp: i64,
        /// The broker's time.
        now: i64,
    },
}

/// A segment sealed by a roll: the shell syncs its log, writes its indexes, and opens the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolled {
    /// Base of the segment now sealed.
    pub sealed_base: i64,
    /// Base of the new active segment.
    pub new_base: i64,
    /// Producer-state snapshot as of `new_base`, for `<new_base>.snapshot`.
    pub producer_snapshot: Vec<u8>,
}

/// Where the shell writes an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAt {
    /// Segment base (the file).
    pub segment_base: i64,
    /// Byte position in it (its current end).
    pub position: u64,
    /// Bytes to write.
    pub len: usize,
}

/// The outcome of an accepted append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The append time written under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// A roll the shell must carry out before the write.
    pub roll: Option<Rolled>,
    /// The write; `None` for a duplicate that writes nothing.
    pub write: Option<WriteAt>,
}

/// What a fetch should read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPlan {
    /// Nothing at or after the offset yet.
    Empty,
    /// Read `len` bytes at `position` of segment `segment_base`, then trim with [`trim_read`].
    Range {
        /// Segment base (the file).
        segment_base: i64,
        /// Start position (a batch boundary at or before the wanted offset).
        position: u64,
        /// Bytes to read.
        len: u64,
    },
}

/// A fetch offset outside `[log_start_offset, log_end_offset]`: OFFSET_OUT_OF_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("offset {offset} is outside [{log_start}, {log_end}]")]
pub struct OffsetOutOfRange {
    /// Offset asked for.
    pub offset: i64,
    /// First offset held.
    pub log_start: i64,
    /// Log end offset.
    pub log_end: i64,
}

/// Retention's result: an optional roll, then segments to delete.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retained {
    /// A roll of an expired active segment, done before deleting it.
    pub roll: Option<Rolled>,
    /// Bases of segments to delete, oldest first.
    pub deleted: Vec<i64>,
}

/// One partition's log.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    producers: ProducerStates,
    leader_epoch: i32,
    /// (epoch, start offset) in increasing order, for OffsetForLeaderEpoch.
    epochs: Vec<(i32, i64)>,
    /// What the last append changed, so `abort_append` can put it back exactly.
    undo: Option<Undo>,
    /// The log start DeleteRecords moved (or a follower took from its leader): may lie inside
    /// the first segment; the log starts at the larger of it and the first segment's base.
    start: i64,
    /// A planted bug the simulator turned on (only with the `canary` feature).
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

/// The state one append overwrote: restored by `abort_append` when the write fails.
#[derive(Debug, Clone)]
struct Undo {
    base_offset: i64,
    bytes_since_point: u64,
    max_timestamp: i64,
    modified_ms: u64,
    points: usize,
    /// The producer id, its entry before the append recorded the batch, and the batch's epoch
    /// and first sequence (`None`: not an idempotent batch).
    producer: Option<(i64, Option<ProducerEntry>, i16, i32)>,
}

impl PartitionLog {
    /// A new, empty log at offset 0.
    pub fn new(config: LogConfig, now_ms: u64) -> Self {
        Self::recovered(
            config,
            vec![Segment::new(0, now_ms)],
            ProducerStates::new(),
            0,
        )
    }

    /// A log rebuilt from recovered segments (ordered, contiguous; at least one) and producer state.
    pub fn recovered(
        config: LogConfig,
        segments: Vec<Segment>,
        producers: ProducerStates,
        leader_epoch: i32,
    ) -> Self {
        assert!(!segments.is_empty(), "a log has at least one segment");
        let start = segments[0].base_offset;
        let segments: BTreeMap<i64, Segment> =
            segments.into_iter().map(|s| (s.base_offset, s)).collect();
        // Producer state never names offsets the log does not hold (a snapshot is taken at the
        // log end, so this only bites on a log cut shorter after its snapshot was chosen).
        let mut producers = producers;
        let end = segments
            .values()
            .next_back()
            .map_or(start, |s| s.next_offset);
        producers.truncate_to(end);
        let log = Self {
            config,
            segments,
            producers,
            leader_epoch,
            epochs: vec![(leader_epoch, start)],
            undo: None,
            start,
            #[cfg(feature = "canary")]
            canary: None,
        };
        log.check_invariants();
        log
    }

    /// Asserts the module's invariants; cheap enough to run after every input in tests and sim.
    pub fn check_invariants(&self) {
        assert!(
            self.start <= self.log_end_offset(),
            "the log start never passes the log end"
        );
        let mut expect: Option<i64> = None;
        for (base, s) in &self.segments {
            assert_eq!(*base, s.base_offset);
            if let Some(e) = expect {
                assert_eq!(s.base_offset, e, "segments are contiguous");
            }
            assert!(s.next_offset >= s.base_offset);
            assert_eq!(s.size == 0, s.next_offset == s.base_offset);
            let mut prev: Option<&IndexPoint> = None;
            for p in &s.points {
                assert!(u64::from(p.position) < s.size);
                assert!(i64::from(p.rel_offset) < s.next_offset - s.base_offset);
                if let Some(q) = prev {
                    assert!(p.rel_offset > q.rel_offset && p.position > q.position);
                }
                prev = Some(p);
            }
            expect = Some(s.next_offset);
        }
        self.producers.check_invariants(self.log_end_offset());
    }

    /// Turns a planted bug on in this log's producer state (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
        self.producers.set_canary(canary);
    }

    /// The resolved config.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the config (an AlterConfigs); takes effect from the next append or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset still held: the first segment's base, or past it where DeleteRecords (or
    /// the leader's log start) moved it.
    pub fn log_start_offset(&self) -> i64 {
        self.first().base_offset.max(self.start)
    }

    /// Moves the log start up to `offset` (DeleteRecords, or a follower following its leader's
    /// log start; never past the log end, never back): the segments now wholly below it, other
    /// than the active one, are returned for the driver to delete (their files) and forgotten.
    pub fn advance_log_start(&mut self, offset: i64) -> Vec<i64> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset() {
            return Vec::new();
        }
        self.start = offset;
        let active = self.active().base_offset;
        let gone: Vec<i64> = self
            .segments
            .values()
            .take_while(|s| s.base_offset != active && s.next_offset <= offset)
            .map(|s| s.base_offset)
            .collect();
        for b in &gone {
            self.segments.remove(b);
        }
        self.check_invariants();
        gone
    }

    /// The largest record timestamp in the log (-1 if no record has one): what ListOffsets
    /// v7+ looks up for MAX_TIMESTAMP (-3, KIP-734).
    pub fn max_timestamp(&self) -> i64 {
        self.segments
            .values()
            .map(|s| s.max_timestamp)
            .max()
            .unwrap_or(-1)
            .max(-1)
    }

    /// Offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Current leader epoch stamped on appends.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Moves to a newer leader epoch (this replica became leader again); appends from here
    /// on are stamped with it. An older or equal epoch changes nothing.
    pub fn set_leader_epoch(&mut self, epoch: i32) {
        if epoch <= self.leader_epoch {
            return;
        }
        let end = self.log_end_offset();
        if self.epochs.last().is_some_and(|(_, start)| *start == end) {
            self.epochs.pop();
        }
        self.epochs.push((epoch, end));
        self.leader_epoch = epoch;
    }

    /// The leader-epoch history: `(epoch, first offset)` in increasing order.
    pub fn epochs(&self) -> &[(i32, i64)] {
        &self.epochs
    }

    /// Restores the leader-epoch history saved by the shell, dropping entries past the log
    /// end (their batches were lost) and keeping the first entry at or below the log start.
    pub fn restore_epochs(&mut self, saved: &[(i32, i64)]) {
        let end = self.log_end_offset();
        let mut kept: Vec<(i32, i64)> = Vec::new();
        for &(e, start) in saved {
            if start > end || kept.last().is_some_and(|(le, ls)| e <= *le || start < *ls) {
                continue;
            }
            kept.push((e, start));
        }
        // Batches recovered after the saved history (its write was lost) extend it.
        for &(e, start) in &self.epochs {
            if kept.last().is_none_or(|(le, ls)| e > *le && start >= *ls) {
                kept.push((e, start));
            }
        }
        if kept.is_empty() {
            return;
        }
        self.leader_epoch = kept.last().map(|(e, _)| *e).unwrap_or(0);
        self.epochs = kept;
    }

    /// Epoch of the last batch in the log (what a follower fetches with), or -1 when empty.
    pub fn last_epoch(&self) -> i32 {
        let end = self.log_end_offset();
        self.epochs
            .iter()
            .rev()
            .find(|(_, start)| *start < end)
            .map(|(e, _)| *e)
            .unwrap_or(-1)
    }

    /// Appends one batch copied from the leader, keeping its offsets: a follower's append. It
    /// must start at the log end. The batch's leader epoch extends the epoch history, and its
    /// producer state is recorded so this replica dedupes retries if it becomes leader.
    pub fn append_replicated(
        &mut self,
        now_ms: u64,
        batch_bytes: &[u8],
    ) -> Result<Appended, AppendError> {
        let mut h = batch::verify_stored(batch_bytes)?;
        if h.size != batch_bytes.len() {
            return Err(AppendError::InvalidRecord("one whole batch expected"));
        }
        // A leader stores headers that agree with their records; data it wrote before it checked
        // them may say -1 (below its first timestamp): judge such a batch by its records.
        if !h.is_log_append_time() && h.max_timestamp < h.base_timestamp {
            h.max_timestamp = records::stored_max_timestamp(batch_bytes, &h);
        }
        let base_offset = self.log_end_offset();
        if h.base_offset != base_offset {
            return Err(AppendError::InvalidRecord(
                "a replicated batch must start at the log end",
            ));
        }
        // An entry at the log end holds no batch (this replica led that epoch and wrote
        // nothing): the leader's history, not this one, says where its batches go.
        while self
            .epochs
            .last()
            .is_some_and(|(e, start)| *start == base_offset && *e > h.leader_epoch)
        {
            self.epochs.pop();
        }
        if h.leader_epoch < self.last_epoch() {
            return Err(AppendError::InvalidRecord(
                "a replicated batch carries an older leader epoch than the log",
            ));
        }
        if batch_bytes.len() as u64 > u64::from(u32::MAX) {
            return Err(AppendError::LargerThanSegment {
                size: batch_bytes.len(),
                max: u64::from(u32::MAX),
            });
        }
        let count = h.last_offset() + 1 - base_offset;
        let roll = self.roll_if_due(now_ms, base_offset, count, batch_bytes.len());
        if h.leader_epoch > self.epochs.last().map(|(e, _)| *e).unwrap_or(-1) {
            if self
                .epochs
                .last()
                .is_some_and(|(_, start)| *start == base_offset)
            {
                self.epochs.pop();
            }
            self.epochs.push((h.leader_epoch, base_offset));
            self.leader_epoch = self.leader_epoch.max(h.leader_epoch);
        }
        let write = self.push_batch(now_ms, &h, base_offset, batch_bytes.len());
        Ok(Appended {
            base_offset,
            last_offset: h.last_offset(),
            log_append_time: -1,
            log_start_offset: self.log_start_offset(),
            roll,
            write: Some(write),
        })
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// Segments in offset order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    /// One segment by base.
    pub fn segment(&self, base: i64) -> Option<&Segment> {
        self.segments.get(&base)
    }

    /// The producer state.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Forgets producers idle longer than `expiration_ms`.
    pub fn expire_producers(&mut self, now_ms: u64, expiration_ms: u64) {
        self.producers.expire(now_ms, expiration_ms);
    }

    fn first(&self) -> &Segment {
        self.segments.values().next().expect("at least one segment")
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("at least one segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("at least one segment")
    }

    fn roll(&mut self, now_ms: u64) -> Rolled {
        let sealed_base = self.active().base_offset;
        let new_base = self.log_end_offset();
        assert!(new_base > sealed_base, "never roll an empty segment");
        self.segments
            .insert(new_base, Segment::new(new_base, now_ms));
        Rolled {
            sealed_base,
            new_base,
            producer_snapshot: self.producers.to_snapshot(),
        }
    }

    /// Validates a produced record set (exactly one v2 batch), assigns its offsets in place and
    /// says where the shell must write it.
    pub fn append(&mut self, now_ms: u64, records: &mut [u8]) -> Result<Appended, AppendError> {
        let (appended, header) = self.append_split(now_ms, records)?;
        if appended.write.is_some() {
            records[..batch::HEADER_LEN].copy_from_slice(&header);
        }
        Ok(appended)
    }

    /// [`PartitionLog::append`] without changing the batch: also gives the header it is stored
    /// with, to be written followed by `records[HEADER_LEN..]` (so a produced batch is never
    /// copied to rewrite its offsets). A duplicate writes nothing and its header is zeros.
    pub fn append_split(
        &mut self,
        now_ms: u64,
        records: &[u8],
    ) -> Result<(Appended, [u8; batch::HEADER_LEN]), AppendError> {
        if records.len() > self.config.max_message_bytes as usize {
            return Err(AppendError::TooLarge {
                size: records.len(),
                max: self.config.max_message_bytes,
            });
        }
        if records.len() as u64 > self.config.segment_bytes {
            return Err(AppendError::LargerThanSegment {
                size: records.len(),
                max: self.config.segment_bytes,
            });
        }
        let produced = records::check_produced(records)?;
        let h = produced.header;
        if h.size != records.len() {
            return Err(AppendError::InvalidRecord(
                "a produce request carries exactly one record batch per partition",
            ));
        }
        if h.is_transactional() {
            return Err(AppendError::InvalidRecord(
                "transactional batches are not supported",
            ));
        }
        if h.base_timestamp < -1 {
            return Err(AppendError::InvalidRecord("timestamps below -1"));
        }
        // Kafka's LogValidator.validateKey: the cleaner keeps the newest record of each key, so
        // a record without one has no place in a compacted log. Only the leader checks what a
        // producer sent; a follower copies whatever its leader stored.
        if self.config.cleanup_policy.compact && produced.null_key {
            return Err(AppendError::InvalidRecord(COMPACTED_NULL_KEY));
        }
        let stamp = self.timestamp_stamp(now_ms, &produced)?;
        if h.has_producer_id() {
            match self.producers.check(&h) {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate(CachedBatch {
                    base_offset,
                    last_offset,
                    timestamp,
                    ..
                }) => {
                    let appended = Appended {
                        base_offset,
                        last_offset,
                        log_append_time: match self.config.timestamp_type {
                            TimestampType::LogAppendTime => timestamp,
                            TimestampType::CreateTime => -1,
                        },
                        log_start_offset: self.log_start_offset(),
                        roll: None,
                        write: None,
                    };
                    return Ok((appended, [0; batch::HEADER_LEN]));
                }
                SequenceCheck::OutOfOrder => {
                    return Err(AppendError::OutOfOrderSequence(h.producer_id))
                }
                SequenceCheck::InvalidEpoch => {
                    return Err(AppendError::InvalidProducerEpoch(h.producer_id))
                }
            }
        }
        let base_offset = self.log_end_offset();
        let count = i64::from(h.last_offset_delta) + 1;
        let roll = self.roll_if_due(now_ms, base_offset, count, records.len());
        let log_append_time = match stamp {
            Stamp::LogAppendTime(t) => t,
            Stamp::Keep | Stamp::CreateTime(_) => -1,
        };
        let header = batch::stamped_header(records, base_offset, self.leader_epoch, stamp);
        let h = batch::parse_header(&header).expect("validated above");
        let write = self.push_batch(now_ms, &h, base_offset, records.len());
        let appended = Appended {
            base_offset,
            last_offset: h.last_offset(),
            log_append_time,
            log_start_offset: self.log_start_offset(),
            roll,
            write: Some(write),
        };
        Ok((appended, header))
    }

    /// How a produced batch's timestamps are stored: LogAppendTime at `now_ms`, or under
    /// CreateTime its records' max (rewritten when the header disagrees, as a client that leaves
    /// it at -1 sends it), after checking every record's timestamp against
    /// message.timestamp.before.max.ms and message.timestamp.after.max.ms.
    fn timestamp_stamp(&self, now_ms: u64, p: &records::Produced) -> Result<Stamp, AppendError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        if self.config.timestamp_type == TimestampType::LogAppendTime {
            return Ok(Stamp::LogAppendTime(now));
        }
        let t = p.timestamps;
        if let Some(oldest) = t.min {
            if now.saturating_sub(oldest) > self.config.timestamp_before_max_ms {
                return Err(AppendError::InvalidTimestamp {
                    timestamp: oldest,
                    now,
                });
            }
        }
        if t.max >= 0 && t.max.saturating_sub(now) > self.config.timestamp_after_max_ms {
            return Err(AppendError::InvalidTimestamp {
                timestamp: t.max,
                now,
            });
        }
        let h = &p.header;
        #[cfg(feature = "canary")]
        if self.canary == Some(crate::canary::Canary::TrustHeaderTimestamps) {
            return Ok(Stamp::Keep);
        }
        if h.max_timestamp == t.max && !h.is_log_append_time() {
            Ok(Stamp::Keep)
        } else {
            Ok(Stamp::CreateTime(t.max))
        }
    }

    /// Rolls the active segment first if a batch of `len` bytes and `count` offsets at
    /// `base_offset` would overfill it (bytes, age, or the 32-bit relative offsets and
    /// positions of its index).
    fn roll_if_due(
        &mut self,
        now_ms: u64,
        base_offset: i64,
        count: i64,
        len: usize,
    ) -> Option<Rolled> {
        let a = self.active();
        let full = a.size + len as u64 > self.config.segment_bytes;
        let old = now_ms.saturating_sub(a.created_ms) >= self.config.segment_ms;
        let offsets_full = base_offset + count - a.base_offset > i64::from(u32::MAX);
        let too_big = a.size + len as u64 > u64::from(u32::MAX);
        if !a.is_empty() && (full || old || offsets_full || too_big) {
            Some(self.roll(now_ms))
        } else {
            None
        }
    }

    /// Records a batch of `len` bytes at `base_offset` in the active segment and the producer
    /// state, remembering what it changed for `abort_append`; returns where to write it.
    fn push_batch(
        &mut self,
        now_ms: u64,
        h: &BatchHeader,
        base_offset: i64,
        len: usize,
    ) -> WriteAt {
        let interval = self.config.index_interval_bytes;
        let producer = h.has_producer_id().then(|| {
            (
                h.producer_id,
                self.producers.get(h.producer_id).cloned(),
                h.producer_epoch,
                h.base_sequence,
            )
        });
        let seg = self.active_mut();
        let undo = Undo {
            base_offset,
            bytes_since_point: seg.bytes_since_point,
            max_timestamp: seg.max_timestamp,
            modified_ms: seg.modified_ms,
            points: seg.points.len(),
            producer,
        };
        let position = seg.size;
        seg.push(h, position, interval);
        seg.modified_ms = seg.modified_ms.max(now_ms);
        let segment_base = seg.base_offset;
        self.producers.record(h, now_ms);
        self.undo = Some(undo);
        WriteAt {
            segment_base,
            position,
            len,
        }
    }

    /// Undoes the last append after its write failed, so the log matches the file again.
    pub fn abort_append(&mut self, appended: &Appended) {
        let Some(w) = appended.write else { return };
        let u = self
            .undo
            .take()
            .filter(|u| u.base_offset == appended.base_offset)
            .expect("abort only the last append");
        let seg = self.active_mut();
        assert_eq!(
            seg.base_offset, w.segment_base,
            "abort only the last append"
        );
        assert_eq!(
            seg.size,
            w.position + w.len as u64,
            "abort only the last append"
        );
        // Put back exactly what the append changed: the index bookkeeping (or the next point
        // would land up to two intervals later than `plan_read` assumes) and the producer's
        // entry (dropping it would make its next batch look like a new producer's and be
        // appended over the gap).
        seg.size = w.position;
        seg.next_offset = appended.base_offset;
        seg.points.truncate(u.points);
        seg.bytes_since_point = u.bytes_since_point;
        seg.max_timestamp = u.max_timestamp;
        seg.modified_ms = u.modified_ms;
        if let Some((id, entry, epoch, seq)) = u.producer {
            self.producers.restore(id, entry, epoch, seq);
        }
    }

    /// Plans a fetch read at `offset` of at most about `max_bytes` (at least one whole batch).
    pub fn plan_read(&self, offset: i64, max_bytes: u64) -> Result<ReadPlan, OffsetOutOfRange> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
            });
        }
        if offset == end {
            return Ok(ReadPlan::Empty);
        }
        let seg = self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| offset < s.next_offset)
            .or_else(|| self.segments.range(offset + 1..).next().map(|(_, s)| s))
            .expect("offset inside the log has a segment");
        let position = seg.position_for_offset(offset);
        // The floor index point may sit up to one interval (plus a batch) before the offset.
        let want = max_bytes
            .saturating_add(u64::from(self.config.index_interval_bytes))
            .saturating_add(batch::HEADER_LEN as u64);
        let len = (seg.size - position).min(want.max(batch::HEADER_LEN as u64));
        Ok(ReadPlan::Range {
            segment_base: seg.base_offset,
            position,
            len,
        })
    }

    /// Plans the scan for the first batch with max timestamp >= `ts`; `None` if no segment has one.
    pub fn plan_timestamp_scan(&self, ts: i64) -> Option<(i64, u64, u64)> {
        let seg = self.segments.values().find(|s| s.max_timestamp >= ts)?;
        let position = seg.position_for_timestamp(ts);
        Some((seg.base_offset, position, seg.size - position))
    }

    /// End offset of `epoch` for OffsetForLeaderEpoch: `(epoch, end offset)`, or `(-1, -1)`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        if epoch < 0 {
            return (-1, -1);
        }
        let Some(i) = self.epochs.iter().rposition(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let (found, _) = self.epochs[i];
        match self.epochs.get(i + 1) {
            Some((_, next_start)) => (found, *next_start),
            None if found == epoch || epoch > found => (found, self.log_end_offset()),
            None => (-1, -1),
        }
    }

    /// Applies time and size retention: returns segments to delete (and a roll if the active one expired).
    pub fn retention(&mut self, now_ms: u64) -> Retained {
        let mut out = Retained::default();
        let cfg = self.config.clone();
        if !cfg.cleanup_policy.delete {
            // A compact-only topic keeps its segments: the cleaner shrinks them instead.
            return out;
        }
        if cfg.retention_ms >= 0 {
            #[cfg(feature = "canary")]
            let trust = self.canary == Some(crate::canary::Canary::TrustHeaderTimestamps);
            #[cfg(not(feature = "canary"))]
            let trust = false;
            let expired = |s: &Segment| {
                let newest = if trust {
                    s.max_timestamp
                } else {
                    s.newest_ms()
                };
                // Kafka judges a segment by its newest record's timestamp (or, when none of its
                // records has one, by its last append); an empty one never expires.
                !s.is_empty() && (now_ms as i64).saturating_sub(newest) > cfg.retention_ms
            };
            if expired(self.active()) && self.segments.values().all(expired) {
                out.roll = Some(self.roll(now_ms));
            }
            let bases: Vec<i64> = self
                .segments
                .values()
                .take(self.segments.len() - 1)
                .take_while(|s| expired(s))
                .map(|s| s.base_offset)
                .collect();
            for b in bases {
                self.segments.remove(&b);
                out.deleted.push(b);
            }
        }
        if cfg.retention_bytes >= 0 {
            let mut total = self.size_bytes();
            while self.segments.len() > 1 {
                let first = self.first();
                if total - first.size < cfg.retention_bytes as u64 {
                    break;
                }
                let (b, sz) = (first.base_offset, first.size);
                total -= sz;
                self.segments.remove(&b);
                out.deleted.push(b);
            }
        }
        // Cached producer batches below the new start stay: they still dedupe retries.
        out
    }

    /// Replaces the consecutive sealed segments `old` (bases, in order) by `cleaned`, the segment
    /// the cleaner wrote from them: same first base and next offset, never the active segment.
    pub fn replace_cleaned(&mut self, cleaned: Segment, old: &[i64]) {
        let active = self.active().base_offset;
        assert!(!old.is_empty(), "a clean replaces at least one segment");
        assert_eq!(
            cleaned.base_offset, old[0],
            "a cleaned segment keeps its first base"
        );
        let mut expect = old[0];
        for b in old {
            let s = self.segments.get(b).expect("replaced segments exist");
            assert!(*b != active, "the active segment is never cleaned");
            assert_eq!(s.base_offset, expect, "replaced segments are consecutive");
            expect = s.next_offset;
        }
        assert_eq!(
            cleaned.next_offset, expect,
            "a cleaned segment keeps its offset range"
        );
        for b in old {
            self.segments.remove(b);
        }
        self.segments.insert(cleaned.base_offset, cleaned);
        self.check_invariants();
    }

    /// Takes a producer snapshot (at the log end offset), for a clean shutdown.
    pub fn producer_snapshot(&self) -> Vec<u8> {
        self.producers.to_snapshot()
    }
}

/// Trims bytes read for a fetch at `offset`: drops batches wholly below it, keeps whole batches
/// up to `max_bytes`. With `whole_first` (KIP-74's rule for the first non-empty partition of a
/// response, see [`crate::fetch`]) the first batch is kept however large, alone when it is over
/// `max_bytes`; without it, a first batch over `max_bytes` leaves the range empty (and is not
/// asked to be read in full).
///
/// Returns the byte range to send, or `Err(total)` when the first wanted batch extends past the
/// bytes read and the shell must read `total` bytes from the same start (and trim again: in a
/// cleaned segment the wanted batch may lie further than [`PartitionLog::plan_read`] guessed,
/// past a gap, so reading up to one unwanted batch's end can ask for more once again).
pub fn trim_read(
    bytes: &[u8],
    offset: i64,
    max_bytes: u64,
    whole_first: bool,
) -> Result<(usize, usize), usize> {
    let mut pos = 0usize;
    let mut start: Option<usize> = None;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let parsed = batch::peek_size(rest).and_then(|size| Ok((size, batch::parse_header(rest)?)));
        let (size, h) = match parsed {
            Ok(x) => x,
            // A header cut off by the read: read more if nothing was found yet.
            Err(BatchError::Truncated { .. }) if start.is_none() => {
                let size = batch::peek_size(rest).unwrap_or(batch::HEADER_LEN);
                return Err(pos + size.max(batch::HEADER_LEN));
            }
            Err(_) => break,
        };
        match start {
            // A batch below the offset cut off by the read: the wanted one lies past it. In a
            // dense segment the floor index point is less than an interval before the offset's
            // batch, so the read reaches it; in a cleaned one the offset may sit in a gap whose
            // next batch is any distance past the floor point (its own index point names a
            // larger offset).
            None if h.last_offset() < offset && pos + size > bytes.len() => {
                return Err(pos + size + batch::HEADER_LEN);
            }
            None if h.last_offset() < offset => {
                pos += size;
                continue;
            }
            None => {
                if !whole_first && size as u64 > max_bytes {
                    // Left for a fetch in which it comes first.
                    return Ok((pos, pos));
                }
                if pos + size > bytes.len() {
                    return Err(pos + size);
                }
                start = Some(pos);
                pos += size;
            }
            Some(s) => {
                if pos + size > bytes.len() || (pos + size - s) as u64 > max_bytes {
                    break;
                }
                pos += size;
            }
        }
    }
    match start {
        Some(s) => Ok((s, pos)),
        // Every batch read lies below the offset, and the read ended at a batch's end: the
        // wanted one may follow (the shell reads no further than the segment's end).
        None if pos == bytes.len() && !bytes.is_empty() => Err(pos + batch::HEADER_LEN),
        None => Ok((pos.min(bytes.len()), pos.min(bytes.len()))),
    }
}

/// The length of the leading whole batches of `bytes` (as [`trim_read`] returns them) whose base
/// offset is below `end`: what a consumer may read of them under a high watermark of `end`.
pub fn committed_len(bytes: &[u8], end: i64) -> usize {
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Ok(h) = batch::parse_header(&bytes[pos..]) else {
            break;
        };
        if h.base_offset >= end || pos + h.size > bytes.len() {
            break;
        }
        pos += h.size;
    }
    pos
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::batch::build;
    use proptest::prelude::*;

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: 1000,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    #[test]
    fn compacted_logs_keep_segments_and_take_cleaned_ones() {
        let compact = LogConfig {
            cleanup_policy: crate::config::CleanupPolicy {
                delete: false,
                compact: true,
            },
            segment_bytes: 200,
            retention_ms: 1,
            retention_bytes: 0,
            ..cfg()
        };
        let mut log = PartitionLog::new(compact, 0);
        for i in 0..6 {
            let mut b = build::simple(2, 10 * i, None);
            log.append(10 * i as u64, &mut b).unwrap();
        }
        let bases: Vec<i64> = log.segments().map(|s| s.base_offset).collect();
        assert!(bases.len() >= 3, "{bases:?}");
        // Retention leaves a compact-only log alone, however old and large.
        assert_eq!(log.retention(1 << 40), Retained::default());
        // The first two segments become one cleaned segment over the same offsets.
        let end = log.segment(bases[1]).unwrap().next_offset;
        let mut cleaned = Segment::new(bases[0], 5);
        let b = build::simple(1, 0, None);
        let h = batch::parse_header(&b).unwrap();
        cleaned.push(
            &BatchHeader {
                base_offset: end - 1,
                ..h
            },
            0,
            100,
        );
        log.replace_cleaned(cleaned, &bases[..2]);
        let now: Vec<i64> = log.segments().map(|s| s.base_offset).collect();
        assert_eq!(now[0], bases[0]);
        assert_eq!(now[1..], bases[2..]);
        assert_eq!(log.segment(bases[0]).unwrap().next_offset, end);
    }

    /// A tiny in-memory shell: segment files as byte vectors.
    #[derive(Default)]
    pub(crate) struct Files {
        pub(crate) logs: BTreeMap<i64, Vec<u8>>,
        pub(crate) indexes: BTreeMap<i64, (Vec<u8>, Vec<u8>)>,
    }

    impl Files {
        pub(crate) fn apply(&mut self, log: &PartitionLog, a: &Appended, bytes: &[u8]) {
            if let Some(r) = &a.roll {
                let s = log.segment(r.sealed_base).unwrap();
                self.indexes.insert(
                    r.sealed_base,
                    (s.encode_offset_index(), s.encode_time_index()),
                );
                self.logs.entry(r.new_base).or_default();
            }
            if let Some(w) = a.write {
                let f = self.logs.entry(w.segment_base).or_default();
                assert_eq!(f.len() as u64, w.position);
                f.extend_from_slice(bytes);
            }
        }

        pub(crate) fn read(&self, plan: ReadPlan) -> Vec<u8> {
            match plan {
                ReadPlan::Empty => vec![],
                ReadPlan::Range {
                    segment_base,
                    position,
                    len,
                } => {
                    self.logs[&segment_base][position as usize..(position + len) as usize].to_vec()
                }
            }
        }

        /// Recovers a log from the "files" the way the shell does.
        fn recover(&self, config: LogConfig, use_indexes: bool) -> PartitionLog {
            let mut segs = Vec::new();
            let mut producers = ProducerStates::new();
            let n = self.logs.len();
            for (i, (base, bytes)) in self.logs.iter().enumerate() {
                let loaded = match (use_indexes && i + 1 < n, self.indexes.get(base)) {
                    (true, Some((o, t))) => {
                        Segment::from_indexes(*base, bytes.len() as u64, o, t, 0)
                    }
                    _ => None,
                };
                let mut scan = match loaded {
                    Some(s) => SegmentScan::resume(s, config.index_interval_bytes),
                    None => SegmentScan::new(*base, 0, config.index_interval_bytes),
                };
                let mut pos = scan.position() as usize;
                while pos < bytes.len() {
                    let Ok(size) = batch::peek_size(&bytes[pos..]) else {
                        break;
                    };
                    if pos + size > bytes.len() {
                        break;
                    }
                    match scan.push(&bytes[pos..pos + size]) {
                        Ok(h) => producers.record(&h, 0),
                        Err(_) => break,
                    }
                    pos += size;
                }
                segs.push(scan.finish());
            }
            PartitionLog::recovered(config, segs, producers, 0)
        }
    }

    fn read_all(log: &PartitionLog, files: &Files) -> Vec<BatchHeader> {
        let mut out = Vec::new();
        let mut off = log.log_start_offset();
        while off < log.log_end_offset() {
            let plan = log.plan_read(off, 1).unwrap();
            let mut bytes = files.read(plan);
            let (s, e) = match trim_read(&bytes, off, 1, true) {
                Ok(r) => r,
                Err(total) => {
                    let ReadPlan::Range {
                        segment_base,
                        position,
                        ..
                    } = plan
                    else {
                        panic!()
                    };
                    bytes = files.read(ReadPlan::Range {
                        segment_base,
                        position,
                        len: total as u64,
                    });
                    trim_read(&bytes, off, 1, true).unwrap()
                }
            };
            let h = batch::verify_stored(&bytes[s..e]).unwrap();
            assert!(h.base_offset <= off && off <= h.last_offset());
            out.push(h);
            off = h.next_offset();
        }
        out
    }

    #[test]
    fn append_assigns_dense_offsets_and_rolls() {
        let mut log = PartitionLog::new(cfg(), 0);
        let mut files = Files::default();
        for i in 0..40 {
            let mut b = build::simple(1 + i % 3, i as i64, None);
            let a = log.append(i as u64, &mut b).unwrap();
            files.apply(&log, &a, &b);
            log.check_invariants();
        }
        assert!(log.segments().count() > 1);
        let hs = read_all(&log, &files);
        let mut expect = 0;
        for h in &hs {
            assert_eq!(h.base_offset, expect);
            expect = h.next_offset();
        }
        assert_eq!(expect, log.log_end_offset());
    }

    #[test]
    fn max_timestamp_is_the_largest_over_every_segment() {
        let mut log = PartitionLog::new(cfg(), 0);
        assert_eq!(log.max_timestamp(), -1);
        for (i, ts) in [100, 5_000, 300, 4_000, 200].into_iter().enumerate() {
            let mut b = build::simple(3, ts, None);
            log.append(i as u64, &mut b).unwrap();
        }
        assert_eq!(log.max_timestamp(), 5_000);
        // The lookup ListOffsets makes for it starts at the first segment that reaches it.
        let (base, _, _) = log.plan_timestamp_scan(5_000).unwrap();
        assert!(base <= 3);
    }

    #[test]
    fn too_large_and_multi_batch_refused() {
        let mut log = PartitionLog::new(
            LogConfig {
                max_message_bytes: 50,
                ..cfg()
            },
            0,
        );
        let mut b = build::simple(5, 0, None);
        assert!(matches!(
            log.append(0, &mut b),
            Err(AppendError::TooLarge { .. })
        ));
        let mut log = PartitionLog::new(cfg(), 0);
        let mut two = build::simple(1, 0, None);
        two.extend(build::simple(1, 0, None));
        assert!(matches!(
            log.append(0, &mut two),
            Err(AppendError::InvalidRecord(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn log_append_time_is_applied() {
        let mut log = PartitionLog::new(
            LogConfig {
                timestamp_type: TimestampType::LogAppendTime,
                ..cfg()
            },
            0,
        );
        let mut b = build::simple(2, 5, None);
        let a = log.append(777, &mut b).unwrap();
        assert_eq!(a.log_append_time, 777);
        let h = records::validate_produced(&b).unwrap();
        assert!(h.is_log_append_time() && h.max_timestamp == 777);
    }

    #[test]
    fn idempotent_retry_writes_nothing() {
        let mut log = PartitionLog::new(cfg(), 0);
        let p = build::ProducerIdentity {
            id: 3,
            epoch: 0,
            base_sequence: 0,
        };
        let mut b = build::simple(2, 0, Some(p));
        let a1 = log.append(0, &mut b.clone()).unwrap();
        let a2 = log.append(1, &mut b).unwrap();
        assert_eq!((a2.base_offset, a2.write), (a1.base_offset, None));
        let mut gap = build::simple(
            1,
            0,
            Some(build::ProducerIdentity {
                base_sequence: 9,
                ..p
            }),
        );
        assert_eq!(
            log.append(2, &mut gap),
            Err(AppendError::OutOfOrderSequence(3))
        );
        assert_eq!(log.log_end_offset(), 2);
    }

    #[test]
    fn abort_restores_state() {
        let mut log = PartitionLog::new(cfg(), 0);
        let mut b = build::simple(2, 0, None);
        let _ = log.append(0, &mut b.clone()).unwrap();
        let before = (log.log_end_offset(), log.size_bytes());
        let a = log.append(0, &mut b).unwrap();
        log.abort_append(&a);
        log.check_invariants();
        assert_eq!((log.log_end_offset(), log.size_bytes()), before);
    }

    #[test]
    fn retention_by_size_and_time() {
        let mut log = PartitionLog::new(cfg(), 0);
        let mut files = Files::default();
        for i in 0..60 {
            let mut b = build::simple(3, i * 10, None);
            let a = log.append(i as u64, &mut b).unwrap();
            files.apply(&log, &a, &b);
        }
        let total = log.size_bytes();
        log.set_config(LogConfig {
            retention_bytes: (total / 2) as i64,
            ..cfg()
        });
        let r = log.retention(1000);
        assert!(!r.deleted.is_empty());
        assert!(log.size_bytes() >= total / 2 - 1000);
        assert_eq!(
            log.log_start_offset(),
            log.segments().next().unwrap().base_offset
        );
        assert!(log.plan_read(0, 10).is_err());
        log.set_config(LogConfig {
            retention_ms: 100,
            ..cfg()
        });
        let r = log.retention(10_000);
        assert!(r.roll.is_some());
        assert_eq!(log.log_start_offset(), log.log_end_offset());
        log.check_invariants();
    }

    #[test]
    fn epochs() {
        let mut log = PartitionLog::new(cfg(), 0);
        let mut b = build::simple(4, 0, None);
        log.append(0, &mut b).unwrap();
        assert_eq!(log.end_offset_for_epoch(0), (0, 4));
        assert_eq!(log.end_offset_for_epoch(3), (0, 4));
        assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
        log.set_leader_epoch(2);
        log.set_leader_epoch(1);
        assert_eq!(log.leader_epoch(), 2);
        let mut b = build::simple(3, 0, None);
        log.append(0, &mut b).unwrap();
        assert_eq!(log.end_offset_for_epoch(0), (0, 4));
        assert_eq!(log.end_offset_for_epoch(1), (0, 4));
        assert_eq!(log.end_offset_for_epoch(2), (2, 7));
    }

    /// Three batches of two records appended to a new log: their bytes and one batch's size.
    fn three_batches() -> (Vec<u8>, usize) {
        let mut log = PartitionLog::new(cfg(), 0);
        let mut all = Vec::new();
        for _ in 0..3 {
            let mut b = build::simple(2, 0, None);
            log.append(0, &mut b).unwrap();
            all.extend_from_slice(&b);
        }
        let one = batch::peek_size(&all).unwrap();
        (all, one)
    }

    #[test]
    fn trim_keeps_first_whole_batch() {
        let (all, one) = three_batches();
        assert_eq!(trim_read(&all, 3, 1, true), Ok((one, 2 * one)));
        assert_eq!(trim_read(&all, 0, 10_000, true), Ok((0, all.len())));
        assert_eq!(
            trim_read(&all[..one + 5], 2, 10_000, true),
            Err(one + batch::HEADER_LEN)
        );
        assert_eq!(trim_read(&all[..one + 20], 2, 10_000, true), Err(2 * one));
        assert_eq!(trim_read(&all[..one + 20], 0, 10_000, true), Ok((0, one)));
        // Without the first-batch rule a batch over the limit is left, and not read in full.
        assert_eq!(trim_read(&all, 3, 1, false), Ok((one, one)));
        assert_eq!(
            trim_read(&all[..one + batch::HEADER_LEN], 2, 1, false),
            Ok((one, one))
        );
        assert_eq!(
            trim_read(&all, 2, 2 * one as u64, false),
            Ok((one, 3 * one))
        );
        assert_eq!(
            trim_read(&all, 2, 2 * one as u64 - 1, false),
            Ok((one, 2 * one))
        );
    }

    #[test]
    fn trim_reads_past_a_cut_off_batch_below_the_offset() {
        // A cleaned segment: the offset (4) sits in a gap after the first batch, whose body the
        // read cut off; the batch wanted is the next one.
        let (all, one) = three_batches();
        assert_eq!(
            trim_read(&all[..one - 5], 4, 1, true),
            Err(one + batch::HEADER_LEN)
        );
        assert_eq!(
            trim_read(&all[..one + batch::HEADER_LEN], 4, 1, true),
            Err(2 * one + batch::HEADER_LEN)
        );
        assert_eq!(
            trim_read(&all[..2 * one + batch::HEADER_LEN], 4, 1, true),
            Err(3 * one)
        );
        // A read ending at a batch's end with every batch below the offset asks for more too.
        assert_eq!(
            trim_read(&all[..2 * one], 4, 1, true),
            Err(2 * one + batch::HEADER_LEN)
        );
        assert_eq!(trim_read(&all, 4, 1, true), Ok((2 * one, 3 * one)));
    }

    #[test]
    fn committed_len_stops_at_the_first_batch_at_or_above_the_end() {
        let (all, one) = three_batches();
        assert_eq!(committed_len(&all, 0), 0);
        assert_eq!(committed_len(&all, 2), one);
        assert_eq!(committed_len(&all, 3), 2 * one);
        assert_eq!(committed_len(&all, 6), 3 * one);
        assert_eq!(committed_len(&all[..3 * one - 1], 6), 2 * one);
    }

    /// `cfg()` with cleanup.policy=compact (set directly: config parsing still refuses it).
    fn compact_cfg() -> LogConfig {
        LogConfig {
            cleanup_policy: crate::config::CleanupPolicy::parse("compact").unwrap(),
            ..cfg()
        }
    }

    /// A record with `key` (`None`: a null key).
    fn keyed(key: Option<&str>) -> build::SimpleRecord {
        build::SimpleRecord {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(b"value".to_vec()),
            headers: vec![(b"h".to_vec(), None)],
            timestamp: 0,
        }
    }

    /// Leader-appends `recs` as one batch, its records compressed with `codec`, to a new log.
    fn produce(
        config: LogConfig,
        recs: &[build::SimpleRecord],
        codec: batch::Compression,
    ) -> Result<Appended, AppendError> {
        let mut log = PartitionLog::new(config, 0);
        let mut b = crate::compression::encode(recs, None, codec);
        let out = log.append(0, &mut b);
        let held = if out.is_ok() { recs.len() as i64 } else { 0 };
        assert_eq!(log.log_end_offset(), held, "a refused batch writes nothing");
        out
    }

    const NULL_KEY_REFUSED: Result<Appended, AppendError> =
        Err(AppendError::InvalidRecord(COMPACTED_NULL_KEY));

    #[test]
    fn compacted_topic_refuses_a_plain_batch_with_a_null_key() {
        let none = batch::Compression::None;
        assert_eq!(
            produce(compact_cfg(), &[keyed(None)], none),
            NULL_KEY_REFUSED
        );
        let all_null = [keyed(None), keyed(None), keyed(None)];
        assert_eq!(produce(compact_cfg(), &all_null, none), NULL_KEY_REFUSED);
    }

    #[test]
    fn compacted_topic_refuses_a_compressed_batch_with_a_null_key() {
        for codec in [batch::Compression::Lz4, batch::Compression::Zstd] {
            let recs = [keyed(None), keyed(None)];
            assert_eq!(
                produce(compact_cfg(), &recs, codec),
                NULL_KEY_REFUSED,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn compacted_topic_refuses_a_batch_mixing_keyed_and_null_key_records() {
        for codec in [
            batch::Compression::None,
            batch::Compression::Lz4,
            batch::Compression::Zstd,
        ] {
            // The null key first, in the middle and last: every record is looked at.
            for at in 0..3 {
                let mut recs = vec![keyed(Some("a")), keyed(Some("b")), keyed(Some("c"))];
                recs[at] = keyed(None);
                assert_eq!(
                    produce(compact_cfg(), &recs, codec),
                    NULL_KEY_REFUSED,
                    "{codec:?} null key at {at}"
                );
            }
        }
    }

    #[test]
    fn compacted_topic_accepts_keyed_batches() {
        for codec in [
            batch::Compression::None,
            batch::Compression::Lz4,
            batch::Compression::Zstd,
        ] {
            // An empty key is a key (length 0), not a null one (length -1).
            let recs = [keyed(Some("a")), keyed(Some("")), keyed(Some("a"))];
            let a = produce(compact_cfg(), &recs, codec).unwrap();
            assert_eq!((a.base_offset, a.last_offset), (0, 2), "{codec:?}");
        }
    }

    #[test]
    fn non_compacted_topics_accept_null_keys() {
        let delete_only = LogConfig {
            cleanup_policy: crate::config::CleanupPolicy::parse("delete").unwrap(),
            ..cfg()
        };
        for codec in [
            batch::Compression::None,
            batch::Compression::Lz4,
            batch::Compression::Zstd,
        ] {
            let recs = [keyed(None), keyed(Some("a")), keyed(None)];
            assert!(produce(cfg(), &recs, codec).is_ok(), "{codec:?}");
            assert!(produce(delete_only.clone(), &recs, codec).is_ok());
        }
    }

    #[test]
    fn compact_and_delete_refuses_null_keys_too() {
        let both = LogConfig {
            cleanup_policy: crate::config::CleanupPolicy::parse("compact,delete").unwrap(),
            ..cfg()
        };
        let recs = [keyed(Some("a")), keyed(None)];
        assert_eq!(
            produce(both, &recs, batch::Compression::None),
            NULL_KEY_REFUSED
        );
    }

    #[test]
    fn null_key_refusal_is_invalid_record_with_kafkas_message() {
        let e = produce(compact_cfg(), &[keyed(None)], batch::Compression::None).unwrap_err();
        assert!(
            e.to_string()
                .contains("compacted topic cannot accept message without key"),
            "{e}"
        );
    }

    #[test]
    fn followers_copy_null_keys_onto_a_compacted_topic() {
        // Only the leader validates what a producer sent: a follower takes its leader's batch.
        let recs = [keyed(None), keyed(Some("a"))];
        for codec in [batch::Compression::None, batch::Compression::Zstd] {
            let mut log = PartitionLog::new(compact_cfg(), 0);
            let b = crate::compression::encode(&recs, None, codec);
            let a = log.append_replicated(0, &b).unwrap();
            assert_eq!((a.base_offset, a.last_offset), (0, 1), "{codec:?}");
            assert_eq!(log.log_end_offset(), 2);
        }
    }

    proptest! {
        /// A compacted topic refuses a produced batch iff some record's key is null, plain or
        /// compressed; a delete-only topic takes every batch.
        #[test]
        fn compacted_topic_refuses_iff_some_key_is_null(
            keys in proptest::collection::vec(
                proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..12)),
                1..40,
            ),
            codec in prop_oneof![
                Just(batch::Compression::None),
                Just(batch::Compression::Gzip),
                Just(batch::Compression::Snappy),
                Just(batch::Compression::Lz4),
                Just(batch::Compression::Zstd),
            ],
        ) {
            let recs: Vec<_> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| build::SimpleRecord {
                    key: k.clone(),
                    value: (i % 3 != 0).then(|| vec![i as u8; i]),
                    headers: vec![],
                    timestamp: i as i64,
                })
                .collect();
            let some_null = keys.iter().any(Option::is_none);
            // Segments big enough for any batch here, so only the keys decide.
            let big = |c: LogConfig| LogConfig { segment_bytes: 1 << 20, ..c };
            let got = produce(big(compact_cfg()), &recs, codec);
            if some_null {
                prop_assert_eq!(got, NULL_KEY_REFUSED);
            } else {
                prop_assert!(got.is_ok(), "{:?}", got);
            }
            prop_assert!(produce(big(cfg()), &recs, codec).is_ok());
        }
    }

    proptest! {
        /// Random appends interleaved with retention passes: segments stay contiguous, the log
        /// start only moves forward to a segment boundary, and every offset still held reads back.
        #[test]
        fn retention_keeps_a_readable_suffix(
            ops in proptest::collection::vec((1usize..6, 0u64..50, any::<bool>()), 1..80),
            retention_bytes in -1i64..4000,
            retention_ms in -1i64..300,
        ) {
            let config = LogConfig { retention_bytes, retention_ms, ..cfg() };
            let mut log = PartitionLog::new(config, 0);
            let mut files = Files::default();
            let mut now = 0u64;
            let mut start = 0;
            for (n, dt, retain) in ops {
                now += dt;
                let mut b = build::simple(n, now as i64, None);
                let a = log.append(now, &mut b).unwrap();
                files.apply(&log, &a, &b);
                if retain {
                    let r = log.retention(now);
                    if let Some(roll) = &r.roll {
                        files.logs.entry(roll.new_base).or_default();
                    }
                    for d in r.deleted {
                        files.logs.remove(&d);
                    }
                }
                log.check_invariants();
                prop_assert!(log.log_start_offset() >= start);
                start = log.log_start_offset();
                prop_assert!(files.logs.contains_key(&start));
                if retention_bytes >= 0 && log.segments().count() > 1 {
                    let first = log.segments().next().unwrap().size;
                    prop_assert!(log.size_bytes() - first < retention_bytes as u64 + 1000 || !retain);
                }
            }
            let got = read_all(&log, &files);
            let held: i64 = got.iter().map(|h| h.next_offset() - h.base_offset).sum();
            prop_assert_eq!(held, log.log_end_offset() - log.log_start_offset());
        }

        /// Random appends, a torn tail, and recovery: every batch before the tear comes back intact.
        #[test]
        fn recovery_keeps_every_whole_batch(
            sizes in proptest::collection::vec(1usize..6, 1..60),
            tear in any::<proptest::sample::Index>(),
            use_indexes in any::<bool>(),
        ) {
            let config = cfg();
            let mut log = PartitionLog::new(config.clone(), 0);
            let mut files = Files::default();
            let mut written = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let mut b = build::simple(*n, i as i64, None);
                let a = log.append(i as u64, &mut b).unwrap();
                files.apply(&log, &a, &b);
                written.push((a.base_offset, b));
            }
            // Tear the active segment's file at a random byte.
            let (&last_base, last) = files.logs.iter_mut().next_back().unwrap();
            let cut = tear.index(last.len() + 1);
            last.truncate(cut);
            let rec = files.recover(config, use_indexes);
            rec.check_invariants();
            let survivors: Vec<_> = written.iter()
                .filter(|(off, b)| *off < last_base || {
                    let seg_start = files.logs[&last_base].len();
                    let _ = seg_start;
                    let pos = written.iter().filter(|(o, _)| *o >= last_base && *o < *off).map(|(_, x)| x.len()).sum::<usize>();
                    pos + b.len() <= cut
                })
                .collect();
            let expect_end = survivors.last().map(|(o, b)| o + batch::parse_header(b).unwrap().record_count as i64).unwrap_or(0);
            prop_assert_eq!(rec.log_end_offset(), expect_end.max(last_base));
            let got = read_all(&rec, &files);
            prop_assert_eq!(got.len(), survivors.len());
            for (h, (off, b)) in got.iter().zip(survivors) {
                prop_assert_eq!(h.base_offset, *off);
                prop_assert_eq!(h.size, b.len());
            }
        }
    }
}
