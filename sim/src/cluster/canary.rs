//! The canaries the cluster simulation must catch: planted bugs in skein-core's Raft and
//! controller (its `canary` feature), handed to every node the harness builds. Never on unless
//! `skein-sim cluster --canary NAME` asks.

use skein_core::canary::Canary;

/// A planted bug in the metadata quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClusterCanary {
    /// A vote grant leaves before its fsync and the vote is never written.
    VoteTwice,
    /// A leader commits by counting replicas of an entry of an earlier term.
    CommitOldTerm,
    /// A leader never steps down for lack of a majority.
    NoCheckQuorum,
    /// The controller never fences a silent broker.
    NoFencing,
    /// Voters answer non-voting brokers with uncommitted entries.
    ObserveUncommitted,
}

impl ClusterCanary {
    /// Every canary, in listing order.
    pub const ALL: [ClusterCanary; 5] = [
        ClusterCanary::VoteTwice,
        ClusterCanary::CommitOldTerm,
        ClusterCanary::NoCheckQuorum,
        ClusterCanary::NoFencing,
        ClusterCanary::ObserveUncommitted,
    ];

    /// The `--canary` name.
    pub fn name(self) -> &'static str {
        match self {
            ClusterCanary::VoteTwice => "vote-twice",
            ClusterCanary::CommitOldTerm => "commit-old-term",
            ClusterCanary::NoCheckQuorum => "no-check-quorum",
            ClusterCanary::NoFencing => "no-fencing",
            ClusterCanary::ObserveUncommitted => "observe-uncommitted",
        }
    }

    /// What the bug does, for `--list-canaries`.
    pub fn describe(self) -> &'static str {
        match self {
            ClusterCanary::VoteTwice => {
                "core Raft grants a vote before it is fsynced and never writes it (a restart forgets it)"
            }
            ClusterCanary::CommitOldTerm => {
                "core Raft commits by counting replicas of an earlier term's entry (Raft paper, Figure 8)"
            }
            ClusterCanary::NoCheckQuorum => {
                "core Raft leader never steps down when it cannot hear a majority"
            }
            ClusterCanary::NoFencing => {
                "core Controller never fences a broker that stopped heartbeating"
            }
            ClusterCanary::ObserveUncommitted => {
                "core Raft answers a non-voting broker's Observe with entries past the commit index"
            }
        }
    }

    /// Parses a `--canary` name.
    pub fn parse(name: &str) -> Option<ClusterCanary> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The skein-core hook it turns on.
    pub fn core(self) -> Canary {
        match self {
            ClusterCanary::VoteTwice => Canary::VoteTwice,
            ClusterCanary::CommitOldTerm => Canary::CommitOldTerm,
            ClusterCanary::NoCheckQuorum => Canary::NoCheckQuorum,
            ClusterCanary::NoFencing => Canary::NoFencing,
            ClusterCanary::ObserveUncommitted => Canary::ObserveUncommitted,
        }
    }
}

crate::impl_canary_set!(ClusterCanary);
