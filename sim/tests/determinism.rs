//! Same seed, same build: the same trace, byte for byte (by hash), and the same outcome.

mod common;

use common::run_seed;
use skein_sim::SimCanary;

#[test]
fn seeds_replay_identically() {
    for seed in [0u64, 1, 7, 42, 1234, u64::MAX] {
        let a = run_seed(seed, None);
        let b = run_seed(seed, None);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} diverged");
        assert_eq!((a.steps, a.sim_ms), (b.steps, b.sim_ms), "seed {seed}");
        assert_eq!(a.summary(), b.summary());
    }
}

#[test]
fn failing_runs_replay_identically() {
    let a = run_seed(2, Some(SimCanary::AckBeforeFsync));
    let b = run_seed(2, Some(SimCanary::AckBeforeFsync));
    assert!(a.violation.is_some());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.violation, b.violation);
    assert_eq!(a.tail, b.tail);
}

#[test]
fn different_seeds_differ() {
    assert_ne!(run_seed(3, None).trace_hash, run_seed(4, None).trace_hash);
}
