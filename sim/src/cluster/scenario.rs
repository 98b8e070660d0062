//! The cluster simulation as a harness scenario: `skein-sim cluster` with `--voters 3|5` and
//! `--canary NAME`, plus the shared `--trace`, `shrink` and `--replay`.

use serde_json::{json, Value};

use super::{run_with, ClusterCanary, Options, Outcome};
use crate::checker::Violation;
use crate::cli::scenario::CliScenario;
use crate::harness::{Plan, Report, Scenario};

/// The metadata-quorum cluster simulation.
#[derive(Debug, Clone, Copy)]
pub struct ClusterScenario;

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

impl Scenario for ClusterScenario {
    const NAME: &'static str = "cluster";
    const COMMAND: &'static str = "cluster";
    type Options = Options;
    type Outcome = Outcome;

    fn run(options: &Options, plan: &Plan, trace: Option<Box<dyn std::io::Write>>) -> Outcome {
        run_with(*options, plan, trace)
    }
    fn seed(options: &Options) -> u64 {
        options.seed
    }
    fn options_json(options: &Options) -> Value {
        json!({
            "voters": options.voters,
            "canary": options.canary.map(|c| c.name()),
        })
    }
    fn options_from_json(seed: u64, v: &Value) -> Result<Options, String> {
        let voters = match v.get("voters") {
            None | Some(Value::Null) => None,
            Some(x) => match x.as_u64() {
                Some(n @ (3 | 5)) => Some(n),
                _ => return Err("`options.voters` must be 3, 5 or null".into()),
            },
        };
        let canary = match v.get("canary") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => {
                Some(ClusterCanary::parse(n).ok_or_else(|| format!("unknown canary {n:?}"))?)
            }
            Some(_) => return Err("`options.canary` must be a string or null".into()),
        };
        Ok(Options {
            seed,
            voters,
            canary,
        })
    }
    fn flags(options: &Options) -> String {
        let mut f = Vec::new();
        if let Some(v) = options.voters {
            f.push(format!("--voters {v}"));
        }
        if let Some(c) = options.canary {
            f.push(format!("--canary {}", c.name()));
        }
        f.join(" ")
    }
}

/// `skein-sim cluster`'s own flags.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Voters in the quorum (3 or 5); by default each seed chooses.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
    voters: Option<String>,
    /// Turn on a planted Raft bug (see --list-canaries).
    #[arg(long, value_parser = parse_canary)]
    canary: Option<ClusterCanary>,
}

fn parse_canary(s: &str) -> Result<ClusterCanary, String> {
    ClusterCanary::parse(s).ok_or_else(|| {
        let names: Vec<&str> = ClusterCanary::ALL.iter().map(|c| c.name()).collect();
        format!("unknown canary {s:?}; known: {}", names.join(", "))
    })
}

impl CliScenario for ClusterScenario {
    type Args = ClusterArgs;
    fn options(seed: u64, args: &ClusterArgs) -> Result<Options, String> {
        let voters = match args.voters.as_deref() {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| format!("--voters {v}: 3 or 5"))?),
        };
        Ok(Options {
            seed,
            voters,
            canary: args.canary,
        })
    }
    fn about() -> &'static str {
        "The metadata-quorum cluster simulation: 3 or 5 Raft voters and brokers under crashes, partitions, pauses, loss and duplication"
    }
    fn canaries() -> Vec<(&'static str, &'static str)> {
        ClusterCanary::ALL
            .iter()
            .map(|c| (c.name(), c.describe()))
            .collect()
    }
}
