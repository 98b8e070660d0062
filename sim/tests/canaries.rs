//! Every planted bug is caught by a small seed batch, and the same batch passes without it.

mod common;

use common::{describe, known_bugs, run_seed};
use skein_sim::SimCanary;

/// Seeds each canary may use (the slowest, lose-producer-last-batch, needs 152 today; each search stops at the first catch).
const SEEDS: u64 = 200;

fn seeds_to_catch(canary: SimCanary) -> Option<u64> {
    (0..SEEDS).find(|s| run_seed(*s, Some(canary)).violation.is_some())
}

#[test]
fn batch_passes_without_canaries() {
    let known = known_bugs();
    for seed in (0..SEEDS).filter(|s| !known.contains(s)) {
        let o = run_seed(seed, None);
        assert!(o.violation.is_none(), "{}", describe(&o));
    }
}

#[test]
fn ack_before_fsync_is_caught() {
    assert!(seeds_to_catch(SimCanary::AckBeforeFsync).is_some());
}

#[test]
fn skip_crc_on_recovery_is_caught() {
    assert!(seeds_to_catch(SimCanary::SkipCrcOnRecovery).is_some());
}

#[test]
fn no_dedup_is_caught() {
    assert!(seeds_to_catch(SimCanary::NoDedup).is_some());
}

#[test]
fn truncate_acked_is_caught() {
    assert!(seeds_to_catch(SimCanary::TruncateAcked).is_some());
}

#[test]
fn trust_header_timestamps_is_caught() {
    // Caught only by the retention checker: a segment of batches whose header says -1 (or too
    // old) deleted while its records are younger than retention.ms.
    let seed = seeds_to_catch(SimCanary::TrustHeaderTimestamps).expect("caught");
    let v = run_seed(seed, Some(SimCanary::TrustHeaderTimestamps))
        .violation
        .expect("violation");
    assert_eq!(v.property, "retention", "{v}");
}

#[test]
fn clean_active_segment_is_caught() {
    // Caught first by skein-core's own defence: `PartitionLog::replace_cleaned` refuses to
    // replace the active segment (or a segment whose offset range grew since the clean read it).
    // With those assertions removed the compaction checker catches it instead (a record cleaned
    // away at or above every clean's bound: the high watermark or the active segment's base).
    assert!(seeds_to_catch(SimCanary::CleanActiveSegment).is_some());
}

#[test]
fn drop_newest_of_key_is_caught() {
    let seed = seeds_to_catch(SimCanary::DropNewestOfKey).expect("caught");
    let v = run_seed(seed, Some(SimCanary::DropNewestOfKey))
        .violation
        .expect("violation");
    assert_eq!(v.property, "compaction", "{v}");
}

#[test]
fn drop_tombstone_early_is_caught() {
    // Caught only when a compacted topic keeps tombstones long (delete.retention.ms drawn large)
    // and a tombstone is its key's newest record when a second clean finds it in the clean head.
    let seed = seeds_to_catch(SimCanary::DropTombstoneEarly).expect("caught");
    let v = run_seed(seed, Some(SimCanary::DropTombstoneEarly))
        .violation
        .expect("violation");
    assert_eq!(v.property, "compaction", "{v}");
    assert!(v.detail.contains("tombstone younger"), "{v}");
}

#[test]
fn clean_past_hw_is_caught() {
    // Caught by the compaction checker: a batch at or above the high watermark when a clean
    // started (read by the driver as a follower would) is rewritten or gone after its commit.
    let seed = seeds_to_catch(SimCanary::CleanPastHw).expect("caught");
    let v = run_seed(seed, Some(SimCanary::CleanPastHw))
        .violation
        .expect("violation");
    assert_eq!(v.property, "compaction", "{v}");
}

#[test]
fn lose_producer_last_batch_is_caught() {
    // Caught only after a clean dropped a producer's last batch and a crash lost every producer
    // snapshot after it: the retry probe after the restart is appended again or refused out of
    // order (duplicates), or the producer's next batch is refused forever (liveness).
    let seed = seeds_to_catch(SimCanary::LoseProducerLastBatch).expect("caught");
    let v = run_seed(seed, Some(SimCanary::LoseProducerLastBatch))
        .violation
        .expect("violation");
    assert!(["duplicates", "liveness"].contains(&v.property), "{v}");
}
