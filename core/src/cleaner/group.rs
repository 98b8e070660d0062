//! Grouping (pure): which consecutive source segments the cleaner writes into one destination
//! segment, as Kafka's `groupSegmentsBySize`, so a log of many small cleaned segments is merged.
//!
//! A group grows while the sum of its sources' current sizes stays within `segment.bytes` (the
//! current size bounds the size after cleaning, so the destination never outgrows it) and its
//! offsets stay within 2³¹ - 1 of its base (relative offsets in the indexes are 32-bit; Kafka
//! keeps them within `Int.MaxValue`). skein's indexes live in memory with one point per
//! `index.interval.bytes`, so the size bound also bounds the index.
//!
//! Invariants: the groups partition the input in order, none is empty, and a group of two or more
//! segments satisfies both bounds (one segment alone may exceed `segment.bytes`).

use std::ops::Range;

use super::choose::SegmentInfo;

/// Largest span of offsets one segment may cover (relative offsets are 32-bit, kept signed).
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Splits `segments` (consecutive, in order) into groups, each cleaned into one segment.
pub fn group_segments(segments: &[SegmentInfo], max_bytes: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base;
        let mut bytes = segments[start].size;
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let fits = bytes.saturating_add(next.size) <= max_bytes
                && next.next_offset - 1 - base <= MAX_RELATIVE_OFFSET;
            if !fits {
                break;
            }
            bytes += next.size;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(sizes: &[(u64, i64)]) -> Vec<SegmentInfo> {
        let mut base = 0;
        sizes
            .iter()
            .map(|(size, span)| {
                let s = SegmentInfo {
                    base,
                    next_offset: base + span,
                    size: *size,
                    largest_timestamp: 0,
                    first_batch_timestamp: None,
                    modified_ms: 0,
                };
                base += span;
                s
            })
            .collect()
    }

    #[test]
    fn by_size_and_offset_span() {
        let s = segs(&[(40, 10), (40, 10), (30, 10), (200, 10), (10, 10)]);
        assert_eq!(group_segments(&s, 100), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(group_segments(&s, 1000), vec![0..5]);
        let wide = segs(&[(1, (1 << 30) + 1), (1, (1 << 30) + 1), (1, (1 << 30) + 1)]);
        assert_eq!(group_segments(&wide, 1000), vec![0..1, 1..2, 2..3]);
        assert!(group_segments(&[], 10).is_empty());
    }

    proptest! {
        /// Groups partition the input in order and keep both bounds.
        #[test]
        fn groups_partition_and_fit(
            sizes in proptest::collection::vec((0u64..300, 1i64..1000), 0..40),
            max in 1u64..1000,
        ) {
            let s = segs(&sizes);
            let g = group_segments(&s, max);
            let mut at = 0;
            for r in &g {
                prop_assert_eq!(r.start, at);
                prop_assert!(r.end > r.start);
                at = r.end;
                if r.len() > 1 {
                    let bytes: u64 = s[r.clone()].iter().map(|x| x.size).sum();
                    prop_assert!(bytes <= max);
                }
            }
            prop_assert_eq!(at, s.len());
        }
    }
}
