//! Consistency: an offset, while its observation stands, always holds the same record
//! (Jepsen's inconsistent-offsets check; also catches acked records that changed).

use super::{violation, PartHistory, Verdict};
use crate::records::RecordId;

/// Judges a new observation of `offset` holding `id`.
pub fn check(ph: &PartHistory, p: usize, offset: i64, id: RecordId) -> Verdict {
    match ph.observed.get(&offset) {
        Some(prev) if *prev != id => Err(violation(
            "consistency",
            format!(
                "p{p} offset {offset} held {prev}, now holds {id} (durable frontier {})",
                ph.frontier
            ),
        )),
        _ => Ok(()),
    }
}
