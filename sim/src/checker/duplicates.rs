//! Duplicates: an idempotent producer's record is stored at most once.

use super::{violation, PartHistory, Verdict};
use crate::records::RecordId;

/// Judges an idempotent producer's record observed at `offset`.
pub fn check(ph: &PartHistory, p: usize, offset: i64, id: RecordId) -> Verdict {
    if let Some(other) = ph
        .placed
        .get(&id)
        .and_then(|s| s.iter().find(|o| **o != offset))
    {
        return Err(violation(
            "duplicates",
            format!("p{p} idempotent record {id} at offsets {other} and {offset}"),
        ));
    }
    Ok(())
}
