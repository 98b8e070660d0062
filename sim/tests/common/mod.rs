//! Shared helpers for skein-sim's tests.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use skein_sim::{run, Options, Outcome, Schedule, SimCanary};

/// Runs `seed` with `canary`, no trace file.
pub fn run_seed(seed: u64, canary: Option<SimCanary>) -> Outcome {
    run_seed_with(seed, canary, false)
}

/// Runs `seed` with `canary`, and with clean stops off when `crash_only`.
pub fn run_seed_with(seed: u64, canary: Option<SimCanary>, crash_only: bool) -> Outcome {
    run(Options {
        seed,
        canary,
        trace_out: None,
        crash_only,
        schedule: Schedule::default(),
    })
}

/// Describes a failed run for an assertion message.
pub fn describe(o: &Outcome) -> String {
    format!(
        "{}\n{}\nlast events:\n  {}\nreplay: {}",
        o.summary(),
        o.violation
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        o.tail.join("\n  "),
        o.replay_command()
    )
}

/// Seeds `ci/regression-seeds` lists as `known-bug` (plain runs that fail on a bug not fixed yet):
/// seed batches skip them; `regression.rs` asserts they still fail.
pub fn known_bugs() -> std::collections::BTreeSet<u64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/regression-seeds");
    let text = std::fs::read_to_string(path).expect("ci/regression-seeds");
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('#').next()?.split_whitespace();
            let seed = f.next()?.parse().ok()?;
            (f.next()? == "known-bug").then_some(seed)
        })
        .collect()
}
