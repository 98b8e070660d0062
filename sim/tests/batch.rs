//! A fixed seed batch must pass (but for the `known-bug` seeds of ci/regression-seeds), sized to
//! stay well under a minute in a debug build; CI's bigger batch runs the release binary,
//! `skein-sim --seeds 0..N`. Split in quarters so the test harness runs them in parallel.

mod common;

use common::{describe, known_bugs, run_seed};

/// Seeds in the fixed batch.
const SEEDS: std::ops::Range<u64> = 1000..1500;

fn batch_passes(quarter: u64) {
    let len = (SEEDS.end - SEEDS.start) / 4;
    let from = SEEDS.start + quarter * len;
    let to = if quarter == 3 { SEEDS.end } else { from + len };
    let known = known_bugs();
    let mut failed = Vec::new();
    for seed in (from..to).filter(|s| !known.contains(s)) {
        let o = run_seed(seed, None);
        if o.violation.is_some() {
            eprintln!("{}", describe(&o));
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

#[test]
fn fixed_seed_batch_passes_q0() {
    batch_passes(0);
}

#[test]
fn fixed_seed_batch_passes_q1() {
    batch_passes(1);
}

#[test]
fn fixed_seed_batch_passes_q2() {
    batch_passes(2);
}

#[test]
fn fixed_seed_batch_passes_q3() {
    batch_passes(3);
}
