//! The command line every harness scenario shares:
//! `skein-sim <sim> [--seed N | --seeds A..B] [--verbose] [--trace FILE] [sim flags]`,
//! `skein-sim <sim> shrink --seed N [--out FILE] [sim flags]` (or `--shrink`),
//! `skein-sim <sim> --replay FILE [--trace FILE]` and `skein-sim <sim> --list-canaries`.
//! Exit 1 if a run violates an invariant (a replayed file that still fails included), 2 on bad
//! usage.

use std::ops::Range;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::{open_trace, parse_range};
use crate::harness::batch::{run_batch, BatchStyle};
use crate::harness::replay::ReplayFile;
use crate::harness::shrink::{shrink, SHRINK_RUNS_MAX};
use crate::harness::{Plan, Report, Scenario};

/// A scenario with command-line switches of its own.
pub trait CliScenario: Scenario {
    /// Its flags besides the shared ones.
    type Args: clap::Args + std::fmt::Debug;
    /// The options of `seed` under `args` (a clear message on a bad combination).
    fn options(seed: u64, args: &Self::Args) -> Result<Self::Options, String>;
    /// `(name, what it breaks)` of every planted bug.
    fn canaries() -> Vec<(&'static str, &'static str)>;
    /// One line on what the simulation covers (its `--help` heading).
    fn about() -> &'static str;
}

/// The shared flags, with the scenario's own flattened in (the heading is the scenario's).
#[derive(Parser, Debug)]
struct Cli<A: clap::Args> {
    /// Run one seed.
    #[arg(long, conflicts_with_all = ["seeds", "replay"])]
    seed: Option<u64>,
    /// Run a batch of seeds, `A..B` (B exclusive).
    #[arg(long, value_parser = parse_range, conflicts_with = "replay")]
    seeds: Option<Range<u64>>,
    /// Write every event line of the (single) run as JSON lines to this file.
    #[arg(long, conflicts_with = "seeds")]
    trace: Option<String>,
    /// List the planted bugs and exit.
    #[arg(long)]
    list_canaries: bool,
    /// In a batch, print every run's summary line (not only failures).
    #[arg(long)]
    verbose: bool,
    /// Shrink the failing run of --seed to fewer decisions and a shorter safety phase, and
    /// write it as a replay file (see --out).
    #[arg(long, requires = "seed")]
    shrink: bool,
    /// Where --shrink writes the replay file (default `skein-sim-<sim>-<seed>.shrunk.json`).
    #[arg(long, requires = "shrink")]
    out: Option<String>,
    /// Replay a file written by shrink; exits 1 if it fails (as it should).
    #[arg(long)]
    replay: Option<String>,
    #[command(flatten)]
    sim: A,
}

/// Runs scenario `S` with `argv` (`argv[0]` is the subcommand word).
pub fn main<S: CliScenario>(argv: &[String]) -> ExitCode {
    let args = match parse::<S>(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.list_canaries {
        let list = S::canaries();
        let width = list.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
        for (name, what) in list {
            println!("{name:<width$}{what}");
        }
        return ExitCode::SUCCESS;
    }
    // A panic inside a run is caught and reported as a violation; the report says it.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(path) = &args.replay {
        return replay::<S>(path, &args.trace);
    }
    let seeds = match (args.seed, args.seeds.clone()) {
        (Some(s), _) => s..s.saturating_add(1),
        (None, Some(r)) => r,
        (None, None) => {
            eprintln!("give --seed N, --seeds A..B, --replay FILE or shrink --seed N (or --list-canaries)");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = S::options(seeds.start, &args.sim).and(open_trace(&args.trace)) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let options = |seed| S::options(seed, &args.sim).expect("checked above");
    if args.shrink {
        return shrink_seed::<S>(&options(seeds.start), &args.out);
    }
    let style = BatchStyle {
        single: args.seed.is_some(),
        verbose: args.verbose,
        what: S::COMMAND,
    };
    let mut trace_error = None;
    let failed = run_batch(seeds, style, |seed| {
        let trace = open_trace(&args.trace).unwrap_or_else(|e| {
            trace_error = Some(e);
            None
        });
        S::run(&options(seed), &Plan::default(), trace)
    });
    if let Some(e) = trace_error {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    if !style.single {
        for s in &failed {
            println!("  replay: {}", S::replay_command(&options(*s)));
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Parses `argv` (`shrink` as the first word is `--shrink`); on `--help` or a mistake, prints
/// it and gives the exit code.
fn parse<S: CliScenario>(argv: &[String]) -> Result<Cli<S::Args>, ExitCode> {
    let mut argv = argv.to_vec();
    if argv.get(1).map(String::as_str) == Some("shrink") {
        argv[1] = "--shrink".into();
    }
    let cmd = Cli::<S::Args>::command()
        .name(S::COMMAND)
        .about(S::about())
        .bin_name(format!("skein-sim {}", S::COMMAND));
    cmd.try_get_matches_from(&argv)
        .and_then(|m| Cli::<S::Args>::from_arg_matches(&m))
        .map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
}

fn shrink_seed<S: CliScenario>(options: &S::Options, out: &Option<String>) -> ExitCode {
    let seed = S::seed(options);
    eprintln!("shrinking {} seed {seed} ...", S::NAME);
    let Some(s) = shrink::<S>(options, SHRINK_RUNS_MAX) else {
        println!("seed {seed} passes: nothing to shrink");
        return ExitCode::SUCCESS;
    };
    let path = out
        .clone()
        .unwrap_or_else(|| format!("skein-sim-{}-{seed}.shrunk.json", S::NAME));
    let o = &s.outcome;
    let file = ReplayFile::<S> {
        options: options.clone(),
        plan: s.plan.clone(),
        property: o.violation().map(|v| v.property).unwrap_or("").to_string(),
    };
    if let Err(e) = std::fs::write(&path, file.to_json()) {
        eprintln!("cannot write {path}: {e}");
        return ExitCode::from(2);
    }
    println!("{}", o.summary());
    println!("{}", o.report());
    println!(
        "shrunk in {} runs: {} -> {} decisions, safety {} ms, steps={}; written to {path}",
        s.runs,
        s.decisions_before,
        o.decisions().len(),
        o.safety_ms(),
        o.steps()
    );
    println!(
        "replay: cargo run --release -p skein-sim -- {} --replay {path}",
        S::COMMAND
    );
    ExitCode::FAILURE
}

fn replay<S: CliScenario>(path: &str, trace: &Option<String>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match ReplayFile::<S>::from_json(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let trace = match open_trace(trace) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let o = S::run(&r.options, &r.plan, trace);
    println!("{}", o.summary());
    match o.violation() {
        Some(v) => {
            println!("{}", o.report());
            println!(
                "replay: cargo run --release -p skein-sim -- {} --replay {path}",
                S::COMMAND
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

/// Defines a harness scenario whose options are only a seed and a canary (`Options { seed,
/// canary }` next to a `run_with(options, plan, trace)` and an `Outcome`), with its command
/// line: the `--canary` flag, the listing and the replay file's options.
#[macro_export]
macro_rules! seed_and_canary_scenario {
    (
        $(#[$doc:meta])*
        $scenario:ident, $args:ident, $canary:ty,
        name = $name:expr, command = $command:expr, about = $about:expr $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $scenario;

        $crate::impl_report!(Outcome, |o| Outcome::report(o));

        impl $crate::harness::Scenario for $scenario {
            const NAME: &'static str = $name;
            const COMMAND: &'static str = $command;
            type Options = Options;
            type Outcome = Outcome;

            fn run(
                options: &Options,
                plan: &$crate::harness::Plan,
                trace: Option<Box<dyn std::io::Write>>,
            ) -> Outcome {
                run_with(*options, plan, trace)
            }
            fn seed(options: &Options) -> u64 {
                options.seed
            }
            fn options_json(options: &Options) -> serde_json::Value {
                serde_json::json!({ "canary": options.canary.map(|c| c.name()) })
            }
            fn options_from_json(seed: u64, v: &serde_json::Value) -> Result<Options, String> {
                let canary =
                    <$canary as $crate::harness::CanarySet>::from_json(v.get("canary"))?;
                Ok(Options { seed, canary })
            }
            fn flags(options: &Options) -> String {
                options
                    .canary
                    .map(|c| format!("--canary {}", c.name()))
                    .unwrap_or_default()
            }
        }

        /// The scenario's own flags.
        #[derive(clap::Args, Debug)]
        pub struct $args {
            /// Turn on a planted bug (see --list-canaries).
            #[arg(long, value_parser = <$canary as $crate::harness::CanarySet>::parse_arg)]
            canary: Option<$canary>,
        }

        impl $crate::cli::scenario::CliScenario for $scenario {
            type Args = $args;
            fn options(seed: u64, args: &$args) -> Result<Options, String> {
                Ok(Options {
                    seed,
                    canary: args.canary,
                })
            }
            fn about() -> &'static str {
                $about
            }
            fn canaries() -> Vec<(&'static str, &'static str)> {
                <$canary as $crate::harness::CanarySet>::listing()
            }
        }
    };
}
