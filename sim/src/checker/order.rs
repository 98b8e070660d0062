//! Order: an idempotent producer's records sit at offsets increasing in the order it produced
//! them. A producer numbers its batches (serials) in the order it makes them and gives each
//! partition's batches increasing sequence numbers in that order, so even with up to five batches
//! in flight, production order in a partition is its (serial, index) order.

use super::{violation, PartHistory, Verdict};
use crate::records::RecordId;

/// Judges an idempotent producer's record observed at `offset` against its neighbours.
pub fn check(ph: &PartHistory, p: usize, offset: i64, id: RecordId) -> Verdict {
    let first = RecordId {
        client: id.client,
        serial: 0,
        index: 0,
    };
    let last = RecordId {
        client: id.client,
        serial: u32::MAX,
        index: u32::MAX,
    };
    if let Some((prev, offs)) = ph.placed.range(first..id).next_back() {
        if offs.iter().any(|o| *o >= offset) {
            return Err(violation(
                "order",
                format!("p{p} {prev} (offsets {offs:?}) was produced before {id} but is not below offset {offset}"),
            ));
        }
    }
    if let Some((next, offs)) = ph.placed.range(id..=last).find(|(r, _)| **r != id) {
        if offs.iter().any(|o| *o <= offset) {
            return Err(violation(
                "order",
                format!("p{p} {next} (offsets {offs:?}) was produced after {id} but is not above offset {offset}"),
            ));
        }
    }
    Ok(())
}
