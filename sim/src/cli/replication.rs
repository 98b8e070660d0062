//! `skein-sim replication ...`: the partition-replication simulation's command line: seeds,
//! canaries and the shared batch runner. Its driver (sim/src/replication/sim.rs) draws no
//! numbered decisions and writes no trace file yet, so it has no `--trace`, `shrink` or
//! `--replay`.

use crate::harness::CanarySet;
use std::ops::Range;
use std::process::ExitCode;

use clap::Parser;

use super::parse_range;
use crate::harness::batch::{run_batch, BatchStyle};
use crate::harness::Report;
use crate::replication::{self, Outcome, ReplCanary};

/// The partition-replication simulation: one topic replicated over 3-5 brokers with a simulated
/// controller, under crashes, pauses, partitions, slow links, loss and duplication.
#[derive(Parser, Debug)]
#[command(name = "skein-sim replication", bin_name = "skein-sim replication")]
struct Args {
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
    /// Turn on a planted replication bug (see --list-canaries).
    #[arg(long, value_parser = <ReplCanary as CanarySet>::parse_arg)]
    canary: Option<ReplCanary>,
}

impl Report for Outcome {
    fn summary(&self) -> String {
        Outcome::summary(self)
    }
    fn violation(&self) -> Option<&crate::checker::Violation> {
        self.violation.as_ref()
    }
    fn report(&self) -> String {
        Outcome::report(self)
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn sim_ms(&self) -> u64 {
        self.sim_ms
    }
    fn trace_hash(&self) -> u64 {
        self.trace_hash
    }
    fn decisions(&self) -> &[u64] {
        &[]
    }
    fn safety_ms(&self) -> u64 {
        0
    }
}

/// Runs the replication simulation with `argv` (`argv[0]` is `replication`).
pub fn main(argv: &[String]) -> ExitCode {
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if args.list_canaries {
        for c in ReplCanary::ALL {
            println!("{:<24}{}", c.name(), c.describe());
        }
        return ExitCode::SUCCESS;
    }
    let seeds = match (args.seed, args.seeds.clone()) {
        (Some(s), _) => s..s.saturating_add(1),
        (None, Some(r)) => r,
        (None, None) => {
            eprintln!("give --seed N or --seeds A..B (or --list-canaries)");
            return ExitCode::from(2);
        }
    };
    // A panic inside a run is caught and reported as a violation; the report says it.
    std::panic::set_hook(Box::new(|_| {}));
    let style = BatchStyle {
        single: args.seed.is_some(),
        verbose: args.verbose,
        what: "replication",
    };
    let failed = run_batch(seeds, style, |seed| {
        replication::run(replication::Options {
            seed,
            canary: args.canary,
        })
    });
    if !style.single {
        for s in &failed {
            println!("  replay: {}", Outcome::replay_for(*s, args.canary));
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
