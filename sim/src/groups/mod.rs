//! `skein-sim groups`: consumer groups under faults. One u64 seed decides one topic of 1-8
//! partitions, one or two consumer groups of 1-6 members each (some static, with a
//! group.instance.id), the assignor every client runs (range or roundrobin), the timeouts, the
//! fault rates ([`swarm`]) and every event ([`sim`]).
//!
//! The model. The coordinator is skein-core's coordinator runtime (`Runtime<GroupShard>`), one
//! per coordinator node, driven by [`sim`] as the broker's shell drives it (see its `coord`
//! module): the simulation keeps no copy of the coordinator's logic. The offsets partition is a
//! log of (key, value) records with a leader epoch and a high watermark. The runtime's appends
//! land only while their node leads at their epoch (else `AppendFailed`) and count as
//! replicated after a seeded delay; `Committed` reports reach the runtime in shuffled order,
//! with reports of older epochs mixed in; load reads are answered from the log, timers fire at
//! `poll_timeout()`, and `check_invariants()` runs after every input. A failover makes the
//! leader resign (every waiting request is answered NOT_COORDINATOR), loses the unreplicated
//! tail of the log, and after a seeded delay the next node becomes leader at a new epoch with
//! a seeded salt and loads the replicated prefix. An OffsetCommit whose write timed out may
//! still be applied: its consumer treats the outcome as unknown.

//! Consumers behave like Kafka's Java client with the eager protocol: FindCoordinator, JoinGroup
//! (the MEMBER_ID_REQUIRED round, `require_known_member_id`), SyncGroup (the leader runs the
//! assignor over the members' ConsumerProtocolSubscription and sends
//! ConsumerProtocolAssignment bytes), OffsetFetch of the assigned partitions, then heartbeats
//! every session/3, consuming up to the producer's high watermark, and commits with their
//! member id and generation. REBALANCE_IN_PROGRESS makes them commit and rejoin;
//! ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID make them drop the assignment and rejoin;
//! NOT_COORDINATOR or a request timeout closes the connection (answers on it are lost) and
//! sends them to find the coordinator again; a commit whose connection closed before its answer
//! has an unknown outcome, so they commit nothing more in that generation and rejoin. Each
//! consumer talks over FIFO connections (TCP) whose messages are delayed, sometimes by a long
//! spike, and dropped, all seeded; a message on a closed connection may still arrive.
//! Faults: crashes (a static member restarts with its instance id and takes its place),
//! pauses (some longer than the session timeout: the member comes back to UNKNOWN_MEMBER_ID
//! or ILLEGAL_GENERATION), clean leaves, coordinator failovers, and admin offset resets of an
//! empty group (a commit with generation -1, as `kafka-consumer-groups --reset-offsets`), and
//! duplicate processes: a second process started with a live static member's
//! group.instance.id while the first goes on running (heartbeating, syncing, committing and
//! rejoining as it did; it stops for good once fenced). Static members send their instance id
//! with Heartbeat, SyncGroup and OffsetCommit, as Kafka's clients do.
//! A quiet period without faults, loss or spikes ends every run, with every consumer up.
//!
//! ## Invariants checked
//!
//! - `one-owner-per-generation`: within one generation of a group no partition is handed to
//!   two owners by SyncGroup answers (an owner is a static instance id, or a member id); a
//!   group deleted once empty without offsets (its tombstone applied) counts generations afresh;
//! - `stale-generation-commit`: an OffsetCommit of generation g is never accepted after a
//!   SyncGroup answer of a later generation was sent (the stale owner's commit is refused);
//! - `committed-offset-monotonic`: a group's committed offset (as OffsetFetch from the shard
//!   answers) never moves backwards, nor vanishes, except by an admin reset;
//! - `committed-offset-above-hw`: a committed offset never exceeds the partition's high
//!   watermark;
//! - `static-fencing` ([`fencing`]): once a process took a static instance id over, no other
//!   process of that id is answered with success; a request naming an instance id held under
//!   another member id gets FENCED_INSTANCE_ID; no duplicate still runs at the end;
//! - `node-invariant`: `Runtime::check_invariants` after every input to a coordinator node,
//!   and every record replays (a panic is one too);
//! - `group-liveness`: after the quiet period every group is Stable with exactly the live
//!   consumers as members, all in the group's generation, and every partition has exactly one
//!   owner.
//!
//! One care the consumers take that Kafka's do not: a commit whose outcome is unknown may still
//! be applied late (a request from a closed connection), so they commit again only in a later
//! generation; otherwise a committed offset can move backwards in Kafka itself, and the
//! monotonic check would judge the protocol rather than the coordinator.
//!
//! ## Core bugs found
//!
//! The simulation found four bugs in skein-core's group coordinator, all fixed there (see
//! `ci/groups-regression-seeds`):
//! 1. member ids were counted afresh by a group reloaded after a failover (or created again),
//!    at a generation that had already issued them: two consumers sharing a client.id got one
//!    member id (both held its partitions), and a crashed process's late commit passed as the
//!    new holder's;
//! 2. a static member's restart (a new member id at the same generation) was never stored, and
//!    loading ignored a later record of the same generation, so a reload brought the fenced id
//!    back and its dead process's late commit moved the committed offset backwards;
//! 3. the coordinator runtime kept a shard's memory after a failed append, which held the
//!    write's generation as stored: never written again, it was lost at the next failover and
//!    the same generation number was handed to new members while old ones kept their
//!    partitions (the runtime now reloads the shard from the log after a failed append);
//! 4. after a failed wait for the high watermark the runtime never asked again: the write
//!    stayed unapplied, every later answer timed out behind it and rebalances never completed
//!    (it now asks again after `load_retry_ms`).
//!
//! Canaries ([`GroupsCanary`]) are planted in skein-core's `Group` (`skein_core::canary`):
//! `double-assign` (a join phase that ends at its timeout keeps the generation),
//! `stale-generation-commit` (`check_commit` ignores the generation) and `static-not-fenced`
//! (a static member's replacement keeps the old member id, so the old process is never
//! fenced). Without the canary, the coordinator as it was before issue 17 (the old process,
//! naming its instance id, told UNKNOWN_MEMBER_ID and so sent to take the id back) fails 72
//! of seeds 0..200 on `static-fencing`.
//!
//! Speed: about 120 seeds a second (7,000 a minute, 1.3 million steps a second) in release on
//! one core of the 2-core CI machine while another build ran; a seed simulates 15-40 s of faults
//! and a 45 s quiet period. Seeds 0..30000 passed before duplicate processes were added; with
//! them seeds 0..8000 pass in 54 s of CPU (1 min 46 s of wall time on the 2-core machine shared
//! with other builds); duplicates cost about 3% more CPU per seed (0..2000: 13.1 s against
//! 12.7 s).
//!
//! Usage: `skein-sim groups --seed N` or `--seeds A..B`, optionally `--canary NAME`
//! (`--list-canaries`), `--trace FILE`, `shrink --seed N` and `--replay FILE` (every fault is a
//! numbered decision of the harness). Regression seeds: `ci/groups-regression-seeds`. Layout:
//! [`sim`] the driver, `sim/check.rs` the per-step and end checkers, [`fencing`] the
//! static-fencing checker, [`assignor`] the client-side assignors, [`kip848`] the KIP-848
//! scenario (`skein-sim groups --protocol consumer`).
//!
//! Determinism: BTreeMap/Vec only, no clock, every draw from the seed's [`crate::rng::Rng`].

pub mod assignor;
pub mod fencing;
pub mod kip848;
pub mod scenario;
pub mod sim;
pub mod swarm;

pub use scenario::GroupsScenario;
pub use swarm::GroupsSwarm;

use crate::checker::{run_catching, Violation};
use crate::harness::Plan;
use skein_core::canary::Canary;

/// Planted bugs of the consumer-group simulation (each turns on a skein-core canary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupsCanary {
    /// A join phase that times out and drops members keeps the generation number.
    DoubleAssign,
    /// `Group::check_commit` ignores the generation.
    StaleGenerationCommit,
    /// A static member's replacement keeps the old member id: the old process is never fenced.
    StaticNotFenced,
}

impl GroupsCanary {
    /// Every canary.
    pub const ALL: [GroupsCanary; 3] = [
        GroupsCanary::DoubleAssign,
        GroupsCanary::StaleGenerationCommit,
        GroupsCanary::StaticNotFenced,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            GroupsCanary::DoubleAssign => "double-assign",
            GroupsCanary::StaleGenerationCommit => "stale-generation-commit",
            GroupsCanary::StaticNotFenced => "static-not-fenced",
        }
    }

    /// One line on what it breaks.
    pub fn describe(self) -> &'static str {
        match self {
            GroupsCanary::DoubleAssign => {
                "a rebalance that times out drops members without bumping the generation"
            }
            GroupsCanary::StaleGenerationCommit => "check_commit ignores the generation",
            GroupsCanary::StaticNotFenced => {
                "a static member's replacement keeps the old member id, so the old process is \
                 never fenced"
            }
        }
    }

    /// By name.
    pub fn parse(s: &str) -> Option<GroupsCanary> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The skein-core canary.
    pub fn core(self) -> Canary {
        match self {
            GroupsCanary::DoubleAssign => Canary::DoubleAssign,
            GroupsCanary::StaleGenerationCommit => Canary::StaleGenerationCommit,
            GroupsCanary::StaticNotFenced => Canary::StaticNotFenced,
        }
    }
}

crate::impl_canary_set!(GroupsCanary);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// A planted bug to turn on.
    pub canary: Option<GroupsCanary>,
}

/// Counters of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Offset commits accepted.
    pub commits: u64,
    /// Offset commits refused.
    pub commits_refused: u64,
    /// SyncGroup assignments received.
    pub syncs: u64,
    /// The largest generation a JoinGroup answer carried.
    pub max_generation: i32,
    /// Consumer crashes.
    pub crashes: u64,
    /// Consumer pauses.
    pub pauses: u64,
    /// Clean leaves.
    pub leaves: u64,
    /// Coordinator failovers.
    pub failovers: u64,
    /// Admin offset resets.
    pub resets: u64,
    /// Duplicate processes started under a live static member's instance id.
    pub duplicates: u64,
    /// Processes fenced (FENCED_INSTANCE_ID).
    pub fenced: u64,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was asked for.
    pub options: Options,
    /// The drawn shape.
    pub swarm: GroupsSwarm,
    /// Steps (events) taken.
    pub steps: u64,
    /// Simulated milliseconds.
    pub sim_ms: u64,
    /// Hash of every step.
    pub trace_hash: u64,
    /// The broken property, if any.
    pub violation: Option<Violation>,
    /// The last event lines.
    pub tail: Vec<String>,
    /// The coordinator's and consumers' state at the end.
    pub status: String,
    /// Counters.
    pub stats: Stats,
    /// Numbers of the faults and admin actions that went ahead.
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
            "seed={} {}{canary} steps={} sim_ms={} commits={} refused={} syncs={} max_gen={} \
             crashes={} pauses={} leaves={} failovers={} resets={} dups={} fenced={} \
             trace={:016x}",
            self.options.seed,
            self.swarm,
            self.steps,
            self.sim_ms,
            s.commits,
            s.commits_refused,
            s.syncs,
            s.max_generation,
            s.crashes,
            s.pauses,
            s.leaves,
            s.failovers,
            s.resets,
            s.duplicates,
            s.fenced,
            self.trace_hash
        )
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        Self::replay_for(self.options.seed, self.options.canary)
    }

    /// The replay command of a seed with these options.
    pub fn replay_for(seed: u64, canary: Option<GroupsCanary>) -> String {
        let mut cmd = format!("cargo run --release -p skein-sim -- groups --seed {seed}");
        if let Some(c) = canary {
            cmd += &format!(" --canary {}", c.name());
        }
        cmd
    }

    /// The failure report.
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
    let mut s = sim::GroupsSim::new(options.seed, options.canary, plan, trace_out);
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
