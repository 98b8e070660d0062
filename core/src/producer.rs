//! Idempotent-producer state of one partition: per producer id, its epoch and the last
//! [`DEDUP_WINDOW`] batches it wrote, so retries are recognised and gaps refused.
//!
//! Invariants this module keeps (asserted by [`ProducerStates::check_invariants`]):
//! - At most [`PRODUCERS_MAX`] producer ids are tracked, and as many awaiting a retry; no id is both.
//! - Each tracked producer has 1 to [`DEDUP_WINDOW`] cached batches, in log order (offsets strictly
//!   increasing) and below the log end. Their sequences are consecutive for batches this partition
//!   accepted as leader; a follower records what its leader accepted, which after a producer's
//!   state expired on one of them need not follow on.
//! - A batch is accepted only if its first sequence follows the last cached one (wrapping at
//!   `i32::MAX`), or it starts a newer epoch at sequence 0, or the producer is unknown.
//! - The state is a pure function of the batches appended (replayable from the log) plus
//!   expiry, so a snapshot plus the log after it rebuilds it exactly.

use std::collections::BTreeMap;

use crate::batch::BatchHeader;

/// How many batches per producer are remembered for duplicate detection (clients keep 5 in flight).
pub const DEDUP_WINDOW: usize = 5;
/// At most this many producer ids are remembered per partition; the least recently used go first.
pub const PRODUCERS_MAX: usize = 100_000;

/// A batch remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedBatch {
    /// First sequence.
    pub first_seq: i32,
    /// Last sequence.
    pub last_seq: i32,
    /// Offset the log gave its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Its max timestamp (the append time under LogAppendTime).
    pub timestamp: i64,
}

/// What the log knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// Newest last; at most [`DEDUP_WINDOW`].
    pub batches: Vec<CachedBatch>,
    /// Injected time of the last append, for expiry.
    pub last_update_ms: u64,
}

/// The verdict on an idempotent batch before it is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// A retry of a batch already in the log: answer with the original offsets, write nothing.
    Duplicate(CachedBatch),
    /// A gap or otherwise impossible sequence.
    OutOfOrder,
    /// An epoch older than the producer's current one.
    InvalidEpoch,
}

/// All producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    entries: BTreeMap<i64, ProducerEntry>,
    /// Producers unknown here whose first batch failed to be written: (epoch, the sequence
    /// their next batch must start at). Without this, the batch after the failed one would be
    /// accepted as an unknown producer's (any sequence), leaving a gap the retry can never fill.
    awaiting: BTreeMap<i64, (i16, i32)>,
    /// A planted bug the simulator turned on (only with the `canary` feature).
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

/// True when each batch spans forward and starts past the one before it.
fn batches_in_log_order(batches: &[CachedBatch]) -> bool {
    batches.iter().all(|b| b.base_offset <= b.last_offset)
        && batches
            .windows(2)
            .all(|w| w[0].last_offset < w[1].base_offset)
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns a planted bug on (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
    }

    /// The entry for one producer id.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// How many producer ids are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Judges an idempotent batch against the state (the header must carry a producer id).
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        debug_assert!(h.has_producer_id());
        let Some(entry) = self.entries.get(&h.producer_id) else {
            if let Some(&(epoch, seq)) = self.awaiting.get(&h.producer_id) {
                if h.producer_epoch == epoch && h.base_sequence != seq {
                    return SequenceCheck::OutOfOrder;
                }
            }
            // Unknown producer: its state may have expired or been truncated away; accept any
            // sequence, as Kafka does since KIP-360.
            return SequenceCheck::Accept;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::InvalidEpoch;
        }
        let first = h.base_sequence;
        let last = h.last_sequence();
        if h.producer_epoch > entry.epoch {
            // A bumped epoch restarts sequences at zero.
            return if first == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            #[cfg(feature = "canary")]
            if self.canary == Some(crate::canary::Canary::NoDedup) {
                return SequenceCheck::Accept;
            }
            return SequenceCheck::Duplicate(*dup);
        }
        let Some(newest) = entry.batches.last() else {
            return SequenceCheck::Accept;
        };
        if first == next_seq(newest.last_seq) {
            return SequenceCheck::Accept;
        }
        // Anything else — a gap, or old sequences that match no remembered batch exactly — is out
        // of order. Kafka answers OUT_OF_ORDER_SEQUENCE_NUMBER here, never DUPLICATE_SEQUENCE_NUMBER:
        // the Java producer would treat the latter as success and drop records it never wrote.
        SequenceCheck::OutOfOrder
    }

    /// Records an appended batch (live append or log replay).
    pub fn record(&mut self, h: &BatchHeader, now_ms: u64) {
        if !h.has_producer_id() {
            return;
        }
        self.awaiting.remove(&h.producer_id);
        if !self.entries.contains_key(&h.producer_id) && self.entries.len() >= PRODUCERS_MAX {
            self.evict_oldest();
        }
        let entry = self.entries.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == DEDUP_WINDOW {
            entry.batches.remove(0);
        }
        entry.batches.push(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        entry.last_update_ms = entry.last_update_ms.max(now_ms);
    }

    fn evict_oldest(&mut self) {
        let victim = self
            .entries
            .iter()
            .min_by_key(|(id, e)| (e.last_update_ms, **id))
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            self.entries.remove(&id);
        }
    }

    /// Forgets producers idle for longer than `expiration_ms`.
    pub fn expire(&mut self, now_ms: u64, expiration_ms: u64) {
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_update_ms) < expiration_ms);
    }

    /// Puts back `producer_id`'s entry as it was before the `record` of a batch (`epoch`,
    /// first sequence `base_sequence`) whose write failed (`None`: it had none; then its next
    /// batch must be that one again).
    pub fn restore(
        &mut self,
        producer_id: i64,
        entry: Option<ProducerEntry>,
        epoch: i16,
        base_sequence: i32,
    ) {
        match entry {
            Some(e) => {
                self.entries.insert(producer_id, e);
            }
            None => {
                self.entries.remove(&producer_id);
                if self.awaiting.len() < PRODUCERS_MAX {
                    self.awaiting.insert(producer_id, (epoch, base_sequence));
                }
            }
        }
    }

    /// The base offset of each tracked producer's newest batch: the batches the cleaner keeps
    /// (at least their headers) so duplicate detection still works after a clean.
    pub fn last_batch_offsets(&self) -> std::collections::BTreeSet<i64> {
        self.entries
            .values()
            .filter_map(|e| e.batches.last().map(|b| b.base_offset))
            .collect()
    }

    /// The base offsets of the batches a clean must keep (at least as headers): every batch
    /// cached for every tracked producer (its newest [`DEDUP_WINDOW`]). Recovery, replaying the
    /// cleaned log from a snapshot older than the clean, rebuilds the cache from them: the newest
    /// one a crash leaves (the newer ones may lie above the high watermark and be lost) gives the
    /// producer's last sequence, and the older ones let a retry of any batch the producer may
    /// still have in flight be recognised as a duplicate (keeping only the newest and the newest
    /// below the first uncleanable offset, a retry of an older one still in flight was refused
    /// OUT_OF_ORDER_SEQUENCE_NUMBER forever after a clean and a crash: skein-sim node seed 151
    /// with retry probes). (A producer with [`DEDUP_WINDOW`] batches in flight that all lie
    /// above the high watermark has its newest committed batch unprotected.)
    pub fn batch_offsets_to_keep(&self) -> std::collections::BTreeSet<i64> {
        let mut out = std::collections::BTreeSet::new();
        #[cfg(feature = "canary")]
        if self.canary == Some(crate::canary::Canary::LoseProducerLastBatch) {
            return out;
        }
        for e in self.entries.values() {
            out.extend(e.batches.iter().map(|b| b.base_offset));
        }
        out
    }

    /// Forgets cached batches at or above `offset` (the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        for e in self.entries.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
        }
        self.entries.retain(|_, e| !e.batches.is_empty());
    }

    /// Asserts the module's invariants against the log's end offset; panics on a violation.
    pub fn check_invariants(&self, log_end: i64) {
        assert!(self.entries.len() <= PRODUCERS_MAX, "too many producers");
        assert!(self.awaiting.len() <= PRODUCERS_MAX, "too many awaiting");
        for (id, e) in &self.entries {
            assert!(
                !self.awaiting.contains_key(id),
                "producer {id} both tracked and awaiting"
            );
            assert!(
                (1..=DEDUP_WINDOW).contains(&e.batches.len()),
                "producer {id} caches {} batches",
                e.batches.len()
            );
            assert!(
                batches_in_log_order(&e.batches),
                "producer {id}: {:?}",
                e.batches
            );
            let newest = e.batches[e.batches.len() - 1];
            assert!(
                newest.last_offset < log_end,
                "producer {id} caches offset {} at or past the log end {log_end}",
                newest.last_offset
            );
        }
    }

    /// Serializes the state: a versioned, CRC-protected snapshot.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"SKPS");
        out.push(1);
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for (id, e) in &self.entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_update_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot; `None` if it is damaged in any way.
    pub fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 13 || &bytes[..4] != b"SKPS" || bytes[4] != 1 {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(&body[5..]);
        let n = r.u32()?;
        let mut entries = BTreeMap::new();
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_update_ms = r.i64()? as u64;
            let nb = r.u8()? as usize;
            if nb > DEDUP_WINDOW {
                return None;
            }
            let mut batches = Vec::with_capacity(nb);
            for _ in 0..nb {
                batches.push(CachedBatch {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                });
            }
            entries.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_update_ms,
                },
            );
        }
        if !r.0.is_empty() || n as usize > PRODUCERS_MAX {
            return None;
        }
        if entries
            .values()
            .any(|e| e.batches.is_empty() || !batches_in_log_order(&e.batches))
        {
            return None;
        }
        Some(Self {
            entries,
            awaiting: BTreeMap::new(),
            #[cfg(feature = "canary")]
            canary: None,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build, parse_header};
    use proptest::prelude::*;

    fn header(pid: i64, epoch: i16, seq: i32, n: usize, base_offset: i64) -> BatchHeader {
        let b = build::simple(
            n,
            0,
            Some(build::ProducerIdentity {
                id: pid,
                epoch,
                base_sequence: seq,
            }),
        );
        let mut h = parse_header(&b).unwrap();
        h.base_offset = base_offset;
        h
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerStates::new();
        let a = header(1, 0, 0, 2, 0);
        assert_eq!(s.check(&a), SequenceCheck::Accept);
        s.record(&a, 1);
        // Retry of the same batch is a duplicate with its original offsets.
        assert!(matches!(s.check(&a), SequenceCheck::Duplicate(c) if c.base_offset == 0));
        // Gap.
        assert_eq!(s.check(&header(1, 0, 5, 1, 0)), SequenceCheck::OutOfOrder);
        // Next in order.
        let b = header(1, 0, 2, 1, 2);
        assert_eq!(s.check(&b), SequenceCheck::Accept);
        s.record(&b, 2);
        // An old piece that matches no remembered batch: out of order, never a silent success.
        assert_eq!(s.check(&header(1, 0, 1, 1, 0)), SequenceCheck::OutOfOrder);
        // Old epoch fenced; new epoch must start at 0.
        assert_eq!(s.check(&header(1, 0, 3, 1, 0)), SequenceCheck::Accept);
        assert_eq!(s.check(&header(1, 1, 3, 1, 0)), SequenceCheck::OutOfOrder);
        assert_eq!(s.check(&header(1, 1, 0, 1, 0)), SequenceCheck::Accept);
    }

    #[test]
    fn older_epoch_is_fenced() {
        let mut s = ProducerStates::new();
        s.record(&header(9, 3, 0, 1, 0), 0);
        assert_eq!(s.check(&header(9, 2, 1, 1, 0)), SequenceCheck::InvalidEpoch);
    }

    #[test]
    fn window_keeps_five() {
        let mut s = ProducerStates::new();
        for i in 0..8 {
            s.record(&header(1, 0, i, 1, i as i64), 0);
        }
        let e = s.get(1).unwrap();
        assert_eq!(e.batches.len(), DEDUP_WINDOW);
        assert_eq!(e.batches[0].first_seq, 3);
        // Sequence 0 fell out of the window: out of order, not a silent duplicate.
        assert_eq!(s.check(&header(1, 0, 0, 1, 0)), SequenceCheck::OutOfOrder);
    }

    #[test]
    #[should_panic(expected = "log end")]
    fn a_cached_batch_past_the_log_end_is_caught() {
        let mut s = ProducerStates::new();
        s.record(&header(1, 0, 0, 3, 0), 0);
        s.check_invariants(2);
    }

    #[test]
    fn a_snapshot_with_batches_out_of_log_order_is_refused() {
        let mut s = ProducerStates::new();
        s.record(&header(1, 0, 0, 1, 5), 0);
        s.record(&header(1, 0, 1, 1, 3), 0);
        assert_eq!(ProducerStates::from_snapshot(&s.to_snapshot()), None);
    }

    #[test]
    fn expiry_and_truncation() {
        let mut s = ProducerStates::new();
        s.record(&header(1, 0, 0, 1, 0), 10);
        s.record(&header(2, 0, 0, 1, 1), 100);
        s.expire(150, 100);
        assert!(s.get(1).is_none() && s.get(2).is_some());
        s.truncate_to(1);
        assert!(s.is_empty());
    }

    proptest! {
        #[test]
        fn snapshot_roundtrips(ops in proptest::collection::vec((0i64..5, 0i16..3, 0i32..100, 1usize..4), 0..40)) {
            let mut s = ProducerStates::new();
            let mut off = 0;
            for (pid, epoch, seq, n) in ops {
                let h = header(pid, epoch, seq, n, off);
                off += n as i64;
                s.record(&h, off as u64);
            }
            let snap = s.to_snapshot();
            prop_assert_eq!(ProducerStates::from_snapshot(&snap), Some(s));
            let mut bad = snap.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0x40;
            prop_assert_eq!(ProducerStates::from_snapshot(&bad), None);
        }

        #[test]
        fn any_mix_of_operations_keeps_the_invariants(
            ops in proptest::collection::vec((0u8..5, 0i64..4, 0i16..3, 0i32..20, 1usize..4), 0..60)
        ) {
            let mut s = ProducerStates::new();
            let mut end = 0i64;
            for (op, pid, epoch, seq, n) in ops {
                match op {
                    // A live append: only what the check accepts is written.
                    0 | 1 => {
                        let h = header(pid, epoch, seq, n, end);
                        if s.check(&h) == SequenceCheck::Accept {
                            s.record(&h, end as u64);
                            end += n as i64;
                        }
                    }
                    // A failed write is rolled back.
                    2 => {
                        let before = s.get(pid).cloned();
                        let h = header(pid, epoch, seq, n, end);
                        s.record(&h, end as u64);
                        s.restore(pid, before, epoch, seq);
                    }
                    // A truncation of the log's tail.
                    3 => {
                        end = (end - n as i64).max(0);
                        s.truncate_to(end);
                    }
                    _ => s.expire(end as u64, 3),
                }
                s.check_invariants(end);
            }
            if let Some(back) = ProducerStates::from_snapshot(&s.to_snapshot()) {
                back.check_invariants(end);
            }
        }

        #[test]
        fn in_order_stream_always_accepted(sizes in proptest::collection::vec(1usize..5, 1..30)) {
            let mut s = ProducerStates::new();
            let mut seq = 0i32;
            let mut off = 0i64;
            for n in sizes {
                let h = header(7, 0, seq, n, off);
                prop_assert_eq!(s.check(&h), SequenceCheck::Accept);
                s.record(&h, 0);
                prop_assert!(matches!(s.check(&h), SequenceCheck::Duplicate(_)));
                seq += n as i32;
                off += n as i64;
            }
        }
    }
}
