//! The ISR-settling check (see the module doc of [`crate::replication`]): a healthy leader's
//! maximal ISR comes back to its committed ISR within [`SETTLE_MS`].
//!
//! Invariant: a leader counts as healthy only while it is up, not shutting down, unpaused (and
//! past the events a pause held back), not cut off, not slow, and the catalog names it leader
//! at the epoch it leads; any lapse restarts its clock.

use super::{ReplSim, Res, TOPIC};
use crate::checker::violation;

/// How long a healthy leader may keep members of unresolved ISR proposals beyond its
/// committed ISR: ten ISR retries (500 ms each), far more than a proposal, its answer and the
/// settling proposal take on a healthy link, even with messages lost.
pub(super) const SETTLE_MS: u64 = 2_000;

impl ReplSim {
    /// Whether broker `id` is up, not shutting down, unpaused (and past the events a pause held
    /// back), not cut off and not slow.
    pub(super) fn healthy(&self, id: i32) -> bool {
        let br = &self.brokers[&id];
        br.up
            && !br.stopping
            && br.paused_until.is_none()
            && br.held_until <= self.now
            && !br.slow
            && !self.cut.contains_key(&id)
    }

    /// Checks every leader's ISR settling, after every step.
    pub(super) fn check_settled(&mut self) -> Res {
        let parts = self.catalog.topic(TOPIC).expect("topic").parts.clone();
        for (id, br) in &self.brokers {
            let healthy = self.healthy(*id);
            for (p, r) in br.parts.iter().enumerate() {
                let unsettled = r.core.leader().filter(|l| {
                    healthy
                        && parts[p].leader == *id
                        && parts[p].leader_epoch == l.leader_epoch()
                        && l.maximal_isr().len() > l.isr().len()
                });
                let Some(l) = unsettled else {
                    self.unsettled.remove(&(*id, p));
                    continue;
                };
                let since = *self.unsettled.entry((*id, p)).or_insert(self.now);
                if self.now - since > SETTLE_MS {
                    return Err(violation(
                        "isr-settle",
                        format!(
                            "b{id} p{p} epoch {}: maximal ISR {:?} beyond the committed {:?} \
                             since t={since} (the high watermark {} waits on it; fenced {:?})",
                            l.leader_epoch(),
                            l.maximal_isr(),
                            l.isr(),
                            l.hw(),
                            l.fenced()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
