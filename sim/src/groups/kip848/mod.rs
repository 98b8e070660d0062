//! `skein-sim groups --protocol consumer`: KIP-848 consumer groups under faults. One u64 seed
//! decides two topics (`t0`, `t1`, 1-6 partitions each), one group of 1-6 member processes
//! (some static, with a group.instance.id), each subscribed to `t0`, `t1` or both, the
//! session and heartbeat intervals, the fault rates ([`swarm`]) and every event ([`sim`]).
//!
//! The model. The coordinator is skein-core's `ConsumerGroup` (`consumer_group.rs`): it
//! computes the target assignment itself and moves each member towards it, handing a partition
//! to its new owner only once the old owner reported it released. Members speak
//! ConsumerGroupHeartbeat as Kafka's Java client does: they generate their member id, join
//! with epoch 0, heartbeat every heartbeat interval with at most one request in flight, send
//! their subscription and owned partitions when these changed (every field after a join, an
//! error or a timeout), take the assignment an answer carries (releasing what it no longer
//! names, and acknowledging at once), drop everything and rejoin on UNKNOWN_MEMBER_ID or
//! FENCED_MEMBER_EPOCH, retry on UNRELEASED_INSTANCE_ID, and stop on FENCED_INSTANCE_ID.
//! Messages travel over FIFO connections that delay, sometimes stall (a spike) and lose them.
//! Faults: process crashes (no leave; a static member's next process waits until the old
//! session ends), clean leaves (-1; a static member -2, keeping its place for its next
//! process), pauses (some longer than the session), and subscription changes. Every fault is a
//! numbered decision (shrinkable). A quiet period without faults, loss or spikes ends every
//! run with every process up. The coordinator does not fail over here (the KIP-848 group has
//! no stored form to reload yet); the classic simulation covers failovers.
//!
//! Checkers ([`check`]): `one-owner`, `epoch-monotonic`, `node-invariant` and
//! `group-liveness`.
//!
//! Canaries ([`Kip848Canary`]): `assign-before-revoke` (skein-core's canary: the coordinator
//! hands a partition over before its old owner released it; caught as `node-invariant` by the
//! core's own invariant check, and by `one-owner`) and `keep-revoked` (a sim-side client bug:
//! the member reports a revoked partition released but goes on working on it; caught by
//! `one-owner`).
//!
//! Usage: `skein-sim groups --protocol consumer --seed N` or `--seeds A..B`, optionally
//! `--canary NAME`; `shrink`, `--trace` and `--replay` as every harness scenario. Regression
//! seeds: `ci/groups-consumer-regression-seeds`.
//!
//! Determinism: BTreeMap/Vec only, no clock, every draw from the seed's [`crate::rng::Rng`].

pub mod check;
pub mod scenario;
pub mod sim;
pub mod swarm;

pub use scenario::Kip848Scenario;
pub use swarm::Kip848Swarm;

use crate::checker::{run_catching, Violation};
use crate::harness::Plan;
use skein_core::canary::Canary;

/// Planted bugs of the KIP-848 simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kip848Canary {
    /// skein-core: a partition goes to its new owner before the old one released it.
    AssignBeforeRevoke,
    /// The simulated client goes on working on partitions it reported released.
    KeepRevoked,
}

impl Kip848Canary {
    /// Every canary.
    pub const ALL: [Kip848Canary; 2] =
        [Kip848Canary::AssignBeforeRevoke, Kip848Canary::KeepRevoked];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Kip848Canary::AssignBeforeRevoke => "assign-before-revoke",
            Kip848Canary::KeepRevoked => "keep-revoked",
        }
    }

    /// One line on what it breaks.
    pub fn describe(self) -> &'static str {
        match self {
            Kip848Canary::AssignBeforeRevoke => {
                "the coordinator hands a partition over before its old owner released it"
            }
            Kip848Canary::KeepRevoked => {
                "a member reports a revoked partition released but goes on working on it"
            }
        }
    }

    /// By name.
    pub fn parse(s: &str) -> Option<Kip848Canary> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The skein-core canary it turns on, if it is one.
    pub fn core(self) -> Option<Canary> {
        match self {
            Kip848Canary::AssignBeforeRevoke => Some(Canary::AssignBeforeRevoke),
            Kip848Canary::KeepRevoked => None,
        }
    }
}

crate::impl_canary_set!(Kip848Canary);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// A planted bug to turn on.
    pub canary: Option<Kip848Canary>,
}

/// Counters of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// The largest group epoch.
    pub max_epoch: i32,
    /// Partitions released on the coordinator's request.
    pub revoked: u64,
    /// Members told to rejoin (UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH).
    pub fenced: u64,
    /// Process crashes.
    pub crashes: u64,
    /// Clean leaves.
    pub leaves: u64,
    /// Pauses.
    pub pauses: u64,
    /// Subscription changes.
    pub resubscribes: u64,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was asked for.
    pub options: Options,
    /// The drawn shape (with the plan's safety phase).
    pub swarm: Kip848Swarm,
    /// Steps (events) taken.
    pub steps: u64,
    /// Simulated milliseconds.
    pub sim_ms: u64,
    /// The stable trace hash.
    pub trace_hash: u64,
    /// The broken property, if any.
    pub violation: Option<Violation>,
    /// The last event lines.
    pub tail: Vec<String>,
    /// The group's and the processes' state at the end.
    pub status: String,
    /// Counters.
    pub stats: Stats,
    /// Numbers of the faults that went ahead.
    pub decisions: Vec<u64>,
}

impl Outcome {
    /// One summary line.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let canary = self
            .options
            .canary
            .map(|c| format!(" canary={}", c.name()))
            .unwrap_or_default();
        format!(
            "seed={} {}{canary} steps={} sim_ms={} heartbeats={} max_epoch={} revoked={} \
             fenced={} crashes={} leaves={} pauses={} resubscribes={} trace={:016x}",
            self.options.seed,
            self.swarm,
            self.steps,
            self.sim_ms,
            s.heartbeats,
            s.max_epoch,
            s.revoked,
            s.fenced,
            s.crashes,
            s.leaves,
            s.pauses,
            s.resubscribes,
            self.trace_hash
        )
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
            <Kip848Scenario as crate::harness::Scenario>::replay_command(&self.options)
        )
    }
}

/// Runs one seed; a panic in skein-core or the driver is a `node-invariant` violation.
pub fn run(options: Options) -> Outcome {
    run_with(options, &Plan::default(), None)
}

/// [`run`] narrowed by `plan`, writing every event line as JSON to `trace_out` if given.
pub fn run_with(
    options: Options,
    plan: &Plan,
    trace_out: Option<Box<dyn std::io::Write>>,
) -> Outcome {
    let mut s = sim::Kip848Sim::new(options.seed, options.canary, plan, trace_out);
    let violation = run_catching(|| s.run());
    s.flush_trace();
    Outcome {
        options,
        swarm: s.swarm.clone(),
        steps: s.steps,
        sim_ms: s.now,
        trace_hash: s.trace_hash(),
        violation,
        tail: s.tail(),
        status: s.status(),
        stats: s.stats(),
        decisions: s.decisions(),
    }
}
