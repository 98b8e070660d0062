//! Canaries: planted bugs that prove the checkers bite. Never on unless `--canary NAME` asks.
//!
//! Every one is a hook in skein-core (its `canary` feature): `ack-before-fsync` is handed to
//! each partition's `Replica` (`Replica::set_canary`), the others to the scan, log and producer
//! state each `PartitionStore` builds through skein-storage's `canary` feature
//! (`open_with_canary`), which also hands them to the cleaner (`cleanable_with_canary`, and
//! `CleanJob::set_canary` for each clean it starts).

use skein_core::canary::Canary;

/// A planted bug the simulator can turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimCanary {
    /// The replica counts unsynced writes towards the high watermark (acks=-1 answered and
    /// consumers shown records before the fsync that makes them durable).
    AckBeforeFsync,
    /// Recovery does not check batch CRCs.
    SkipCrcOnRecovery,
    /// Idempotent retries are appended again.
    NoDedup,
    /// Recovery drops the last batch of every scanned segment.
    TruncateAcked,
    /// The log trusts a produced batch's header max timestamp (-1 or wrong) over its records.
    TrustHeaderTimestamps,
    /// The cleaner may clean the active segment.
    CleanActiveSegment,
    /// The cleaner drops the newest record of a key.
    DropNewestOfKey,
    /// The cleaner drops tombstones ignoring `delete.retention.ms`.
    DropTombstoneEarly,
    /// The cleaner may clean at or above the high watermark.
    CleanPastHw,
    /// The cleaner drops a producer's last batch when a newer record supersedes all of it.
    LoseProducerLastBatch,
}

impl SimCanary {
    /// Every canary, in listing order.
    pub const ALL: [SimCanary; 10] = [
        SimCanary::AckBeforeFsync,
        SimCanary::SkipCrcOnRecovery,
        SimCanary::NoDedup,
        SimCanary::TruncateAcked,
        SimCanary::TrustHeaderTimestamps,
        SimCanary::CleanActiveSegment,
        SimCanary::DropNewestOfKey,
        SimCanary::DropTombstoneEarly,
        SimCanary::CleanPastHw,
        SimCanary::LoseProducerLastBatch,
    ];

    /// The `--canary` name.
    pub fn name(self) -> &'static str {
        match self {
            SimCanary::AckBeforeFsync => "ack-before-fsync",
            SimCanary::SkipCrcOnRecovery => "skip-crc-on-recovery",
            SimCanary::NoDedup => "no-dedup",
            SimCanary::TruncateAcked => "truncate-acked",
            SimCanary::TrustHeaderTimestamps => "trust-header-timestamps",
            SimCanary::CleanActiveSegment => "clean-active-segment",
            SimCanary::DropNewestOfKey => "drop-newest-of-key",
            SimCanary::DropTombstoneEarly => "drop-tombstone-early",
            SimCanary::CleanPastHw => "clean-past-hw",
            SimCanary::LoseProducerLastBatch => "lose-producer-last-batch",
        }
    }

    /// What the bug does, for `--list-canaries`.
    pub fn describe(self) -> &'static str {
        match self {
            SimCanary::AckBeforeFsync => {
                "core Replica counts the leader's written end, not its fsynced end, for the high watermark"
            }
            SimCanary::SkipCrcOnRecovery => {
                "core SegmentScan::push skips the CRC check during recovery"
            }
            SimCanary::NoDedup => "core ProducerStates::check accepts idempotent duplicates",
            SimCanary::TruncateAcked => "core SegmentScan::finish drops the last batch it scanned",
            SimCanary::TrustHeaderTimestamps => {
                "core PartitionLog::append stores a produced header's max timestamp as sent"
            }
            SimCanary::CleanActiveSegment => {
                "core cleaner::choose bounds the cleanable range by the high watermark only, not the active segment"
            }
            SimCanary::DropNewestOfKey => {
                "core cleaner::filter drops the record the key map names as its key's newest"
            }
            SimCanary::DropTombstoneEarly => {
                "core cleaner::filter drops a tombstone in the clean head whatever delete.retention.ms"
            }
            SimCanary::CleanPastHw => {
                "core cleaner::choose bounds the cleanable range by the active segment only, not the high watermark"
            }
            SimCanary::LoseProducerLastBatch => {
                "core ProducerStates::batch_offsets_to_keep keeps no producer's last batch from a clean"
            }
        }
    }

    /// Parses a `--canary` name.
    pub fn parse(name: &str) -> Option<SimCanary> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The skein-core hook this canary turns on.
    pub fn core(self) -> Option<Canary> {
        match self {
            SimCanary::AckBeforeFsync => Some(Canary::AckBeforeFsync),
            SimCanary::SkipCrcOnRecovery => Some(Canary::SkipCrcOnRecovery),
            SimCanary::NoDedup => Some(Canary::NoDedup),
            SimCanary::TruncateAcked => Some(Canary::TruncateAcked),
            SimCanary::TrustHeaderTimestamps => Some(Canary::TrustHeaderTimestamps),
            SimCanary::CleanActiveSegment => Some(Canary::CleanActiveSegment),
            SimCanary::DropNewestOfKey => Some(Canary::DropNewestOfKey),
            SimCanary::DropTombstoneEarly => Some(Canary::DropTombstoneEarly),
            SimCanary::CleanPastHw => Some(Canary::CleanPastHw),
            SimCanary::LoseProducerLastBatch => Some(Canary::LoseProducerLastBatch),
        }
    }
}

crate::impl_canary_set!(SimCanary);
