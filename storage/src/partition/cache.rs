//! Page-cache write-behind of the active segment: which ranges to write back and drop.

/// Bytes of the active segment handed to write-behind at a time.
pub(super) const WRITE_BEHIND_CHUNK: u64 = 1 << 20;

/// How much of the active segment the page cache keeps: everything before `keep` bytes behind
/// the end is written back early and dropped from the cache. Fresh page-cache pages are
/// expensive on some machines (the benchmark machine's writes fall from ~1.7 GB/s to ~0.4 GB/s
/// once the cache grows past about 2 GB); recycling a bounded set of pages avoids that.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct CacheWindow {
    /// Bytes behind the segment end kept cached; 0 leaves the page cache to the kernel.
    pub(super) keep: u64,
    /// The segment the positions below are in.
    segment: i64,
    /// Write-back started below this position.
    written_back: u64,
    /// Dropped from the cache below this position.
    dropped: u64,
}

/// A byte range of a file: (position, length).
type Range = (u64, u64);

impl CacheWindow {
    /// A window keeping `keep` bytes cached behind the end (0: leave it to the kernel).
    pub(super) fn new(keep: u64) -> Self {
        CacheWindow {
            keep,
            ..CacheWindow::default()
        }
    }

    /// The active segment `segment` now ends at `end`: the ranges (position, length) to start
    /// writing back and to drop from the cache, each at most once and in order.
    pub(super) fn advance(&mut self, segment: i64, end: u64) -> (Option<Range>, Option<Range>) {
        if self.keep == 0 {
            return (None, None);
        }
        if self.segment != segment || end < self.written_back {
            // A new active segment (the sealed one was fsynced whole at the roll), or this one
            // was cut back: start over.
            *self = CacheWindow {
                keep: self.keep,
                segment,
                ..CacheWindow::default()
            };
        }
        let mut writeback = None;
        if end >= self.written_back + WRITE_BEHIND_CHUNK {
            writeback = Some((self.written_back, end - self.written_back));
            self.written_back = end;
        }
        // Write-back of this range started at least `keep` bytes ago, so waiting for it is
        // normally instant.
        let mut drop = None;
        let drop_to = self.written_back.saturating_sub(self.keep);
        if drop_to >= self.dropped + WRITE_BEHIND_CHUNK {
            drop = Some((self.dropped, drop_to - self.dropped));
            self.dropped = drop_to;
        }
        (writeback, drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Write-behind covers the segment in order without gaps or overlaps, never drops what
        /// is within the window of the end or not yet handed to write-back, and leaves at most
        /// the window plus two chunks cached.
        #[test]
        fn cache_window_ranges(keep_mb in 1u64..64, steps in proptest::collection::vec(1u64..3_000_000, 1..400)) {
            let keep = keep_mb << 20;
            let mut w = CacheWindow { keep, ..CacheWindow::default() };
            let (mut end, mut wb_next, mut drop_next) = (0u64, 0u64, 0u64);
            for s in steps {
                end += s;
                let (wb, dr) = w.advance(7, end);
                if let Some((at, len)) = wb {
                    proptest::prop_assert_eq!(at, wb_next);
                    wb_next = at + len;
                    proptest::prop_assert_eq!(wb_next, end);
                }
                if let Some((at, len)) = dr {
                    proptest::prop_assert_eq!(at, drop_next);
                    drop_next = at + len;
                    proptest::prop_assert!(drop_next + keep <= wb_next);
                }
                proptest::prop_assert!(end - drop_next <= keep + 2 * WRITE_BEHIND_CHUNK);
            }
        }
    }

    #[test]
    fn cache_window_off_and_restarts() {
        const C: u64 = WRITE_BEHIND_CHUNK;
        let mut off = CacheWindow::default();
        assert_eq!(off.advance(0, 1 << 30), (None, None));
        let mut w = CacheWindow {
            keep: C,
            ..CacheWindow::default()
        };
        assert_eq!(w.advance(0, 6 * C), (Some((0, 6 * C)), Some((0, 5 * C))));
        // A roll: the new segment starts from position 0.
        assert_eq!(w.advance(100, C / 2), (None, None));
        assert_eq!(w.advance(100, 5 * C), (Some((0, 5 * C)), Some((0, 4 * C))));
        // Cut back below what was written back: start over in the same segment.
        assert_eq!(w.advance(100, C / 2), (None, None));
    }
}
