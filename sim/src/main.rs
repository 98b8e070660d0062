//! `skein-sim`: run one seed or a batch of seeds; exit 1 if any run violates an invariant.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use skein_sim::{run, Options, Outcome, SimCanary};

/// Deterministic simulator for skein: one seed decides everything.
#[derive(Parser, Debug)]
#[command(name = "skein-sim", version)]
struct Args {
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a batch of seeds, `A..B` (B exclusive).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// Write every event of the (single) run as JSON lines to this file.
    #[arg(long, requires = "seed")]
    trace: Option<String>,
    /// Turn on a planted bug (see --list-canaries).
    #[arg(long, value_parser = parse_canary)]
    canary: Option<SimCanary>,
    /// List the planted bugs and exit.
    #[arg(long)]
    list_canaries: bool,
    /// Every stop is a crash, no clean shutdowns (replays seeds found before clean stops existed).
    #[arg(long)]
    crash_only: bool,
    /// In a batch, print every run's summary line (not only failures).
    #[arg(long)]
    verbose: bool,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.parse().map_err(|e| format!("{e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{e}"))?;
    if a >= b {
        return Err("empty range".into());
    }
    Ok(a..b)
}

fn parse_canary(s: &str) -> Result<SimCanary, String> {
    SimCanary::parse(s).ok_or_else(|| {
        let names: Vec<&str> = SimCanary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary {s:?}; known: {}", names.join(", "))
    })
}

fn report_failure(o: &Outcome) {
    let v = o.violation.as_ref().expect("failed");
    println!("VIOLATION {v}");
    println!("last events:");
    for line in &o.tail {
        println!("  {line}");
    }
    println!("replay: {}", o.replay_command());
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_canaries {
        for c in SimCanary::ALL {
            println!("{:<22} {}", c.name(), c.describe());
        }
        return ExitCode::SUCCESS;
    }
    // A panic inside a run is caught and reported as a violation; keep its default message off
    // the terminal, the report says it.
    std::panic::set_hook(Box::new(|_| {}));
    let seeds = match (args.seed, args.seeds.clone()) {
        (Some(s), _) => s..s + 1,
        (None, Some(r)) => r,
        (None, None) => {
            eprintln!("give --seed N or --seeds A..B (or --list-canaries)");
            return ExitCode::from(2);
        }
    };
    let single = seeds.end - seeds.start == 1;
    // Wall-clock time only measures the simulator's own speed (events/s); no run depends on it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let (mut steps, mut sim_ms, mut failed) = (0u64, 0u64, Vec::new());
    let total = seeds.end - seeds.start;
    for (i, seed) in seeds.clone().enumerate() {
        let trace_out: Option<Box<dyn Write>> = match &args.trace {
            Some(path) => match File::create(path) {
                Ok(f) => Some(Box::new(BufWriter::new(f))),
                Err(e) => {
                    eprintln!("cannot create {path}: {e}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        let o = run(Options {
            seed,
            canary: args.canary,
            trace_out,
            crash_only: args.crash_only,
        });
        steps += o.steps;
        sim_ms += o.sim_ms;
        if single || args.verbose || o.violation.is_some() {
            println!("{}", o.summary());
        }
        if o.violation.is_some() {
            report_failure(&o);
            failed.push(seed);
        }
        if !single && ((i as u64 + 1).is_multiple_of(50) || i as u64 + 1 == total) {
            let wall = started.elapsed().as_secs_f64();
            eprintln!(
                "[{}/{}] failed={} {:.0} events/s, {:.0} sim-s per wall-s, {:.0} seeds/min",
                i + 1,
                total,
                failed.len(),
                steps as f64 / wall,
                sim_ms as f64 / 1000.0 / wall,
                (i + 1) as f64 * 60.0 / wall
            );
        }
    }
    if !single {
        if failed.is_empty() {
            println!("all {total} seeds passed");
        } else {
            let list: Vec<String> = failed.iter().map(|s| s.to_string()).collect();
            println!(
                "{} of {total} seeds failed: {}",
                failed.len(),
                list.join(" ")
            );
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
