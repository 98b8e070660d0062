//! The classic consumer-group simulation as a harness scenario: `skein-sim groups` (or
//! `groups --protocol classic`) with `--canary NAME`, plus the shared `--trace`, `shrink` and
//! `--replay`.

use serde_json::{json, Value};

use super::{run_with, GroupsCanary, Options, Outcome};
use crate::cli::scenario::CliScenario;
use crate::harness::{CanarySet, Plan, Scenario};

/// The classic (JoinGroup/SyncGroup) consumer-group simulation.
#[derive(Debug, Clone, Copy)]
pub struct GroupsScenario;

crate::impl_report!(Outcome, |o| Outcome::report(o));

impl Scenario for GroupsScenario {
    const NAME: &'static str = "groups";
    const COMMAND: &'static str = "groups";
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
        let canary = GroupsCanary::from_json(v.get("canary"))?;
        Ok(Options { seed, canary })
    }
    fn flags(options: &Options) -> String {
        options
            .canary
            .map(|c| format!("--canary {}", c.name()))
            .unwrap_or_default()
    }
}

/// `skein-sim groups`' own flags.
#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    /// Turn on a planted consumer-group bug (see --list-canaries).
    #[arg(long, value_parser = <GroupsCanary as CanarySet>::parse_arg)]
    canary: Option<GroupsCanary>,
}

impl CliScenario for GroupsScenario {
    type Args = GroupsArgs;
    fn options(seed: u64, args: &GroupsArgs) -> Result<Options, String> {
        Ok(Options {
            seed,
            canary: args.canary,
        })
    }
    fn about() -> &'static str {
        "The classic consumer-group simulation: JoinGroup/SyncGroup members against the group coordinator under crashes, pauses, leaves, failovers, loss and delays"
    }
    fn canaries() -> Vec<(&'static str, &'static str)> {
        GroupsCanary::listing()
    }
}
