//! The byte budget of one Fetch response (KIP-74).
//!
//! A Fetch request carries two limits: `max_bytes` for the whole response (the client's
//! `fetch.max.bytes`) and `partition_max_bytes` for each partition (`max.partition.fetch.bytes`).
//! The broker reads the partitions in the order the request lists them. Each may return whole
//! batches up to the smaller of its own limit and what is left of the response's; a batch that
//! would cross either is left for a later fetch. One exception keeps every consumer able to make
//! progress, whatever its limits: until some partition of this response has returned data, a
//! partition returns its first batch whole however large it is (that batch alone when it is over
//! the limit). This is Kafka's `ReplicaManager.readFromLog`: `minOneMessage` holds until the
//! first non-empty partition, and each read is limited to `min(partition max, bytes left)`.
//!
//! **Invariant:** a response's records total at most `max_bytes`, unless the response holds
//! exactly one batch, larger than `max_bytes`, from its first non-empty partition. Each
//! partition's records are whole batches within its `partition_max_bytes`, but for that same
//! first batch of the first non-empty partition, which may exceed it.
//!
//! Calling contract, per response: for each partition in request order, [`FetchBudget::grant`]
//! gives the [`Grant`] to read with (`log::plan_read` with `max_bytes`, then `log::trim_read`
//! with `max_bytes` and `whole_first`); cut what was read to the bytes actually returned (for a
//! consumer, below the high watermark); then [`FetchBudget::take`] those bytes before granting
//! the next partition. Bytes `take` refuses are not sent.

/// The response limit a Fetch request's `max_bytes` asks for; negative values count as 0 (the
/// response then holds one batch, from its first non-empty partition).
pub fn response_max_bytes(max_bytes: i32) -> u64 {
    max_bytes.max(0) as u64
}

/// What one partition of a response may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Whole batches totalling at most this many bytes.
    pub max_bytes: u64,
    /// The first batch may be returned whole even when it is larger than `max_bytes` (then
    /// alone): no partition of the response has returned data yet.
    pub whole_first: bool,
}

impl Grant {
    /// A read on its own, outside any response (the first-batch rule applies): at least the
    /// first batch, then whole batches up to `max_bytes`.
    pub fn single(max_bytes: u64) -> Self {
        Grant {
            max_bytes,
            whole_first: true,
        }
    }

    /// Nothing can be returned: no bytes are left and the first-batch rule does not apply.
    pub fn is_empty(&self) -> bool {
        self.max_bytes == 0 && !self.whole_first
    }

    /// Whether `len` bytes of whole batches, read as `log::trim_read` cuts them to this grant
    /// (so a read over `max_bytes` is the first batch alone), may be returned.
    pub fn admits(&self, len: u64) -> bool {
        len <= self.max_bytes || self.whole_first
    }
}

/// The bytes a Fetch response may still carry, and whether any partition has returned data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchBudget {
    /// Bytes left of the response limit.
    left: u64,
    /// Bytes returned so far.
    used: u64,
    /// Some partition has returned data (the first-batch rule no longer applies).
    returned: bool,
}

impl FetchBudget {
    /// A budget for a response of at most `max_bytes` (see [`response_max_bytes`]).
    pub fn new(max_bytes: u64) -> Self {
        FetchBudget {
            left: max_bytes,
            used: 0,
            returned: false,
        }
    }

    /// What the next partition, with the request's `partition_max_bytes` for it (negative
    /// counts as 0), may return.
    pub fn grant(&self, partition_max_bytes: i32) -> Grant {
        Grant {
            max_bytes: (partition_max_bytes.max(0) as u64).min(self.left),
            whole_first: !self.returned,
        }
    }

    /// Counts `len` bytes a partition read under `grant` returns. Returns false, counting
    /// nothing, when the grant does not admit them: the shell must then send none of them.
    pub fn take(&mut self, grant: Grant, len: u64) -> bool {
        if !grant.admits(len) {
            return false;
        }
        self.left = self.left.saturating_sub(len);
        self.used += len;
        self.returned |= len > 0;
        true
    }

    /// Bytes of records the response carries so far.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, build};
    use crate::config::LogConfig;
    use crate::log::tests::Files;
    use crate::log::{committed_len, trim_read, PartitionLog, ReadPlan};
    use proptest::prelude::*;

    #[test]
    fn first_non_empty_partition_may_exceed_both_limits_once() {
        let mut b = FetchBudget::new(1000);
        // An empty partition does not end the first-batch rule.
        let g = b.grant(20_000);
        assert_eq!(
            g,
            Grant {
                max_bytes: 1000,
                whole_first: true
            }
        );
        assert!(b.take(g, 0));
        let g = b.grant(500);
        assert!(g.admits(5000));
        assert!(b.take(g, 5000));
        assert_eq!(b.used(), 5000);
        // Nothing left: the next partitions return nothing, and are not read at all.
        let g = b.grant(20_000);
        assert!(g.is_empty());
        assert!(!b.take(g, 1));
        assert!(b.take(g, 0));
        assert_eq!(b.used(), 5000);
    }

    #[test]
    fn later_partitions_get_the_smaller_of_both_limits() {
        let mut b = FetchBudget::new(1000);
        let g = b.grant(300);
        assert!(b.take(g, 300));
        let g = b.grant(20_000);
        assert_eq!(
            g,
            Grant {
                max_bytes: 700,
                whole_first: false
            }
        );
        assert!(!b.take(g, 701));
        let g = b.grant(100);
        assert_eq!(g.max_bytes, 100);
        assert!(b.take(g, 100));
        assert_eq!(b.used(), 400);
        assert_eq!(response_max_bytes(-1), 0);
        assert_eq!(FetchBudget::new(0).grant(-5).max_bytes, 0);
    }

    /// A partition of the property test: its log, the batches it holds, its high watermark and
    /// fetch offset, and the request's limit for it.
    struct Part {
        log: PartitionLog,
        files: Files,
        /// (base offset, next offset, size) of each batch.
        batches: Vec<(i64, i64, u64)>,
        hw: i64,
        offset: i64,
        partition_max_bytes: i32,
    }

    fn build_part(values: &[(usize, usize)], hw_at: usize, at: usize, pmax: i32) -> Part {
        let config = LogConfig {
            // Several segments, each holding the largest batch; sparse index points.
            segment_bytes: 12_000,
            index_interval_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::new(config, 0);
        let mut files = Files::default();
        let mut batches = Vec::new();
        for (i, (records, value_len)) in values.iter().enumerate() {
            let recs: Vec<build::SimpleRecord> = (0..*records)
                .map(|_| build::SimpleRecord {
                    value: Some(vec![b'v'; *value_len]),
                    timestamp: i as i64,
                    ..Default::default()
                })
                .collect();
            let mut b = build::batch(&recs, None);
            let a = log.append(i as u64, &mut b).unwrap();
            files.apply(&log, &a, &b);
            batches.push((a.base_offset, log.log_end_offset(), b.len() as u64));
        }
        // The high watermark sits on a batch boundary; the fetch offset anywhere in the log.
        let hw = if batches.is_empty() {
            0
        } else {
            batches[hw_at % (batches.len() + 1)..]
                .first()
                .map_or(log.log_end_offset(), |b| b.0)
        };
        let offset = (at % (log.log_end_offset() as usize + 1)) as i64;
        Part {
            log,
            files,
            batches,
            hw,
            offset,
            partition_max_bytes: pmax,
        }
    }

    /// Reads one partition as the shell does: plan, read, trim (re-reading while the first
    /// wanted batch lies further than planned), cut at the high watermark.
    fn read_part(p: &Part, g: Grant) -> Vec<u8> {
        if p.offset >= p.hw || g.is_empty() {
            return vec![];
        }
        let plan = p.log.plan_read(p.offset, g.max_bytes).unwrap();
        let mut bytes = p.files.read(plan);
        let (s, e) = loop {
            match trim_read(&bytes, p.offset, g.max_bytes, g.whole_first) {
                Ok(r) => break r,
                Err(total) => {
                    let ReadPlan::Range {
                        segment_base,
                        position,
                        ..
                    } = plan
                    else {
                        panic!("a re-read of an empty plan")
                    };
                    let seg = p.log.segment(segment_base).unwrap().size - position;
                    let len = (total as u64).min(seg);
                    if len <= bytes.len() as u64 {
                        break (0, 0);
                    }
                    bytes = p.files.read(ReadPlan::Range {
                        segment_base,
                        position,
                        len,
                    });
                }
            }
        };
        let out = &bytes[s..e];
        out[..committed_len(out, p.hw)].to_vec()
    }

    fn batch_strategy() -> impl Strategy<Value = Vec<(usize, usize)>> {
        // (records, value bytes) per batch: from tiny batches to ones over most limits.
        proptest::collection::vec((1usize..4, prop_oneof![0usize..200, 200usize..3000]), 0..12)
    }

    proptest! {
        /// Random partitions (count, batch sizes, high watermarks, fetch offsets) and random
        /// response and partition limits, read through `FetchBudget` with `plan_read` and
        /// `trim_read` as the shell does: the response never exceeds `max_bytes` but for one
        /// first batch, the first partition with data always returns a batch, every partition
        /// returns whole consecutive batches within its limit (but for that first batch), and a
        /// partition returns nothing only when its first batch does not fit.
        #[test]
        fn fetch_response_keeps_both_limits_and_always_progresses(
            parts in proptest::collection::vec(
                (batch_strategy(), any::<usize>(), any::<usize>(), prop_oneof![0i32..100, 100i32..6000, Just(i32::MAX)]),
                1..6),
            max_bytes in prop_oneof![Just(-1i32), 0i32..100, 100i32..12_000, Just(i32::MAX)],
        ) {
            let parts: Vec<Part> = parts
                .iter()
                .map(|(v, hw_at, at, pmax)| build_part(v, *hw_at, *at, *pmax))
                .collect();
            let response_max = response_max_bytes(max_bytes);
            let mut budget = FetchBudget::new(response_max);
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut left_before: Vec<u64> = Vec::new();
            for p in &parts {
                let g = budget.grant(p.partition_max_bytes);
                left_before.push(response_max.saturating_sub(budget.used()));
                let bytes = read_part(p, g);
                let keep = budget.take(g, bytes.len() as u64);
                prop_assert!(keep, "a trimmed read the grant refuses: {} bytes, {:?}", bytes.len(), g);
                got.push(if keep { bytes } else { vec![] });
            }
            let total: u64 = got.iter().map(|b| b.len() as u64).sum();
            prop_assert_eq!(total, budget.used());
            let first_non_empty = got.iter().position(|b| !b.is_empty());
            let first_with_data = parts.iter().position(|p| p.offset < p.hw);
            // Progress: the first partition with committed data at its offset returns some.
            prop_assert_eq!(first_non_empty, first_with_data);
            for (i, (p, bytes)) in parts.iter().zip(&got).enumerate() {
                // Whole, consecutive batches, the first holding the fetch offset, all below hw.
                let mut pos = 0;
                let mut count = 0;
                let mut next = p.offset;
                while pos < bytes.len() {
                    let h = batch::verify_stored(&bytes[pos..]).unwrap();
                    prop_assert!(pos + h.size <= bytes.len());
                    prop_assert!(h.base_offset <= next && next <= h.last_offset());
                    prop_assert!(h.base_offset < p.hw);
                    next = h.next_offset();
                    pos += h.size;
                    count += 1;
                }
                let len = bytes.len() as u64;
                let pmax = p.partition_max_bytes as u64;
                let the_first_batch = Some(i) == first_non_empty && count == 1;
                prop_assert!(len <= pmax || the_first_batch,
                    "partition {} returned {} bytes over its limit {}", i, len, pmax);
                prop_assert!(len <= left_before[i] || the_first_batch,
                    "partition {} returned {} bytes with {} left", i, len, left_before[i]);
                // Nothing returned although committed data waits: its first batch must not fit.
                if bytes.is_empty() && p.offset < p.hw {
                    let (_, _, size) = *p.batches.iter().find(|b| b.1 > p.offset).unwrap();
                    prop_assert!(size > pmax.min(left_before[i]),
                        "partition {} returned nothing though its {}-byte batch fits", i, size);
                }
            }
            if total > response_max {
                prop_assert_eq!(got.iter().filter(|b| !b.is_empty()).count(), 1);
                let only = &got[first_non_empty.unwrap()];
                prop_assert_eq!(batch::peek_size(only).unwrap(), only.len(),
                    "a response over max_bytes holding more than one batch");
            }
        }
    }
}
