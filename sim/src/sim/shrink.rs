//! Shrinking a failing node-simulation run: delta-debugging (Zeller's ddmin) its decisions and
//! shape down to a smaller [`Schedule`] that fails with the same violated property.
//!
//! Invariant: every candidate is judged by a real [`run`] of the same seed, so a shrunk schedule
//! fails exactly as its replay file says.

use crate::canary::SimCanary;
use crate::harness::shrink::ddmin as harness_ddmin;

use super::run;
use super::schedule::{Options, Outcome, Replay, Schedule};

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
