//! The controller's side: records applied to the real `Catalog` (with the `elect-outside-isr`
//! canary's override of the leader it publishes), broker registration and fencing, and the
//! leader-completeness check at every election.

use std::panic::{catch_unwind, AssertUnwindSafe};

use skein_core::catalog::{MetadataRecord, PartitionState};

use crate::raft::panic_text;

use super::{idx, PartitionCanary, PartitionModel, State, TOPIC};

pub(super) fn incarnation(b: i32, inc: u8) -> String {
    format!("b{b}-{inc}")
}

pub(super) fn registered(b: i32, inc: u8) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        id: b,
        incarnation: incarnation(b, inc),
        host: "localhost".into(),
        port: 9092 + b,
        rack: None,
    }
}

impl State {
    /// The partition state brokers learn (the catalog's, or the canary's override).
    pub fn published(&self) -> PartitionState {
        let mut st = self
            .catalog
            .partition(TOPIC, 0)
            .expect("the topic exists")
            .clone();
        if let Some((e, l)) = self.override_leader {
            if e == st.leader_epoch {
                st.leader = l;
            }
        }
        st
    }

    /// Applies a record as the controller, with the canary's override.
    pub(super) fn control(&mut self, model: &PartitionModel, rec: MetadataRecord) {
        let before = self.published();
        let cat = &mut self.catalog;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
            cat.apply(&rec);
            cat.check_invariants();
        })) {
            self.fault = Some(format!("controller {rec:?}: {}", panic_text(p)));
            return;
        }
        let fencing = matches!(
            rec,
            MetadataRecord::BrokerFenced { .. } | MetadataRecord::BrokerRegistered { .. }
        );
        if model.canary == Some(PartitionCanary::ElectOutsideIsr) && fencing {
            let new = self.catalog.partition(TOPIC, 0).expect("topic").clone();
            if before.leader >= 0 && new.leader != before.leader {
                let live = self.catalog.live_brokers();
                if let Some(pick) = new
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| live.contains(r) && !new.isr.contains(r) && *r != before.leader)
                {
                    self.override_leader = Some((new.leader_epoch, pick));
                }
            }
        }
        let after = self.published();
        if after.leader >= 0 && after.leader_epoch != before.leader_epoch {
            if after.leader != before.leader {
                self.leader_changed = true;
            }
            self.complete(after.leader, after.leader_epoch, "elected");
        }
    }

    /// Leader completeness for `b` leading `epoch`.
    pub(super) fn complete(&mut self, b: i32, epoch: i32, how: &str) {
        let br = &self.brokers[idx(b)];
        let n = self.max_hw as usize;
        if self.incomplete.is_none() && (br.store.len() < n || br.ids(n) != self.committed) {
            self.incomplete = Some(format!(
                "b{b} {how} leader at epoch {epoch} with log {:?}, but {:?} is committed (hw {})",
                br.ids(usize::MAX),
                self.committed,
                self.max_hw
            ));
        }
    }

    /// The controller fences a live broker (missed heartbeats).
    pub(super) fn fence(&mut self, model: &PartitionModel, b: i32) {
        self.crashes += 1;
        let inc = incarnation(b, self.brokers[idx(b)].incarnation);
        self.control(
            model,
            MetadataRecord::BrokerFenced {
                id: b,
                incarnation: inc,
            },
        );
    }

    /// A fenced live broker is heard again.
    pub(super) fn unfence(&mut self, model: &PartitionModel, b: i32) {
        let inc = incarnation(b, self.brokers[idx(b)].incarnation);
        self.control(
            model,
            MetadataRecord::BrokerUnfenced {
                id: b,
                incarnation: inc,
            },
        );
    }

    /// A crashed broker registers as a new incarnation.
    pub(super) fn restart(&mut self, model: &PartitionModel, b: i32) {
        let br = &mut self.brokers[idx(b)];
        br.alive = true;
        br.incarnation += 1;
        let inc = br.incarnation;
        self.control(model, registered(b, inc));
    }
}
