//! The leader's gates: produce (leadership, acks, min.insync.replicas), follower fetches
//! (leader epoch, divergence, range, progress), consumer fetches (cut at the high watermark),
//! and ISR changes on the tick.
//!
//! Invariants: an acks=all write is refused before it is appended while the committed ISR is
//! below min.insync.replicas; a follower's progress is recorded only for a fetch that passed
//! the divergence check and lies inside the log; a consumer is never answered past the high
//! watermark.

use super::{
    Appending, FetchAnswer, FlushPolicy, Output, Replica, ReplicaError, Role, StorageOp, Waiting,
};
use crate::log::PartitionLog;
use crate::replication::{FetchCheck, IsrProposal};

/// The client's leader epoch against ours (-1: the client does not say).
fn epoch_check(current: i32, ours: i32) -> Result<(), ReplicaError> {
    match current {
        -1 => Ok(()),
        e if e > ours => Err(ReplicaError::UnknownLeaderEpoch),
        e if e < ours => Err(ReplicaError::FencedLeaderEpoch),
        _ => Ok(()),
    }
}

impl Replica {
    pub(super) fn on_produce(&mut self, token: u64, acks: i8, timeout_ms: u64) {
        let gate = match &self.role {
            _ if !(-1..=1).contains(&acks) => Err(ReplicaError::InvalidRequiredAcks),
            Role::Leader(l) if acks == -1 && !l.enough_replicas() => {
                Err(ReplicaError::NotEnoughReplicas)
            }
            Role::Leader(l) => Ok(l.leader_epoch()),
            _ => Err(ReplicaError::NotLeaderOrFollower),
        };
        match gate {
            Err(e) => self.emit(Output::ProduceDone {
                token,
                result: Err(e),
            }),
            Ok(leader_epoch) => {
                self.appending.push(Appending {
                    token,
                    acks,
                    timeout_ms,
                });
                self.emit(Output::Storage(StorageOp::AppendProduced {
                    token,
                    leader_epoch,
                }));
            }
        }
    }

    pub(super) fn on_leader_appended(&mut self, token: u64, base: i64, last: i64) {
        let Some(i) = self.appending.iter().position(|a| a.token == token) else {
            return;
        };
        let a = self.appending.remove(i);
        let end = last + 1;
        if self.config.flush == FlushPolicy::FsyncBeforeAck {
            self.emit(Output::Storage(StorageOp::Fsync { upto: end }));
        }
        #[cfg(feature = "canary")]
        let early = self.canary_on(crate::canary::Canary::AckBeforeIsr);
        #[cfg(not(feature = "canary"))]
        let early = false;
        if a.acks != -1 || early {
            self.emit(Output::ProduceDone {
                token,
                result: Ok(base),
            });
        } else {
            self.waiting.push(Waiting {
                token,
                base,
                end,
                deadline_ms: self.now_ms + a.timeout_ms,
            });
        }
    }

    pub(super) fn on_follower_fetch(
        &mut self,
        log: &PartitionLog,
        token: u64,
        replica: i32,
        (fetch_offset, last_fetched_epoch): (i64, i32),
        current_epoch: i32,
    ) {
        let result = self.serve_follower(
            log,
            replica,
            fetch_offset,
            last_fetched_epoch,
            current_epoch,
        );
        self.emit(Output::FetchDone { token, result });
    }

    fn serve_follower(
        &mut self,
        log: &PartitionLog,
        replica: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        current_epoch: i32,
    ) -> Result<FetchAnswer, ReplicaError> {
        let counted = self.counted_end();
        // The leader's end a follower's progress is clamped to and its lag measured against:
        // what it wrote (the canary: what it counts, so a report ahead of its fsync is lost).
        #[cfg(feature = "canary")]
        let written = if self.canary_on(crate::canary::Canary::FollowerEndClampedToFsynced) {
            counted
        } else {
            self.log_end
        };
        #[cfg(not(feature = "canary"))]
        let written = self.log_end;
        let (now, end, start) = (self.now_ms, self.log_end, log.log_start_offset());
        let Role::Leader(l) = &mut self.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        epoch_check(current_epoch, l.leader_epoch())?;
        match l.check_fetch(replica, fetch_offset, last_fetched_epoch, log) {
            FetchCheck::NotReplica => Err(ReplicaError::NotReplica),
            FetchCheck::Diverging { epoch, end_offset } => Ok(FetchAnswer::Diverging {
                epoch,
                end_offset,
                hw: l.hw(),
            }),
            FetchCheck::Accepted if fetch_offset < start || fetch_offset > end => {
                Err(ReplicaError::OffsetOutOfRange)
            }
            FetchCheck::Accepted => {
                l.on_fetch(replica, fetch_offset, (written, counted), now);
                let l = self.leader().expect("leading");
                Ok(FetchAnswer::Records {
                    from: fetch_offset,
                    upto: end,
                    hw: self.exposed(l),
                    log_start: start,
                })
            }
        }
    }

    pub(super) fn on_consumer_fetch(
        &mut self,
        log: &PartitionLog,
        token: u64,
        fetch_offset: i64,
        current_epoch: i32,
    ) {
        let result = match &self.role {
            Role::Leader(l) => epoch_check(current_epoch, l.leader_epoch()).and_then(|()| {
                let start = log.log_start_offset();
                if fetch_offset < start || fetch_offset > self.log_end {
                    return Err(ReplicaError::OffsetOutOfRange);
                }
                Ok(FetchAnswer::Records {
                    from: fetch_offset,
                    upto: self.exposed(l),
                    hw: self.exposed(l),
                    log_start: start,
                })
            }),
            _ => Err(ReplicaError::NotLeaderOrFollower),
        };
        if let Ok(FetchAnswer::Records { upto, .. }) = result {
            self.shown = self.shown.max(upto);
        }
        self.emit(Output::FetchDone { token, result });
    }

    /// DeleteRecords as Kafka's leader answers it: -1 means the high watermark; an offset
    /// below 0 or past the high watermark is out of range; a compact-only topic's records are
    /// not deleted; the answer is the new log start.
    pub(super) fn on_delete_records(&mut self, log: &PartitionLog, token: u64, offset: i64) {
        let policy = log.config().cleanup_policy;
        let result = match &self.role {
            Role::Leader(_) if policy.compact && !policy.delete => {
                Err(ReplicaError::PolicyViolation)
            }
            Role::Leader(l) => {
                let hw = self.exposed(l);
                let offset = if offset == -1 { hw } else { offset };
                if offset < 0 || offset > hw {
                    Err(ReplicaError::OffsetOutOfRange)
                } else {
                    Ok(offset.max(self.log_start))
                }
            }
            _ => Err(ReplicaError::NotLeaderOrFollower),
        };
        if let Ok(start) = result {
            if start > self.log_start {
                self.emit(Output::Storage(StorageOp::AdvanceLogStart(start)));
                self.log_start = start;
            }
        }
        self.emit(Output::DeleteRecordsDone { token, result });
    }

    pub(super) fn on_isr_rejected(&mut self, proposal: &IsrProposal) {
        if let Role::Leader(l) = &mut self.role {
            l.refused(proposal);
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = self.now_ms;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if let Some(p) = l.tick(now) {
            self.emit(Output::ProposeIsr(p));
        }
    }
}
