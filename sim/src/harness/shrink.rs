//! Shrinking a failing run: halve the safety phase while it still fails, then delta-debug
//! (Zeller's ddmin) the numbered decisions that went ahead, keeping a run that fails with the
//! same violated property. Generic over any [`Scenario`]; the node simulation adds its own shape
//! steps (producers, fetchers, partitions) around the same [`ddmin`].

use super::{Plan, Report, Scenario};

/// Runs tried at most while shrinking.
pub const SHRINK_RUNS_MAX: usize = 3000;

/// Zeller's ddmin: a smallest-found subset of `set` for which `fails` holds (`fails(set)` is
/// assumed). `fails` returns false once its own run budget is spent.
pub fn ddmin(mut set: Vec<u64>, mut fails: impl FnMut(&[u64]) -> bool) -> Vec<u64> {
    let mut n = 2usize;
    while set.len() >= 2 {
        let chunk = set.len().div_ceil(n);
        let found = (0..n).find_map(|i| {
            let lo = i * chunk;
            if lo >= set.len() {
                return None;
            }
            let hi = (lo + chunk).min(set.len());
            let complement: Vec<u64> = set[..lo].iter().chain(&set[hi..]).copied().collect();
            fails(&complement).then_some(complement)
        });
        match found {
            Some(complement) => {
                set = complement;
                n = (n - 1).max(2);
            }
            None if n >= set.len() => break,
            None => n = (2 * n).min(set.len()),
        }
    }
    if set.len() == 1 && fails(&[]) {
        set.clear();
    }
    set
}

/// The result of a shrink.
#[derive(Debug, Clone)]
pub struct Shrunk<O> {
    /// The smaller failing run's plan.
    pub plan: Plan,
    /// Its outcome.
    pub outcome: O,
    /// Decisions the original run took.
    pub decisions_before: usize,
    /// Runs tried.
    pub runs: usize,
}

/// Shrinks the failing run of `options` (at most `max_runs` runs); `None` if it passes.
pub fn shrink<S: Scenario>(options: &S::Options, max_runs: usize) -> Option<Shrunk<S::Outcome>> {
    let first = S::run(options, &Plan::default(), None);
    let property = first.violation()?.property;
    let decisions_before = first.decisions().len();
    let mut runs = 1usize;
    let fails = |plan: &Plan, runs: &mut usize| -> Option<S::Outcome> {
        if *runs >= max_runs {
            return None;
        }
        *runs += 1;
        let o = S::run(options, plan, None);
        (o.violation().map(|v| v.property) == Some(property)).then_some(o)
    };
    let mut best = Plan {
        allowed: Some(first.decisions().iter().copied().collect()),
        safety_ms: None,
    };
    let mut out = first;
    for _ in 0..2 {
        let mut safety = best.safety_ms.unwrap_or(out.safety_ms());
        while safety > 50 {
            let p = Plan {
                safety_ms: Some(safety / 2),
                ..best.clone()
            };
            match fails(&p, &mut runs) {
                Some(o) => (best, out, safety) = (p, o, safety / 2),
                None => break,
            }
        }
        let live = out.decisions().to_vec();
        let kept = ddmin(live, |set| {
            let p = Plan {
                allowed: Some(set.iter().copied().collect()),
                ..best.clone()
            };
            fails(&p, &mut runs).is_some()
        });
        let p = Plan {
            allowed: Some(kept.into_iter().collect()),
            ..best.clone()
        };
        if let Some(o) = fails(&p, &mut runs) {
            (best, out) = (p, o);
        }
    }
    Some(Shrunk {
        plan: best,
        outcome: out,
        decisions_before,
        runs,
    })
}
