//! Every simulation, one parameterised test set: the seeds of its regression list (plain seeds
//! pass, `canary=<name>` seeds fail with that canary, `known-bug` seeds still fail), every
//! canary caught by a listed seed that passes without it, determinism (same seed, same trace hash; different seeds
//! differ), and, for each harness scenario, every canary seed of its list shrinks, writes a
//! replay file that parses back, and replays to the same failure and trace hash.
//!
//! List lines: `<seed> <shape>[+crash-only] [voters=N] <reason...>`, `#` starts a comment.

use skein_sim::cluster::{self, ClusterCanary, ClusterScenario};
use skein_sim::groups::kip848::{self, Kip848Canary, Kip848Scenario};
use skein_sim::groups::{self, GroupsCanary, GroupsScenario};
use skein_sim::harness::replay::ReplayFile;
use skein_sim::harness::shrink::shrink;
use skein_sim::harness::{Plan, Report, Scenario};
use skein_sim::replication::{self, ReplCanary, ReplScenario};
use skein_sim::scenario::{NodeOptions, NodeScenario};
use skein_sim::SimCanary;

/// One line of a regression list.
#[derive(Debug, Clone)]
struct Line {
    at: String,
    seed: u64,
    /// `-`, `known-bug` or `canary=<name>`.
    shape: String,
    crash_only: bool,
    voters: Option<u64>,
}

impl Line {
    fn canary(&self) -> Option<&str> {
        self.shape.strip_prefix("canary=")
    }
    fn must_fail(&self) -> bool {
        self.shape != "-"
    }
}

fn lines(file: &str) -> Vec<Line> {
    let path = format!("{}/../ci/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{path}:{}", i + 1);
        let mut f = line.split_whitespace().peekable();
        let seed = f
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{at}: bad seed"));
        let shape = f.next().unwrap_or_else(|| panic!("{at}: no shape"));
        let (shape, crash_only) = match shape.strip_suffix("+crash-only") {
            Some(base) => (base, true),
            None => (shape, false),
        };
        assert!(
            shape == "-" || shape == "known-bug" || shape.starts_with("canary="),
            "{at}: shape {shape:?}"
        );
        let voters = f
            .next_if(|x| x.starts_with("voters="))
            .map(|x| x["voters=".len()..].parse().expect("voters=3 or voters=5"));
        assert!(f.next().is_some(), "{at}: no reason");
        out.push(Line {
            at,
            seed,
            shape: shape.to_string(),
            crash_only,
            voters,
        });
    }
    assert!(!out.is_empty(), "no seeds in {path}");
    out
}

/// A simulation under test: its list, its canaries, and its options for a line.
trait Sim {
    type Outcome: Report;
    const LIST: &'static str;
    fn canaries() -> Vec<&'static str>;
    fn run(line: &Line) -> Self::Outcome;
}

/// A harness scenario under test (shrink and replay too).
trait ScenarioSim: Sim<Outcome = <Self::S as Scenario>::Outcome> {
    type S: Scenario;
    fn options(line: &Line) -> <Self::S as Scenario>::Options;
}

fn plain(seed: u64) -> Line {
    Line {
        at: format!("seed {seed}"),
        seed,
        shape: "-".into(),
        crash_only: false,
        voters: None,
    }
}

fn regression<T: Sim>() {
    for line in lines(T::LIST) {
        let o = T::run(&line);
        match (line.must_fail(), o.violation()) {
            (false, Some(_)) => panic!("{}\n{}\n{}", line.at, o.summary(), o.report()),
            (true, None) => panic!(
                "{}: seed {} {} passes now ({})",
                line.at,
                line.seed,
                line.shape,
                o.summary()
            ),
            _ => {}
        }
        if line.canary().is_some() {
            let clean = Line {
                shape: "-".into(),
                ..line.clone()
            };
            let o = T::run(&clean);
            assert!(
                o.violation().is_none(),
                "{}: the canary seed fails without its canary\n{}",
                line.at,
                o.report()
            );
        }
    }
}

fn every_canary_listed<T: Sim>() {
    let listed: Vec<String> = lines(T::LIST)
        .iter()
        .filter_map(|l| l.canary().map(str::to_string))
        .collect();
    for c in T::canaries() {
        assert!(
            listed.iter().any(|l| l == c),
            "{}: no seed catches canary {c}",
            T::LIST
        );
    }
}

fn determinism<T: Sim>() {
    for seed in [0u64, 7, u64::MAX] {
        let (a, b) = (T::run(&plain(seed)), T::run(&plain(seed)));
        assert_eq!(a.trace_hash(), b.trace_hash(), "seed {seed} diverged");
        assert_eq!(a.summary(), b.summary());
    }
    assert_ne!(
        T::run(&plain(3)).trace_hash(),
        T::run(&plain(4)).trace_hash()
    );
}

/// Every canary line of the list shrinks (in at most `runs` runs each) and replays.
fn shrinks_and_replays<T: ScenarioSim>(runs: usize) {
    let canaries: Vec<Line> = lines(T::LIST)
        .into_iter()
        .filter(|l| l.canary().is_some())
        .collect();
    assert!(!canaries.is_empty(), "{}: no canary line", T::LIST);
    for line in canaries {
        shrink_one::<T>(&line, runs);
    }
    // A replay file of another simulation is refused with a clear message.
    match ReplayFile::<T::S>::from_json(r#"{"sim": "elsewhere", "seed": 1}"#) {
        Err(e) => assert!(e.contains("elsewhere"), "{e}"),
        Ok(_) => panic!("a replay file of another simulation was taken"),
    }
}

/// `line` shrinks to a run that fails with the same property, whose replay file parses back
/// and replays to the same violation and trace hash.
fn shrink_one<T: ScenarioSim>(line: &Line, runs: usize) {
    let options = T::options(line);
    let s = shrink::<T::S>(&options, runs)
        .unwrap_or_else(|| panic!("{}: the canary seed passes", line.at));
    let v = s.outcome.violation().expect("the shrunk run fails").clone();
    assert!(s.outcome.decisions().len() <= s.decisions_before);
    assert!(s.runs <= runs);
    let file = ReplayFile::<T::S> {
        options: options.clone(),
        plan: s.plan.clone(),
        property: v.property.to_string(),
    };
    let back = ReplayFile::<T::S>::from_json(&file.to_json()).expect("the file parses");
    assert_eq!(back.plan, s.plan);
    let again = T::S::run(&back.options, &back.plan, None);
    assert_eq!(
        again.violation(),
        Some(&v),
        "{}: {}",
        line.at,
        again.report()
    );
    assert_eq!(again.trace_hash(), s.outcome.trace_hash(), "{}", line.at);
}

// ---------------------------------------------------------------------- the simulations

struct Node;
impl Sim for Node {
    type Outcome = skein_sim::Outcome;
    const LIST: &'static str = "regression-seeds";
    fn canaries() -> Vec<&'static str> {
        SimCanary::ALL.iter().map(|c| c.name()).collect()
    }
    fn run(line: &Line) -> Self::Outcome {
        NodeScenario::run(&Self::options(line), &Plan::default(), None)
    }
}
impl ScenarioSim for Node {
    type S = NodeScenario;
    fn options(line: &Line) -> NodeOptions {
        NodeOptions {
            seed: line.seed,
            canary: line.canary().map(|n| SimCanary::parse(n).expect("canary")),
            crash_only: line.crash_only,
        }
    }
}

struct Cluster;
impl Sim for Cluster {
    type Outcome = cluster::Outcome;
    const LIST: &'static str = "cluster-regression-seeds";
    fn canaries() -> Vec<&'static str> {
        ClusterCanary::ALL.iter().map(|c| c.name()).collect()
    }
    fn run(line: &Line) -> Self::Outcome {
        cluster::run(Self::options(line))
    }
}
impl ScenarioSim for Cluster {
    type S = ClusterScenario;
    fn options(line: &Line) -> cluster::Options {
        cluster::Options {
            seed: line.seed,
            voters: line.voters,
            canary: line
                .canary()
                .map(|n| ClusterCanary::parse(n).expect("canary")),
        }
    }
}

struct Groups;
impl Sim for Groups {
    type Outcome = groups::Outcome;
    const LIST: &'static str = "groups-regression-seeds";
    fn canaries() -> Vec<&'static str> {
        GroupsCanary::ALL.iter().map(|c| c.name()).collect()
    }
    fn run(line: &Line) -> Self::Outcome {
        groups::run(Self::options(line))
    }
}
impl ScenarioSim for Groups {
    type S = GroupsScenario;
    fn options(line: &Line) -> groups::Options {
        groups::Options {
            seed: line.seed,
            canary: line
                .canary()
                .map(|n| GroupsCanary::parse(n).expect("canary")),
        }
    }
}

struct Kip848;
impl Sim for Kip848 {
    type Outcome = kip848::Outcome;
    const LIST: &'static str = "groups-consumer-regression-seeds";
    fn canaries() -> Vec<&'static str> {
        Kip848Canary::ALL.iter().map(|c| c.name()).collect()
    }
    fn run(line: &Line) -> Self::Outcome {
        kip848::run(Self::options(line))
    }
}
impl ScenarioSim for Kip848 {
    type S = Kip848Scenario;
    fn options(line: &Line) -> kip848::Options {
        kip848::Options {
            seed: line.seed,
            canary: line
                .canary()
                .map(|n| Kip848Canary::parse(n).expect("canary")),
        }
    }
}

struct Replication;
impl Sim for Replication {
    type Outcome = replication::Outcome;
    const LIST: &'static str = "replication-regression-seeds";
    fn canaries() -> Vec<&'static str> {
        ReplCanary::ALL.iter().map(|c| c.name()).collect()
    }
    fn run(line: &Line) -> Self::Outcome {
        replication::run(Self::options(line))
    }
}
impl ScenarioSim for Replication {
    type S = ReplScenario;
    fn options(line: &Line) -> replication::Options {
        replication::Options {
            seed: line.seed,
            canary: line.canary().map(|n| ReplCanary::parse(n).expect("canary")),
        }
    }
}

macro_rules! sim_tests {
    ($name:ident, $sim:ty) => {
        mod $name {
            use super::*;
            #[test]
            fn regression_seeds() {
                regression::<$sim>();
            }
            #[test]
            fn every_canary_has_a_catching_seed() {
                every_canary_listed::<$sim>();
            }
            #[test]
            fn same_seed_same_trace_hash() {
                determinism::<$sim>();
            }
        }
    };
    ($name:ident, $sim:ty, shrink $runs:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn regression_seeds() {
                regression::<$sim>();
            }
            #[test]
            fn every_canary_has_a_catching_seed() {
                every_canary_listed::<$sim>();
            }
            #[test]
            fn same_seed_same_trace_hash() {
                determinism::<$sim>();
            }
            #[test]
            fn every_canary_seed_shrinks_and_replays() {
                shrinks_and_replays::<$sim>($runs);
            }
        }
    };
}

sim_tests!(node, Node, shrink 25);
sim_tests!(cluster_sim, Cluster, shrink 60);
sim_tests!(groups_classic, Groups, shrink 60);
sim_tests!(groups_consumer, Kip848, shrink 100);
sim_tests!(replication_sim, Replication, shrink 60);
