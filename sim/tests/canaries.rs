//! Every planted bug is caught by a small seed batch, and the same batch passes without it.

mod common;

use common::{describe, known_bugs, run_seed};
use skein_sim::SimCanary;

/// Seeds each canary may use (the slowest, skip-crc-on-recovery, needs 4 today; each search stops at the first catch).
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
