//! `skein-sim [node] ...`: the whole-node simulation's command line (the default when no
//! simulation is named, as ci/test.sh and the README call it): `--seed N`, `--seeds A..B`,
//! `--trace FILE`, `--canary NAME`, `--crash-only`, `shrink --seed N` (or `--shrink`) and
//! `--replay FILE`. Its replay files carry the node schedule's shape too (producers, fetchers,
//! partitions), so it keeps its own [`crate::sim::schedule`] beside the harness's generic one.

use crate::harness::CanarySet;
use std::process::ExitCode;

use clap::Parser;

use super::{open_trace, parse_range};
use crate::harness::batch::{run_batch, BatchStyle};
use crate::{run, shrink, Options, Outcome, Replay, Schedule, SimCanary};
use std::ops::Range;

/// Deterministic simulator for skein: one seed decides everything.
///
/// `skein-sim shrink --seed N` is the same as `skein-sim --shrink --seed N`. Other
/// simulations: `skein-sim cluster|replication|groups --help`.
#[derive(Parser, Debug)]
#[command(name = "skein-sim", version)]
struct Args {
    /// Run one seed.
    #[arg(long, conflicts_with_all = ["seeds", "replay"])]
    seed: Option<u64>,
    /// Run a batch of seeds, `A..B` (B exclusive).
    #[arg(long, value_parser = parse_range, conflicts_with = "replay")]
    seeds: Option<Range<u64>>,
    /// Write every event of the (single) run as JSON lines to this file.
    #[arg(long, conflicts_with = "seeds")]
    trace: Option<String>,
    /// Turn on a planted bug (see --list-canaries).
    #[arg(long, value_parser = <SimCanary as CanarySet>::parse_arg, conflicts_with = "replay")]
    canary: Option<SimCanary>,
    /// List the planted bugs and exit.
    #[arg(long)]
    list_canaries: bool,
    /// Every stop is a crash, no clean shutdowns (replays seeds found before clean stops existed).
    #[arg(long, conflicts_with = "replay")]
    crash_only: bool,
    /// In a batch, print every run's summary line (not only failures).
    #[arg(long)]
    verbose: bool,
    /// Shrink the failing run of --seed to a smaller schedule that still fails, and write it
    /// as a replay file (see --out).
    #[arg(long, requires = "seed")]
    shrink: bool,
    /// Where --shrink writes the replay file (default `skein-sim-<seed>.shrunk.json`).
    #[arg(long, requires = "shrink")]
    out: Option<String>,
    /// Replay a file written by --shrink; exits 1 if it fails (as it should).
    #[arg(long)]
    replay: Option<String>,
}

crate::impl_report!(Outcome, |o| failure_report(o, &o.replay_command()));

/// The violation, the last events and the replay command.
fn failure_report(o: &Outcome, replay: &str) -> String {
    let v = o
        .violation
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default();
    format!(
        "VIOLATION {v}\nlast events:\n  {}\nreplay: {replay}",
        o.tail.join("\n  ")
    )
}

/// Runs the node simulation with `argv` (`argv[0]` is the program or `node`).
pub fn main(argv: &[String]) -> ExitCode {
    let mut argv = argv.to_vec();
    if argv.get(1).map(String::as_str) == Some("shrink") {
        argv[1] = "--shrink".into();
    }
    let args = match Args::try_parse_from(&argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if args.list_canaries {
        for c in SimCanary::ALL {
            println!("{:<22} {}", c.name(), c.describe());
        }
        return ExitCode::SUCCESS;
    }
    // A panic inside a run is caught and reported as a violation; keep its default message off
    // the terminal, the report says it.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(path) = &args.replay {
        return replay(path, &args.trace);
    }
    if args.shrink {
        return shrink_seed(&args);
    }
    let seeds = match (args.seed, args.seeds.clone()) {
        (Some(s), _) => s..s.saturating_add(1),
        (None, Some(r)) => r,
        (None, None) => {
            eprintln!("give --seed N, --seeds A..B, --replay FILE or shrink --seed N (or --list-canaries)");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = open_trace(&args.trace) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let style = BatchStyle {
        single: args.seed.is_some(),
        verbose: args.verbose,
        what: "",
    };
    let mut trace_error = None;
    let failed = run_batch(seeds, style, |seed| {
        let trace_out = open_trace(&args.trace).unwrap_or_else(|e| {
            trace_error = Some(e);
            None
        });
        run(Options {
            seed,
            canary: args.canary,
            trace_out,
            crash_only: args.crash_only,
            schedule: Schedule::default(),
        })
    });
    if let Some(e) = trace_error {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn shrink_seed(args: &Args) -> ExitCode {
    let seed = args.seed.expect("clap requires --seed");
    eprintln!("shrinking seed {seed} ...");
    let Some(s) = shrink(seed, args.canary, args.crash_only) else {
        println!("seed {seed} passes: nothing to shrink");
        return ExitCode::SUCCESS;
    };
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| format!("skein-sim-{seed}.shrunk.json"));
    if let Err(e) = std::fs::write(&path, s.replay.to_json()) {
        eprintln!("cannot write {path}: {e}");
        return ExitCode::from(2);
    }
    let o = &s.outcome;
    println!("{}", o.summary());
    println!(
        "{}",
        failure_report(o, &format!("skein-sim --replay {path}"))
    );
    println!(
        "shrunk in {} runs: {} -> {} decisions, steps={}; written to {path}",
        s.runs,
        s.decisions_before,
        o.decisions.len(),
        o.steps
    );
    ExitCode::FAILURE
}

fn replay(path: &str, trace: &Option<String>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match Replay::from_json(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = r.options();
    opts.trace_out = match open_trace(trace) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let o = run(opts);
    println!("{}", o.summary());
    match &o.violation {
        Some(v) => {
            println!(
                "{}",
                failure_report(&o, &format!("skein-sim --replay {path}"))
            );
            if !r.property.is_empty() && v.property != r.property {
                println!(
                    "note: the file recorded a {} violation; this build found {}",
                    r.property, v.property
                );
            }
            ExitCode::FAILURE
        }
        None => {
            println!(
                "replay passed: the recorded {} violation is gone",
                r.property
            );
            ExitCode::SUCCESS
        }
    }
}
