//! The partition-replication simulation (`skein-sim replication`): seeds 0..200 pass without
//! canaries (except `known-bug` lines) and every canary is caught by its seed (regression seeds
//! and determinism: `sims.rs`).

use skein_sim::replication::{run, Options, Outcome, ReplCanary};

fn run_with(seed: u64, canary: Option<ReplCanary>) -> Outcome {
    run(Options { seed, canary })
}

fn describe(o: &Outcome) -> String {
    format!("{}\n{}", o.summary(), o.report())
}

/// `(seed, shape)` of every line of the regression file.
fn lines() -> Vec<(String, u64, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ci/replication-regression-seeds"
    );
    let text = std::fs::read_to_string(path).expect("ci/replication-regression-seeds");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{path}:{}", i + 1);
        let mut f = line.split_whitespace();
        let seed: u64 = f
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{at}: bad seed"));
        let shape = f.next().unwrap_or_else(|| panic!("{at}: no shape"));
        assert!(f.next().is_some(), "{at}: no reason");
        out.push((at, seed, shape.to_string()));
    }
    out
}

#[test]
fn seeds_0_to_200_pass_without_canaries() {
    let known: Vec<u64> = lines()
        .into_iter()
        .filter(|(_, _, s)| s == "known-bug")
        .map(|(_, s, _)| s)
        .collect();
    let mut acked = 0;
    for seed in (0..200).filter(|s| !known.contains(s)) {
        let o = run_with(seed, None);
        assert!(o.violation.is_none(), "{}", describe(&o));
        acked += o.stats.acked;
    }
    assert!(acked > 10_000, "the batch acknowledged only {acked} writes");
}

/// The canary seeds of the regression file: each must fail with its canary on and pass
/// without it.
#[test]
fn every_canary_is_caught_by_its_seed() {
    let mut seen = Vec::new();
    for (at, seed, shape) in lines() {
        let Some(name) = shape.strip_prefix("canary=") else {
            continue;
        };
        let c = ReplCanary::parse(name).unwrap_or_else(|| panic!("{at}: unknown canary {name}"));
        let o = run_with(seed, Some(c));
        assert!(
            o.violation.is_some(),
            "{at}: seed {seed} no longer catches {name}"
        );
        let clean = run_with(seed, None);
        assert!(clean.violation.is_none(), "{at}\n{}", describe(&clean));
        seen.push(c);
    }
    for c in ReplCanary::ALL {
        assert!(
            seen.contains(&c),
            "no regression seed for canary {}",
            c.name()
        );
    }
}
