//! `skein-sim`: run one seed or a batch of seeds, shrink a failing seed, replay a shrunk file;
//! `skein-sim cluster ...` runs the metadata-quorum cluster simulation instead (see
//! `skein_sim::cluster`); `skein-sim replication ...` the partition-replication simulation
//! (`skein_sim::replication`); `skein-sim groups ...` the consumer-group simulation
//! (`skein_sim::groups`). Exit 1 if any run violates an invariant, 2 on bad usage.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use skein_sim::cluster::{self, ClusterCanary};
use skein_sim::groups::{self, GroupsCanary};
use skein_sim::replication::{self, ReplCanary};
use skein_sim::{run, shrink, Options, Outcome, Replay, Schedule, SimCanary};

/// Deterministic simulator for skein: one seed decides everything.
///
/// `skein-sim shrink --seed N` is the same as `skein-sim --shrink --seed N`.
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
    #[arg(long, value_parser = parse_canary, conflicts_with = "replay")]
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

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.trim().parse().map_err(|e| format!("start {a:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("end {b:?}: {e}"))?;
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
    report_failure_with(o, &o.replay_command());
}

fn report_failure_with(o: &Outcome, replay: &str) {
    let v = o.violation.as_ref().expect("failed");
    println!("VIOLATION {v}");
    println!("last events:");
    for line in &o.tail {
        println!("  {line}");
    }
    println!("replay: {replay}");
}

fn open_trace(path: &Option<String>) -> Result<Option<Box<dyn Write>>, ExitCode> {
    match path {
        Some(path) => match File::create(path) {
            Ok(f) => Ok(Some(Box::new(BufWriter::new(f)))),
            Err(e) => {
                eprintln!("cannot create {path}: {e}");
                Err(ExitCode::from(2))
            }
        },
        None => Ok(None),
    }
}

fn main() -> ExitCode {
    // `skein-sim shrink --seed N`: the subcommand form of `--shrink`.
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("cluster") {
        return cluster_main(&argv[1..]);
    }
    if argv.get(1).map(String::as_str) == Some("replication") {
        return replication_main(&argv[1..]);
    }
    if argv.get(1).map(String::as_str) == Some("groups") {
        return groups_main(&argv[1..]);
    }
    if argv.get(1).map(String::as_str) == Some("shrink") {
        argv[1] = "--shrink".into();
    }
    let args = match parse_args::<Args>(&argv) {
        Ok(a) => a,
        Err(code) => return code,
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
    batch(&args, seeds)
}

/// One progress line of a seed batch (a bar when stderr is a terminal).
#[allow(clippy::too_many_arguments)]
fn progress(
    started: Instant,
    done: u64,
    total: u64,
    failed: usize,
    steps: u64,
    sim_ms: u64,
    unit: &str,
    tty: bool,
) {
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let line = format!(
        "[{done}/{total}] failed={failed} {:.0} {unit}/s, {:.0} sim-s per wall-s, {:.0} seeds/min",
        steps as f64 / wall,
        sim_ms as f64 / 1000.0 / wall,
        done as f64 * 60.0 / wall
    );
    if tty {
        let width = 30usize;
        let filled = (done * width as u64 / total.max(1)) as usize;
        eprint!(
            "\r[{}{}] {line}\x1b[K",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
    } else {
        eprintln!("{line}");
    }
}

fn batch(args: &Args, seeds: Range<u64>) -> ExitCode {
    let single = args.seed.is_some();
    let tty = std::io::stderr().is_terminal();
    // Wall-clock time only measures the simulator's own speed (events/s); no run depends on it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let (mut steps, mut sim_ms, mut failed) = (0u64, 0u64, Vec::new());
    let total = seeds.end - seeds.start;
    for (i, seed) in seeds.clone().enumerate() {
        let trace_out = match open_trace(&args.trace) {
            Ok(t) => t,
            Err(code) => return code,
        };
        let o = run(Options {
            seed,
            canary: args.canary,
            trace_out,
            crash_only: args.crash_only,
            schedule: Schedule::default(),
        });
        steps += o.steps;
        sim_ms += o.sim_ms;
        let done = i as u64 + 1;
        if single || args.verbose || o.violation.is_some() {
            if tty && !single {
                eprint!("\r\x1b[K");
            }
            println!("{}", o.summary());
        }
        if o.violation.is_some() {
            report_failure(&o);
            failed.push(seed);
        }
        if !single {
            let step = if tty { 5 } else { 50 };
            if done.is_multiple_of(step) || done == total {
                progress(
                    started,
                    done,
                    total,
                    failed.len(),
                    steps,
                    sim_ms,
                    "events",
                    tty,
                );
            }
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
    report_failure_with(o, &format!("skein-sim --replay {path}"));
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
        Err(code) => return code,
    };
    let o = run(opts);
    println!("{}", o.summary());
    match &o.violation {
        Some(v) => {
            report_failure_with(&o, &format!("skein-sim --replay {path}"));
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

/// The metadata-quorum cluster simulation: a seeded cluster of 3 or 5 voters (each also a
/// broker) and up to two non-voting brokers, under crashes, partitions, loss and duplication.
#[derive(Parser, Debug)]
#[command(name = "skein-sim cluster", bin_name = "skein-sim cluster")]
struct ClusterArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Voters in the quorum (3 or 5); by default each seed chooses.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
    voters: Option<String>,
    /// Turn on a planted Raft bug (see --list-canaries).
    #[arg(long, value_parser = parse_cluster_canary)]
    canary: Option<ClusterCanary>,
}

fn parse_cluster_canary(s: &str) -> Result<ClusterCanary, String> {
    ClusterCanary::parse(s).ok_or_else(|| {
        let names: Vec<&str> = ClusterCanary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary {s:?}; known: {}", names.join(", "))
    })
}

fn cluster_main(argv: &[String]) -> ExitCode {
    let args = match parse_args::<ClusterArgs>(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let listing = ClusterCanary::ALL.map(|c| (c.name(), c.describe()));
    let seeds = match args.batch.seeds(&listing) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let voters = args.voters.as_deref().map(|v| v.parse().expect("3 or 5"));
    let failed = run_batch(seeds, &args.batch, "cluster", |seed| {
        let o = cluster::run(cluster::Options {
            seed,
            voters,
            canary: args.canary,
        });
        let report = o.violation.is_some().then(|| o.report());
        (o.steps, o.sim_ms, o.summary(), report)
    });
    finish_batch(&failed, &args.batch, |seed| {
        cluster::Outcome::replay_for(&cluster::Options {
            seed,
            voters,
            canary: args.canary,
        })
    })
}

/// After a batch: the replay command of each failed seed (a single run printed its own), and
/// the exit code.
fn finish_batch(failed: &[u64], batch: &BatchArgs, replay: impl Fn(u64) -> String) -> ExitCode {
    if batch.seed.is_none() {
        for s in failed {
            println!("  replay: {}", replay(*s));
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Parses a subcommand's flags; on `--help` or an error, prints it and gives the exit code.
fn parse_args<T: Parser>(argv: &[String]) -> Result<T, ExitCode> {
    T::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

/// The seed options the cluster, replication and groups simulations share.
#[derive(clap::Args, Debug)]
struct BatchArgs {
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a batch of seeds, `A..B` (B exclusive).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// List the planted bugs and exit.
    #[arg(long)]
    list_canaries: bool,
    /// In a batch, print every run's summary line (not only failures).
    #[arg(long)]
    verbose: bool,
}

impl BatchArgs {
    /// The seeds to run, or the exit code when there is nothing to run (the canaries were
    /// listed, or no seed was given).
    fn seeds(&self, canaries: &[(&str, &str)]) -> Result<Range<u64>, ExitCode> {
        if self.list_canaries {
            let width = canaries.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
            for (name, what) in canaries {
                println!("{name:<width$}{what}");
            }
            return Err(ExitCode::SUCCESS);
        }
        match (self.seed, self.seeds.clone()) {
            (Some(s), _) => Ok(s..s.saturating_add(1)),
            (None, Some(r)) => Ok(r),
            (None, None) => {
                eprintln!("give --seed N or --seeds A..B (or --list-canaries)");
                Err(ExitCode::from(2))
            }
        }
    }
}

/// Runs `run` over `seeds` (one seed when `--seed`): prints summaries (of failures only,
/// unless `--verbose`) and reports, a progress line, and the verdict; returns the failing
/// seeds.
fn run_batch(
    seeds: Range<u64>,
    batch: &BatchArgs,
    what: &str,
    mut run: impl FnMut(u64) -> (u64, u64, String, Option<String>),
) -> Vec<u64> {
    let (single, verbose) = (batch.seed.is_some(), batch.verbose);
    // A panic inside a run is caught and reported as a violation; the report says it.
    std::panic::set_hook(Box::new(|_| {}));
    let tty = std::io::stderr().is_terminal();
    // Wall-clock time only measures the simulator's own speed (seeds/min); no run depends on it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let total = seeds.end - seeds.start;
    let (mut steps, mut sim_ms, mut failed) = (0u64, 0u64, Vec::new());
    for (i, seed) in seeds.enumerate() {
        let (st, ms, summary, report) = run(seed);
        steps += st;
        sim_ms += ms;
        if single || verbose || report.is_some() {
            if tty && !single {
                eprint!("\r\x1b[K");
            }
            println!("{summary}");
        }
        if let Some(r) = report {
            println!("{r}");
            failed.push(seed);
        }
        let done = i as u64 + 1;
        let step = if tty { 5 } else { 100 };
        if !single && (done.is_multiple_of(step) || done == total) {
            progress(
                started,
                done,
                total,
                failed.len(),
                steps,
                sim_ms,
                "steps",
                tty,
            );
        }
    }
    if !single {
        if failed.is_empty() {
            println!("all {total} {what} seeds passed");
        } else {
            let list: Vec<String> = failed.iter().map(|s| s.to_string()).collect();
            println!(
                "{} of {total} {what} seeds failed: {}",
                failed.len(),
                list.join(" ")
            );
        }
    }
    failed
}

/// The partition-replication simulation: one topic replicated over 3-5 brokers with a simulated
/// controller, under crashes, pauses, partitions, slow links, loss and duplication.
#[derive(Parser, Debug)]
#[command(name = "skein-sim replication", bin_name = "skein-sim replication")]
struct ReplicationArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Turn on a planted replication bug (see --list-canaries).
    #[arg(long, value_parser = parse_repl_canary)]
    canary: Option<ReplCanary>,
}

fn parse_repl_canary(s: &str) -> Result<ReplCanary, String> {
    ReplCanary::parse(s).ok_or_else(|| {
        let names: Vec<&str> = ReplCanary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary {s:?}; known: {}", names.join(", "))
    })
}

fn replication_main(argv: &[String]) -> ExitCode {
    let args = match parse_args::<ReplicationArgs>(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let listing = ReplCanary::ALL.map(|c| (c.name(), c.describe()));
    let seeds = match args.batch.seeds(&listing) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let failed = run_batch(seeds, &args.batch, "replication", |seed| {
        let o = replication::run(replication::Options {
            seed,
            canary: args.canary,
        });
        let report = o.violation.is_some().then(|| o.report());
        (o.steps, o.sim_ms, o.summary(), report)
    });
    finish_batch(&failed, &args.batch, |s| {
        replication::Outcome::replay_for(s, args.canary)
    })
}

/// The consumer-group simulation: one or two groups of consumers against a coordinator over a
/// simulated offsets partition, under crashes, pauses, leaves, failovers, loss and delays.
#[derive(Parser, Debug)]
#[command(name = "skein-sim groups", bin_name = "skein-sim groups")]
struct GroupsArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Turn on a planted consumer-group bug (see --list-canaries).
    #[arg(long, value_parser = parse_groups_canary)]
    canary: Option<GroupsCanary>,
}

fn parse_groups_canary(s: &str) -> Result<GroupsCanary, String> {
    GroupsCanary::parse(s).ok_or_else(|| {
        let names: Vec<&str> = GroupsCanary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary {s:?}; known: {}", names.join(", "))
    })
}

fn groups_main(argv: &[String]) -> ExitCode {
    let args = match parse_args::<GroupsArgs>(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let listing = GroupsCanary::ALL.map(|c| (c.name(), c.describe()));
    let seeds = match args.batch.seeds(&listing) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let failed = run_batch(seeds, &args.batch, "groups", |seed| {
        let o = groups::run(groups::Options {
            seed,
            canary: args.canary,
        });
        let report = o.violation.is_some().then(|| o.report());
        (o.steps, o.sim_ms, o.summary(), report)
    });
    finish_batch(&failed, &args.batch, |s| {
        groups::Outcome::replay_for(s, args.canary)
    })
}
