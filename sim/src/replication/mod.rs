//! `skein-sim replication`: partition replication under faults. One u64 seed decides one topic
//! of 1-3 partitions, replication factor 3 (sometimes 5) over 3-5 brokers, its
//! min.insync.replicas (mostly 2 for RF 3 and 3 for RF 5, sometimes 1), the fault rates
//! ([`swarm`]) and every event ([`sim`]).
//!
//! There is no Raft here: a single, never-failing controller holds skein-core's `Catalog` and
//! applies records as they arrive: brokers' heartbeats (a new incarnation registers, a fenced
//! one that is heard again is unfenced), fences of brokers silent for longer than the session
//! timeout, ISR changes proposed by leaders (`IsrChanged`, which the catalog itself may refuse
//! as stale or as adding a fenced broker; the proposer is then told, like Kafka's AlterPartition
//! error), occasional preferred-leader moves and controlled shutdowns (fence, then stop a
//! little later: meanwhile the broker no longer heartbeats but still fetches). Metadata
//! replies carry, per partition, the replicas the catalog calls fenced.
//! Brokers and clients learn the partition states only through heartbeat and metadata replies
//! that travel the faulty network, so they act on stale metadata for a while: zombie leaders.
//!
//! Each broker keeps, per partition, a `PartitionLog` plus the stored batch bytes, of which a
//! synced prefix survives a crash (and maybe a random prefix of the unsynced rest), and runs
//! skein-core's replica state machine (`skein_core::replica::Replica`, the one the broker
//! shell drives): the driver ([`sim`]'s `replica` module) hands it metadata, produce requests,
//! follower and consumer fetches, fetch responses, fsync completions and ticks, and carries
//! out what it asks (appends, truncations, fsyncs after a random disk delay, answers, ISR
//! proposals). Nothing about roles, fetch gates, follower truncation, acks or the high
//! watermark is decided in this driver. A follower's fetch that finds nothing new is held by
//! the leader (the long poll, as the broker's fetch handler does) until the leader appends,
//! when it is served again (recording the follower's progress again), or until `sim`'s
//! `FETCH_WAIT_MS` passes; a follower fetches again as soon as it is answered (after fsyncing
//! what it copied). The replicas run the fsync-before-ack flush policy:
//! followers fsync what they appended before they fetch again, and the leader's fsynced end
//! (not its written end) counts towards the high watermark, while followers may already copy
//! its unsynced tail. Producers send acks=-1 (some acks=1) batches; an acks=-1 batch is
//! acknowledged once the high watermark passes it while the same leadership lasts. Consumers
//! read what the leader's replica lets them (below its high watermark).
//!
//! ## The checker rule
//!
//! Every replica counts towards the high watermark only what it has fsynced (followers fsync
//! before the fetch that reports their progress, the leader counts its synced end), and a crash
//! only loses unsynced writes. So a committed record is always on the disks of at least
//! min(min.insync.replicas, replicas) members of the maximal ISR, whatever the number of
//! concurrent crashes, pauses or partitions: the Kafka caveat "only while fewer than
//! min.insync.replicas replicas fail" is about losing unflushed page cache, which cannot happen
//! here. Seeds draw how many brokers may be down, paused or cut off at once — usually at most
//! RF - min.insync, sometimes more — and more failures only cost availability. Hence:
//! - durability (no acknowledged acks=-1 record lost, reordered or changed), consumer stability
//!   (a record read below the high watermark never changes or disappears) and leader
//!   completeness (a leader of epoch e holds every offset below the largest high watermark any
//!   leader of an epoch below e exposed) are checked in every run whose catalog made no unclean
//!   election (`unclean.leader.election.enable`, drawn true in some seeds); once one happened
//!   they are not checked (losing committed records is what an unclean election may do);
//! - dense offsets, at most one leader per leader epoch, the high watermark never falling within
//!   one leadership, agreement of every two replicas below both their high watermarks, the
//!   catalog's invariants (ISR and ELR inside the replicas and disjoint, leader in the ISR) are
//!   checked always, after every step (the pairwise agreement every few hundred steps);
//! - ISR settling (liveness during the run): a leader the catalog names at its epoch, up,
//!   unpaused, connected and not slow, never keeps a maximal ISR larger than its committed ISR
//!   for longer than [`sim`]'s `SETTLE_MS`: an addition refused or lost must not keep holding
//!   back the high watermark (a fenced broker that still reaches the leader, cut off from the
//!   controller only or in controlled shutdown, is what makes additions be refused);
//! - acknowledgement latency (liveness during the run, `sim`'s `ack_latency`): while a
//!   partition's leader and every member of its committed ISR are healthy (as above, and the
//!   catalog holds that ISR, no change is pending, it meets min.insync.replicas, every follower
//!   replicates from the leader within one fetch of its end, and no message between them was
//!   lost, duplicated or slowed lately), an acks=-1 write the leader appended is answered within
//!   three replication rounds at the seed's largest delays (a round: two one-way delays and an
//!   fsync; healthy runs take at most two). The long-poll wait is not in the bound: the leader's
//!   fsync, not a later fetch, must release a write its followers already reported;
//! - liveness at the end: after every fault heals (all brokers up, network whole) and a quiet
//!   period, every partition has a leader, a full ISR, and every replica holds exactly the
//!   leader's log with the high watermark at its end.
//!
//! Canaries ([`ReplCanary`]): `elect-outside-isr` is planted in this driver's controller;
//! `ack-before-isr`, `skip-truncation`, `hw-from-leader-only`, `keep-refused-isr` and
//! `follower-end-clamped-to-fsynced` turn on the core replica's canaries of the same names
//! (`skein_core::canary::Canary`). The last brings back a bug the simulation missed and a
//! benchmark found (fixed in 6e12435): the leader clamped a follower's reported end to its own
//! fsynced end, so a report that beat the leader's fsync was forgotten and the acks=-1 write
//! waited for the follower's next fetch. The acknowledgement-latency check catches it; it
//! could not before followers long-polled (they fetched again every 20 ms, so a forgotten
//! report cost one more poll and the canary's latencies overlapped the healthy ones).
//!
//! ## Core bugs found
//!
//! The simulation found five bugs in skein-core, all fixed there (2f7de28, 3e52931); see
//! `ci/replication-regression-seeds` (a sixth, a refused ISR addition holding back the high
//! watermark for good, was found in review; the ISR-settling check catches it, canary
//! `keep-refused-isr`):
//! 1. a new incarnation kept the old one's leaderships at the same leader epoch, so a leader
//!    that lost its unsynced tail in a crash led again at that epoch and forked the log;
//! 2. min.insync.replicas was checked against the maximal ISR, so a pending expansion that
//!    never committed let the high watermark pass what the ISR and ELR held;
//! 3. a former leader's empty epoch entry made `append_replicated` mislabel copied batches;
//! 4. with no common epoch (after an unclean election) a follower fell back to its high
//!    watermark and never truncated;
//! 5. an ISR expansion retried after `isr_retry_ms` stopped counting towards the high
//!    watermark while the controller could still commit it.
//!
//! Usage: `skein-sim replication --seed N` or `--seeds A..B`, optionally `--canary NAME`
//! (`--list-canaries`), `--trace FILE`, `shrink` and `--replay FILE` (every fault is a
//! numbered decision). Regression seeds: `ci/replication-regression-seeds`.
//!
//! Determinism: BTreeMap/Vec only, no clock, every draw from the seed's [`crate::rng::Rng`].

pub mod scenario;
pub mod sim;
pub mod swarm;

pub use scenario::ReplScenario;
pub use swarm::ReplSwarm;

use crate::checker::{run_catching, Violation};
use crate::harness::Plan;

/// Planted bugs of the replication driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplCanary {
    /// The leader acknowledges acks=-1 writes right after its own append (core canary).
    AckBeforeIsr,
    /// On leader loss the controller publishes any live replica as leader, ignoring the ISR.
    ElectOutsideIsr,
    /// Followers ignore divergence and keep appending (core canary).
    SkipTruncation,
    /// The leader exposes its own log end as the high watermark (core canary).
    HwFromLeaderOnly,
    /// The leader proposes fenced replicas and never settles a refused addition (core canary).
    KeepRefusedIsr,
    /// The leader clamps a follower's reported end to its own fsynced end, so its fsync cannot
    /// release an acks=-1 write the follower already holds (core canary).
    FollowerEndClampedToFsynced,
}

impl ReplCanary {
    /// Every canary.
    pub const ALL: [ReplCanary; 6] = [
        ReplCanary::AckBeforeIsr,
        ReplCanary::ElectOutsideIsr,
        ReplCanary::SkipTruncation,
        ReplCanary::HwFromLeaderOnly,
        ReplCanary::KeepRefusedIsr,
        ReplCanary::FollowerEndClampedToFsynced,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ReplCanary::AckBeforeIsr => "ack-before-isr",
            ReplCanary::ElectOutsideIsr => "elect-outside-isr",
            ReplCanary::SkipTruncation => "skip-truncation",
            ReplCanary::HwFromLeaderOnly => "hw-from-leader-only",
            ReplCanary::KeepRefusedIsr => "keep-refused-isr",
            ReplCanary::FollowerEndClampedToFsynced => "follower-end-clamped-to-fsynced",
        }
    }

    /// One line on what it breaks.
    pub fn describe(self) -> &'static str {
        match self {
            ReplCanary::AckBeforeIsr => "leader acks acks=-1 after its own append, not at the HW",
            ReplCanary::ElectOutsideIsr => "controller elects any live replica on leader loss",
            ReplCanary::SkipTruncation => "followers ignore divergence and keep appending",
            ReplCanary::HwFromLeaderOnly => "leader exposes its own log end as the HW",
            ReplCanary::KeepRefusedIsr => {
                "leader proposes fenced replicas and never settles a refused ISR addition"
            }
            ReplCanary::FollowerEndClampedToFsynced => {
                "leader forgets a follower's report past its fsynced end; acks wait for a fetch"
            }
        }
    }

    /// By name.
    pub fn parse(s: &str) -> Option<ReplCanary> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

crate::impl_canary_set!(ReplCanary);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// A planted bug to turn on.
    pub canary: Option<ReplCanary>,
}

/// Counters of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// acks=-1 writes acknowledged.
    pub acked: u64,
    /// Produce requests refused or failed.
    pub refused: u64,
    /// Records read by consumers.
    pub read: u64,
    /// Leaderships taken.
    pub leaderships: u64,
    /// Follower truncations.
    pub truncations: u64,
    /// Crashes.
    pub crashes: u64,
    /// Pauses.
    pub pauses: u64,
    /// Fences applied.
    pub fences: u64,
    /// ISR changes committed.
    pub isr_changes: u64,
    /// Unclean elections.
    pub unclean: u64,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was asked for.
    pub options: Options,
    /// The drawn shape.
    pub swarm: ReplSwarm,
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
    /// Every broker's state at the end.
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
            "seed={} {}{canary} steps={} sim_ms={} acked={} refused={} read={} leaderships={} \
             truncations={} crashes={} pauses={} fences={} isr_changes={} unclean={} trace={:016x}",
            self.options.seed,
            self.swarm,
            self.steps,
            self.sim_ms,
            s.acked,
            s.refused,
            s.read,
            s.leaderships,
            s.truncations,
            s.crashes,
            s.pauses,
            s.fences,
            s.isr_changes,
            s.unclean,
            self.trace_hash
        )
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        Self::replay_for(self.options.seed, self.options.canary)
    }

    /// The replay command of a seed with these options.
    pub fn replay_for(seed: u64, canary: Option<ReplCanary>) -> String {
        let mut cmd = format!("cargo run --release -p skein-sim -- replication --seed {seed}");
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

/// Runs one seed narrowed by `plan`, writing every event line to `trace_out`.
pub fn run_with(
    options: Options,
    plan: &Plan,
    trace_out: Option<Box<dyn std::io::Write>>,
) -> Outcome {
    let mut s = sim::ReplSim::with_plan(options.seed, options.canary, plan, trace_out);
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
