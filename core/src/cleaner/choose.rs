//! Choosing what to clean (pure): a partition's cleanable range, its dirty ratio, whether it
//! must be cleaned now, and which of several partitions to clean first.
//!
//! The rules, as Kafka's `LogCleanerManager`:
//! - The log splits at the first dirty offset (the cleaner checkpoint, or the log start when the
//!   checkpoint is missing or outside the log) into a clean head and a dirty tail.
//! - The first uncleanable offset is the smallest of: the active segment's base; the base of
//!   the segment holding the high watermark (nothing at or above it was acknowledged, so it may
//!   still be truncated; skein rounds down to a segment base where Kafka stops at the offset
//!   itself, so the cleanable range is always whole segments); and, with
//!   `min.compaction.lag.ms`, the base of the first dirty segment whose newest record is younger
//!   than the lag.
//! - Dirty ratio = dirty bytes / (clean + dirty bytes), counting segments below the first
//!   uncleanable offset; a segment straddling the first dirty offset counts as dirty.
//! - A log is cleaned when it is compacted, has dirty cleanable bytes, and its ratio is above
//!   `min.cleanable.dirty.ratio` (strictly, as Kafka: a ratio of 0 never cleans) or its oldest
//!   dirty data (the first batch timestamp of the first dirty segment) is older than
//!   `max.compaction.lag.ms`.
//! - The delete horizon is the last-modified time of the last segment before the first dirty
//!   offset minus `delete.retention.ms`: tombstones in the clean head, in segments last modified
//!   at or before it, may go (see [`super::filter`]).
//!
//! Invariants: `log_start <= first_dirty`, `first_uncleanable <= active base`, and the dirty
//! range is empty when `first_dirty >= first_uncleanable`.

use crate::config::LogConfig;
use crate::log::Segment;

/// What the cleaner knows of one segment (from the log's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base offset.
    pub base: i64,
    /// Offset after its last batch (the next segment's base).
    pub next_offset: i64,
    /// Bytes.
    pub size: u64,
    /// Its newest record's timestamp, or its last-modified time when none has one.
    pub largest_timestamp: i64,
    /// Max timestamp of its first batch, when known (what `max.compaction.lag.ms` judges).
    pub first_batch_timestamp: Option<i64>,
    /// Last-modified time (the file's mtime): what the delete horizon compares.
    pub modified_ms: u64,
}

impl SegmentInfo {
    /// The info of a log segment; `first_batch_timestamp` comes from its first batch's header.
    pub fn of(seg: &Segment, first_batch_timestamp: Option<i64>) -> SegmentInfo {
        SegmentInfo {
            base: seg.base_offset,
            next_offset: seg.next_offset,
            size: seg.size,
            largest_timestamp: seg.newest_ms(),
            first_batch_timestamp,
            modified_ms: seg.modified_ms,
        }
    }
}

/// A partition's cleanable range and how dirty it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// First offset of the log.
    pub log_start: i64,
    /// First offset not yet cleaned.
    pub first_dirty: i64,
    /// First offset the cleaner must not touch (a segment base).
    pub first_uncleanable: i64,
    /// Bytes of the clean head below the first uncleanable offset.
    pub clean_bytes: u64,
    /// Bytes of the dirty, cleanable segments.
    pub dirty_bytes: u64,
    /// Dirty data older than `max.compaction.lag.ms` is waiting.
    pub max_lag_exceeded: bool,
    /// Tombstones in clean-head segments last modified at or before this may be dropped.
    pub delete_horizon_ms: i64,
    /// The cleaner should clean this partition now.
    pub should_clean: bool,
}

impl Cleanable {
    /// Dirty bytes over all cleanable bytes (0 when there are none).
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// The canaries' planted bugs in choosing (all off outside the simulator).
#[derive(Debug, Clone, Copy, Default)]
struct Planted {
    /// `clean-active-segment`: the active segment counts as sealed, so only the high watermark
    /// and the lag bound the range.
    active_cleanable: bool,
    /// `clean-past-hw`: the high watermark does not bound the range.
    hw_ignored: bool,
}

/// The first uncleanable offset of `segments` (see the module docs).
fn first_uncleanable(
    segments: &[SegmentInfo],
    first_dirty: i64,
    high_watermark: i64,
    now_ms: i64,
    cfg: &LogConfig,
    planted: Planted,
) -> i64 {
    let last = &segments[segments.len() - 1];
    let (active, sealed) = if planted.active_cleanable {
        (last.next_offset, segments)
    } else {
        (last.base, &segments[..segments.len() - 1])
    };
    let hw_seg = sealed
        .iter()
        .find(|s| s.next_offset > high_watermark && !planted.hw_ignored)
        .map_or(active, |s| s.base);
    let mut fu = active.min(hw_seg);
    if cfg.min_compaction_lag_ms > 0 {
        let young = now_ms.saturating_sub(cfg.min_compaction_lag_ms);
        if let Some(s) = sealed
            .iter()
            .find(|s| s.next_offset > first_dirty && s.largest_timestamp > young)
        {
            fu = fu.min(s.base);
        }
    }
    fu
}

/// The cleanable range of one partition. `segments` is the whole log in offset order, the
/// active segment last; `checkpoint` the cleaner's first dirty offset, if recorded.
pub fn cleanable(
    segments: &[SegmentInfo],
    checkpoint: Option<i64>,
    high_watermark: i64,
    now_ms: i64,
    cfg: &LogConfig,
) -> Cleanable {
    cleanable_hooked(
        segments,
        checkpoint,
        high_watermark,
        now_ms,
        cfg,
        Planted::default(),
    )
}

/// [`cleanable`] with a planted bug turned on (simulator only): `CleanActiveSegment` lets the
/// active segment be cleaned, `CleanPastHw` the segments at or above the high watermark.
#[cfg(feature = "canary")]
pub fn cleanable_with_canary(
    segments: &[SegmentInfo],
    checkpoint: Option<i64>,
    high_watermark: i64,
    now_ms: i64,
    cfg: &LogConfig,
    canary: Option<crate::canary::Canary>,
) -> Cleanable {
    use crate::canary::Canary;
    let planted = Planted {
        active_cleanable: canary == Some(Canary::CleanActiveSegment),
        hw_ignored: canary == Some(Canary::CleanPastHw),
    };
    cleanable_hooked(segments, checkpoint, high_watermark, now_ms, cfg, planted)
}

fn cleanable_hooked(
    segments: &[SegmentInfo],
    checkpoint: Option<i64>,
    high_watermark: i64,
    now_ms: i64,
    cfg: &LogConfig,
    planted: Planted,
) -> Cleanable {
    assert!(!segments.is_empty(), "a log has at least one segment");
    let log_start = segments[0].base;
    let log_end = segments[segments.len() - 1].next_offset;
    let first_dirty = checkpoint
        .filter(|c| (log_start..=log_end).contains(c))
        .unwrap_or(log_start);
    let fu = first_uncleanable(segments, first_dirty, high_watermark, now_ms, cfg, planted);
    let below = || segments.iter().filter(|s| s.base < fu);
    let is_clean = |s: &&SegmentInfo| s.next_offset <= first_dirty;
    let clean_bytes = below().filter(is_clean).map(|s| s.size).sum();
    let dirty: Vec<&SegmentInfo> = below().filter(|s| !is_clean(s)).collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    let max_lag_exceeded = cfg.max_compaction_lag_ms < i64::MAX
        && dirty
            .iter()
            .filter(|s| s.size > 0)
            .map(|s| s.first_batch_timestamp.unwrap_or(s.largest_timestamp))
            .filter(|t| *t >= 0)
            .min()
            .is_some_and(|t| t < now_ms.saturating_sub(cfg.max_compaction_lag_ms));
    let delete_horizon_ms =
        segments
            .iter()
            .rev()
            .find(|s| s.base < first_dirty)
            .map_or(i64::MIN, |s| {
                i64::try_from(s.modified_ms)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(cfg.delete_retention_ms)
            });
    let mut out = Cleanable {
        log_start,
        first_dirty,
        first_uncleanable: fu,
        clean_bytes,
        dirty_bytes,
        max_lag_exceeded,
        delete_horizon_ms,
        should_clean: false,
    };
    out.should_clean = cfg.cleanup_policy.compact
        && dirty_bytes > 0
        && first_dirty < fu
        && (out.dirty_ratio() > cfg.min_cleanable_dirty_ratio.get() || max_lag_exceeded);
    out
}

/// The partitions that should be cleaned, dirtiest first (ties by key), as Kafka picks the
/// filthiest log first.
pub fn rank_dirtiest<K: Ord + Clone>(logs: &[(K, Cleanable)]) -> Vec<K> {
    let mut v: Vec<&(K, Cleanable)> = logs.iter().filter(|(_, c)| c.should_clean).collect();
    v.sort_by(|(ka, a), (kb, b)| {
        b.dirty_ratio()
            .total_cmp(&a.dirty_ratio())
            .then_with(|| ka.cmp(kb))
    });
    v.into_iter().map(|(k, _)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CleanupPolicy, DirtyRatio};

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentInfo {
        SegmentInfo {
            base,
            next_offset: next,
            size,
            largest_timestamp: ts,
            first_batch_timestamp: Some(ts - 5),
            modified_ms: ts as u64,
        }
    }

    fn cfg() -> LogConfig {
        LogConfig {
            cleanup_policy: CleanupPolicy {
                delete: false,
                compact: true,
            },
            ..LogConfig::default()
        }
    }

    fn log() -> Vec<SegmentInfo> {
        vec![
            seg(0, 10, 100, 1000),
            seg(10, 20, 100, 2000),
            seg(20, 30, 100, 3000),
            seg(30, 35, 50, 4000),
        ]
    }

    #[test]
    fn range_ratio_and_horizon() {
        let c = cleanable(&log(), Some(10), 35, 5000, &cfg());
        assert_eq!(
            (c.log_start, c.first_dirty, c.first_uncleanable),
            (0, 10, 30)
        );
        assert_eq!((c.clean_bytes, c.dirty_bytes), (100, 200));
        assert!(c.should_clean && !c.max_lag_exceeded);
        assert_eq!(c.delete_horizon_ms, 1000 - 86_400_000);
        // No checkpoint, or one outside the log: everything is dirty.
        for cp in [None, Some(-1), Some(36)] {
            let c = cleanable(&log(), cp, 35, 5000, &cfg());
            assert_eq!((c.first_dirty, c.dirty_ratio()), (0, 1.0));
            assert_eq!(c.delete_horizon_ms, i64::MIN);
        }
        // Not compacted: never.
        let c = cleanable(&log(), None, 35, 5000, &LogConfig::default());
        assert!(!c.should_clean);
    }

    #[test]
    fn high_watermark_and_min_lag_bound_the_range() {
        let c = cleanable(&log(), None, 15, 5000, &cfg());
        assert_eq!(c.first_uncleanable, 10);
        let c = cleanable(&log(), None, 10, 5000, &cfg());
        assert_eq!(c.first_uncleanable, 10);
        let c = cleanable(&log(), None, 0, 5000, &cfg());
        assert_eq!((c.first_uncleanable, c.should_clean), (0, false));
        let lag = LogConfig {
            min_compaction_lag_ms: 2500,
            ..cfg()
        };
        let c = cleanable(&log(), None, 35, 5000, &lag);
        assert_eq!(c.first_uncleanable, 20);
    }

    #[test]
    fn ratio_threshold_and_max_lag() {
        let strict = LogConfig {
            min_cleanable_dirty_ratio: DirtyRatio::new(0.7).unwrap(),
            ..cfg()
        };
        let c = cleanable(&log(), Some(10), 35, 5000, &strict);
        assert!(c.dirty_ratio() < 0.7 && !c.should_clean);
        let lagged = LogConfig {
            max_compaction_lag_ms: 1000,
            ..strict.clone()
        };
        let c = cleanable(&log(), Some(10), 35, 5000, &lagged);
        assert!(c.max_lag_exceeded && c.should_clean);
        let c = cleanable(&log(), Some(10), 35, 2500, &lagged);
        assert!(!c.max_lag_exceeded);
        // Ratio 0 with a 0 threshold: nothing to clean.
        let zero = LogConfig {
            min_cleanable_dirty_ratio: DirtyRatio::new(0.0).unwrap(),
            ..cfg()
        };
        assert!(!cleanable(&log(), Some(30), 35, 5000, &zero).should_clean);
    }

    #[test]
    fn dirtiest_first() {
        let a = cleanable(&log(), Some(10), 35, 5000, &cfg());
        let b = cleanable(&log(), None, 35, 5000, &cfg());
        let c = cleanable(&log(), Some(30), 35, 5000, &cfg());
        let ranked = rank_dirtiest(&[("a", a), ("b", b), ("c", c), ("b2", b)]);
        assert_eq!(ranked, vec!["b", "b2", "a"]);
    }
}
