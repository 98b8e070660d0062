//! The cleaner's per-record and per-batch decisions (pure).
//!
//! A record survives a clean unless:
//! - the key map holds a newer offset for its key (it is superseded); or
//! - it has no key: Kafka's cleaner drops such records (it counts them as invalid), and skein
//!   does the same; skein refuses them at produce time on a compacted topic, so the cleaner
//!   only meets them in data written before the topic became compacted; or
//! - it is a tombstone (null value) whose time is up: it lies in the clean head (below the
//!   first dirty offset of this clean, so every older record of its key is already gone) in a
//!   segment last modified at or before the delete horizon ([`super::choose`]).
//!
//! A control batch (transaction markers) is kept whole: never deduplicated by key, never
//! indexed (dropping markers of finished transactions comes with transactions).
//!
//! A batch with survivors is kept whole when all survive, else rewritten with them
//! ([`super::rewrite`]). A batch with none is kept as an empty header when it is one of the
//! batches kept for its producer id (every batch its idempotent-producer state caches:
//! idempotent dedup and recovery compare sequences with them), or the last batch of
//! its destination segment (so the segment's offset range, read back by a scan, still reaches
//! the next segment's base); otherwise it is dropped.
//!
//! Invariants: decisions are pure functions of their arguments; a record is never kept when
//! the map names a newer offset for its key.

use std::collections::BTreeSet;

use super::hash::key_hash;
use super::keymap::KeyMap;
use crate::batch::BatchHeader;

/// The fate of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordVerdict {
    /// It survives.
    Keep,
    /// A newer record with its key exists.
    Superseded,
    /// A tombstone past its retention.
    TombstoneExpired,
    /// It has no key.
    NoKey,
}

impl RecordVerdict {
    /// True for [`RecordVerdict::Keep`].
    pub fn kept(self) -> bool {
        self == RecordVerdict::Keep
    }
}

/// What the decision knows of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Its offset.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<&'a [u8]>,
    /// True when its value is null.
    pub tombstone: bool,
}

/// True when tombstones at `offset` in a segment last modified at `segment_modified_ms` may be
/// dropped: below the first dirty offset and at or before the delete horizon.
pub fn tombstone_droppable(
    offset: i64,
    first_dirty: i64,
    segment_modified_ms: u64,
    delete_horizon_ms: i64,
) -> bool {
    offset < first_dirty
        && i64::try_from(segment_modified_ms).unwrap_or(i64::MAX) <= delete_horizon_ms
}

/// Decides one record against the key map.
pub fn decide_record(r: &RecordView, map: &KeyMap, drop_tombstone: bool) -> RecordVerdict {
    let Some(key) = r.key else {
        return RecordVerdict::NoKey;
    };
    if map
        .get(&key_hash(key))
        .is_some_and(|newest| newest > r.offset)
    {
        return RecordVerdict::Superseded;
    }
    if r.tombstone && drop_tombstone {
        return RecordVerdict::TombstoneExpired;
    }
    RecordVerdict::Keep
}

/// The `drop-newest-of-key` canary (simulator only): a record the map names as its key's
/// newest, kept by [`decide_record`], is dropped as superseded all the same.
#[cfg(feature = "canary")]
pub fn canary_verdict(
    v: RecordVerdict,
    r: &RecordView,
    map: &KeyMap,
    canary: Option<crate::canary::Canary>,
) -> RecordVerdict {
    let newest = r
        .key
        .and_then(|k| map.get(&key_hash(k)))
        .is_some_and(|newest| newest == r.offset);
    if canary == Some(crate::canary::Canary::DropNewestOfKey) && v.kept() && newest {
        RecordVerdict::Superseded
    } else {
        v
    }
}

/// The `drop-tombstone-early` canary (simulator only): a tombstone below the first dirty offset
/// may be dropped whatever the delete horizon.
#[cfg(feature = "canary")]
pub fn canary_tombstone_droppable(
    offset: i64,
    first_dirty: i64,
    canary: Option<crate::canary::Canary>,
) -> bool {
    canary == Some(crate::canary::Canary::DropTombstoneEarly) && offset < first_dirty
}

/// The fate of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchVerdict {
    /// Written as it is.
    KeepWhole,
    /// Rewritten with its surviving records only.
    Rewrite,
    /// Written as a header without records.
    KeepEmpty,
    /// Not written.
    Drop,
}

/// Whether a batch's header must survive even without records: it is one of the batches kept
/// for its producer (`producer_last` holds those batches' base offsets), or the last batch of
/// its destination segment.
pub fn must_keep_header(
    h: &BatchHeader,
    producer_last: &BTreeSet<i64>,
    last_in_dest: bool,
) -> bool {
    last_in_dest || (h.has_producer_id() && producer_last.contains(&h.base_offset))
}

/// Decides a batch from how many of its records survive.
pub fn decide_batch(h: &BatchHeader, kept: usize, keep_header: bool) -> BatchVerdict {
    if h.is_control() {
        return BatchVerdict::KeepWhole;
    }
    match kept {
        0 if keep_header => BatchVerdict::KeepEmpty,
        0 => BatchVerdict::Drop,
        n if n == h.record_count as usize => BatchVerdict::KeepWhole,
        _ => BatchVerdict::Rewrite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, build};

    #[test]
    fn records() {
        let mut map = KeyMap::with_budget(1000);
        map.put(&key_hash(b"a"), 5);
        let view = |offset, key: Option<&'static [u8]>, tombstone| RecordView {
            offset,
            key,
            tombstone,
        };
        assert_eq!(
            decide_record(&view(3, Some(b"a"), false), &map, false),
            RecordVerdict::Superseded
        );
        assert_eq!(
            decide_record(&view(5, Some(b"a"), false), &map, true),
            RecordVerdict::Keep
        );
        assert_eq!(
            decide_record(&view(5, Some(b"a"), true), &map, false),
            RecordVerdict::Keep
        );
        assert_eq!(
            decide_record(&view(5, Some(b"a"), true), &map, true),
            RecordVerdict::TombstoneExpired
        );
        assert_eq!(
            decide_record(&view(1, Some(b"b"), false), &map, true),
            RecordVerdict::Keep
        );
        assert_eq!(
            decide_record(&view(9, None, false), &map, false),
            RecordVerdict::NoKey
        );
        assert!(tombstone_droppable(4, 5, 100, 100));
        assert!(!tombstone_droppable(5, 5, 100, 100));
        assert!(!tombstone_droppable(4, 5, 101, 100));
    }

    #[test]
    fn batches() {
        let b = build::simple(
            3,
            0,
            Some(build::ProducerIdentity {
                id: 7,
                epoch: 0,
                base_sequence: 0,
            }),
        );
        let h = batch::parse_header(&b).unwrap();
        let last: BTreeSet<i64> = [0].into();
        assert!(must_keep_header(&h, &last, false));
        assert!(!must_keep_header(&h, &BTreeSet::new(), false));
        assert!(must_keep_header(&h, &BTreeSet::new(), true));
        assert_eq!(decide_batch(&h, 3, false), BatchVerdict::KeepWhole);
        assert_eq!(decide_batch(&h, 1, false), BatchVerdict::Rewrite);
        assert_eq!(decide_batch(&h, 0, true), BatchVerdict::KeepEmpty);
        assert_eq!(decide_batch(&h, 0, false), BatchVerdict::Drop);
        let c = batch::parse_header(&batch::as_control(b)).unwrap();
        assert_eq!(decide_batch(&c, 0, false), BatchVerdict::KeepWhole);
    }
}
