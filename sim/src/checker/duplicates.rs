//! Duplicates: an idempotent producer's record is stored at most once (a copy a clean removed
//! from a compacted partition counts: the record was appended there).

use super::{violation, PartHistory, Verdict};
use crate::node::{ProduceResult, OUT_OF_ORDER};
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
    // A copy a clean removed counts too: the record was appended there once already.
    if let Some(c) = ph.compact.as_ref().filter(|c| c.gone_ids.contains_key(&id)) {
        if let Some((other, _)) = c.gone.iter().find(|(o, g)| **g == id && **o != offset) {
            return Err(violation(
                "duplicates",
                format!(
                    "p{p} idempotent record {id} at offset {offset}, and at {other} before a clean removed it there"
                ),
            ));
        }
    }
    Ok(())
}

/// The answer to a retry of idempotent batch `batch` (client, serial), acknowledged before at
/// `acked` (first and last offset), after a restart: the same offsets (a duplicate), or an
/// error that says nothing about the producer's sequence.
pub fn check_retry(
    p: usize,
    batch: (u32, u32),
    acked: (i64, i64),
    answer: &ProduceResult,
) -> Verdict {
    let what = format!(
        "p{p} batch {} of client {}, acknowledged at {}..={}",
        batch.1, batch.0, acked.0, acked.1
    );
    match answer {
        ProduceResult::Ok {
            base_offset,
            last_offset,
            ..
        } if (*base_offset, *last_offset) != acked => Err(violation(
            "duplicates",
            format!("{what}, retried after a restart: appended again at {base_offset}..={last_offset}"),
        )),
        ProduceResult::Err(code, msg) if *code == OUT_OF_ORDER => Err(violation(
            "duplicates",
            format!("{what}, retried after a restart: refused ({code}: {msg}); the node forgot the producer's sequence"),
        )),
        _ => Ok(()),
    }
}
