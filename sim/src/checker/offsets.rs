//! Offsets: dense and increasing, within a fetch response and within an acknowledgement; no
//! read at or above the high watermark; no empty read below it (Jepsen's poll-skip).

use skein_core::batch;

use super::{violation, Verdict, Violation};
use crate::records;

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
