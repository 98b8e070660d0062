//! Retention: a time-retention pass deletes a segment only when its newest record is older than
//! `retention.ms`, so every record it deletes is older than that by the timestamp its producer
//! gave it. A batch header's max timestamp (which a client may leave at -1) must not matter.

use std::collections::BTreeMap;

use super::{violation, PartHistory, Verdict};

/// The pass at `now_ms` moved the log start of partition `p` to `new_start`: every standing
/// observation from `from` up to it must hold a record older than `retention_ms`.
pub fn check(
    ph: &PartHistory,
    stamps: &BTreeMap<(u32, u32), i64>,
    p: usize,
    now_ms: u64,
    retention_ms: i64,
    (from, new_start): (i64, i64),
) -> Verdict {
    let from = from.max(ph.log_start);
    if from >= new_start {
        return Ok(());
    }
    for (offset, id) in ph.observed.range(from..new_start) {
        let Some(ts) = stamps.get(&(id.client, id.serial)) else {
            continue;
        };
        let age = now_ms as i64 - ts;
        if *ts >= 0 && age <= retention_ms {
            return Err(violation(
                "retention",
                format!(
                    "p{p} offset {offset} ({id}, timestamp {ts}) deleted at {now_ms}: {age} ms old, retention.ms {retention_ms}"
                ),
            ));
        }
    }
    Ok(())
}
