//! The per-seed shape and fault rates of a replication run (swarm testing).
//!
//! Invariant: [`ReplSwarm::draw`] consumes only its own generator; its `Display` form is printed
//! beside `seed=`.

use std::fmt;

use crate::rng::Rng;

/// One run's shape and fault rates; `_pm` rates are per mille per fault tick unless said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplSwarm {
    /// Brokers (3-5).
    pub brokers: usize,
    /// Replication factor (3, or 5 with 5 brokers).
    pub rf: usize,
    /// Partitions of the topic (1-3).
    pub partitions: usize,
    /// min.insync.replicas.
    pub min_isr: usize,
    /// unclean.leader.election.enable.
    pub unclean: bool,
    /// Most brokers down, paused or cut off at once.
    pub max_failures: usize,
    /// Per message (per mille): lost.
    pub drop_pm: u64,
    /// Per message (per mille): delivered twice.
    pub dup_pm: u64,
    /// One-way latency bound (ms; uniform from 1, so messages reorder).
    pub delay_max_ms: u64,
    /// Extra latency bound of a slow broker's links.
    pub slow_ms: u64,
    /// fsync latency bound.
    pub disk_max_ms: u64,
    /// Gap bound between fault ticks.
    pub fault_gap_ms: u64,
    /// Per fault tick: crash a broker.
    pub crash_pm: u64,
    /// Per crash: a random prefix of the unsynced writes survives.
    pub partial_pm: u64,
    /// Per fault tick: pause a broker.
    pub pause_pm: u64,
    /// Per fault tick: isolate a broker (from everyone, or from the controller only).
    pub partition_pm: u64,
    /// Per fault tick: controlled shutdown.
    pub shutdown_pm: u64,
    /// Per fault tick: make a broker slow (or fast again).
    pub slow_pm: u64,
    /// Per fault tick: preferred-leader election.
    pub move_pm: u64,
    /// Longest down/pause/isolation.
    pub outage_max_ms: u64,
    /// Broker session timeout at the controller.
    pub session_ms: u64,
    /// replica.lag.time.max.ms.
    pub lag_ms: u64,
    /// Gap bound between produce requests.
    pub produce_gap_ms: u64,
    /// Per produce (per mille): acks=1.
    pub acks1_pm: u64,
    /// Length of the faulty phase.
    pub safety_ms: u64,
    /// Longest a broker in controlled shutdown keeps replicating (fenced) before it stops.
    pub shutdown_linger_max_ms: u64,
}

impl ReplSwarm {
    /// Draws a shape.
    pub fn draw(r: &mut Rng) -> ReplSwarm {
        let brokers = r.range(3, 5) as usize;
        let rf = if brokers == 5 && r.chance(500_000) {
            5
        } else {
            3
        };
        let partitions = r.range(1, 3) as usize;
        let min_isr = if r.chance(150_000) {
            1
        } else if rf == 5 {
            3
        } else {
            2
        };
        let unclean = r.chance(100_000);
        let tolerated = rf - min_isr;
        let max_failures = if r.chance(750_000) {
            tolerated.max(1)
        } else {
            r.range(tolerated as u64 + 1, brokers as u64) as usize
        };
        ReplSwarm {
            brokers,
            rf,
            partitions,
            min_isr,
            unclean,
            max_failures,
            drop_pm: r.pick(&[0u64, 5, 20, 80]),
            dup_pm: r.pick(&[0u64, 5, 30]),
            delay_max_ms: r.pick(&[2u64, 10, 40]),
            slow_ms: r.pick(&[50u64, 300, 1500]),
            disk_max_ms: r.pick(&[1u64, 5, 30]),
            fault_gap_ms: r.pick(&[100u64, 400, 1500]),
            crash_pm: r.below(250),
            partial_pm: r.below(1000),
            pause_pm: r.below(250),
            partition_pm: r.below(250),
            shutdown_pm: r.below(100),
            slow_pm: r.below(150),
            move_pm: r.below(150),
            outage_max_ms: r.pick(&[500u64, 2000, 6000]),
            session_ms: r.pick(&[600u64, 1500, 3000]),
            lag_ms: r.pick(&[300u64, 1000, 3000]),
            produce_gap_ms: r.pick(&[5u64, 20, 80]),
            acks1_pm: r.pick(&[0u64, 100, 400]),
            safety_ms: r.range(10_000, 30_000),
            shutdown_linger_max_ms: r.pick(&[1u64, 300, 1500]),
        }
    }
}

impl fmt::Display for ReplSwarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "brokers={} rf={} parts={} min_isr={}{} max_fail={} drop={} dup={} delay={} \
             crash={} pause={} part={} shut={}",
            self.brokers,
            self.rf,
            self.partitions,
            self.min_isr,
            if self.unclean { " unclean" } else { "" },
            self.max_failures,
            self.drop_pm,
            self.dup_pm,
            self.delay_max_ms,
            self.crash_pm,
            self.pause_pm,
            self.partition_pm,
            self.shutdown_pm
        )
    }
}
