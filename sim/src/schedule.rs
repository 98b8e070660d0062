//! The node simulation's schedules (the harness's [`crate::harness::Plan`] plus the node's
//! shape: producers, fetchers, partitions). Schedules: what a run may inject, as a restriction of what its seed would inject, so that a
//! failing run can be shrunk and the smaller run replayed from a file.
//!
//! Every fault the simulator injects and every admin action it takes is a numbered decision (in
//! the order the run makes them). A [`Schedule`] keeps the seed and narrows the run: only the
//! listed decisions go ahead (the others are still drawn, so the random streams stay aligned as
//! far as the run's path allows), the safety phase may be shorter, and clients and partitions may
//! be fewer. [`shrink`] delta-debugs (Zeller's ddmin) a failing run's decisions and shape down to a
//! smaller schedule that fails with the same violated property; the JSON form replays it.
//!
//! Invariant: a schedule replays deterministically: `run` of the same schedule takes the same
//! steps, so a shrunk file fails the way it failed when it was written.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::canary::SimCanary;
use crate::harness::shrink::ddmin as harness_ddmin;
use crate::sim::{run, Options, Outcome};

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

/// The result of a shrink.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smaller failing run.
    pub replay: Replay,
    /// Its outcome.
    pub outcome: Outcome,
    /// Decisions the original run injected.
    pub decisions_before: usize,
    /// Runs tried.
    pub runs: usize,
}

pub use crate::harness::shrink::SHRINK_RUNS_MAX;

struct Shrinker {
    seed: u64,
    canary: Option<SimCanary>,
    crash_only: bool,
    property: &'static str,
    runs: usize,
    max_runs: usize,
}

impl Shrinker {
    /// Runs `s`; `Some(outcome)` if it still fails with the same property.
    fn fails(&mut self, s: &Schedule) -> Option<Outcome> {
        if self.runs >= self.max_runs {
            return None;
        }
        self.runs += 1;
        let o = run(Options {
            seed: self.seed,
            canary: self.canary,
            trace_out: None,
            crash_only: self.crash_only,
            schedule: s.clone(),
        });
        match &o.violation {
            Some(v) if v.property == self.property => Some(o),
            _ => None,
        }
    }
}

/// Shrinks the failing run of `seed` (at most [`SHRINK_RUNS_MAX`] runs); `None` if it does not
/// fail.
pub fn shrink(seed: u64, canary: Option<SimCanary>, crash_only: bool) -> Option<Shrunk> {
    shrink_with(seed, canary, crash_only, SHRINK_RUNS_MAX)
}

/// [`shrink`] with a bound on the runs tried.
pub fn shrink_with(
    seed: u64,
    canary: Option<SimCanary>,
    crash_only: bool,
    max_runs: usize,
) -> Option<Shrunk> {
    let first = run(Options {
        seed,
        canary,
        trace_out: None,
        crash_only,
        schedule: Schedule::default(),
    });
    let property = first.violation.as_ref()?.property;
    let mut sh = Shrinker {
        seed,
        canary,
        crash_only,
        property,
        runs: 1,
        max_runs,
    };
    let decisions_before = first.decisions.len();
    let mut best = Schedule {
        allowed: Some(first.decisions.iter().copied().collect()),
        ..Schedule::default()
    };
    let mut out = first;
    // The shape first: a shorter safety phase, fewer clients and partitions shrink everything
    // after them. Then ddmin over the decisions the (smaller) run still makes.
    for _ in 0..2 {
        let mut safety = best.safety_ms.unwrap_or(out.swarm.safety_ms);
        while safety > 50 {
            let s = Schedule {
                safety_ms: Some(safety / 2),
                ..best.clone()
            };
            match sh.fails(&s) {
                Some(o) => {
                    (best, out, safety) = (s, o, safety / 2);
                }
                None => break,
            }
        }
        let mut producers: Vec<usize> = best
            .producers
            .clone()
            .unwrap_or_else(|| (0..out.swarm.producers.len()).collect());
        let mut i = 0;
        while i < producers.len() && producers.len() > 1 {
            let mut fewer = producers.clone();
            fewer.remove(i);
            let s = Schedule {
                producers: Some(fewer.clone()),
                ..best.clone()
            };
            match sh.fails(&s) {
                Some(o) => (best, out, producers) = (s, o, fewer),
                None => i += 1,
            }
        }
        let mut fetchers = out.swarm.fetchers;
        while fetchers > 0 {
            let s = Schedule {
                fetchers: Some(fetchers - 1),
                ..best.clone()
            };
            match sh.fails(&s) {
                Some(o) => (best, out, fetchers) = (s, o, fetchers - 1),
                None => break,
            }
        }
        let mut parts = out.swarm.partitions;
        while parts > 1 {
            let s = Schedule {
                partitions: Some(parts - 1),
                ..best.clone()
            };
            match sh.fails(&s) {
                Some(o) => (best, out, parts) = (s, o, parts - 1),
                None => break,
            }
        }
        // Keep only what the current run actually decides.
        let live: Vec<u64> = out.decisions.clone();
        let kept = ddmin(&mut sh, &best, live);
        let s = Schedule {
            allowed: Some(kept.into_iter().collect()),
            ..best.clone()
        };
        if let Some(o) = sh.fails(&s) {
            (best, out) = (s, o);
        }
    }
    Some(Shrunk {
        replay: Replay {
            seed,
            canary,
            crash_only,
            schedule: best,
            property: property.to_string(),
        },
        outcome: out,
        decisions_before,
        runs: sh.runs,
    })
}

/// Zeller's ddmin over the allowed decisions (the harness's [`ddmin`]): a smallest-found
/// subset that still fails.
fn ddmin(sh: &mut Shrinker, base: &Schedule, set: Vec<u64>) -> Vec<u64> {
    harness_ddmin(set, |set| {
        let s = Schedule {
            allowed: Some(set.iter().copied().collect()),
            ..base.clone()
        };
        sh.fails(&s).is_some()
    })
}
