//! Replays every seed in `ci/regression-seeds`: plain seeds must pass, `canary=<name>` seeds
//! must fail with that canary on, `known-bug` seeds must still fail (until their fix lands).

mod common;

use common::{describe, run_seed_with};
use skein_sim::SimCanary;

#[test]
fn regression_seeds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/regression-seeds");
    let text = std::fs::read_to_string(path).expect("ci/regression-seeds");
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let seed: u64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("line {}: bad seed", i + 1));
        let shape = fields
            .next()
            .unwrap_or_else(|| panic!("line {}: no shape", i + 1));
        assert!(fields.next().is_some(), "line {}: no reason", i + 1);
        // `+crash-only`: replay with clean stops off, as the seed ran when it was found.
        let (shape, crash_only) = match shape.strip_suffix("+crash-only") {
            Some(base) => (base, true),
            None => (shape, false),
        };
        match shape {
            "-" => {
                let o = run_seed_with(seed, None, crash_only);
                assert!(o.violation.is_none(), "{}", describe(&o));
            }
            "known-bug" => {
                let o = run_seed_with(seed, None, crash_only);
                assert!(
                    o.violation.is_some(),
                    "seed {seed} passes now: flip its shape in ci/regression-seeds to `-`"
                );
            }
            s => {
                let name = s
                    .strip_prefix("canary=")
                    .unwrap_or_else(|| panic!("line {}: shape {s:?}", i + 1));
                let c = SimCanary::parse(name).unwrap_or_else(|| panic!("unknown canary {name}"));
                let o = run_seed_with(seed, Some(c), crash_only);
                assert!(
                    o.violation.is_some(),
                    "seed {seed} no longer catches {name}"
                );
            }
        }
        n += 1;
    }
    assert!(n > 0, "no seeds in {path}");
}
