//! Planted bugs ("canaries") that prove the simulator's checkers bite. Compiled only with the
//! `canary` cargo feature, which only skein-sim enables; never on by default.
//!
//! Invariants: there is no global switch. A canary is off unless a driver hands it to the one
//! value that consults it (`SegmentScan::set_canary`, `PartitionLog::set_canary`,
//! `ProducerStates::set_canary`); every consulting site is under `#[cfg(feature = "canary")]`.

/// A deliberately planted bug in skein-core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Canary {
    /// `SegmentScan::push` parses headers but does not check the CRC, so recovery keeps a
    /// corrupt or zero-filled batch.
    SkipCrcOnRecovery,
    /// `ProducerStates::check` never reports a duplicate: an idempotent retry is appended again.
    NoDedup,
    /// `SegmentScan::finish` drops the last batch it scanned, as if recovery cut one batch too many.
    TruncateAcked,
}
