//! skein-model: exhaustive model checking (stateright) of skein-core's own code.
//!
//! [`raft`] drives the metadata quorum's real [`skein_core::raft::Raft`] through every
//! interleaving of message delivery, loss, duplication, fsync completion, timeouts, one crash
//! and client proposals within a bound, and checks Raft's safety properties after each step.
//! [`partition`] drives one partition's leadership through the controller's real
//! [`skein_core::catalog::Catalog`], each broker's real [`skein_core::replica::Replica`] (the
//! state machine the broker shell and the simulator drive, with its high-watermark rule) and
//! real [`skein_core::log::PartitionLog`]s through fetches, fsyncs, truncations, ISR changes in
//! flight, stale metadata, crashes that lose unsynced writes and fences, and checks leader
//! completeness and the high watermark.
//! See README.md for the command line.

pub mod partition;
pub mod raft;

use std::fmt::Debug;
use std::hash::Hash;

use stateright::Model;

use stateright::Checker;

/// The outcome of one bounded check.
#[derive(Debug)]
pub struct Verdict {
    /// Unique states explored.
    pub states: usize,
    /// Deepest path.
    pub depth: usize,
    /// Wall time.
    pub secs: f64,
    /// (property, expectation, holds, counterexample path if it failed).
    pub properties: Vec<(String, &'static str, bool, Option<String>)>,
}

impl Verdict {
    /// Whether every property holds (always: no counterexample; sometimes: an example found;
    /// eventually: no counterexample).
    pub fn ok(&self) -> bool {
        self.properties.iter().all(|p| p.2)
    }

    /// Names of the properties that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.properties
            .iter()
            .filter(|p| !p.2)
            .map(|p| p.0.as_str())
            .collect()
    }
}

/// How to run the checker.
#[derive(Clone, Debug)]
pub struct Run {
    /// Stop at this depth (`None`: exhaust the bounds).
    pub depth_max: Option<usize>,
    /// Checker threads.
    pub threads: usize,
    /// Breadth-first (shortest counterexamples, but keeps whole states queued: memory) instead
    /// of depth-first (keeps only fingerprints and the current path).
    pub bfs: bool,
    /// Stop at the first violated property instead of exhausting the bounds.
    pub stop_on_failure: bool,
}

/// Runs the checker over the Raft model.
pub fn check(model: raft::RaftModel, run: &Run) -> Verdict {
    check_with(model, run, raft::summary)
}

/// Runs the checker over the partition model.
pub fn check_partition(model: partition::PartitionModel, run: &Run) -> Verdict {
    check_with(model, run, partition::summary)
}

/// Runs the checker over any model, describing a counterexample's final state with `summary`.
pub fn check_with<M>(model: M, run: &Run, summary: fn(&M::State) -> String) -> Verdict
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Send + Sync + Clone + PartialEq + Debug + 'static,
    M::Action: Clone + PartialEq + Debug,
{
    use stateright::{Expectation, HasDiscoveries};
    let t0 = std::time::Instant::now();
    let props = model.properties();
    let mut builder = model.checker().threads(run.threads);
    if let Some(d) = run.depth_max {
        builder = builder.target_max_depth(d);
    }
    if run.stop_on_failure {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let (states, depth, discoveries) = if run.bfs {
        summarize(builder.spawn_bfs().join(), &props)
    } else {
        summarize(builder.spawn_dfs().join(), &props)
    };
    let secs = t0.elapsed().as_secs_f64();
    let mut properties = Vec::new();
    for p in &props {
        let d = discoveries
            .iter()
            .find(|(n, _)| *n == p.name)
            .map(|(_, d)| d.clone());
        let (kind, holds) = match p.expectation {
            Expectation::Always => ("always", d.is_none()),
            Expectation::Eventually => ("eventually", d.is_none()),
            Expectation::Sometimes => ("sometimes", d.is_some()),
        };
        let path = if holds {
            None
        } else {
            d.map(|path| {
                let mut text = String::new();
                let states = path.into_vec();
                for (i, (state, action)) in states.iter().enumerate() {
                    if let Some(a) = action {
                        text.push_str(&format!("  {i:>3}: {a:?}\n"));
                    }
                    if i + 1 == states.len() {
                        text.push_str(&format!("  final state: {}\n", summary(state)));
                    }
                }
                text
            })
        };
        properties.push((p.name.to_string(), kind, holds, path));
    }
    Verdict {
        states,
        depth,
        secs,
        properties,
    }
}

type Found<M> = Vec<(
    &'static str,
    stateright::Path<<M as Model>::State, <M as Model>::Action>,
)>;

fn summarize<M>(
    checker: impl Checker<M>,
    props: &[stateright::Property<M>],
) -> (usize, usize, Found<M>)
where
    M: Model,
    M::State: Clone + PartialEq,
    M::Action: Clone + PartialEq,
{
    let found = props
        .iter()
        .filter_map(|p| checker.discovery(p.name).map(|d| (p.name, d)))
        .collect();
    (checker.unique_state_count(), checker.max_depth(), found)
}
