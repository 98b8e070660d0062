//! The whole-node simulation as a harness scenario, so the shared shrinker, replay files and
//! tests drive it like every other simulation. The `skein-sim` command line keeps the node's
//! own richer shrink ([`crate::sim::schedule`]: it also drops producers, fetchers and partitions);
//! the harness's plan maps onto the decisions and safety phase of a [`Schedule`].

use serde_json::{json, Value};

use crate::harness::{Plan, Scenario};
use crate::{run, Options, Outcome, Schedule, SimCanary};

/// The whole-node simulation.
#[derive(Debug, Clone, Copy)]
pub struct NodeScenario;

/// What to run: the seed and the node simulation's switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOptions {
    /// The seed.
    pub seed: u64,
    /// The canary on.
    pub canary: Option<SimCanary>,
    /// Clean stops off.
    pub crash_only: bool,
}

impl Scenario for NodeScenario {
    const NAME: &'static str = "node";
    const COMMAND: &'static str = "node";
    type Options = NodeOptions;
    type Outcome = Outcome;

    fn run(o: &NodeOptions, plan: &Plan, trace: Option<Box<dyn std::io::Write>>) -> Outcome {
        run(Options {
            seed: o.seed,
            canary: o.canary,
            trace_out: trace,
            crash_only: o.crash_only,
            schedule: Schedule {
                allowed: plan.allowed.clone(),
                safety_ms: plan.safety_ms,
                ..Schedule::default()
            },
        })
    }
    fn seed(o: &NodeOptions) -> u64 {
        o.seed
    }
    fn options_json(o: &NodeOptions) -> Value {
        json!({ "canary": o.canary.map(|c| c.name()), "crash_only": o.crash_only })
    }
    fn options_from_json(seed: u64, v: &Value) -> Result<NodeOptions, String> {
        let canary = match v.get("canary") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => {
                Some(SimCanary::parse(n).ok_or_else(|| format!("unknown canary {n:?}"))?)
            }
            Some(_) => return Err("`options.canary` must be a string or null".into()),
        };
        let crash_only = match v.get("crash_only") {
            None | Some(Value::Null) => false,
            Some(x) => x
                .as_bool()
                .ok_or("`options.crash_only` must be a boolean")?,
        };
        Ok(NodeOptions {
            seed,
            canary,
            crash_only,
        })
    }
    fn flags(o: &NodeOptions) -> String {
        let mut f = Vec::new();
        if let Some(c) = o.canary {
            f.push(format!("--canary {}", c.name()));
        }
        if o.crash_only {
            f.push("--crash-only".to_string());
        }
        f.join(" ")
    }
}
