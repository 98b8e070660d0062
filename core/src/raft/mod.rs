//! A sans-I/O Raft for the metadata quorum: pre-vote, randomized election timeouts from an
//! injected seed, leader election, log replication with fast back-off, commitment only through
//! entries of the leader's current term, check-quorum, a leader lease against disruptive
//! pre-votes, snapshots (compaction and InstallSnapshot), non-voting learners, and a fixed
//! voter set. It sends nothing, writes nothing and reads no clock: the driver does that.
//!
//! # Calling contract
//!
//! One way in, one way out (str0m, quinn):
//!
//! 1. Build a node with [`Raft::new`] from its [`RaftConfig`] and the [`Durable`] state the
//!    driver recovered from disk (`Durable::default()` for a fresh node), drain
//!    [`Raft::poll_output`] (a recovered snapshot comes out as `ApplySnapshot`; a hard state
//!    whose term is behind the log's last entry, as a crash can leave when the two are stored
//!    apart, is raised to that term without a vote and written back with a `Sync`), and call
//!    `handle(now, Input::Tick)` once to start the timers.
//! 2. Mutate only through [`Raft::handle`]`(now_ms, input)`. `now_ms` never goes backwards.
//! 3. After every `handle`, drain [`Raft::poll_output`] until `None` and carry the outputs out
//!    in order: storage operations (`PersistHardState`, `AppendEntries`, `TruncateFrom`,
//!    `PersistSnapshot`) are applied to the stored state in order, and each `Sync { seq }`
//!    asks for an fsync of everything before it, acknowledged later with
//!    `Input::Persisted { seq }` (cumulative, in order). `Send` may go out at once. `Apply` and
//!    `ApplySnapshot` feed the state machine, which is only ever fed durable, committed state.
//! 4. Then read [`Raft::poll_timeout`] and call `handle(now, Input::Tick)` when it passes.
//!
//! Getters (`role`, `term`, `commit_index`, ...) may be read at any time.
//!
//! # The durability gate
//!
//! A message that promises durability — a vote grant, an AppendEntries success, an
//! InstallSnapshot acknowledgement, and a candidate's own vote requests (its self-vote must be
//! durable before it can count) — is held inside the node until the driver acknowledges the
//! sync of everything written before it (raft-rs `persisted_messages`). A leader counts its own
//! log as replicated only up to its persisted index. Pre-vote answers promise nothing and leave
//! at once; so do leader AppendEntries (a leader writes in parallel with its followers).
//!
//! # Invariants (checked by [`Raft::check_invariants`])
//!
//! - The log is dense after the snapshot and terms never decrease along it; no entry's term
//!   exceeds the current term.
//! - `snapshot index <= last_applied <= min(commit_index, persisted_index)`,
//!   `commit_index <= last_index`, `persisted_index <= last_index`.
//! - A committed entry is never truncated (asserted at the truncation).
//! - A leader's last entry is of its own term (its no-op or later), it voted for itself, and it
//!   tracks progress for every other member with `match < next <= last_index + 1`.
//! - Learners never campaign and never vote; only voters count toward quorums.
//! - Exactly the timers of the role are armed: a voter that is not leader has an election
//!   timer; a leader has the heartbeat and check-quorum timers; a learner has none.

mod log;
pub mod observer;
mod progress;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

#[cfg(feature = "canary")]
use crate::canary::Canary;

use self::log::RaftLog;
use self::progress::{Progress, ProgressState};
pub use self::types::{
    AppendResult, Durable, Entry, EntryKind, HardState, Input, Message, NodeId, Output,
    ProposeError, RaftConfig, Role, Snapshot,
};
use crate::rng::SplitMix64;

/// At most this many durability-gated messages wait for a sync; beyond it the oldest is
/// dropped, which is always safe (the network may lose any message).
pub const GATED_MESSAGES_MAX: usize = 1024;
/// At most this many syncs may be unacknowledged: a driver that stops acknowledging is broken.
pub const SYNCS_IN_FLIGHT_MAX: usize = 1 << 16;

/// The node's timers: a closed set, one deadline each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// A voter that is not leader starts a pre-vote when it fires.
    Election,
    /// A leader sends heartbeats and retransmits.
    Heartbeat,
    /// A leader steps down unless a majority was heard from since the last check.
    CheckQuorum,
}

impl Timer {
    const ALL: [Timer; 3] = [Timer::Election, Timer::Heartbeat, Timer::CheckQuorum];
}

/// One deadline per [`Timer`], so `poll_timeout` is a minimum and no timer leaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct TimerTable([Option<u64>; 3]);

impl TimerTable {
    fn get(&self, t: Timer) -> Option<u64> {
        self.0[t as usize]
    }
    fn set(&mut self, t: Timer, at_ms: u64) {
        self.0[t as usize] = Some(at_ms);
    }
    fn stop(&mut self, t: Timer) {
        self.0[t as usize] = None;
    }
    fn earliest(&self) -> Option<u64> {
        self.0.iter().flatten().copied().min()
    }
}

/// A sync the driver has been asked for and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SyncRecord {
    seq: u64,
    /// The log prefix that will match the disk once this sync is acknowledged (lowered when
    /// a later truncation replaces part of it).
    last_index: u64,
}

/// A message held by the durability gate until sync `seq` is acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Gated {
    seq: u64,
    to: NodeId,
    message: Message,
}

/// One node of the Raft quorum. See the module docs for the calling contract.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Raft {
    config: RaftConfig,
    hard_state: HardState,
    log: RaftLog,
    role: Role,
    leader_id: Option<NodeId>,
    commit_index: u64,
    last_applied: u64,
    /// The log through this index is known to be on disk exactly as in memory.
    persisted_index: u64,
    /// Highest sync the driver acknowledged.
    synced_seq: u64,
    /// Highest sync requested.
    issued_seq: u64,
    /// Storage operations were emitted since the last `Sync`.
    dirty: bool,
    syncs: Vec<SyncRecord>,
    gated: Vec<Gated>,
    /// Gated messages to this node itself (a candidate's own vote), released by a sync.
    loopback: Vec<Message>,
    outputs: VecDeque<Output>,
    timers: TimerTable,
    now_ms: u64,
    started: bool,
    rng: SplitMix64,
    /// Pre-vote or vote answers in the current campaign.
    votes: BTreeMap<NodeId, bool>,
    /// Leader only: replication state of every other member.
    progress: BTreeMap<NodeId, Progress>,
    /// When this node last heard from `leader_id`.
    leader_contact_ms: Option<u64>,
    /// The last `RoleChanged` emitted.
    announced: Option<(Role, u64, Option<NodeId>)>,
    #[cfg(feature = "canary")]
    canary: Option<Canary>,
}

impl Raft {
    /// A node recovered from `durable` (`Durable::default()` for a fresh one).
    pub fn new(config: RaftConfig, durable: Durable) -> Raft {
        config.validate();
        let snapshot = durable.snapshot.unwrap_or_default();
        assert!(
            snapshot.term <= durable.hard_state.term,
            "raft: recovered snapshot term above the hard state term"
        );
        let log = RaftLog::new(snapshot, durable.entries);
        // The stored log may end in a term the stored hard state never reached: a store may
        // keep them apart (net's RaftStore uses two files) and a crash may then keep unsynced
        // log writes but lose the hard-state write made before them. Every message that
        // promises durability waits for a sync covering both, so nothing was promised in that
        // term (no vote, no acknowledgement): adopt it with no vote, and write it back.
        // Found by skein-sim cluster with per-file crash loss.
        let mut hard_state = durable.hard_state;
        let raised = log.last_term() > hard_state.term;
        if raised {
            hard_state = HardState {
                term: log.last_term(),
                voted_for: None,
            };
        }
        if let Some(v) = hard_state.voted_for {
            assert!(config.is_voter(v), "raft: recovered vote for a non-voter");
        }
        let seed = config.rng_seed ^ config.id.wrapping_mul(0xA24B_AED4_963E_E407);
        let commit = log.snapshot_index();
        let persisted = log.last_index();
        let mut raft = Raft {
            hard_state,
            log,
            role: Role::Follower,
            leader_id: None,
            commit_index: commit,
            last_applied: 0,
            persisted_index: persisted,
            synced_seq: 0,
            issued_seq: 0,
            dirty: false,
            syncs: Vec::new(),
            gated: Vec::new(),
            loopback: Vec::new(),
            outputs: VecDeque::new(),
            timers: TimerTable::default(),
            now_ms: 0,
            started: false,
            rng: SplitMix64::new(seed),
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            leader_contact_ms: None,
            announced: None,
            config,
            #[cfg(feature = "canary")]
            canary: None,
        };
        if raised {
            raft.persist_hard_state();
            raft.flush_sync();
        }
        raft.maybe_apply();
        raft
    }

    /// Turns on a planted bug (only with the `canary` feature).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<Canary>) {
        self.canary = canary;
    }

    #[cfg(feature = "canary")]
    fn canary(&self, c: Canary) -> bool {
        self.canary == Some(c)
    }

    #[cfg(not(feature = "canary"))]
    fn canary(&self, _c: Canary) -> bool {
        false
    }

    // ---- getters ----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }
    /// The configuration it runs with.
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }
    /// Its role in the current term.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The current term.
    pub fn term(&self) -> u64 {
        self.hard_state.term
    }
    /// Term and vote as they will be (or are) on disk.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }
    /// As leader: the highest index known replicated on `peer` (this node: its persisted index).
    pub fn match_index(&self, peer: NodeId) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        if peer == self.config.id {
            return Some(self.persisted_index);
        }
        self.progress.get(&peer).map(|p| p.match_index)
    }
    /// The leader of the current term, if known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    /// Highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }
    /// Index of the last entry (or of the snapshot when the log after it is empty).
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }
    /// Highest index handed out through `Apply` / `ApplySnapshot`.
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }
    /// The log through this index is durable.
    pub fn persisted_index(&self) -> u64 {
        self.persisted_index
    }
    /// The current snapshot (index 0 when there is none).
    pub fn snapshot(&self) -> &Snapshot {
        self.log.snapshot()
    }
    /// The entries after the snapshot.
    pub fn entries(&self) -> &[Entry] {
        self.log.entries()
    }
    /// The answer to an observer asking for committed entries from `next`: at most `max`
    /// of them, after the snapshot when `next` was compacted away.
    pub fn observe_answer(&self, next: u64, max: usize) -> observer::ObserveAnswer {
        let snap = self.snapshot();
        let (snapshot, from) = if next <= snap.index && snap.index > 0 {
            (Some(snap.clone()), snap.index + 1)
        } else {
            (None, next.max(1))
        };
        let entries = self
            .entries()
            .iter()
            .filter(|e| {
                e.index >= from
                    && (e.index <= self.commit_index || self.canary(Canary::ObserveUncommitted))
            })
            .take(max)
            .cloned()
            .collect();
        observer::ObserveAnswer {
            leader: self.leader_id,
            term: self.term(),
            commit: self.commit_index,
            snapshot,
            entries,
        }
    }
    /// Term of the entry at `index`, if it is the snapshot's last entry or in the log.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term_at(index)
    }
    /// Whether this node votes.
    pub fn is_voter(&self) -> bool {
        self.config.is_voter(self.config.id)
    }
    /// The earliest timer deadline; call `handle(now, Input::Tick)` once it has passed.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.earliest()
    }
    /// The next output to carry out, in order; drain until `None` after every `handle`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- the one way in ----

    /// Feeds one input at time `now_ms` (which must not go backwards).
    pub fn handle(&mut self, now_ms: u64, input: Input) {
        assert!(
            now_ms >= self.now_ms,
            "raft: time went backwards ({now_ms} < {})",
            self.now_ms
        );
        self.now_ms = now_ms;
        if !self.started {
            self.started = true;
            self.reset_election_timer();
        }
        match input {
            Input::Receive { from, message } => {
                // Messages from outside the fixed membership, or claiming to be from this
                // node, are not part of the protocol.
                if from != self.config.id && self.config.is_member(from) {
                    self.step(from, message);
                }
            }
            Input::Propose { data } => self.propose(data),
            Input::Tick => self.tick(),
            Input::Persisted { seq } => self.on_persisted(seq),
            Input::Compact { index, data } => self.compact(index, data),
        }
        // A candidate's own vote comes back through the gate after its sync.
        while !self.loopback.is_empty() {
            let msgs = std::mem::take(&mut self.loopback);
            for m in msgs {
                self.step(self.config.id, m);
            }
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.maybe_apply();
        self.flush_sync();
        self.announce();
    }

    // ---- internal: plumbing ----

    fn persist(&mut self, op: Output) {
        self.outputs.push_back(op);
        self.dirty = true;
    }

    fn persist_hard_state(&mut self) {
        #[allow(unused_mut)]
        let mut hs = self.hard_state;
        if self.canary(Canary::VoteTwice) {
            // Planted bug: the vote never reaches the disk, so a restart forgets it.
            hs.voted_for = None;
        }
        self.persist(Output::PersistHardState(hs));
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.outputs.push_back(Output::Send { to, message });
    }

    /// Sends `message` once everything written so far is durable.
    fn send_durable(&mut self, to: NodeId, message: Message) {
        let seq = if self.dirty {
            self.issued_seq + 1
        } else {
            self.issued_seq
        };
        if seq <= self.synced_seq {
            if to == self.config.id {
                self.loopback.push(message);
            } else {
                self.send(to, message);
            }
            return;
        }
        let g = Gated { seq, to, message };
        if self.gated.contains(&g) {
            return;
        }
        if self.gated.len() >= GATED_MESSAGES_MAX {
            self.gated.remove(0);
        }
        self.gated.push(g);
    }

    fn flush_sync(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.issued_seq += 1;
        assert!(
            self.syncs.len() < SYNCS_IN_FLIGHT_MAX,
            "raft: the driver stopped acknowledging syncs"
        );
        self.syncs.push(SyncRecord {
            seq: self.issued_seq,
            last_index: self.log.last_index(),
        });
        self.outputs.push_back(Output::Sync {
            seq: self.issued_seq,
        });
    }

    fn on_persisted(&mut self, seq: u64) {
        assert!(
            seq <= self.issued_seq,
            "raft: sync {seq} acknowledged but never requested"
        );
        if seq <= self.synced_seq {
            return;
        }
        self.synced_seq = seq;
        while let Some(r) = self.syncs.first().copied() {
            if r.seq > seq {
                break;
            }
            self.syncs.remove(0);
            assert!(r.last_index >= self.persisted_index);
            self.persisted_index = r.last_index;
        }
        let (ready, waiting): (Vec<Gated>, Vec<Gated>) = std::mem::take(&mut self.gated)
            .into_iter()
            .partition(|g| g.seq <= seq);
        self.gated = waiting;
        for g in ready {
            if g.to == self.config.id {
                self.loopback.push(g.message);
            } else {
                self.send(g.to, g.message);
            }
        }
    }

    /// Part of the log from `index` on no longer matches the disk once pending syncs land.
    fn cap_persisted(&mut self, index: u64) {
        self.persisted_index = self.persisted_index.min(index);
        for r in &mut self.syncs {
            r.last_index = r.last_index.min(index);
        }
    }

    fn announce(&mut self) {
        let now = (self.role, self.hard_state.term, self.leader_id);
        if self.announced != Some(now) {
            self.announced = Some(now);
            self.outputs.push_back(Output::RoleChanged {
                role: now.0,
                term: now.1,
                leader: now.2,
            });
        }
    }

    fn reset_election_timer(&mut self) {
        if !self.is_voter() || !self.started {
            return;
        }
        let span = self.config.election_timeout_max_ms - self.config.election_timeout_min_ms;
        let timeout = self.config.election_timeout_min_ms + self.rng.below(span);
        self.timers.set(Timer::Election, self.now_ms + timeout);
    }

    /// Whether a live leader was heard from within the minimum election timeout (or this node
    /// is that leader): such a node refuses to help unseat it.
    fn in_lease(&self) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        match (self.leader_id, self.leader_contact_ms) {
            (Some(_), Some(at)) => self.now_ms < at + self.config.election_timeout_min_ms,
            _ => false,
        }
    }

    fn log_up_to_date(&self, last_log_index: u64, last_log_term: u64) -> bool {
        let (my_index, my_term) = (self.log.last_index(), self.log.last_term());
        last_log_term > my_term || (last_log_term == my_term && last_log_index >= my_index)
    }

    // ---- internal: role changes ----

    /// Adopts a higher term (forgetting the vote) or stays; either way becomes a follower.
    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.hard_state.term {
            self.hard_state = HardState {
                term,
                voted_for: None,
            };
            self.persist_hard_state();
        }
        self.role = Role::Follower;
        self.leader_id = leader;
        self.votes.clear();
        self.progress.clear();
        self.timers.stop(Timer::Heartbeat);
        self.timers.stop(Timer::CheckQuorum);
        self.reset_election_timer();
    }

    /// A message from the leader of the current term arrived.
    fn heard_from_leader(&mut self, leader: NodeId) {
        if self.role != Role::Follower || self.leader_id != Some(leader) {
            self.become_follower(self.hard_state.term, Some(leader));
        } else {
            self.reset_election_timer();
        }
        self.leader_contact_ms = Some(self.now_ms);
    }

    fn start_pre_vote(&mut self) {
        debug_assert!(self.is_voter());
        self.role = Role::PreCandidate;
        self.leader_id = None;
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        self.reset_election_timer();
        if self.granted_votes() >= self.config.quorum() {
            self.start_election();
            return;
        }
        let msg = Message::PreVote {
            term: self.hard_state.term + 1,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        let peers: Vec<NodeId> = self.other_voters().collect();
        for p in peers {
            self.send(p, msg.clone());
        }
    }

    fn start_election(&mut self) {
        self.role = Role::Candidate;
        self.leader_id = None;
        self.hard_state = HardState {
            term: self.hard_state.term + 1,
            voted_for: Some(self.config.id),
        };
        self.persist_hard_state();
        self.votes.clear();
        self.reset_election_timer();
        let term = self.hard_state.term;
        // The self-vote counts only once it is durable: it goes through the gate like any
        // other grant, and so do the requests, so no grant can come back before it.
        self.send_durable(
            self.config.id,
            Message::VoteResponse {
                term,
                granted: true,
            },
        );
        let msg = Message::Vote {
            term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        let peers: Vec<NodeId> = self.other_voters().collect();
        for p in peers {
            self.send_durable(p, msg.clone());
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader_id = Some(self.config.id);
        self.leader_contact_ms = None;
        self.votes.clear();
        self.timers.stop(Timer::Election);
        self.timers.set(
            Timer::Heartbeat,
            self.now_ms + self.config.heartbeat_interval_ms,
        );
        self.timers.set(
            Timer::CheckQuorum,
            self.now_ms + self.config.election_timeout_min_ms,
        );
        let next = self.log.last_index() + 1;
        self.progress = self
            .config
            .voters
            .iter()
            .chain(self.config.learners.iter())
            .filter(|&&p| p != self.config.id)
            .map(|&p| (p, Progress::new(next)))
            .collect();
        // Raft §5.4.2: entries of earlier terms commit only under one of the leader's own.
        let noop = Entry {
            term: self.hard_state.term,
            index: next,
            kind: EntryKind::NoOp,
            data: Vec::new(),
        };
        self.append_local(noop);
        self.broadcast_append(true);
    }

    fn other_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.config.id;
        self.config.voters.iter().copied().filter(move |&v| v != me)
    }

    fn granted_votes(&self) -> usize {
        self.votes
            .iter()
            .filter(|(id, &g)| g && self.config.is_voter(**id))
            .count()
    }

    fn rejected_votes(&self) -> usize {
        self.votes
            .iter()
            .filter(|(id, &g)| !g && self.config.is_voter(**id))
            .count()
    }

    // ---- internal: inputs ----

    fn tick(&mut self) {
        for t in Timer::ALL {
            match self.timers.get(t) {
                Some(at) if at <= self.now_ms => {}
                _ => continue,
            }
            self.timers.stop(t);
            match t {
                Timer::Election => {
                    if self.is_voter() && self.role != Role::Leader {
                        self.start_pre_vote();
                    }
                }
                Timer::Heartbeat => {
                    if self.role == Role::Leader {
                        self.timers.set(
                            Timer::Heartbeat,
                            self.now_ms + self.config.heartbeat_interval_ms,
                        );
                        self.heartbeat();
                    }
                }
                Timer::CheckQuorum => {
                    if self.role == Role::Leader {
                        self.check_quorum();
                    }
                }
            }
        }
    }

    fn check_quorum(&mut self) {
        let me = self.config.id;
        let active = self
            .config
            .voters
            .iter()
            .filter(|&&v| v == me || self.progress.get(&v).is_some_and(|p| p.recent_active))
            .count();
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        if active < self.config.quorum() && !self.canary(Canary::NoCheckQuorum) {
            // Cut off from a majority: stop taking proposals that could never commit, and let
            // the followers' leases run out.
            self.become_follower(self.hard_state.term, None);
            return;
        }
        self.timers.set(
            Timer::CheckQuorum,
            self.now_ms + self.config.election_timeout_min_ms,
        );
    }

    fn propose(&mut self, data: Vec<u8>) {
        if self.role != Role::Leader {
            self.outputs
                .push_back(Output::Refused(ProposeError::NotLeader {
                    leader_hint: self.leader_id,
                }));
            return;
        }
        if self.log.last_index() - self.commit_index >= self.config.uncommitted_entries_max {
            self.outputs
                .push_back(Output::Refused(ProposeError::TooManyUncommitted));
            return;
        }
        let entry = Entry {
            term: self.hard_state.term,
            index: self.log.last_index() + 1,
            kind: EntryKind::Normal,
            data,
        };
        self.outputs.push_back(Output::Proposed {
            index: entry.index,
            term: entry.term,
        });
        self.append_local(entry);
        self.broadcast_append(false);
    }

    fn append_local(&mut self, entry: Entry) {
        self.log.append(std::slice::from_ref(&entry));
        self.persist(Output::AppendEntries(vec![entry]));
    }

    fn compact(&mut self, index: u64, data: Vec<u8>) {
        assert!(
            index <= self.last_applied,
            "raft: compaction at {index} beyond last applied {}",
            self.last_applied
        );
        if index <= self.log.snapshot_index() {
            return; // an older offer: the log is already compacted past it
        }
        let term = self
            .log
            .term_at(index)
            .expect("applied entry is in the log");
        let snapshot = Snapshot { index, term, data };
        self.log.install(snapshot.clone(), true);
        self.persist(Output::PersistSnapshot(snapshot));
    }

    fn step(&mut self, from: NodeId, message: Message) {
        let term = self.hard_state.term;
        let msg_term = message.term();
        match message {
            Message::PreVote {
                term: t,
                last_log_index,
                last_log_term,
            } => {
                // A pre-vote changes nothing here: not the term, not the vote.
                let granted = self.is_voter()
                    && self.config.is_voter(from)
                    && t > term
                    && self.log_up_to_date(last_log_index, last_log_term)
                    && !self.in_lease();
                let reply_term = if granted { t } else { term };
                self.send(
                    from,
                    Message::PreVoteResponse {
                        term: reply_term,
                        granted,
                    },
                );
                return;
            }
            Message::PreVoteResponse { term: t, granted } => {
                if !granted && t > term {
                    self.become_follower(t, None);
                } else if self.role == Role::PreCandidate && (t == term + 1 || !granted) {
                    self.votes.insert(from, granted);
                    self.tally();
                }
                return;
            }
            _ => {}
        }
        if msg_term > term {
            match &message {
                Message::Vote { .. } if self.in_lease() => {
                    // Thesis §4.2.3: a node that hears from a live leader ignores votes.
                    self.send(
                        from,
                        Message::VoteResponse {
                            term,
                            granted: false,
                        },
                    );
                    return;
                }
                Message::AppendEntries { .. } | Message::InstallSnapshot { .. } => {
                    self.become_follower(msg_term, Some(from));
                }
                _ => self.become_follower(msg_term, None),
            }
        } else if msg_term < term {
            // Tell a stale leader or candidate about the newer term; drop stale answers.
            let reply = match message {
                Message::AppendEntries { prev_log_index, .. } => {
                    Some(Message::AppendEntriesResponse {
                        term,
                        result: AppendResult::Reject {
                            prev_log_index,
                            conflict_term: None,
                            conflict_index: 0,
                        },
                    })
                }
                Message::InstallSnapshot { .. } => Some(Message::InstallSnapshotResponse {
                    term,
                    match_index: 0,
                }),
                Message::Vote { .. } => Some(Message::VoteResponse {
                    term,
                    granted: false,
                }),
                _ => None,
            };
            if let Some(r) = reply {
                self.send(from, r);
            }
            return;
        }
        // From here on the message is of the current term.
        match message {
            Message::Vote {
                last_log_index,
                last_log_term,
                ..
            } => self.on_vote(from, last_log_index, last_log_term),
            Message::VoteResponse { granted, .. } => {
                if self.role == Role::Candidate {
                    self.votes.insert(from, granted);
                    self.tally();
                }
            }
            Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                ..
            } => {
                if self.role == Role::Leader {
                    return; // two leaders in one term cannot happen; ignore rather than obey
                }
                self.heard_from_leader(from);
                self.on_append(from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            Message::AppendEntriesResponse { result, .. } => {
                if self.role == Role::Leader {
                    self.on_append_response(from, result);
                }
            }
            Message::InstallSnapshot { snapshot, .. } => {
                if self.role == Role::Leader {
                    return;
                }
                self.heard_from_leader(from);
                self.on_install_snapshot(from, snapshot);
            }
            Message::InstallSnapshotResponse { match_index, .. } => {
                if self.role == Role::Leader {
                    self.on_snapshot_response(from, match_index);
                }
            }
            Message::PreVote { .. } | Message::PreVoteResponse { .. } => unreachable!(),
        }
    }

    fn tally(&mut self) {
        if self.granted_votes() >= self.config.quorum() {
            match self.role {
                Role::PreCandidate => self.start_election(),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if self.rejected_votes() >= self.config.quorum() {
            // This campaign cannot win; wait for the next election timeout.
            self.become_follower(self.hard_state.term, None);
        }
    }

    fn on_vote(&mut self, from: NodeId, last_log_index: u64, last_log_term: u64) {
        let can_vote = self.hard_state.voted_for == Some(from)
            || (self.hard_state.voted_for.is_none() && self.leader_id.is_none());
        let granted = self.is_voter()
            && self.config.is_voter(from)
            && can_vote
            && self.log_up_to_date(last_log_index, last_log_term);
        let term = self.hard_state.term;
        if !granted {
            self.send(
                from,
                Message::VoteResponse {
                    term,
                    granted: false,
                },
            );
            return;
        }
        if self.hard_state.voted_for != Some(from) {
            self.hard_state.voted_for = Some(from);
            self.persist_hard_state();
        }
        self.reset_election_timer();
        let reply = Message::VoteResponse {
            term,
            granted: true,
        };
        if self.canary(Canary::VoteTwice) {
            self.send(from, reply); // planted bug: the grant leaves before the fsync
        } else {
            self.send_durable(from, reply);
        }
    }

    fn on_append(
        &mut self,
        from: NodeId,
        prev_log_index: u64,
        prev_log_term: u64,
        mut entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        let term = self.hard_state.term;
        let (mut prev, mut prev_term) = (prev_log_index, prev_log_term);
        let snap = self.log.snapshot_index();
        if prev < snap {
            // Entries through the snapshot are committed, so they match the leader's.
            let skip = ((snap - prev) as usize).min(entries.len());
            if skip > 0 {
                prev_term = entries[skip - 1].term;
            }
            prev += skip as u64;
            entries.drain(..skip);
            if prev < snap {
                // Everything the message carries is under the snapshot.
                let match_index = prev;
                self.send_durable(
                    from,
                    Message::AppendEntriesResponse {
                        term,
                        result: AppendResult::Success { match_index },
                    },
                );
                return;
            }
        }
        match self.log.term_at(prev) {
            None => {
                let conflict_index = self.log.last_index() + 1;
                self.send(
                    from,
                    Message::AppendEntriesResponse {
                        term,
                        result: AppendResult::Reject {
                            prev_log_index,
                            conflict_term: None,
                            conflict_index,
                        },
                    },
                );
                return;
            }
            Some(t) if t != prev_term => {
                let conflict_index = self.log.first_index_of_term(t);
                self.send(
                    from,
                    Message::AppendEntriesResponse {
                        term,
                        result: AppendResult::Reject {
                            prev_log_index,
                            conflict_term: Some(t),
                            conflict_index,
                        },
                    },
                );
                return;
            }
            Some(_) => {}
        }
        let match_index = prev + entries.len() as u64;
        // Skip what is already there; truncate at the first conflict; append the rest.
        let mut first_new = entries.len();
        for (k, e) in entries.iter().enumerate() {
            match self.log.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        e.index > self.commit_index,
                        "raft: truncating committed entry {} (commit {})",
                        e.index,
                        self.commit_index
                    );
                    self.log.truncate_from(e.index);
                    self.cap_persisted(e.index - 1);
                    self.persist(Output::TruncateFrom { index: e.index });
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        if first_new < entries.len() {
            let new = entries.split_off(first_new);
            self.log.append(&new);
            self.persist(Output::AppendEntries(new));
        }
        let commit = leader_commit.min(match_index);
        if commit > self.commit_index {
            self.commit_index = commit;
        }
        self.send_durable(
            from,
            Message::AppendEntriesResponse {
                term,
                result: AppendResult::Success { match_index },
            },
        );
    }

    fn on_install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let term = self.hard_state.term;
        let match_index = snapshot.index;
        if snapshot.index > self.commit_index {
            let keep_suffix = self.log.term_at(snapshot.index) == Some(snapshot.term);
            if !keep_suffix {
                // The old log cannot be trusted past what was committed; the disk will hold
                // the new snapshot only after the next sync.
                self.cap_persisted(self.commit_index);
                // Its entries after the snapshot do not follow it: delete them before the
                // snapshot is written, not after. A store makes a snapshot durable no earlier
                // than what was written before it (RaftStore syncs first), so a crash can no
                // longer leave the new snapshot in front of the old suffix (a log whose terms
                // go down, or that breaks log matching). Found by skein-sim cluster (seeds in
                // ci/cluster-regression-seeds).
                if self.log.last_index() > snapshot.index {
                    self.persist(Output::TruncateFrom {
                        index: snapshot.index + 1,
                    });
                }
            }
            self.log.install(snapshot.clone(), keep_suffix);
            self.commit_index = snapshot.index;
            self.persist(Output::PersistSnapshot(snapshot));
        }
        self.send_durable(from, Message::InstallSnapshotResponse { term, match_index });
    }

    fn on_append_response(&mut self, from: NodeId, result: AppendResult) {
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        match result {
            AppendResult::Success { match_index } => {
                pr.on_success(match_index);
                self.send_append(from, false);
            }
            AppendResult::Reject {
                prev_log_index,
                conflict_term,
                conflict_index,
            } => {
                if !pr.is_live_reject(prev_log_index) {
                    return; // a stale answer to an earlier request
                }
                let hint = match conflict_term.and_then(|t| self.log.last_index_of_term(t)) {
                    Some(i) => i + 1,
                    None => conflict_index,
                };
                let pr = self.progress.get_mut(&from).expect("checked above");
                pr.back_off(prev_log_index, hint);
                self.send_append(from, true);
            }
        }
    }

    fn on_snapshot_response(&mut self, from: NodeId, match_index: u64) {
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.on_snapshot_installed(match_index);
        self.send_append(from, true);
    }

    // ---- internal: leader replication ----

    fn broadcast_append(&mut self, allow_empty: bool) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for p in peers {
            self.send_append(p, allow_empty);
        }
    }

    /// Sends `peer` what it needs next, if its flow control allows.
    fn send_append(&mut self, peer: NodeId, allow_empty: bool) {
        let last = self.log.last_index();
        let pr = self.progress[&peer];
        match pr.state {
            ProgressState::Snapshot { .. } => return,
            ProgressState::Probe if pr.probe_sent => return,
            ProgressState::Replicate
                if pr.next_index > pr.match_index + self.config.inflight_entries_max =>
            {
                return
            }
            _ => {}
        }
        let prev = pr.next_index - 1;
        if prev < self.log.snapshot_index() {
            self.send_snapshot(peer);
            return;
        }
        let prev_term = self.log.term_at(prev).expect("prev is in the log");
        let mut hi = last.min(pr.next_index + self.config.entries_per_message_max - 1);
        if pr.state == ProgressState::Replicate {
            // Pipelining is bounded; a probe is a single message anyway.
            hi = hi.min(pr.match_index + self.config.inflight_entries_max);
        }
        let entries = if pr.next_index <= hi {
            self.log.slice(pr.next_index, hi).to_vec()
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty {
            return;
        }
        let sent_to = prev + entries.len() as u64;
        let pr = self.progress.get_mut(&peer).expect("peer has progress");
        match pr.state {
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Replicate => pr.next_index = sent_to + 1,
            ProgressState::Snapshot { .. } => unreachable!(),
        }
        let msg = Message::AppendEntries {
            term: self.hard_state.term,
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.commit_index,
        };
        self.send(peer, msg);
    }

    fn send_snapshot(&mut self, peer: NodeId) {
        let snapshot = self.log.snapshot().clone();
        let pr = self.progress.get_mut(&peer).expect("peer has progress");
        pr.state = ProgressState::Snapshot {
            index: snapshot.index,
        };
        let msg = Message::InstallSnapshot {
            term: self.hard_state.term,
            snapshot,
        };
        self.send(peer, msg);
    }

    fn heartbeat(&mut self) {
        let last = self.log.last_index();
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for p in peers {
            let pr = self.progress.get_mut(&p).expect("peer has progress");
            match pr.state {
                ProgressState::Probe => {
                    pr.probe_sent = false;
                    self.send_append(p, true);
                }
                ProgressState::Snapshot { .. } => self.send_snapshot(p),
                ProgressState::Replicate if pr.match_index < last && pr.stalled => {
                    // Nothing was acknowledged for a whole heartbeat interval: the network may
                    // have lost what was sent, so resend from the match point.
                    pr.next_index = pr.match_index + 1;
                    self.send_append(p, true);
                }
                ProgressState::Replicate if pr.match_index < last => {
                    pr.stalled = true;
                    self.send_append(p, false);
                }
                ProgressState::Replicate => {
                    let prev = pr.match_index;
                    let msg = Message::AppendEntries {
                        term: self.hard_state.term,
                        prev_log_index: prev,
                        prev_log_term: self.log.term_at(prev).expect("match is in the log"),
                        entries: Vec::new(),
                        leader_commit: self.commit_index,
                    };
                    self.send(p, msg);
                }
            }
        }
    }

    fn maybe_commit(&mut self) {
        let me = self.config.id;
        let mut matched: Vec<u64> = self
            .config
            .voters
            .iter()
            .map(|&v| {
                if v == me {
                    self.persisted_index
                } else {
                    self.progress.get(&v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[self.config.quorum() - 1];
        if n <= self.commit_index {
            return;
        }
        // Raft §5.4.2 (Figure 8): counting replicas commits only an entry of this term.
        if self.log.term_at(n) == Some(self.hard_state.term) || self.canary(Canary::CommitOldTerm) {
            self.commit_index = n;
        }
    }

    fn maybe_apply(&mut self) {
        let limit = self.commit_index.min(self.persisted_index);
        let snap = self.log.snapshot_index();
        if self.last_applied < snap {
            if limit < snap {
                return; // the snapshot is not durable yet
            }
            self.outputs
                .push_back(Output::ApplySnapshot(self.log.snapshot().clone()));
            self.last_applied = snap;
        }
        while self.last_applied < limit {
            let e = self
                .log
                .entry(self.last_applied + 1)
                .expect("committed entry is in the log")
                .clone();
            self.outputs.push_back(Output::Apply(e));
            self.last_applied += 1;
        }
    }

    // ---- invariants ----

    /// Panics if an internal invariant is violated; run it after every input in tests and sims.
    pub fn check_invariants(&self) {
        self.log.check();
        let last = self.log.last_index();
        let snap = self.log.snapshot_index();
        let term = self.hard_state.term;
        assert!(
            self.log.last_term() <= term,
            "raft: entry term above current term"
        );
        assert!(self.commit_index <= last, "raft: commit beyond log end");
        assert!(snap <= self.commit_index, "raft: snapshot beyond commit");
        assert!(
            self.last_applied <= self.commit_index.min(self.persisted_index),
            "raft: applied beyond commit or durability"
        );
        assert!(
            self.last_applied >= snap || self.persisted_index < snap,
            "raft: snapshot durable but not applied"
        );
        assert!(
            self.persisted_index <= last,
            "raft: persisted beyond log end"
        );
        assert!(self.synced_seq <= self.issued_seq);
        assert!(!self.dirty, "raft: storage operations without a sync");
        assert!(self.loopback.is_empty());
        for w in self.syncs.windows(2) {
            assert!(w[0].seq < w[1].seq);
        }
        for r in &self.syncs {
            assert!(r.seq > self.synced_seq && r.seq <= self.issued_seq);
            assert!(r.last_index <= last);
        }
        for g in &self.gated {
            assert!(g.seq > self.synced_seq && g.seq <= self.issued_seq);
        }
        assert!(self.gated.len() <= GATED_MESSAGES_MAX);
        if let Some(v) = self.hard_state.voted_for {
            assert!(self.config.is_voter(v), "raft: voted for a non-voter");
        }
        if !self.is_voter() {
            assert_eq!(self.role, Role::Follower, "raft: a learner campaigned");
            assert!(self.hard_state.voted_for.is_none(), "raft: a learner voted");
            assert_eq!(self.timers.earliest(), None, "raft: a learner has timers");
        }
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader_id, Some(self.config.id));
                assert_eq!(self.hard_state.voted_for, Some(self.config.id));
                assert_eq!(
                    self.log.last_term(),
                    term,
                    "raft: leader lacks its own entry"
                );
                assert!(self.timers.get(Timer::Election).is_none());
                assert!(self.timers.get(Timer::Heartbeat).is_some());
                assert!(
                    self.timers.get(Timer::CheckQuorum).is_some()
                        || self.canary(Canary::NoCheckQuorum)
                );
                let members = self.config.voters.len() + self.config.learners.len();
                assert_eq!(self.progress.len(), members - 1);
                for (id, p) in &self.progress {
                    assert_ne!(*id, self.config.id);
                    assert!(p.match_index < p.next_index, "raft: match >= next for {id}");
                    assert!(p.next_index <= last + 1, "raft: next beyond log for {id}");
                }
                assert!(self.votes.is_empty());
            }
            Role::Candidate | Role::PreCandidate => {
                assert!(self.is_voter());
                assert!(self.leader_id.is_none());
                assert!(self.progress.is_empty());
                if self.role == Role::Candidate {
                    assert_eq!(self.hard_state.voted_for, Some(self.config.id));
                }
            }
            Role::Follower => {
                assert!(self.progress.is_empty());
                assert!(self.votes.is_empty());
            }
        }
        if self.role != Role::Leader {
            assert!(self.timers.get(Timer::Heartbeat).is_none());
            assert!(self.timers.get(Timer::CheckQuorum).is_none());
            if self.is_voter() && self.started {
                assert!(self.timers.get(Timer::Election).is_some());
            }
        }
    }
}

/// Without the `canary` feature the consulting sites still compile against this stand-in.
#[cfg(not(feature = "canary"))]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Canary {
    VoteTwice,
    CommitOldTerm,
    NoCheckQuorum,
    ObserveUncommitted,
}
