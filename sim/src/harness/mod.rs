//! The one harness every simulation plugs into: a [`Scenario`] runs one seed under a [`Plan`]
//! (the numbered decisions allowed, the safety-phase length) and reports a [`Report`]; the
//! harness gives each the same batch runner ([`batch`]) and command line (`crate::cli`: `--seed`,
//! `--seeds`, `--trace`, `shrink`, `--replay`, `--list-canaries`), the same replay file ([`replay`]), the
//! same stable trace hash ([`hash`]), the numbered-decision gate ([`gate`]) and the same
//! shrinker ([`shrink`]). Checkers live with their scenarios, one file per property, never here.
//!
//! Invariants: the harness reads no clock except to print a batch's speed, and decides nothing
//! a run depends on; a failing run always prints its seed, its violated property and a one-line
//! replay command.

pub mod batch;
pub mod gate;
pub mod hash;
pub mod replay;
pub mod shrink;

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::Value;

use crate::checker::Violation;

pub use gate::Gate;
pub use hash::TraceHasher;

/// How a run is narrowed (the default: the seed's own run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Numbered decisions allowed to go ahead (`None`: all).
    pub allowed: Option<BTreeSet<u64>>,
    /// Safety-phase length (`None`: the seed's).
    pub safety_ms: Option<u64>,
}

/// What every simulation's outcome tells the harness.
pub trait Report {
    /// One summary line: `seed=<N> <shape> <counters> trace=<hex>`.
    fn summary(&self) -> String;
    /// The broken property, if any.
    fn violation(&self) -> Option<&Violation>;
    /// The failure report: violation, last events, status and the replay command.
    fn report(&self) -> String;
    /// Steps (events) taken.
    fn steps(&self) -> u64;
    /// Simulated milliseconds.
    fn sim_ms(&self) -> u64;
    /// The stable trace hash.
    fn trace_hash(&self) -> u64;
    /// Numbers of the decisions that went ahead.
    fn decisions(&self) -> &[u64];
    /// The safety phase's length in this run.
    fn safety_ms(&self) -> u64;
}

/// Implements [`Report`] for an outcome with the usual fields (`violation`, `steps`, `sim_ms`,
/// `trace_hash`, `decisions`, `swarm.safety_ms`) and an inherent `summary()`; the failure
/// report is the given expression over the outcome.
#[macro_export]
macro_rules! impl_report {
    ($t:ty, |$o:ident| $report:expr) => {
        impl $crate::harness::Report for $t {
            fn summary(&self) -> String {
                <$t>::summary(self)
            }
            fn violation(&self) -> Option<&$crate::checker::Violation> {
                self.violation.as_ref()
            }
            fn report(&self) -> String {
                let $o = self;
                $report
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
    };
}

/// A simulation's planted bugs: listed, named, described and parsed the same way everywhere.
pub trait CanarySet: Copy + Sized + 'static {
    /// Every canary, in listing order.
    fn all() -> &'static [Self];
    /// The `--canary` name.
    fn name(self) -> &'static str;
    /// What the bug does, for `--list-canaries`.
    fn describe(self) -> &'static str;

    /// Parses a `--canary` argument; the error names the known ones.
    fn parse_arg(s: &str) -> Result<Self, String> {
        Self::all()
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::all().iter().map(|c| c.name()).collect();
                format!("unknown canary {s:?}; known: {}", names.join(", "))
            })
    }

    /// Reads a replay file's `options.canary` (absent or null: none).
    fn from_json(v: Option<&Value>) -> Result<Option<Self>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(n)) => Self::all()
                .iter()
                .copied()
                .find(|c| c.name() == n)
                .map(Some)
                .ok_or_else(|| format!("unknown canary {n:?}")),
            Some(_) => Err("`options.canary` must be a string or null".into()),
        }
    }

    /// `(name, description)` of every canary.
    fn listing() -> Vec<(&'static str, &'static str)> {
        Self::all()
            .iter()
            .map(|c| (c.name(), c.describe()))
            .collect()
    }
}

/// Implements [`CanarySet`] for a canary enum with an inherent `ALL` array, `name()` and
/// `describe()`.
#[macro_export]
macro_rules! impl_canary_set {
    ($t:ty) => {
        impl $crate::harness::CanarySet for $t {
            fn all() -> &'static [Self] {
                &<$t>::ALL
            }
            fn name(self) -> &'static str {
                <$t>::name(self)
            }
            fn describe(self) -> &'static str {
                <$t>::describe(self)
            }
        }
    };
}

/// A simulation the harness can run, shrink and replay.
pub trait Scenario {
    /// Its name in replay files.
    const NAME: &'static str;
    /// The `skein-sim` words that select it (`cluster`, `groups --protocol consumer`).
    const COMMAND: &'static str;
    /// What to run besides the plan: the seed and the scenario's switches.
    type Options: Clone + std::fmt::Debug;
    /// What a run reports.
    type Outcome: Report;
    /// Runs `options` narrowed by `plan`, writing every event line to `trace` if given.
    fn run(options: &Self::Options, plan: &Plan, trace: Option<Box<dyn Write>>) -> Self::Outcome;
    /// The seed of `options`.
    fn seed(options: &Self::Options) -> u64;
    /// The switches of `options` besides the seed, for a replay file.
    fn options_json(options: &Self::Options) -> Value;
    /// Switches from a replay file (a clear message on a mistake).
    fn options_from_json(seed: u64, v: &Value) -> Result<Self::Options, String>;
    /// The flags (besides `--seed`) that give `options` on the command line.
    fn flags(options: &Self::Options) -> String;

    /// The one-line command that runs `options` again.
    fn replay_command(options: &Self::Options) -> String {
        let flags = Self::flags(options);
        let sep = if flags.is_empty() { "" } else { " " };
        format!(
            "cargo run --release -p skein-sim -- {} --seed {}{sep}{flags}",
            Self::COMMAND,
            Self::seed(options)
        )
    }
}
