//! Cleaning one batch as a pure function over bytes: decode its records, decide each
//! ([`super::filter`]), and produce the bytes to write, if any.
//!
//! A rewritten batch keeps its base offset, leader epoch, attributes (codec included: it is
//! recompressed with the codec it had), producer id, epoch and base sequence, base timestamp
//! and last offset delta (so the producer's last sequence, and the offset range, stay what they
//! were); the surviving records' bytes are copied unchanged (their offset and timestamp deltas
//! still hold against the unchanged base offset and base timestamp); the record count, max
//! timestamp (recomputed from the survivors under CreateTime), length and CRC are recomputed.
//!
//! Invariants: the output verifies ([`crate::batch::verify_stored`]) and walks
//! ([`crate::records::timestamps`]); its records are a subsequence of the input's, byte for
//! byte, at the same offsets.

use std::borrow::Cow;

use super::decode::{self, Decoded};
use super::filter::{self, BatchVerdict, RecordVerdict, RecordView};
use super::keymap::KeyMap;
use crate::batch::{self, BatchError, BatchHeader};
use crate::compression;

/// What the per-batch decision needs beyond the batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext<'a> {
    /// The key map of this clean.
    pub map: &'a KeyMap,
    /// The first dirty offset of this clean (tombstones below it may expire).
    pub first_dirty: i64,
    /// The source segment's last-modified time.
    pub segment_modified_ms: u64,
    /// The delete horizon of this clean.
    pub delete_horizon_ms: i64,
    /// The header must survive even without records ([`filter::must_keep_header`]).
    pub keep_header: bool,
    /// A planted bug the simulator turned on (only with the `canary` feature; see
    /// [`filter::canary_verdict`]).
    #[cfg(feature = "canary")]
    pub canary: Option<crate::canary::Canary>,
}

/// Counts of what cleaning one batch (or more) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records read.
    pub read: u64,
    /// Records kept.
    pub kept: u64,
    /// Records dropped for a newer one with the same key.
    pub superseded: u64,
    /// Tombstones dropped past the delete horizon.
    pub tombstones: u64,
    /// Records without a key, dropped.
    pub keyless: u64,
}

impl RecordCounts {
    fn count(&mut self, v: RecordVerdict) {
        self.read += 1;
        match v {
            RecordVerdict::Keep => self.kept += 1,
            RecordVerdict::Superseded => self.superseded += 1,
            RecordVerdict::TombstoneExpired => self.tombstones += 1,
            RecordVerdict::NoKey => self.keyless += 1,
        }
    }

    /// Adds `o` to these counts.
    pub fn add(&mut self, o: &RecordCounts) {
        self.read += o.read;
        self.kept += o.kept;
        self.superseded += o.superseded;
        self.tombstones += o.tombstones;
        self.keyless += o.keyless;
    }
}

/// One batch after cleaning.
#[derive(Debug, Clone)]
pub struct CleanedBatch<'a> {
    /// What happened to it.
    pub verdict: BatchVerdict,
    /// The bytes to write (`None` when dropped).
    pub bytes: Option<Cow<'a, [u8]>>,
    /// Its records' fates.
    pub counts: RecordCounts,
}

/// The bytes of `batch` (header `h`, decoded as `d`) holding only the records `keep` marks;
/// at least one must be kept.
pub fn rewrite_batch(batch: &[u8], h: &BatchHeader, d: &Decoded, keep: &[bool]) -> Vec<u8> {
    assert_eq!(keep.len(), d.records.len());
    let mut plain = Vec::with_capacity(d.plain.len());
    let mut count = 0;
    let mut max_ts = -1;
    for (r, _) in d.records.iter().zip(keep).filter(|(_, k)| **k) {
        plain.extend_from_slice(&d.plain[r.span.clone()]);
        count += 1;
        max_ts = max_ts.max(r.timestamp);
    }
    assert!(count > 0, "a rewritten batch keeps a record");
    if h.is_log_append_time() {
        max_ts = h.max_timestamp;
    }
    let codec = h.compression().expect("a decoded batch has a known codec");
    let body = compression::compress(codec, &plain);
    batch::cleaned(batch, &body, count, max_ts)
}

/// Cleans one whole stored batch: which records survive, and the bytes to write.
pub fn clean_batch<'a>(
    batch: &'a [u8],
    h: &BatchHeader,
    ctx: &BatchContext,
) -> Result<CleanedBatch<'a>, BatchError> {
    let mut counts = RecordCounts::default();
    if h.is_control() {
        return Ok(CleanedBatch {
            verdict: BatchVerdict::KeepWhole,
            bytes: Some(Cow::Borrowed(batch)),
            counts,
        });
    }
    let d = decode::decode(batch, h)?;
    let keep: Vec<bool> = d
        .records
        .iter()
        .map(|r| {
            let view = RecordView {
                offset: r.offset,
                key: d.key(r),
                tombstone: r.tombstone,
            };
            let drop_tomb = filter::tombstone_droppable(
                r.offset,
                ctx.first_dirty,
                ctx.segment_modified_ms,
                ctx.delete_horizon_ms,
            );
            #[cfg(feature = "canary")]
            let drop_tomb = drop_tomb
                || filter::canary_tombstone_droppable(r.offset, ctx.first_dirty, ctx.canary);
            let v = filter::decide_record(&view, ctx.map, drop_tomb);
            #[cfg(feature = "canary")]
            let v = filter::canary_verdict(v, &view, ctx.map, ctx.canary);
            counts.count(v);
            v.kept()
        })
        .collect();
    let verdict = filter::decide_batch(h, counts.kept as usize, ctx.keep_header);
    let bytes = match verdict {
        BatchVerdict::KeepWhole => Some(Cow::Borrowed(batch)),
        BatchVerdict::Rewrite => Some(Cow::Owned(rewrite_batch(batch, h, &d, &keep))),
        BatchVerdict::KeepEmpty if h.record_count == 0 => Some(Cow::Borrowed(batch)),
        BatchVerdict::KeepEmpty => Some(Cow::Owned(batch::empty_of(h))),
        BatchVerdict::Drop => None,
    };
    Ok(CleanedBatch {
        verdict,
        bytes,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::super::hash::key_hash;
    use super::*;
    use crate::batch::build::{self, ProducerIdentity, SimpleRecord};
    use crate::batch::Compression;
    use crate::records;
    use proptest::prelude::*;

    fn rec(key: u8, value: Option<u8>, ts: i64) -> SimpleRecord {
        SimpleRecord {
            key: Some(vec![key]),
            value: value.map(|v| vec![v; 3]),
            headers: vec![(b"h".to_vec(), None)],
            timestamp: ts,
        }
    }

    proptest! {
        /// Rewriting keeps exactly the chosen records, byte for byte at their offsets, and the
        /// header fields the cleaner must preserve; the result verifies and walks.
        #[test]
        fn rewrite_preserves_what_it_must(
            recs in proptest::collection::vec((0u8..4, proptest::option::of(0u8..9), 0i64..1000), 1..20),
            keep_mask in proptest::collection::vec(any::<bool>(), 20),
            codec in 0usize..5,
            base in 0i64..1_000_000,
        ) {
            let codec = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd][codec];
            let simple: Vec<_> = recs.iter().map(|(k, v, t)| rec(*k, *v, *t)).collect();
            let p = ProducerIdentity { id: 42, epoch: 3, base_sequence: 17 };
            let mut b = crate::compression::encode(&simple, Some(p), codec);
            batch::assign_offset(&mut b, base, 9);
            let h = batch::verify_stored(&b).unwrap();
            let d = decode::decode(&b, &h).unwrap();
            let mut keep: Vec<bool> = keep_mask[..recs.len()].to_vec();
            keep[0] = true;
            let out = rewrite_batch(&b, &h, &d, &keep);
            let h2 = batch::verify_stored(&out).unwrap();
            prop_assert_eq!(h2.base_offset, base);
            prop_assert_eq!(h2.last_offset(), h.last_offset());
            prop_assert_eq!((h2.producer_id, h2.producer_epoch, h2.base_sequence), (42, 3, 17));
            prop_assert_eq!(h2.leader_epoch, 9);
            prop_assert_eq!(h2.compression().unwrap(), codec);
            let t = records::timestamps(&out, &h2).unwrap();
            prop_assert_eq!(t.count, h2.record_count);
            prop_assert_eq!(t.max, h2.max_timestamp);
            let d2 = decode::decode(&out, &h2).unwrap();
            let want: Vec<_> = d.records.iter().zip(&keep).filter(|(_, k)| **k)
                .map(|(r, _)| (r.offset, r.timestamp, d.plain[r.span.clone()].to_vec())).collect();
            let got: Vec<_> = d2.records.iter()
                .map(|r| (r.offset, r.timestamp, d2.plain[r.span.clone()].to_vec())).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn clean_batch_decides() {
        let simple = vec![rec(1, Some(1), 10), rec(2, None, 11), rec(1, Some(2), 12)];
        let b = build::batch(&simple, None);
        let h = batch::parse_header(&b).unwrap();
        let mut map = KeyMap::with_budget(1000);
        map.put(&key_hash(&[2]), 1);
        map.put(&key_hash(&[1]), 2);
        let mut ctx = BatchContext {
            map: &map,
            first_dirty: 0,
            segment_modified_ms: 0,
            delete_horizon_ms: 100,
            keep_header: false,
            #[cfg(feature = "canary")]
            canary: None,
        };
        let c = clean_batch(&b, &h, &ctx).unwrap();
        assert_eq!(c.verdict, BatchVerdict::Rewrite);
        assert_eq!(
            (c.counts.read, c.counts.kept, c.counts.superseded),
            (3, 2, 1)
        );
        // Past the horizon in the clean head, the tombstone goes too.
        ctx.first_dirty = 10;
        let c = clean_batch(&b, &h, &ctx).unwrap();
        assert_eq!((c.counts.kept, c.counts.tombstones), (1, 1));
        // A batch emptied but kept for its producer, then cleaned again, stays as it is.
        let p = ProducerIdentity {
            id: 1,
            epoch: 0,
            base_sequence: 5,
        };
        let b = build::batch(&[rec(1, Some(1), 10), rec(1, Some(1), 10)], Some(p));
        let h = batch::parse_header(&b).unwrap();
        let mut map = KeyMap::with_budget(1000);
        map.put(&key_hash(&[1]), 50);
        ctx.map = &map;
        ctx.keep_header = true;
        let c = clean_batch(&b, &h, &ctx).unwrap();
        assert_eq!(c.verdict, BatchVerdict::KeepEmpty);
        let empty = c.bytes.unwrap().into_owned();
        let he = batch::verify_stored(&empty).unwrap();
        assert_eq!(
            (he.record_count, he.last_offset(), he.last_sequence()),
            (0, 1, 6)
        );
        let again = clean_batch(&empty, &he, &ctx).unwrap();
        assert_eq!(again.bytes.unwrap().as_ref(), &empty[..]);
        ctx.keep_header = false;
        assert!(clean_batch(&empty, &he, &ctx).unwrap().bytes.is_none());
    }
}
