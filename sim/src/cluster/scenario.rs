//! The cluster simulation as a harness scenario: `skein-sim cluster` with `--voters 3|5` and
//! `--canary NAME`, plus the shared `--trace`, `shrink` and `--replay`.

use serde_json::{json, Value};

use super::{run_with, ClusterCanary, Options, Outcome};
use crate::cli::scenario::CliScenario;
use crate::harness::{CanarySet, Plan, Scenario};

/// The metadata-quorum cluster simulation.
#[derive(Debug, Clone, Copy)]
pub struct ClusterScenario;

crate::impl_report!(Outcome, |o| Outcome::report(o));

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
        let canary = ClusterCanary::from_json(v.get("canary"))?;
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
    #[arg(long, value_parser = <ClusterCanary as CanarySet>::parse_arg)]
    canary: Option<ClusterCanary>,
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
        ClusterCanary::listing()
    }
}
