//! Liveness: once faults stop, every idempotent produce is acknowledged within a bound of
//! simulated time.

use super::{violation, Verdict};

/// Longest time, after the faults stop, an idempotent produce may stay unacknowledged.
pub const ACK_BOUND_MS: u64 = 10_000;

/// `pending`: (client, batch serial, partition) of idempotent batches still unacknowledged when
/// the bound ran out.
pub fn check(pending: &[(usize, u32, usize)], waited_ms: u64) -> Verdict {
    if let Some((c, s, p)) = pending.first() {
        return Err(violation(
            "liveness",
            format!(
                "{} idempotent produce(s) unacknowledged {waited_ms} ms after faults stopped, first: client {c} batch {s} to p{p}",
                pending.len()
            ),
        ));
    }
    Ok(())
}
