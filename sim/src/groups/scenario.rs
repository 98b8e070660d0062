//! The classic consumer-group simulation as a harness scenario: `skein-sim groups` (or
//! `groups --protocol classic`) with `--canary NAME`, plus the shared `--trace`, `shrink` and
//! `--replay`.

use serde_json::{json, Value};

use super::{run_with, GroupsCanary, Options, Outcome};
use crate::checker::Violation;
use crate::cli::scenario::CliScenario;
use crate::harness::{Plan, Report, Scenario};

/// The classic (JoinGroup/SyncGroup) consumer-group simulation.
#[derive(Debug, Clone, Copy)]
pub struct GroupsScenario;

impl Report for Outcome {
    fn summary(&self) -> String {
        Outcome::summary(self)
    }
    fn violation(&self) -> Option<&Violation> {
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
        &self.decisions
    }
    fn safety_ms(&self) -> u64 {
        self.swarm.safety_ms
    }
}

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
        let canary = match v.get("canary") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => {
                Some(GroupsCanary::parse(n).ok_or_else(|| format!("unknown canary {n:?}"))?)
            }
            Some(_) => return Err("`options.canary` must be a string or null".into()),
        };
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
    #[arg(long, value_parser = parse_canary)]
    canary: Option<GroupsCanary>,
}

fn parse_canary(s: &str) -> Result<GroupsCanary, String> {
    GroupsCanary::parse(s).ok_or_else(|| {
        let names: Vec<&str> = GroupsCanary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary {s:?}; known: {}", names.join(", "))
    })
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
        GroupsCanary::ALL
            .iter()
            .map(|c| (c.name(), c.describe()))
            .collect()
    }
}
