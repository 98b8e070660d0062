//! The per-seed shape and fault rates of a KIP-848 consumer-group run (swarm testing).
//!
//! Invariant: [`Kip848Swarm::draw`] consumes only its own generator; its `Display` form is
//! printed beside `seed=`.

use std::fmt;

use crate::rng::Rng;

/// One run's shape and fault rates; `_pm` rates are per mille (per message or per fault tick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kip848Swarm {
    /// Partitions of topics `t0` and `t1` (1-6 each).
    pub partitions: [i32; 2],
    /// Members (processes) of the one group (1-6).
    pub members: usize,
    /// Per member (per mille): static (group.instance.id).
    pub static_pm: u64,
    /// group.consumer.session.timeout.ms (a tenth of the real scale).
    pub session_ms: u64,
    /// group.consumer.heartbeat.interval.ms.
    pub heartbeat_ms: u64,
    /// The members' rebalance timeout (how long a revocation may take).
    pub rebalance_ms: u64,
    /// Per message: lost.
    pub drop_pm: u64,
    /// One-way latency bound (ms; uniform from 1).
    pub delay_max_ms: u64,
    /// Per message: a latency spike (the connection stalls).
    pub spike_pm: u64,
    /// Bound of a latency spike.
    pub spike_ms: u64,
    /// Gap bound between fault ticks.
    pub fault_gap_ms: u64,
    /// Per fault tick: a member's process crashes (no leave; restarts later).
    pub crash_pm: u64,
    /// Per fault tick: a member leaves cleanly (-1; a static one -2) and restarts later.
    pub leave_pm: u64,
    /// Per fault tick: a member's process pauses (some pauses outlast the session).
    pub pause_pm: u64,
    /// Per fault tick: a member changes its subscription.
    pub resubscribe_pm: u64,
    /// Longest pause.
    pub pause_max_ms: u64,
    /// Longest time a crashed or departed member stays away.
    pub away_max_ms: u64,
    /// Length of the faulty phase.
    pub safety_ms: u64,
}

impl Kip848Swarm {
    /// Draws a shape from `rng`.
    pub fn draw(rng: &mut Rng) -> Self {
        let session_ms = rng.range(600, 2_000);
        Kip848Swarm {
            partitions: [rng.range(1, 6) as i32, rng.range(1, 6) as i32],
            members: rng.range(1, 6) as usize,
            static_pm: [0, 300, 1000][rng.below(3) as usize],
            session_ms,
            heartbeat_ms: session_ms / rng.range(3, 6),
            rebalance_ms: session_ms * rng.range(1, 3),
            drop_pm: [0, 10, 50, 150][rng.below(4) as usize],
            delay_max_ms: rng.range(1, 60),
            spike_pm: [0, 5, 30][rng.below(3) as usize],
            spike_ms: rng.range(100, 2 * session_ms),
            fault_gap_ms: rng.range(100, 1_500),
            crash_pm: rng.range(0, 250),
            leave_pm: rng.range(0, 250),
            pause_pm: rng.range(0, 250),
            resubscribe_pm: rng.range(0, 250),
            pause_max_ms: rng.range(200, 3 * session_ms),
            away_max_ms: rng.range(100, 3 * session_ms),
            safety_ms: rng.range(4_000, 15_000),
        }
    }
}

impl fmt::Display for Kip848Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parts={}+{} members={} static={} session={} hb={} drop={} delay={} spike={}/{} \
             crash={} leave={} pause={} resub={} safety={}",
            self.partitions[0],
            self.partitions[1],
            self.members,
            self.static_pm,
            self.session_ms,
            self.heartbeat_ms,
            self.drop_pm,
            self.delay_max_ms,
            self.spike_pm,
            self.spike_ms,
            self.crash_pm,
            self.leave_pm,
            self.pause_pm,
            self.resubscribe_pm,
            self.safety_ms
        )
    }
}
