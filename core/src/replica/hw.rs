//! The high watermark's inputs and consequences: fsync completions move the durable end (and
//! the leader's counted end), and each input ends by advancing the high watermark, releasing
//! the acks=all writes it now covers and timing out the rest.
//!
//! Invariants: an acks=all write is answered exactly once: success only once the exposed high
//! watermark covers its last offset within the leadership that appended it.

use super::{Output, Replica, ReplicaError, Role};

impl Replica {
    pub(super) fn on_synced(&mut self, durable_end: i64) {
        self.durable_end = self.durable_end.max(durable_end.min(self.log_end));
    }

    /// Advances the leader's high watermark and answers the writes it settles.
    pub(super) fn progress(&mut self) {
        let counted = self.counted_end();
        let now = self.now_ms;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.on_append(counted);
        let short = l.isr().len() < l.config().min_insync_replicas;
        let hw = self.exposed(self.leader().expect("leading"));
        let mut done = Vec::new();
        self.waiting.retain(|w| {
            if hw >= w.end {
                let result = if short {
                    Err(ReplicaError::NotEnoughReplicasAfterAppend)
                } else {
                    Ok(w.base)
                };
                done.push(Output::ProduceDone {
                    token: w.token,
                    result,
                });
                false
            } else if now >= w.deadline_ms {
                done.push(Output::ProduceDone {
                    token: w.token,
                    result: Err(ReplicaError::RequestTimedOut),
                });
                false
            } else {
                true
            }
        });
        self.out.extend(done);
        if hw > self.lead_hw {
            self.lead_hw = hw;
            self.emit(Output::HwChanged(hw));
        }
    }
}
