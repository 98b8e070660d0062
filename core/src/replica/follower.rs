//! The follower's rules: where it fetches from, and how it applies an answer — truncate where
//! the leader says its log diverges, restart the log when it is behind the leader's log start,
//! append batches and learn the high watermark, and fsync before reporting progress again.
//!
//! Invariants: a follower applies only answers from the leader of the epoch it follows now;
//! under fsync-before-ack it fetches (so reports its log end) only once that end is durable;
//! its high watermark never exceeds its log end.

use super::{FetchPosition, FetchReply, FlushPolicy, Output, Replica, Role, StorageOp};
use crate::log::PartitionLog;
use crate::replication::{follower_hw, truncation_offset};

impl Replica {
    /// Where to fetch now, when this replica follows and may report its log end.
    pub fn fetch_position(&self, log: &PartitionLog) -> Option<FetchPosition> {
        let Role::Follower { leader, epoch } = self.role else {
            return None;
        };
        let end = log.log_end_offset();
        let unsynced = self.config.flush == FlushPolicy::FsyncBeforeAck && self.durable_end < end;
        if self.fetched_hw.is_some() || unsynced {
            return None;
        }
        Some(FetchPosition {
            leader,
            leader_epoch: epoch,
            fetch_offset: end,
            last_fetched_epoch: if self.skip_check {
                -1
            } else {
                log.last_epoch()
            },
            log_start: log.log_start_offset(),
        })
    }

    pub(super) fn on_fetch_response(&mut self, log: &PartitionLog, epoch: i32, reply: FetchReply) {
        if !matches!(self.role, Role::Follower { epoch: e, .. } if e == epoch)
            || self.fetched_hw.is_some()
        {
            // The role changed while the fetch was out, or an answer is being applied.
            return;
        }
        match reply {
            FetchReply::Records { hw, log_start } => {
                self.skip_check = false;
                self.fetched_hw = Some(hw);
                self.fetched_start = log_start;
                self.emit(Output::Storage(StorageOp::AppendFetched));
            }
            FetchReply::Diverging { epoch, end_offset } => {
                #[cfg(feature = "canary")]
                if self.canary_on(crate::canary::Canary::SkipTruncation) {
                    self.skip_check = true;
                    return;
                }
                let cut = truncation_offset(log, epoch, end_offset);
                self.emit(Output::Storage(StorageOp::TruncateTo(cut)));
                self.cut_to(cut);
            }
            FetchReply::OutOfRange { log_start } => {
                if self.log_end < log_start {
                    self.emit(Output::Storage(StorageOp::ResetTo(log_start)));
                    self.log_end = log_start;
                    self.durable_end = log_start;
                    self.follower_hw = self.follower_hw.clamp(0, log_start);
                }
            }
            FetchReply::Error(_) => {}
        }
    }

    /// The log now ends at `cut` (the driver carries the truncation out before the next input).
    fn cut_to(&mut self, cut: i64) {
        self.log_end = cut;
        self.durable_end = self.durable_end.min(cut);
        self.follower_hw = self.follower_hw.min(cut);
        if self.config.flush == FlushPolicy::FsyncBeforeAck && self.durable_end < cut {
            // What is kept must be durable before the next fetch reports it.
            self.emit(Output::Storage(StorageOp::Fsync { upto: cut }));
        }
    }

    pub(super) fn on_fetched_appended(&mut self) {
        let Some(leader_hw) = self.fetched_hw.take() else {
            return;
        };
        let end = self.log_end;
        let hw = follower_hw(leader_hw, end).max(0);
        if hw != self.follower_hw {
            self.follower_hw = hw;
            self.emit(Output::HwChanged(hw));
        }
        // The leader's log start, as far as this replica's high watermark reaches (as Kafka's
        // followers do: what DeleteRecords removed on the leader goes here too).
        let start = self.fetched_start.min(hw);
        if start > self.log_start {
            self.log_start = start;
            self.emit(Output::Storage(StorageOp::AdvanceLogStart(start)));
        }
        if self.config.flush == FlushPolicy::FsyncBeforeAck && self.durable_end < end {
            self.emit(Output::Storage(StorageOp::Fsync { upto: end }));
        }
    }
}
