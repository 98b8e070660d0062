//! Non-voting brokers: the observe exchange with voters and applying what they learn.

use super::*;

impl Cluster {
    /// A voter answers a non-voting broker with committed entries from `next`.
    pub(super) fn on_observe(&mut self, at: NodeId, from: NodeId, next: u64) {
        let Some(raft) = self.node(at).raft.as_ref() else {
            return;
        };
        let answer = raft.observe_answer(next, OBSERVE_ENTRIES_MAX);
        self.send(at, from, Msg::Observed(answer));
    }

    /// Carries out a non-voting broker's observer outputs: asks, restores, applies.
    pub(super) fn carry_out_observer(&mut self, id: NodeId) -> Verdict {
        loop {
            let Some(o) = self.node_mut(id).observer.as_mut() else {
                return Ok(());
            };
            o.check_invariants();
            let Some(out) = o.poll_output() else {
                return Ok(());
            };
            match out {
                ObserverOutput::Ask { to, next } => self.send(id, to, Msg::Observe { next }),
                ObserverOutput::Restore(s) => self.restore(id, s)?,
                ObserverOutput::Apply(e) => self.observer_apply(id, e)?,
            }
        }
    }

    /// A non-voting broker applies a committed entry to its catalog.
    pub(super) fn observer_apply(&mut self, id: NodeId, entry: Entry) -> Verdict {
        let expect = self.node(id).applied + 1;
        if entry.index != expect {
            return Err(violation(
                "state-machine-safety",
                format!(
                    "observer {id} applied index {}, expected {expect}",
                    entry.index
                ),
            ));
        }
        self.meta
            .on_apply(id, entry.index, entry.term, entry.kind, &entry.data)?;
        let n = self.node_mut(id);
        n.applied = entry.index;
        if entry.kind == EntryKind::Normal {
            let rec = decode(&entry.data).expect("the checker decoded it");
            n.catalog.apply(&rec);
            n.catalog.check_invariants();
        }
        Ok(())
    }
}
