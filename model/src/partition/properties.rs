//! The properties and the ghost records they read: after every step, what each live leader's
//! replica exposes as its high watermark (`Replica::hw`) is recorded — the largest ever
//! exposed and the records below it are "committed", each leadership's last exposure is kept
//! to see it never fall — and checked against the leader's own log.

use stateright::Property;

use super::{PartitionModel, State, TOPIC};

impl State {
    /// Records what every live leader exposes now (after any step).
    pub(super) fn observe(&mut self) {
        for i in 0..self.brokers.len() {
            let b = &self.brokers[i];
            let Some(epoch) = b.replica.leader_epoch() else {
                continue;
            };
            if !b.alive {
                continue;
            }
            let id = b.id;
            let hw = b.replica.hw();
            if let Some(prev) = self.lead_hw.insert((id, epoch), hw) {
                if hw < prev && self.hw_fell.is_none() {
                    self.hw_fell = Some(format!(
                        "b{id} epoch {epoch}: high watermark {prev} -> {hw}"
                    ));
                }
            }
            let n = (hw.max(0) as usize).min(self.max_hw as usize);
            if b.ids(n) != self.committed[..n.min(self.committed.len())] && self.fork.is_none() {
                self.fork = Some(format!(
                    "b{id} epoch {epoch} exposes hw {hw} over {:?}; committed {:?}",
                    b.ids(usize::MAX),
                    self.committed
                ));
            }
            if hw > self.max_hw {
                self.max_hw = hw;
                self.committed = b.ids(hw as usize);
            }
        }
    }
}

/// Whether the catalog's ISR and ELR lie within the replicas, are disjoint, and the leader is
/// in the ISR.
fn isr_sane(s: &State) -> bool {
    let Some(p) = s.catalog.partition(TOPIC, 0) else {
        return false;
    };
    !p.isr.is_empty()
        && p.isr.iter().all(|r| p.replicas.contains(r))
        && p.elr
            .iter()
            .all(|r| p.replicas.contains(r) && !p.isr.contains(r))
        && (p.leader == -1 || p.isr.contains(&p.leader))
}

/// Whether every replica's records below the high watermark it knows are the committed ones.
fn no_fork(s: &State) -> bool {
    s.fork.is_none()
        && s.brokers.iter().all(|b| {
            let n = (b.replica.hw().max(0) as usize).min(b.store.len());
            n <= s.committed.len() && b.ids(n) == s.committed[..n]
        })
}

/// The model's properties.
pub(super) fn all() -> Vec<Property<PartitionModel>> {
    vec![
        Property::always("no core assertion fails", |_, s: &State| s.fault.is_none()),
        Property::always("leader completeness", |_, s: &State| s.incomplete.is_none()),
        Property::always(
            "ISR and ELR within replicas and disjoint",
            |_, s: &State| isr_sane(s),
        ),
        Property::always(
            "high watermark never falls within a leadership",
            |_, s: &State| s.hw_fell.is_none(),
        ),
        Property::always("no fork below the high watermark", |_, s: &State| {
            no_fork(s)
        }),
        Property::sometimes("a leader change happens", |_, s: &State| s.leader_changed),
        Property::sometimes("a record commits", |_, s: &State| s.max_hw > 0),
        Property::sometimes("a diverged follower truncates", |_, s: &State| s.truncated),
        Property::sometimes("a crash loses an unsynced write", |_, s: &State| {
            s.lost_unsynced
        }),
    ]
}
