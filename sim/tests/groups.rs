//! The consumer-group simulation (`skein-sim groups`): seeds 0..200 pass without canaries,
//! every canary is caught by its seed, runs are deterministic, and `ci/groups-regression-seeds`
//! replays.

use skein_sim::groups::{run, GroupsCanary, Options, Outcome};

fn run_with(seed: u64, canary: Option<GroupsCanary>) -> Outcome {
    run(Options { seed, canary })
}

fn describe(o: &Outcome) -> String {
    format!("{}\n{}", o.summary(), o.report())
}

/// `(where, seed, shape)` of every line of the regression file.
fn lines() -> Vec<(String, u64, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/groups-regression-seeds");
    let text = std::fs::read_to_string(path).expect("ci/groups-regression-seeds");
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
    let (mut commits, mut syncs, mut failovers) = (0, 0, 0);
    let (mut duplicates, mut fenced) = (0, 0);
    for seed in 0..200 {
        let o = run_with(seed, None);
        assert!(o.violation.is_none(), "{}", describe(&o));
        commits += o.stats.commits;
        syncs += o.stats.syncs;
        failovers += o.stats.failovers;
        duplicates += o.stats.duplicates;
        fenced += o.stats.fenced;
    }
    println!("duplicates={duplicates} fenced={fenced}");
    assert!(duplicates > 150, "only {duplicates} duplicate processes");
    assert!(fenced > 150, "only {fenced} processes fenced");
    // The batch exercises what it claims to.
    assert!(commits > 20_000, "only {commits} commits accepted");
    assert!(syncs > 2_000, "only {syncs} assignments handed out");
    assert!(failovers > 200, "only {failovers} coordinator failovers");
}

#[test]
fn same_seed_same_trace() {
    for seed in [0u64, 7, 123] {
        let (a, b) = (run_with(seed, None), run_with(seed, None));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.summary(), b.summary());
    }
    assert_ne!(run_with(3, None).trace_hash, run_with(4, None).trace_hash);
}

/// Each canary is caught within the first seeds of the batch, and by its seed in the
/// regression file, which passes without it.
#[test]
fn every_canary_is_caught() {
    for c in GroupsCanary::ALL {
        let caught = (0..200).find(|s| run_with(*s, Some(c)).violation.is_some());
        assert!(caught.is_some(), "{} not caught in seeds 0..200", c.name());
    }
    let mut seen = Vec::new();
    for (at, seed, shape) in lines() {
        let Some(name) = shape.strip_prefix("canary=") else {
            continue;
        };
        let c = GroupsCanary::parse(name).unwrap_or_else(|| panic!("{at}: unknown canary {name}"));
        let o = run_with(seed, Some(c));
        assert!(
            o.violation.is_some(),
            "{at}: seed {seed} no longer catches {name}"
        );
        let clean = run_with(seed, None);
        assert!(clean.violation.is_none(), "{at}\n{}", describe(&clean));
        seen.push(c);
    }
    for c in GroupsCanary::ALL {
        assert!(
            seen.contains(&c),
            "no regression seed for canary {}",
            c.name()
        );
    }
}

#[test]
fn regression_seeds() {
    for (at, seed, shape) in lines() {
        match shape.as_str() {
            "-" => {
                let o = run_with(seed, None);
                assert!(o.violation.is_none(), "{at}\n{}", describe(&o));
            }
            s => assert!(s.starts_with("canary="), "{at}: shape {s:?}"),
        }
    }
}
