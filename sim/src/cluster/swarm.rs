//! The per-seed shape and fault rates of a cluster run (swarm testing): how many voters and
//! non-voting brokers, how hostile the network and the disks are, how often processes crash
//! or pause, how often the workload proposes, how often nodes snapshot.
//!
//! Invariant: [`ClusterSwarm::draw`] consumes only its own generator and always draws the voter
//! count, so `--voters` (which overrides it afterwards) leaves every other draw of a seed as it
//! was; its `Display` form is printed beside `seed=`.

use std::fmt;

use crate::rng::Rng;

/// One run's shape and fault rates. Rates named `_pm` are per mille per action tick (the
/// safety phase draws an action every few milliseconds) unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSwarm {
    /// Voters of the metadata quorum (3 or 5); each is also a broker (combined mode).
    pub voters: u64,
    /// Brokers outside the quorum (0-2): they only heartbeat and register.
    pub observers: u64,
    /// Upper bound of the election timeout (the lower is
    /// [`super::sim::ELECTION_MIN_MS`]); a narrow range makes split votes common.
    pub election_max_ms: u64,
    /// Per message: chance the network loses it.
    pub drop_pm: u64,
    /// Per message: chance it is delivered twice.
    pub dup_pm: u64,
    /// One-way latency bound (uniform from 1 ms: different delays reorder).
    pub delay_max_ms: u64,
    /// fsync latency bound.
    pub disk_delay_max_ms: u64,
    /// Gap bound between two actions of the safety phase.
    pub action_gap_max_ms: u64,
    /// Per action: chance a voter process crashes (half of them hit the leader).
    pub crash_pm: u64,
    /// Per fsync request: chance the process crashes right there (five times as likely after a
    /// term or vote change, or on a leader).
    pub crash_on_sync_pm: u64,
    /// Per crash: chance each file of the Raft store keeps a random prefix of its unsynced
    /// writes (the page cache writes files back independently) instead of none.
    pub partial_loss_pm: u64,
    /// Longest a crashed voter stays down.
    pub downtime_max_ms: u64,
    /// Per action: chance of a new network partition (or a heal).
    pub partition_pm: u64,
    /// Longest a partition lasts before it heals by itself.
    pub partition_max_ms: u64,
    /// Per action: chance a process pauses (SIGSTOP), or a non-voting broker dies and later
    /// restarts as a new incarnation.
    pub pause_pm: u64,
    /// Longest such a pause or death lasts (often beyond the session timeout, so the broker
    /// gets fenced).
    pub pause_max_ms: u64,
    /// Per action: chance of an admin proposal.
    pub admin_pm: u64,
    /// A node snapshots its catalog after applying this many entries past its last snapshot.
    pub snapshot_every: u64,
    /// Raft: entries per AppendEntries.
    pub entries_per_message_max: u64,
    /// Raft: entries in flight per follower.
    pub inflight_entries_max: u64,
    /// Length of the safety (faulty) phase.
    pub safety_ms: u64,
    // Drawn by `draw_more` from its own stream, after the rest, so the draws above stay what
    // they were before it existed.
    /// Per partial loss and file: chance the first lost write is torn at a sector (and then,
    /// half the time, its lost sectors read back as zeros).
    pub torn_write_pm: u64,
    /// Per crash action: chance the victim's disk dies within its next few mutations instead
    /// (in the middle of a storage operation, e.g. a snapshot's install), crashing the process.
    pub mid_op_crash_pm: u64,
}

impl ClusterSwarm {
    /// Draws a shape from the seed's swarm generator.
    pub fn draw(r: &mut Rng) -> ClusterSwarm {
        let voters = r.pick(&[3u64, 5]);
        let observers = r.below(3);
        ClusterSwarm {
            voters,
            observers,
            election_max_ms: r.pick(&[130u64, 200]),
            drop_pm: r.below(150),
            dup_pm: r.below(100),
            delay_max_ms: r.pick(&[5u64, 15, 30, 60]),
            disk_delay_max_ms: r.below(15),
            action_gap_max_ms: r.range(5, 45),
            crash_pm: r.pick(&[0u64, 5, 20, 60, 120]),
            crash_on_sync_pm: r.pick(&[0u64, 2, 10, 40]),
            partial_loss_pm: r.pick(&[0u64, 500, 1000]),
            downtime_max_ms: r.pick(&[10u64, 100, 400, 1500]),
            // Some seeds churn partitions so fast that leaders rarely last (as the raft harness).
            partition_pm: r.pick(&[0u64, 10, 30, 100, 400]),
            partition_max_ms: r.pick(&[50u64, 300, 1000]),
            pause_pm: r.pick(&[0u64, 10, 30]),
            pause_max_ms: r.pick(&[300u64, 1000, 2500]),
            admin_pm: r.pick(&[100u64, 300, 600]),
            snapshot_every: r.pick(&[4u64, 16, 64, 1024]),
            entries_per_message_max: r.pick(&[1u64, 2, 3, 8, 64]),
            inflight_entries_max: r.pick(&[4u64, 16, 64]),
            safety_ms: r.pick(&[2000u64, 4000, 6000]),
            torn_write_pm: 0,
            mid_op_crash_pm: 0,
        }
    }

    /// Draws the rates added after the first swarm from their own stream.
    pub fn draw_more(&mut self, r: &mut Rng) {
        self.torn_write_pm = r.pick(&[0u64, 0, 500, 1000]);
        self.mid_op_crash_pm = r.pick(&[0u64, 0, 300, 700]);
    }
}

impl fmt::Display for ClusterSwarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "voters={} observers={} elect=100..{}ms drop={}‰ dup={}‰ lat={}ms fsync={}ms gap={}ms \
             crash={}‰ crash-at-sync={}‰ partial-loss={}‰/torn={}‰ mid-op={}‰ down={}ms part={}‰/{}ms \
             pause={}‰/{}ms admin={}‰ snap-every={} epm={} inflight={} safety={}ms",
            self.voters,
            self.observers,
            self.election_max_ms,
            self.drop_pm,
            self.dup_pm,
            self.delay_max_ms,
            self.disk_delay_max_ms,
            self.action_gap_max_ms,
            self.crash_pm,
            self.crash_on_sync_pm,
            self.partial_loss_pm,
            self.torn_write_pm,
            self.mid_op_crash_pm,
            self.downtime_max_ms,
            self.partition_pm,
            self.partition_max_ms,
            self.pause_pm,
            self.pause_max_ms,
            self.admin_pm,
            self.snapshot_every,
            self.entries_per_message_max,
            self.inflight_entries_max,
            self.safety_ms,
        )
    }
}
