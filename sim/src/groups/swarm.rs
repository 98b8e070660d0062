//! The per-seed shape and fault rates of a consumer-group run (swarm testing).
//!
//! Invariant: [`GroupsSwarm::draw`] consumes only its own generator; its `Display` form is
//! printed beside `seed=`.

use std::fmt;

use crate::rng::Rng;

/// The client-side assignor every member of a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's RangeAssignor.
    Range,
    /// Kafka's RoundRobinAssignor.
    RoundRobin,
}

impl Assignor {
    /// The protocol name members announce in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }
}

/// One run's shape and fault rates; `_pm` rates are per mille (per message or per fault tick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsSwarm {
    /// Partitions of the one topic (1-8).
    pub partitions: usize,
    /// Consumer groups (1-2).
    pub groups: usize,
    /// Members of each group (1-6).
    pub members: Vec<usize>,
    /// The assignor.
    pub assignor: Assignor,
    /// Per member (per mille): static (group.instance.id).
    pub static_pm: u64,
    /// session.timeout.ms of every member.
    pub session_ms: u64,
    /// Rebalance timeout (max.poll.interval.ms) of every member: 3/4, 1 or 2 session timeouts.
    pub rebalance_ms: u64,
    /// group.initial.rebalance.delay.ms.
    pub initial_delay_ms: u64,
    /// Per message: lost.
    pub drop_pm: u64,
    /// One-way latency bound (ms; uniform from 1).
    pub delay_max_ms: u64,
    /// Per message: a latency spike (the connection stalls).
    pub spike_pm: u64,
    /// Bound of a latency spike.
    pub spike_ms: u64,
    /// Replication latency bound of the offsets partition.
    pub replicate_max_ms: u64,
    /// A member consumes and commits every commit_gap / 2 to commit_gap ms.
    pub commit_gap_ms: u64,
    /// Gap bound between producer appends.
    pub produce_gap_ms: u64,
    /// Gap bound between fault ticks.
    pub fault_gap_ms: u64,
    /// Per fault tick: crash a member.
    pub crash_pm: u64,
    /// Per fault tick: pause a member.
    pub pause_pm: u64,
    /// Per fault tick: a member leaves cleanly (and later comes back).
    pub leave_pm: u64,
    /// Per fault tick: the coordinator fails over.
    pub failover_pm: u64,
    /// Per fault tick: an admin resets a group's offsets (only done while it is empty).
    pub reset_pm: u64,
    /// Longest pause (some pauses outlast the session timeout).
    pub pause_max_ms: u64,
    /// Longest time a crashed or departed member stays away.
    pub away_max_ms: u64,
    /// Longest coordinator load after a failover.
    pub load_max_ms: u64,
    /// Length of the faulty phase.
    pub safety_ms: u64,
    /// Per fault tick: a second process starts with a live static member's instance id while
    /// the first goes on running (drawn last, so the other fields of a seed are unchanged).
    pub dup_pm: u64,
}

impl GroupsSwarm {
    /// Draws a shape.
    pub fn draw(r: &mut Rng) -> GroupsSwarm {
        let partitions = r.range(1, 8) as usize;
        let groups = r.range(1, 2) as usize;
        let members = (0..groups).map(|_| r.range(1, 6) as usize).collect();
        let assignor = if r.chance(500_000) {
            Assignor::Range
        } else {
            Assignor::RoundRobin
        };
        let session_ms = r.pick(&[1_500u64, 3_000, 6_000]);
        GroupsSwarm {
            partitions,
            groups,
            members,
            assignor,
            static_pm: r.pick(&[0u64, 300, 1000]),
            session_ms,
            // Above two heartbeat intervals (session / 3), or members learn of a rebalance too
            // late to rejoin in time and the group thrashes (a misconfiguration Kafka's
            // defaults rule out); below the session timeout sometimes, so that a rebalance can
            // end at its timeout and drop a silent member before its session expires.
            rebalance_ms: r.pick(&[session_ms * 3 / 4, session_ms, session_ms * 2]),
            initial_delay_ms: r.pick(&[0u64, 300, 3_000]),
            drop_pm: r.pick(&[0u64, 5, 20, 60]),
            delay_max_ms: r.pick(&[2u64, 10, 40]),
            spike_pm: r.pick(&[0u64, 5, 20]),
            spike_ms: r.pick(&[500u64, 3_000, 8_000]),
            replicate_max_ms: r.pick(&[1u64, 10, 60]),
            commit_gap_ms: r.pick(&[200u64, 500, 2_000]),
            produce_gap_ms: r.pick(&[5u64, 30, 200]),
            fault_gap_ms: r.pick(&[300u64, 1_000, 3_000]),
            crash_pm: r.below(250),
            pause_pm: r.below(250),
            leave_pm: r.below(200),
            failover_pm: r.below(150),
            reset_pm: r.below(300),
            pause_max_ms: r.pick(&[session_ms / 2, session_ms * 2, 12_000]),
            away_max_ms: r.pick(&[500u64, 3_000, 10_000]),
            load_max_ms: r.pick(&[50u64, 500, 3_000]),
            safety_ms: r.range(15_000, 40_000),
            dup_pm: r.pick(&[0u64, 40, 150]),
        }
    }
}

impl fmt::Display for GroupsSwarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parts={} members={:?} {} static={} session={} rebalance={} drop={} delay={} \
             spike={}/{} crash={} pause={} leave={} failover={} reset={} dup={}",
            self.partitions,
            self.members,
            self.assignor.name(),
            self.static_pm,
            self.session_ms,
            self.rebalance_ms,
            self.drop_pm,
            self.delay_max_ms,
            self.spike_pm,
            self.spike_ms,
            self.crash_pm,
            self.pause_pm,
            self.leave_pm,
            self.failover_pm,
            self.reset_pm,
            self.dup_pm
        )
    }
}
