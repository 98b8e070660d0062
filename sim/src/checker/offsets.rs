//! Offsets: dense and increasing, within a fetch response and within an acknowledgement; no
//! read at or above the high watermark; no empty read below it (Jepsen's poll-skip).
//!
//! A compacted partition ([`check_fetch_compacted`]) may have gaps: between batches (a batch
//! the cleaner dropped), inside a batch (records it dropped: offsets still increase within the
//! batch's range) and whole batches without records (a header kept for its producer or to end a
//! segment); a fetch there may start past the offset asked for. Everything else holds as above.

use skein_core::batch;

use super::{violation, Verdict, Violation};
use crate::records::{self, Decoded};

/// An acknowledgement spans exactly its batch.
pub fn check_ack(p: usize, records: usize, base: i64, last: i64) -> Verdict {
    if base < 0 || last - base + 1 != records as i64 {
        return Err(violation(
            "offsets",
            format!("p{p} ack {base}..={last} for a batch of {records} records"),
        ));
    }
    Ok(())
}

/// Judges the batches of a fetch at `offset`; returns their (offset, value) records.
pub fn check_fetch(
    p: usize,
    offset: i64,
    high_watermark: i64,
    batches: &[Vec<u8>],
) -> Result<Vec<(i64, Vec<u8>)>, Violation> {
    let bad = |d: String| Err(violation("offsets", format!("p{p} fetch at {offset}: {d}")));
    if batches.is_empty() && offset < high_watermark {
        return bad(format!("empty below the high watermark {high_watermark}"));
    }
    let mut out = Vec::new();
    let mut expect: Option<i64> = None;
    for b in batches {
        let h = batch::parse_header(b).expect("integrity checked");
        match expect {
            None if !(h.base_offset <= offset && offset <= h.last_offset()) => {
                return bad(format!(
                    "first batch {}..={} does not cover it",
                    h.base_offset,
                    h.last_offset()
                ));
            }
            Some(e) if h.base_offset != e => {
                return bad(format!("batch at {} where {e} was next", h.base_offset));
            }
            _ => {}
        }
        if h.last_offset() >= high_watermark {
            return bad(format!(
                "batch up to {} at or above the high watermark {high_watermark}",
                h.last_offset()
            ));
        }
        let recs = records::decode(b).map_err(|e| violation("integrity", format!("p{p}: {e}")))?;
        for (i, (o, _)) in recs.iter().enumerate() {
            if *o != h.base_offset + i as i64 {
                return bad(format!("record offset {o} in batch at {}", h.base_offset));
            }
        }
        if recs.len() as i64 != h.next_offset() - h.base_offset {
            return bad(format!(
                "batch at {} holds {} records",
                h.base_offset,
                recs.len()
            ));
        }
        expect = Some(h.next_offset());
        out.extend(recs.into_iter().filter(|(o, _)| *o >= offset));
    }
    Ok(out)
}

/// Judges the batches of a fetch at `offset` of a compacted partition; returns their records at
/// or after `offset` and the offset after the last batch (the end of the offsets the fetch
/// covers: every offset in `offset..end` it does not return is not in the log).
pub fn check_fetch_compacted(
    p: usize,
    offset: i64,
    high_watermark: i64,
    batches: &[Vec<u8>],
) -> Result<(Vec<Decoded>, i64), Violation> {
    let bad = |d: String| Err(violation("offsets", format!("p{p} fetch at {offset}: {d}")));
    if batches.is_empty() && offset < high_watermark {
        return bad(format!("empty below the high watermark {high_watermark}"));
    }
    let mut out = Vec::new();
    let mut end: Option<i64> = None;
    for b in batches {
        let h = batch::parse_header(b).expect("integrity checked");
        match end {
            None if h.last_offset() < offset => {
                return bad(format!(
                    "first batch {}..={} ends before it",
                    h.base_offset,
                    h.last_offset()
                ));
            }
            Some(e) if h.base_offset < e => {
                return bad(format!(
                    "batch at {} overlaps the one before, which ends at {e}",
                    h.base_offset
                ));
            }
            _ => {}
        }
        if h.last_offset() >= high_watermark {
            return bad(format!(
                "batch up to {} at or above the high watermark {high_watermark}",
                h.last_offset()
            ));
        }
        let recs =
            records::decode_records(b).map_err(|e| violation("integrity", format!("p{p}: {e}")))?;
        let mut prev = h.base_offset - 1;
        for r in &recs {
            if r.offset <= prev || r.offset > h.last_offset() {
                return bad(format!(
                    "record offset {} in batch {}..={}",
                    r.offset,
                    h.base_offset,
                    h.last_offset()
                ));
            }
            prev = r.offset;
        }
        if recs.len() != h.record_count.max(0) as usize {
            return bad(format!(
                "batch at {} holds {} records, its header says {}",
                h.base_offset,
                recs.len(),
                h.record_count
            ));
        }
        end = Some(h.next_offset());
        out.extend(recs.into_iter().filter(|r| r.offset >= offset));
    }
    Ok((out, end.unwrap_or(offset)))
}
