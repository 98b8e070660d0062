//! How one node-simulation run is asked for and what it reports: [`Options`], [`Outcome`], and
//! the schedules (the harness's [`crate::harness::Plan`] plus the node's shape: producers,
//! fetchers, partitions). A schedule is what a run may inject, as a restriction of what its seed
//! would inject, so that a failing run can be shrunk (`super::shrink`) and the smaller run
//! replayed from a file.
//!
//! Every fault the simulator injects and every admin action it takes is a numbered decision (in
//! the order the run makes them). A [`Schedule`] keeps the seed and narrows the run: only the
//! listed decisions go ahead (the others are still drawn, so the random streams stay aligned as
//! far as the run's path allows), the safety phase may be shorter, and clients and partitions may
//! be fewer. `shrink` delta-debugs (Zeller's ddmin) a failing run's decisions and shape down to a
//! smaller schedule that fails with the same violated property; the JSON form replays it.
//!
//! Invariant: a schedule replays deterministically: `run` of the same schedule takes the same
//! steps, so a shrunk file fails the way it failed when it was written.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Value};

use crate::canary::SimCanary;
use crate::checker::Violation;
use crate::swarm::Swarm;

/// How a run is narrowed (all `None`: the seed's own run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Numbered decisions allowed to go ahead (`None`: all).
    pub allowed: Option<BTreeSet<u64>>,
    /// Safety-phase length.
    pub safety_ms: Option<u64>,
    /// Indices (in the swarm's list) of the producers kept.
    pub producers: Option<Vec<usize>>,
    /// Fetchers kept.
    pub fetchers: Option<usize>,
    /// Partitions of the initial topic.
    pub partitions: Option<usize>,
}

/// A replayable file: the seed, its switches, the schedule and the violation it ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The seed.
    pub seed: u64,
    /// The canary on.
    pub canary: Option<SimCanary>,
    /// Clean stops off.
    pub crash_only: bool,
    /// The narrowing.
    pub schedule: Schedule,
    /// The violated property the run ends in (checked on replay).
    pub property: String,
}

impl Replay {
    /// The options to run it.
    pub fn options(&self) -> Options {
        Options {
            seed: self.seed,
            canary: self.canary,
            trace_out: None,
            crash_only: self.crash_only,
            schedule: self.schedule.clone(),
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> String {
        let s = &self.schedule;
        let v = json!({
            "seed": self.seed,
            "canary": self.canary.map(|c| c.name()),
            "crash_only": self.crash_only,
            "property": self.property,
            "safety_ms": s.safety_ms,
            "producers": s.producers,
            "fetchers": s.fetchers,
            "partitions": s.partitions,
            "allowed": s.allowed.as_ref().map(|a| a.iter().copied().collect::<Vec<u64>>()),
        });
        serde_json::to_string_pretty(&v).expect("json") + "\n"
    }

    /// Parses the JSON form; a clear message on any mistake.
    pub fn from_json(text: &str) -> Result<Replay, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("expected a JSON object")?;
        let u64_of = |k: &str| -> Result<Option<u64>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("`{k}` must be a non-negative integer")),
            }
        };
        let seed = u64_of("seed")?.ok_or("missing `seed`")?;
        let canary = match obj.get("canary") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => {
                Some(SimCanary::parse(n).ok_or_else(|| format!("unknown canary {n:?}"))?)
            }
            Some(_) => return Err("`canary` must be a string or null".into()),
        };
        let crash_only = match obj.get("crash_only") {
            None | Some(Value::Null) => false,
            Some(x) => x.as_bool().ok_or("`crash_only` must be a boolean")?,
        };
        let list = |k: &str| -> Result<Option<Vec<u64>>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_u64()
                            .ok_or_else(|| format!("`{k}` must hold integers"))
                    })
                    .collect::<Result<Vec<u64>, String>>()
                    .map(Some),
                Some(_) => Err(format!("`{k}` must be an array or null")),
            }
        };
        let small = |x: Option<u64>, k: &str, max: u64| -> Result<Option<usize>, String> {
            match x {
                Some(n) if n > max => Err(format!("`{k}` is at most {max}")),
                other => Ok(other.map(|n| n as usize)),
            }
        };
        let partitions = small(u64_of("partitions")?, "partitions", 64)?;
        if partitions == Some(0) {
            return Err("`partitions` must be at least 1".into());
        }
        let producers = match list("producers")? {
            Some(p) if p.iter().any(|i| *i > 64) => return Err("bad producer index".into()),
            other => other.map(|p| p.into_iter().map(|i| i as usize).collect()),
        };
        Ok(Replay {
            seed,
            canary,
            crash_only,
            property: obj
                .get("property")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            schedule: Schedule {
                allowed: list("allowed")?.map(|a| a.into_iter().collect()),
                safety_ms: u64_of("safety_ms")?,
                producers,
                fetchers: small(u64_of("fetchers")?, "fetchers", 64)?,
                partitions,
            },
        })
    }
}

/// How to run one seed.
pub struct Options {
    /// The seed: it decides everything.
    pub seed: u64,
    /// A planted bug to turn on.
    pub canary: Option<SimCanary>,
    /// Where to write the JSON-lines trace.
    pub trace_out: Option<Box<dyn Write>>,
    /// Every stop is a crash (no clean shutdowns): how seeds ran before clean stops existed.
    pub crash_only: bool,
    /// Narrows the run (shrinking and replay files); the default is the seed's own run.
    pub schedule: Schedule,
}

impl Options {
    /// A plain run of `seed`.
    pub fn seed(seed: u64) -> Self {
        Options {
            seed,
            canary: None,
            trace_out: None,
            crash_only: false,
            schedule: Schedule::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The canary that was on.
    pub canary: Option<SimCanary>,
    /// Whether clean stops were off.
    pub crash_only: bool,
    /// The drawn shape (after the schedule's narrowing).
    pub swarm: Swarm,
    /// Events processed.
    pub steps: u64,
    /// Simulated milliseconds.
    pub sim_ms: u64,
    /// FNV-1a 64 of every event line.
    pub trace_hash: u64,
    /// The broken invariant, if any.
    pub violation: Option<Violation>,
    /// The last event lines.
    pub tail: Vec<String>,
    /// Acknowledgements judged.
    pub acks: u64,
    /// Records read and judged.
    pub records_read: u64,
    /// Numbers of the decisions (faults, admin actions) that went ahead.
    pub decisions: Vec<u64>,
}

impl Outcome {
    /// The one summary line: `seed=<N> <swarm> steps=<n> sim_ms=<n> trace=<hex>`.
    pub fn summary(&self) -> String {
        let canary = self
            .canary
            .map(|c| format!(" canary={}", c.name()))
            .unwrap_or_default();
        format!(
            "seed={} {}{} steps={} sim_ms={} trace={:016x}",
            self.seed, self.swarm, canary, self.steps, self.sim_ms, self.trace_hash
        )
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!("skein-sim --seed {}", self.seed);
        if let Some(c) = self.canary {
            cmd += &format!(" --canary {}", c.name());
        }
        if self.crash_only {
            cmd += " --crash-only";
        }
        cmd
    }
}
