//! The partition-replication simulation as a harness scenario: `skein-sim replication` with
//! `--canary NAME`, plus the shared `--trace`, `shrink` and `--replay`.

use serde_json::{json, Value};

use super::{run_with, Options, Outcome, ReplCanary};
use crate::cli::scenario::CliScenario;
use crate::harness::{CanarySet, Plan, Scenario};

/// The partition-replication simulation.
#[derive(Debug, Clone, Copy)]
pub struct ReplScenario;

crate::impl_report!(Outcome, |o| Outcome::report(o));

impl Scenario for ReplScenario {
    const NAME: &'static str = "replication";
    const COMMAND: &'static str = "replication";
    type Options = Options;
    type Outcome = Outcome;

    fn run(options: &Options, plan: &Plan, trace: Option<Box<dyn std::io::Write>>) -> Outcome {
        run_with(*options, plan, trace)
    }
    fn seed(options: &Options) -> u64 {
        options.seed
    }
    fn options_json(options: &Options) -> Value {
        json!({ "canary": options.canary.map(|c| c.name()) })
    }
    fn options_from_json(seed: u64, v: &Value) -> Result<Options, String> {
        let canary = ReplCanary::from_json(v.get("canary"))?;
        Ok(Options { seed, canary })
    }
    fn flags(options: &Options) -> String {
        options
            .canary
            .map(|c| format!("--canary {}", c.name()))
            .unwrap_or_default()
    }
}

/// `skein-sim replication`'s own flags.
#[derive(clap::Args, Debug)]
pub struct ReplArgs {
    /// Turn on a planted replication bug (see --list-canaries).
    #[arg(long, value_parser = <ReplCanary as CanarySet>::parse_arg)]
    canary: Option<ReplCanary>,
}

impl CliScenario for ReplScenario {
    type Args = ReplArgs;
    fn options(seed: u64, args: &ReplArgs) -> Result<Options, String> {
        Ok(Options {
            seed,
            canary: args.canary,
        })
    }
    fn about() -> &'static str {
        "The partition-replication simulation: one topic replicated over 3-5 brokers with a simulated controller, under crashes, pauses, partitions, slow links, loss and duplication"
    }
    fn canaries() -> Vec<(&'static str, &'static str)> {
        ReplCanary::listing()
    }
}
