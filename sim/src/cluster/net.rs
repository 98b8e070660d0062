//! The network between the cluster's nodes: datagrams (Raft's transport is best effort, and so
//! are the broker heartbeats), each delayed independently (so reordered), lost or duplicated at
//! the swarm's rates, and blackholed by partitions: symmetric ones that cut a set of nodes off
//! from the rest, and one-way ones that block a single direction between two nodes.
//!
//! Invariant: a partition is judged when a message is delivered, so one in flight when a link
//! goes down is lost; every partition heals (the harness schedules it, and the liveness phases
//! start from a healed network). Messages a node sends itself never touch the network.

use std::collections::BTreeSet;

use skein_core::raft::NodeId;

use crate::rng::Rng;

/// Link state and fault rates.
#[derive(Debug, Clone, Default)]
pub struct ClusterNet {
    /// Blocked directions `(from, to)`.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Loss, duplication and the full latency bound apply (the safety phase).
    pub faults: bool,
    /// Per message: chance of loss, per mille.
    pub drop_pm: u64,
    /// Per message: chance of a second copy, per mille.
    pub dup_pm: u64,
    /// Latency bound while faults are on.
    pub delay_max_ms: u64,
    /// Latency bound while they are off (Raft's timing requirement: broadcast time well below
    /// the election timeout).
    pub calm_delay_max_ms: u64,
}

impl ClusterNet {
    /// A healed network with these rates; faults start off.
    pub fn new(drop_pm: u64, dup_pm: u64, delay_max_ms: u64, calm_delay_max_ms: u64) -> Self {
        ClusterNet {
            blocked: BTreeSet::new(),
            faults: false,
            drop_pm,
            dup_pm,
            delay_max_ms,
            calm_delay_max_ms,
        }
    }

    /// Delays of the copies of one message from `from` to `to` sent now: none if it is lost.
    pub fn delays(&self, rng: &mut Rng, from: NodeId, to: NodeId) -> Vec<u64> {
        if from == to {
            return vec![0];
        }
        if self.faults && rng.below(1000) < self.drop_pm {
            return Vec::new();
        }
        let copies = if self.faults && rng.below(1000) < self.dup_pm {
            2
        } else {
            1
        };
        let max = if self.faults {
            self.delay_max_ms
        } else {
            self.calm_delay_max_ms.min(self.delay_max_ms)
        };
        (0..copies).map(|_| rng.range(1, max.max(1))).collect()
    }

    /// Whether a message from `from` reaches `to` now.
    pub fn allows(&self, from: NodeId, to: NodeId) -> bool {
        from == to || !self.blocked.contains(&(from, to))
    }

    /// Cuts `side` off from every other node of `all`, both ways.
    pub fn isolate(&mut self, side: &[NodeId], all: &[NodeId]) {
        for &a in side {
            for &b in all {
                if !side.contains(&b) {
                    self.blocked.insert((a, b));
                    self.blocked.insert((b, a));
                }
            }
        }
    }

    /// Blocks one direction.
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.blocked.insert((from, to));
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Whether any link is down.
    pub fn partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// The blocked directions, for status lines.
    pub fn blocked(&self) -> &BTreeSet<(NodeId, NodeId)> {
        &self.blocked
    }
}
