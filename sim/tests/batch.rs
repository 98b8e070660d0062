//! A fixed seed batch must pass (sized to stay well under a minute in a debug build; CI's
//! bigger batch runs the release binary, `skein-sim --seeds 0..N`).

mod common;

use common::{describe, run_seed};

/// Seeds in the fixed batch.
const SEEDS: std::ops::Range<u64> = 1000..1500;

#[test]
fn fixed_seed_batch_passes() {
    let mut failed = Vec::new();
    for seed in SEEDS {
        let o = run_seed(seed, None);
        if o.violation.is_some() {
            eprintln!("{}", describe(&o));
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
