//! Shared helpers for skein-sim's tests.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use skein_sim::{run, Options, Outcome, SimCanary};

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
