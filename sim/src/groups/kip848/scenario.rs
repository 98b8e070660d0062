//! The KIP-848 consumer-group simulation as a harness scenario: `skein-sim groups --protocol
//! consumer` with `--canary NAME`, plus the shared `--trace`, `shrink` and `--replay`.

use serde_json::{json, Value};

use super::{run_with, Kip848Canary, Options, Outcome};
use crate::cli::scenario::CliScenario;
use crate::harness::{CanarySet, Plan, Scenario};

/// The KIP-848 (ConsumerGroupHeartbeat) consumer-group simulation.
#[derive(Debug, Clone, Copy)]
pub struct Kip848Scenario;

crate::impl_report!(Outcome, |o| Outcome::report(o));

impl Scenario for Kip848Scenario {
    const NAME: &'static str = "groups-consumer";
    const COMMAND: &'static str = "groups --protocol consumer";
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
        let canary = Kip848Canary::from_json(v.get("canary"))?;
        Ok(Options { seed, canary })
    }
    fn flags(options: &Options) -> String {
        options
            .canary
            .map(|c| format!("--canary {}", c.name()))
            .unwrap_or_default()
    }
}

/// `skein-sim groups --protocol consumer`'s own flags.
#[derive(clap::Args, Debug)]
pub struct Kip848Args {
    /// Turn on a planted KIP-848 bug (see --list-canaries).
    #[arg(long, value_parser = <Kip848Canary as CanarySet>::parse_arg)]
    canary: Option<Kip848Canary>,
}

impl CliScenario for Kip848Scenario {
    type Args = Kip848Args;
    fn options(seed: u64, args: &Kip848Args) -> Result<Options, String> {
        Ok(Options {
            seed,
            canary: args.canary,
        })
    }
    fn about() -> &'static str {
        "The KIP-848 consumer-group simulation: ConsumerGroupHeartbeat members against the consumer-group state machine under crashes, leaves, pauses, subscription changes, loss and delays"
    }
    fn canaries() -> Vec<(&'static str, &'static str)> {
        Kip848Canary::listing()
    }
}
