//! The values that cross the Raft boundary: configuration, recovered durable state, log
//! entries, messages between peers, inputs from the driver and outputs to it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Identifies a node of the metadata quorum (a voter or a learner).
pub type NodeId = u64;

/// Static configuration of one node. The voter and learner sets are fixed for the life of the
/// cluster and must be identical on every node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RaftConfig {
    /// This node.
    pub id: NodeId,
    /// The nodes that vote and count toward quorums.
    pub voters: BTreeSet<NodeId>,
    /// Non-voting observers: they receive the log but never vote, campaign or count.
    pub learners: BTreeSet<NodeId>,
    /// Lower bound of the randomized election timeout; also the leader lease and the
    /// check-quorum period.
    pub election_timeout_min_ms: u64,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// How often a leader sends heartbeats (and retransmits to lagging peers).
    pub heartbeat_interval_ms: u64,
    /// Seed of the election-timeout generator; give each incarnation of a node its own.
    pub rng_seed: u64,
    /// At most this many entries ride in one AppendEntries message.
    pub entries_per_message_max: u64,
    /// A leader sends a peer at most this many entries beyond what the peer has acknowledged.
    pub inflight_entries_max: u64,
    /// A leader refuses proposals while this many entries are appended but not committed.
    pub uncommitted_entries_max: u64,
}

impl RaftConfig {
    /// A voter configuration with default timing (election 1000..2000 ms, heartbeat 100 ms).
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>, rng_seed: u64) -> Self {
        Self {
            id,
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            heartbeat_interval_ms: 100,
            rng_seed,
            entries_per_message_max: 64,
            inflight_entries_max: 1024,
            uncommitted_entries_max: 4096,
        }
    }

    /// Panics unless the configuration is usable.
    pub fn validate(&self) {
        assert!(!self.voters.is_empty(), "raft: no voters");
        assert!(
            self.voters.is_disjoint(&self.learners),
            "raft: a node is both voter and learner"
        );
        assert!(
            self.voters.contains(&self.id) || self.learners.contains(&self.id),
            "raft: node {} is neither voter nor learner",
            self.id
        );
        assert!(self.heartbeat_interval_ms > 0, "raft: heartbeat interval 0");
        assert!(
            self.heartbeat_interval_ms < self.election_timeout_min_ms,
            "raft: heartbeat interval must be below the election timeout"
        );
        assert!(
            self.election_timeout_min_ms < self.election_timeout_max_ms,
            "raft: election timeout range is empty"
        );
        assert!(
            self.entries_per_message_max > 0,
            "raft: entries_per_message_max 0"
        );
        assert!(
            self.inflight_entries_max > 0,
            "raft: inflight_entries_max 0"
        );
        assert!(
            self.uncommitted_entries_max > 0,
            "raft: uncommitted_entries_max 0"
        );
    }

    /// Votes needed for a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` belongs to the cluster at all.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntryKind {
    /// A client proposal: `data` is the driver's record.
    Normal,
    /// Appended by a new leader so it can commit in its own term (Raft §5.4.2); empty data.
    NoOp,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Term of the leader that created it.
    pub term: u64,
    /// Position in the log, from 1.
    pub index: u64,
    /// Normal or no-op.
    pub kind: EntryKind,
    /// The proposal's bytes (empty for a no-op).
    pub data: Vec<u8>,
}

/// What must be on disk before a vote or term is relied on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// Whom it voted for in `term`, if anyone.
    pub voted_for: Option<NodeId>,
}

/// The state machine captured up to and including `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// Last log index the snapshot covers (0: no snapshot).
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// The driver's encoding of its state machine.
    pub data: Vec<u8>,
}

/// What the driver recovered from disk; `Durable::default()` for a fresh node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Durable {
    /// Term and vote.
    pub hard_state: HardState,
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The log entries after the snapshot, dense and in order.
    pub entries: Vec<Entry>,
}

/// The outcome of an AppendEntries request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log matches the leader's through `match_index` (and that is durable).
    Success {
        /// Highest index known to match the leader's log.
        match_index: u64,
    },
    /// The consistency check failed at `prev_log_index`; the hint lets the leader skip back
    /// a whole term at a time.
    Reject {
        /// The `prev_log_index` of the rejected request.
        prev_log_index: u64,
        /// Term of the follower's entry at `prev_log_index`, or `None` if its log is shorter.
        conflict_term: Option<u64>,
        /// First index of `conflict_term` in the follower's log, or its log end + 1.
        conflict_index: u64,
    },
}

/// A message between two nodes of the quorum.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// "Would you vote for me in `term`?" — sent without raising the sender's own term.
    PreVote {
        /// The term the sender would campaign in (its term + 1).
        term: u64,
        /// Index of the sender's last entry.
        last_log_index: u64,
        /// Term of the sender's last entry.
        last_log_term: u64,
    },
    /// Answer to a PreVote.
    PreVoteResponse {
        /// The pre-vote's term if granted, else the responder's term.
        term: u64,
        /// Whether the responder would vote.
        granted: bool,
    },
    /// A candidate asks for a vote in `term`.
    Vote {
        /// The candidate's term.
        term: u64,
        /// Index of the candidate's last entry.
        last_log_index: u64,
        /// Term of the candidate's last entry.
        last_log_term: u64,
    },
    /// Answer to a Vote; a grant is sent only once the vote is durable.
    VoteResponse {
        /// The responder's term.
        term: u64,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Replication from the leader; empty `entries` is a heartbeat.
    AppendEntries {
        /// The leader's term.
        term: u64,
        /// Index of the entry just before `entries`.
        prev_log_index: u64,
        /// Term of that entry.
        prev_log_term: u64,
        /// The entries to append, dense from `prev_log_index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: u64,
    },
    /// Answer to AppendEntries; a success is sent only once the entries are durable.
    AppendEntriesResponse {
        /// The responder's term.
        term: u64,
        /// Success or a rejection with a back-off hint.
        result: AppendResult,
    },
    /// The leader's whole snapshot, for a follower whose next entries are compacted away.
    InstallSnapshot {
        /// The leader's term.
        term: u64,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Answer to InstallSnapshot, sent once the snapshot is durable.
    InstallSnapshotResponse {
        /// The responder's term.
        term: u64,
        /// Highest index known to match the leader's log.
        match_index: u64,
    },
}

impl Message {
    /// The term the message carries.
    pub fn term(&self) -> u64 {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::AppendEntriesResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. } => *term,
        }
    }
}

/// Something the driver hands to [`super::Raft::handle`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// A message from peer `from`.
    Receive {
        /// The sender.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// A client proposal: answered by `Output::Proposed` or `Output::Refused`.
    Propose {
        /// The record to replicate.
        data: Vec<u8>,
    },
    /// Time passed: fires every timer whose deadline is at or before `now`.
    Tick,
    /// Every storage operation emitted before `Output::Sync { seq }` is now durable.
    Persisted {
        /// The acknowledged sync.
        seq: u64,
    },
    /// The driver's state machine, applied through `index`, is captured in `data`: keep it
    /// as the snapshot and drop the log up to `index` (which must not exceed `last_applied`).
    Compact {
        /// Last applied index the snapshot covers.
        index: u64,
        /// The driver's encoding of its state machine.
        data: Vec<u8>,
    },
}

/// Why a proposal was refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
pub enum ProposeError {
    /// Only the leader takes proposals; try `leader_hint` if known.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard from.
        leader_hint: Option<NodeId>,
    },
    /// Too many entries are waiting to commit; back off.
    #[error("too many uncommitted entries")]
    TooManyUncommitted,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (learners are always followers).
    Follower,
    /// Asking for pre-votes, term not raised yet.
    PreCandidate,
    /// Asking for votes in a raised term.
    Candidate,
    /// Replicates its log and commits.
    Leader,
}

/// Something the driver must do, drained with [`super::Raft::poll_output`] in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Storage: overwrite the stored term and vote.
    PersistHardState(HardState),
    /// Storage: append these entries; the first follows the stored log's last entry.
    AppendEntries(Vec<Entry>),
    /// Storage: delete stored entries with index >= `index`.
    TruncateFrom {
        /// First index to delete.
        index: u64,
    },
    /// Storage: replace the stored snapshot with this one and delete entries up to its index.
    /// It must not become durable before the operations emitted ahead of it (a store that
    /// writes it at once syncs those first, as net's RaftStore does).
    PersistSnapshot(Snapshot),
    /// Storage: make every operation above durable (fsync), then hand in
    /// `Input::Persisted { seq }`. Acknowledgements are cumulative and must come in order.
    Sync {
        /// Sequence number to acknowledge.
        seq: u64,
    },
    /// Network: deliver `message` to `to` (best effort; loss is fine).
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// State machine: apply this committed entry (indices dense and increasing).
    Apply(Entry),
    /// State machine: replace the state with this snapshot (before any later `Apply`).
    ApplySnapshot(Snapshot),
    /// Notice: the role, term or known leader changed.
    RoleChanged {
        /// New role.
        role: Role,
        /// Current term.
        term: u64,
        /// Known leader, if any.
        leader: Option<NodeId>,
    },
    /// The proposal just handed in was appended at `index` in `term`; it is committed when
    /// `Apply` delivers an entry with this index and term.
    Proposed {
        /// Its log index.
        index: u64,
        /// The leader's term.
        term: u64,
    },
    /// The proposal just handed in was refused.
    Refused(ProposeError),
}
