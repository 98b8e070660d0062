//! Planted bugs ("canaries") that prove the simulator's checkers bite. Compiled only with the
//! `canary` cargo feature, which only skein-sim enables; never on by default.
//!
//! Invariants: there is no global switch. A canary is off unless a driver hands it to the one
//! value that consults it (`SegmentScan::set_canary`, `PartitionLog::set_canary` (which hands it to its producer state),
//! `ProducerStates::set_canary`, `Raft::set_canary`, `Controller::set_canary`, `Group::set_canary`,
//! `Shard::set_canary`, which hands it to every group it holds, `ConsumerGroup::set_canary`, `Replica::set_canary`, which hands it to each `Leader` it becomes,
//! `cleaner::choose::cleanable_with_canary`, `CleanJob::set_canary`, which hands it to each batch
//! it cleans); every consulting site is under
//! `#[cfg(feature = "canary")]` (the Raft node consults a private always-off stand-in without it).

/// A deliberately planted bug in skein-core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Canary {
    /// `SegmentScan::push` parses headers but does not check the CRC, so recovery keeps a
    /// corrupt or zero-filled batch.
    SkipCrcOnRecovery,
    /// `ProducerStates::check` never reports a duplicate: an idempotent retry is appended again.
    NoDedup,
    /// `SegmentScan::finish` drops the last batch it scanned, as if recovery cut one batch too many.
    TruncateAcked,
    /// `Raft`: a vote grant leaves before the hard state is fsynced, and the vote is never
    /// written at all, so a restarted node forgets it and can vote twice in one term.
    VoteTwice,
    /// `Raft`: the leader commits by counting replicas of an entry of an earlier term
    /// (the Figure 8 bug of the Raft paper).
    CommitOldTerm,
    /// `Raft`: a leader never steps down for lack of a majority (no check-quorum).
    NoCheckQuorum,
    /// `Controller`: never fences a silent broker, so a dead broker keeps its partitions.
    NoFencing,
    /// `Group`: a join phase that ends at its rebalance timeout and removes the members that did
    /// not rejoin keeps the generation instead of bumping it, so one generation number is handed
    /// out twice with different assignments (two owners of a partition in one generation).
    DoubleAssign,
    /// `Group::check_commit` ignores the generation: a member that still acts on an old
    /// generation commits offsets for partitions a newer generation gave to someone else.
    StaleGenerationCommit,
    /// `PartitionLog::append` and `SegmentScan::push` take a batch's max timestamp from its
    /// header as the producer sent it (-1 or wrong), not from its records, and retention judges
    /// a segment without timestamps as infinitely old, so it can delete a segment of
    /// acknowledged records younger than retention.ms.
    TrustHeaderTimestamps,
    /// `Group`: a static member's replacement (a join under its group.instance.id with no
    /// member id) keeps the old member id, so the old process is never fenced and both act as
    /// the member.
    StaticNotFenced,
    /// `ConsumerGroup` (KIP-848): a partition is handed to its new owner before the old owner
    /// reported it revoked, so two members hold it at once.
    AssignBeforeRevoke,
    /// `Raft::observe_answer` hands observers entries past the commit index, so a non-voting
    /// broker applies metadata that a later leader may overwrite.
    ObserveUncommitted,
    /// `Replica`: the leader acknowledges acks=all writes right after its own append.
    AckBeforeIsr,
    /// `Replica`: a follower ignores a diverging-epoch answer and keeps fetching without the
    /// epoch check, appending over its diverged log.
    SkipTruncation,
    /// `Replica`: the leader exposes its own log end as the high watermark.
    HwFromLeaderOnly,
    /// `Replica` (its `Leader`): the leader proposes fenced replicas into the ISR and never
    /// settles an addition the controller refused, which keeps counting towards the high
    /// watermark until the partition epoch moves.
    KeepRefusedIsr,
    /// `Replica`: under fsync-before-ack the leader counts its written end, not its fsynced
    /// end, towards the high watermark, so acks=all writes are answered and consumers shown
    /// records before an fsync covers them.
    AckBeforeFsync,
    /// `Replica` (its leader's `serve_follower`): a follower's fetch is clamped to, and its lag
    /// measured against, the leader's counted (fsynced) end instead of its written end, so a
    /// follower that reports an end the leader has not fsynced yet is remembered below it and
    /// the leader's fsync cannot release the acks=all write: it waits for the follower's next
    /// fetch (the bug 6e12435 fixed).
    FollowerEndClampedToFsynced,
    /// `cleaner::choose`: the first uncleanable offset ignores the active segment (bounded only
    /// by the high watermark and `min.compaction.lag.ms`), so a clean may rewrite the segment
    /// appends still go to.
    CleanActiveSegment,
    /// `cleaner::filter`: a record the key map names as its key's newest is dropped as if a
    /// newer one existed, so a key's newest value disappears.
    DropNewestOfKey,
    /// `cleaner::filter`: a tombstone below the clean's first dirty offset is dropped whatever
    /// the delete horizon, ignoring `delete.retention.ms`.
    DropTombstoneEarly,
    /// `cleaner::choose`: the first uncleanable offset ignores the high watermark (bounded only
    /// by the active segment and `min.compaction.lag.ms`), so a clean may rewrite records not
    /// yet committed.
    CleanPastHw,
    /// `ProducerStates::batch_offsets_to_keep` names no batch, so a clean drops a producer's last
    /// batch when its records are all superseded, and recovery replaying the cleaned log loses
    /// the producer's last sequence.
    LoseProducerLastBatch,
}
