//! Role transitions from committed metadata: a new leadership at a new leader epoch (or the
//! same one seeing a new ISR, replica set or config), following a leader at its epoch, or idle.
//!
//! Invariants: the role changes only on [`Input::Metadata`](super::Input::Metadata); losing a
//! leadership fails every write still waiting for it; a new leadership asks for the leader
//! epoch to be recorded and, under fsync-before-ack, for the whole log to be fsynced (so its
//! whole end can count towards the high watermark).

use super::{FlushPolicy, Output, Replica, ReplicaError, Role, StorageOp};
use crate::catalog::PartitionState;
use crate::replication::{Leader, ReplicationConfig};

impl Replica {
    pub(super) fn on_metadata(&mut self, state: &PartitionState, min: usize, fenced: &[i32]) {
        let me = self.config.me;
        let cfg = ReplicationConfig {
            min_insync_replicas: min,
            ..self.config.replication
        };
        if !state.replicas.contains(&me) || state.leader < 0 {
            self.step_down();
            self.role = Role::Idle;
            return;
        }
        if state.leader == me {
            let counted = self.counted_end();
            let (now, end) = (self.now_ms, self.log_end);
            if let Role::Leader(l) = &mut self.role {
                if l.leader_epoch() == state.leader_epoch {
                    l.set_config(cfg, counted);
                    l.set_fenced(fenced);
                    l.update(state, counted, now);
                    return;
                }
            }
            self.step_down();
            self.emit(Output::Storage(StorageOp::SetLeaderEpoch(
                state.leader_epoch,
            )));
            if self.config.flush == FlushPolicy::FsyncBeforeAck && self.durable_end < end {
                self.emit(Output::Storage(StorageOp::Fsync { upto: end }));
            }
            let hw = self.follower_hw;
            let mut l = Leader::with_own_end(me, state, end, self.counted_end(), hw, now, cfg);
            l.set_fenced(fenced);
            #[cfg(feature = "canary")]
            l.set_canary(self.canary);
            self.taken_hw = l.hw();
            self.lead_hw = l.hw();
            self.shown = -1;
            self.role = Role::Leader(Box::new(l));
            return;
        }
        let same = matches!(self.role, Role::Follower { leader, epoch }
            if leader == state.leader && epoch == state.leader_epoch);
        if !same {
            self.step_down();
            self.fetched_hw = None;
            self.skip_check = false;
            self.role = Role::Follower {
                leader: state.leader,
                epoch: state.leader_epoch,
            };
            if self.config.flush == FlushPolicy::FsyncBeforeAck && self.durable_end < self.log_end {
                // It fetches (reports its end) only once that end is durable.
                self.emit(Output::Storage(StorageOp::Fsync { upto: self.log_end }));
            }
        }
    }

    /// Leaves a leadership (if any): its waiting writes fail, its high watermark stays known.
    fn step_down(&mut self) {
        if let Role::Leader(l) = &self.role {
            self.follower_hw = self.exposed(l).min(self.log_end);
            self.role = Role::Idle;
        }
        self.lead_hw = -1;
        self.shown = -1;
        let waiting = std::mem::take(&mut self.waiting);
        let appending = std::mem::take(&mut self.appending);
        let tokens = waiting
            .iter()
            .map(|w| w.token)
            .chain(appending.iter().map(|a| a.token));
        let fails: Vec<Output> = tokens
            .map(|token| Output::ProduceDone {
                token,
                result: Err(ReplicaError::NotLeaderOrFollower),
            })
            .collect();
        self.out.extend(fails);
    }
}
