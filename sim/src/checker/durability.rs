//! Durability: nothing below the durable frontier (acks=-1 acknowledgements and high
//! watermarks answered) is ever lost. See the module docs of `checker` for why forgetting
//! everything at or above the frontier at a crash is exact.

use super::{violation, PartHistory, Verdict};

/// An acks=-1 acknowledgement, or a high watermark answered, covered everything below `end`.
pub fn advance(ph: &mut PartHistory, end: i64) {
    ph.frontier = ph.frontier.max(end);
}

/// The high watermark (from ListOffsets) must not be below the frontier.
pub fn check_end(ph: &PartHistory, p: usize, hw: i64) -> Verdict {
    if hw < ph.frontier {
        return Err(violation(
            "durability",
            format!(
                "p{p} high watermark {hw} is below the durable frontier {}: acknowledged or read records lost",
                ph.frontier
            ),
        ));
    }
    Ok(())
}

/// At a crash: observations at or above the frontier were never promised durable.
pub fn forget_volatile(ph: &mut PartHistory) {
    let volatile: Vec<i64> = ph.observed.range(ph.frontier..).map(|(o, _)| *o).collect();
    for o in volatile {
        ph.forget(o);
    }
}
