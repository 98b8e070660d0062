//! The acknowledgement-latency check (see the module doc of [`crate::replication`]): while a
//! partition's leader and every member of its committed ISR are healthy, an acks=-1 write that
//! leader appended is answered within [`ReplSim::ack_bound_ms`] of its append (or of the
//! moment health began, if later).
//!
//! Invariant: a leader and its ISR count as healthy only while the leader and every member are
//! healthy brokers (up, not shutting down, unpaused and past the events a pause held back, not
//! cut off, not slow), the catalog names the leader at the epoch it leads with the ISR it
//! holds, no ISR change is pending (maximal ISR = committed ISR), the ISR meets
//! min.insync.replicas, every follower in it replicates from this leader at this epoch (its
//! last fetch was answered with records, not an error) and lacks at most one fetch's worth of
//! the leader's batches (a backlog left by an earlier lapse takes more rounds), and no message
//! between the leader and a member was lost, duplicated or slowed lately (see
//! [`ReplSim::disturb`]); any lapse restarts the clock.

use super::{Node, ReplSim, Res, BATCHES_PER_FETCH, TOPIC};
use crate::checker::violation;
use skein_core::replication::Leader;

/// Replication rounds an acknowledgement may take once healthy, a round being a fetch answer,
/// the follower's append and fsync, and its next fetch (two one-way delays and one fsync at the
/// seed's largest). A write needs at most two: the round in flight when it was appended (a
/// follower's earlier fetch, which may bring older batches), then the one that copies it (a
/// follower within one fetch of the leader's end gets it in one), while the leader's own fsync
/// runs alongside. Healthy seeds measured up to 2.00 rounds (0..4000); the third is margin.
/// The leader's long-poll wait is deliberately not in it: a follower's report that reached the
/// leader before its fsync must be counted when that fsync lands, not when the held fetch is
/// served again at the next append or at the end of the wait.
const ACK_ROUNDS: u64 = 3;

impl ReplSim {
    /// The bound of this seed: [`ACK_ROUNDS`] replication rounds at its largest network and
    /// disk delays.
    pub(super) fn ack_bound_ms(&self) -> u64 {
        ACK_ROUNDS * (2 * self.swarm.delay_max_ms + self.swarm.disk_max_ms)
    }

    /// A message between `a` and `b` was lost, duplicated or slowed beyond the normal delays:
    /// replication between the two may be held up until `until`. For a lost message that is
    /// when the fetch retry it calls for has gone out; for a late or duplicate one, a long-poll
    /// wait after it arrives (a stale fetch may report an older end after the follower's
    /// current fetch is held, and the leader hears the newer one again only when it appends or
    /// that wait ends).
    pub(super) fn disturb(&mut self, a: Node, b: Node, until: u64) {
        if let (Node::B(x), Node::B(y)) = (a, b) {
            let e = self.disturbed.entry((x.min(y), x.max(y))).or_insert(0);
            *e = (*e).max(until);
        }
    }

    /// Whether leader `b` of partition `p` (leading as `l`) and its ISR are healthy (see the
    /// module doc).
    fn ack_healthy(&self, b: i32, p: usize, l: &Leader) -> bool {
        let epoch = l.leader_epoch();
        let st = &self.catalog.topic(TOPIC).expect("topic").parts[p];
        let mut isr = l.isr().to_vec();
        isr.sort_unstable();
        let mut committed = st.isr.clone();
        committed.sort_unstable();
        let needed = l.config().min_insync_replicas.min(l.replicas().len());
        let leader = &self.brokers[&b].parts[p];
        // Batches of the leader's log beyond `end`.
        let behind = |end: i64| leader.store.len() - leader.store.partition_point(|s| s.last < end);
        self.healthy(b)
            && st.leader == b
            && st.leader_epoch == epoch
            && committed == isr
            && l.maximal_isr().len() == isr.len()
            && l.retry_at().is_none()
            && isr.len() >= needed
            && isr.iter().filter(|m| **m != b).all(|m| {
                let r = &self.brokers[m].parts[p];
                self.healthy(*m)
                    && r.core.following() == Some((b, epoch))
                    && r.replicating == Some((b, epoch))
                    && behind(r.end()) <= BATCHES_PER_FETCH
                    && self
                        .disturbed
                        .get(&(b.min(*m), b.max(*m)))
                        .is_none_or(|until| *until <= self.now)
            })
    }

    /// Checks every healthy leader's unanswered acks=-1 writes, after every step.
    pub(super) fn check_ack_latency(&mut self) -> Res {
        let bound = self.ack_bound_ms();
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        for b in ids {
            for p in 0..self.swarm.partitions {
                let r = &self.brokers[&b].parts[p];
                // With nothing to answer the clock need not run: a write appended later starts
                // it at its append if all is healthy then, as a running clock would.
                let waiting =
                    |l: &&Leader| r.unanswered.iter().any(|(_, e, _)| *e == l.leader_epoch());
                let healthy = r
                    .core
                    .leader()
                    .filter(waiting)
                    .filter(|l| self.ack_healthy(b, p, l));
                let Some(l) = healthy else {
                    self.ack_clock.remove(&(b, p));
                    continue;
                };
                let epoch = l.leader_epoch();
                let since = *self.ack_clock.get(&(b, p)).unwrap_or(&self.now);
                let late = r
                    .unanswered
                    .iter()
                    .find(|(_, e, at)| *e == epoch && self.now - (*at).max(since) > bound);
                if let Some((token, _, at)) = late {
                    return Err(violation(
                        "ack-latency",
                        format!(
                            "b{b} p{p} epoch {epoch}: acks=-1 req {token} appended at t={at} \
                             unanswered after {} ms, healthy since t={since} (bound {bound} ms; \
                             isr {:?}, hw {}, end {}, synced {}, followers {:?})",
                            self.now - at,
                            l.isr(),
                            l.hw(),
                            r.end(),
                            r.synced_end(),
                            l.followers()
                                .iter()
                                .map(|(k, f)| (*k, f.end))
                                .collect::<Vec<_>>()
                        ),
                    ));
                }
                self.ack_clock.insert((b, p), since);
            }
        }
        Ok(())
    }
}
