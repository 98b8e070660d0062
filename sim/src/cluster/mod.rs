//! `skein-sim cluster`: the metadata quorum under faults. One u64 seed decides a cluster of 3
//! or 5 voters (each also a broker, as in combined mode) plus up to two non-voting brokers,
//! their fault rates ([`swarm`]), and every event: Raft ([`skein_core::raft`]) over
//! skein-storage's real `RaftStore` on simulated disks that lose unsynced writes, possibly in
//! part, torn at a sector ([`store`]), a network that delays,
//! reorders, loses, duplicates and partitions ([`net`]), processes that crash and restart as
//! new incarnations, brokers that go silent and must be fenced, then return and be unfenced,
//! and admin clients proposing topic changes and producer-id blocks through whichever voter
//! they reach ([`sim`]).
//!
//! The checkers ([`check`]) run after every step: at most one leader per term, log matching,
//! leader completeness, commit safety, the same committed records applied in the same order on
//! every node (a restored snapshot must be exactly the catalog its index's records build),
//! `Catalog::check_invariants`, producer-id blocks that never overlap, and acknowledged
//! proposals that are committed. After the faults heal, the leader must step down when cut off
//! (check-quorum), and after a quiet period the metadata must converge: identical catalogs,
//! live brokers registered and unfenced, dead ones fenced, acknowledged topic changes reflected.
//! Planted Raft bugs ([`canary`]) prove the checkers bite.
//!
//! Usage: `skein-sim cluster --seed N` or `--seeds A..B`, optionally `--voters 3|5` and
//! `--canary vote-twice|commit-old-term|no-check-quorum` (`--list-canaries`). A failure prints
//! the seed, the broken property, the last events, every node's status and a one-line replay
//! command. Every crash, partition, pause, admin action and quiet-period death is a numbered
//! decision of the harness, so `skein-sim cluster shrink --seed N` shrinks a failing run and
//! `--replay FILE` runs the shrunk file; `--trace FILE` writes every event line as JSON.
//!
//! Architecture invariant: like the rest of the crate, nothing here reads a clock or the OS
//! RNG, or iterates a HashMap; the same seed and build give the same trace hash.

pub mod canary;
pub mod check;
pub mod net;
pub mod scenario;
pub mod sim;
pub mod store;
pub mod swarm;

pub use canary::ClusterCanary;
pub use scenario::ClusterScenario;
pub use sim::Stats;
pub use swarm::ClusterSwarm;

use crate::checker::{run_catching, Violation};
use crate::harness::Plan;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// Voters (3 or 5); `None` lets the seed choose.
    pub voters: Option<u64>,
    /// A planted Raft bug to turn on.
    pub canary: Option<ClusterCanary>,
}

impl Options {
    /// `seed` with everything else left to it.
    pub fn seed(seed: u64) -> Options {
        Options {
            seed,
            voters: None,
            canary: None,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was asked for.
    pub options: Options,
    /// The drawn shape (with `--voters` applied).
    pub swarm: ClusterSwarm,
    /// Steps taken (events and timer firings).
    pub steps: u64,
    /// Simulated milliseconds.
    pub sim_ms: u64,
    /// Hash of every step (same seed, same build: same hash).
    pub trace_hash: u64,
    /// The broken property, if any.
    pub violation: Option<Violation>,
    /// The last event lines.
    pub tail: Vec<String>,
    /// Every node's state at the end (or at the violation).
    pub status: String,
    /// Counters.
    pub stats: Stats,
    /// Numbers of the faults and admin actions that went ahead.
    pub decisions: Vec<u64>,
}

impl Outcome {
    /// The one summary line: `seed=<N> <swarm> <counters> trace=<hex>`.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let canary = self
            .options
            .canary
            .map(|c| format!(" canary={}", c.name()))
            .unwrap_or_default();
        format!(
            "seed={} {}{canary} steps={} sim_ms={} terms={} leaders={} committed={} crashes={} \
             snapshots={}/{} ops={}/{}/{} registrations={} fences={} unfences={} trace={:016x}",
            self.options.seed,
            self.swarm,
            self.steps,
            self.sim_ms,
            s.max_term,
            s.leaders,
            s.committed,
            s.crashes,
            s.compactions,
            s.restores,
            s.acked,
            s.lost,
            s.proposals,
            s.registrations,
            s.fences,
            s.unfences,
            self.trace_hash
        )
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        Self::replay_for(&self.options)
    }

    /// The command that replays a run with these options.
    pub fn replay_for(options: &Options) -> String {
        let mut cmd = format!(
            "cargo run --release -p skein-sim -- cluster --seed {}",
            options.seed
        );
        if let Some(v) = options.voters {
            cmd += &format!(" --voters {v}");
        }
        if let Some(c) = options.canary {
            cmd += &format!(" --canary {}", c.name());
        }
        cmd
    }

    /// The failure report: violation, last events, status, replay command.
    pub fn report(&self) -> String {
        let Some(v) = &self.violation else {
            return String::new();
        };
        format!(
            "VIOLATION {v}\nlast events:\n  {}\nstatus: {}replay: {}",
            self.tail.join("\n  "),
            self.status,
            self.replay_command()
        )
    }
}

/// Runs one seed; a panic inside skein-core or the harness is reported as a `node-invariant`
/// violation.
pub fn run(options: Options) -> Outcome {
    run_with(options, &Plan::default(), None)
}

/// [`run`] narrowed by `plan`, writing every event line as JSON to `trace_out` if given.
pub fn run_with(
    options: Options,
    plan: &Plan,
    trace_out: Option<Box<dyn std::io::Write>>,
) -> Outcome {
    if let Some(v) = options.voters {
        assert!(v == 3 || v == 5, "voters must be 3 or 5, not {v}");
    }
    let mut c = sim::Cluster::new(
        options.seed,
        options.voters,
        options.canary,
        plan,
        trace_out,
    );
    let violation = run_catching(|| c.run());
    c.finish_stats();
    c.flush_trace();
    Outcome {
        options,
        swarm: c.swarm.clone(),
        steps: c.steps,
        sim_ms: c.now,
        trace_hash: c.trace_hash(),
        violation,
        tail: c.tail(),
        status: c.status(),
        stats: c.stats.clone(),
        decisions: c.gate.taken().to_vec(),
    }
}
