//! Model 1: the controller quorum. Three voters run skein-core's own [`Raft`] (not a copy of
//! it) under a nondeterministic environment that stateright explores exhaustively within the
//! [`Bounds`].
//!
//! # Why a custom `Model` and not stateright's actor model
//!
//! The actor model keeps one `State` per actor and lets `Out::save` persist a value that
//! `on_start` gets back after a crash. skein's durability contract is finer: storage outputs
//! are queued, `Output::Sync { seq }` asks for an fsync, and only an fsync that completed
//! (`Input::Persisted { seq }`) makes them durable; a crash keeps exactly the fsynced prefix.
//! Modelling that through `Out::save` would need every write to be saved at once (too strong:
//! it hides the canary `vote-twice`) or a second, hand-written buffer beside it. Here each
//! node carries its volatile [`Raft`], the queue of storage operations not yet fsynced, and
//! its `disk` (a [`Durable`], what `Raft::new` recovers from). The fsync is its own action, so
//! every interleaving of syncs, deliveries, timeouts and the crash is explored.
//!
//! # Actions
//!
//! - `Deliver(m)`: hand a message to its recipient and remove it from the network.
//! - `Duplicate(m)` (lossy mode, at most `duplicates_max`): deliver it and leave a copy in
//!   flight (duplication).
//! - `Drop(m)` (lossy mode): lose it.
//! - `Fsync(n)`: the oldest requested sync of node `n` completes: its writes reach the disk,
//!   then `Persisted { seq }` is handed in.
//! - `Timeout(n)`: node `n`'s clock jumps to its `poll_timeout()` and it gets a `Tick` (an
//!   election, a heartbeat or a check-quorum fires). Clocks are per node and only move
//!   forward; between nodes time is asynchronous.
//! - `Crash(n)` (lossy mode, at most `crashes_max`): the node loses its memory and every
//!   write not yet fsynced, and restarts at once from its disk (a new incarnation).
//! - `Propose(n)`: a client proposal to the node that is leader (at most `proposals_max`).
//!
//! Every `handle` is followed by a full drain of `poll_output` and by `check_invariants`; a
//! panic inside skein-core is caught and becomes a violation of `no core assertion fails`.
//!
//! # The liveness variant
//!
//! With a lossy network, "eventually a leader" is false for a trivial reason (every message
//! may be dropped), and even on a reliable network an adversary that fires election timeouts
//! at will can split votes forever. Raft's liveness rests on election timeouts far above
//! the message delay, so the reliable variant fires a timeout only while the cluster is
//! quiescent (nothing in flight, no fsync outstanding); it has no loss, duplication or crash.
//! Stateright checks `eventually` at terminal states (every successor outside the bound or
//! no action left), so the property reads: every maximal path within the bound has a leader.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use skein_core::canary::Canary;
use skein_core::raft::{
    Durable, Entry, EntryKind, Input, Message, NodeId, Output, Raft, RaftConfig, Role,
};
use stateright::{Model, Property};

/// Number of voters.
pub const VOTERS: u64 = 3;
const QUORUM: usize = (VOTERS as usize) / 2 + 1;

/// The network and fault regime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Messages may be lost, duplicated and reordered; up to `crashes_max` crashes.
    Lossy,
    /// Messages are delivered exactly once in any order; no crash; timeouts only when the
    /// cluster is quiescent. Adds the `eventually` property.
    Reliable,
}

/// What bounds the exploration (stateright's `within_boundary`, plus action budgets).
#[derive(Clone, Debug)]
pub struct Bounds {
    /// No node's term may exceed this.
    pub term_max: u64,
    /// No node's log may grow beyond this index.
    pub log_len_max: u64,
    /// At most this many distinct messages in flight.
    pub in_flight_max: usize,
    /// At most this many timeouts fire in total (elections, heartbeats, check-quorum).
    pub timeouts_max: u8,
    /// At most this many crashes (lossy mode only).
    pub crashes_max: u8,
    /// At most this many client proposals.
    pub proposals_max: u8,
    /// At most this many duplicated deliveries (lossy mode). Unbounded duplication alone
    /// makes the space infinite: a follower redraws its randomized election deadline (its
    /// seeded generator advances) every time a leader's message arrives.
    pub duplicates_max: u8,
}

/// The lossy network's bounds that ci/test.sh checks (4.3M states, about 22 s on 2 cores).
impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            term_max: 1,
            log_len_max: 2,
            in_flight_max: 2,
            timeouts_max: 2,
            crashes_max: 1,
            proposals_max: 1,
            duplicates_max: 0,
        }
    }
}

impl Bounds {
    /// The reliable network's bounds that ci/test.sh checks (no crash or duplication there).
    pub fn reliable() -> Self {
        Bounds {
            term_max: 2,
            log_len_max: 2,
            in_flight_max: 4,
            timeouts_max: 3,
            crashes_max: 0,
            proposals_max: 1,
            duplicates_max: 0,
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "voters={VOTERS} term_max={} log_len_max={} in_flight_max={} timeouts_max={} crashes_max={} proposals_max={} duplicates_max={}",
            self.term_max,
            self.log_len_max,
            self.in_flight_max,
            self.timeouts_max,
            self.crashes_max,
            self.proposals_max,
            self.duplicates_max
        )
    }
}

/// The controller-quorum model.
#[derive(Clone, Debug)]
pub struct RaftModel {
    /// Exploration bounds.
    pub bounds: Bounds,
    /// Network regime.
    pub network: Network,
    /// A planted bug handed to every node (and every incarnation).
    pub canary: Option<Canary>,
}

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The message.
    pub message: Message,
}

impl Envelope {
    /// A total order for the canonical (sorted) network: `Message` has no `Ord`, so order by
    /// endpoints, then by a deterministic hash, then by the debug text (hash collisions).
    fn key(&self) -> (NodeId, NodeId, u64) {
        let mut h = DefaultHasher::new();
        self.message.hash(&mut h);
        (self.from, self.to, h.finish())
    }
}

/// One node: its volatile Raft, its unsynced writes and its disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The real thing.
    pub raft: Raft,
    /// The clock this node last handed in.
    pub clock_ms: u64,
    /// Storage outputs (and `Sync` markers) not yet fsynced, in order.
    pub unsynced: Vec<Output>,
    /// What survives a crash.
    pub disk: Durable,
    /// Restarts so far (seeds the new incarnation's election timeouts).
    pub incarnation: u64,
}

/// The whole system plus the ghost state the properties read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Nodes 1..=3 at indices 0..3.
    pub nodes: Vec<Node>,
    /// Messages in flight, sorted by `Envelope::key` (a set in lossy mode, a multiset otherwise).
    pub net: Vec<Envelope>,
    /// Budgets used.
    pub timeouts: u8,
    /// Crashes so far.
    pub crashes: u8,
    /// Proposals so far.
    pub proposals: u8,
    /// Duplicated deliveries so far.
    pub duplicates: u8,
    /// Ghost: every (term, node) that became leader.
    pub elected: BTreeSet<(u64, NodeId)>,
    /// Ghost: index -> (entry term, lowest leader term that saw it committed).
    pub committed: BTreeMap<u64, (u64, u64)>,
    /// Ghost: a leader's committed prefix disagreed with an earlier commit.
    pub commit_changed: bool,
    /// Ghost: index -> (term, data) of the first entry applied there by any node.
    pub applied: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Ghost: a node applied something else at an index.
    pub apply_conflict: bool,
    /// A panic inside skein-core (or a broken storage contract).
    pub fault: Option<String>,
}

/// One nondeterministic step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Deliver and remove.
    Deliver(Envelope),
    /// Deliver and keep a copy in flight.
    Duplicate(Envelope),
    /// Lose the message.
    Drop(Envelope),
    /// The node's oldest outstanding fsync completes.
    Fsync(NodeId),
    /// The node's earliest timer fires.
    Timeout(NodeId),
    /// The node crashes and restarts from its disk.
    Crash(NodeId),
    /// A client proposes to the node (a leader).
    Propose(NodeId),
}

fn config(id: NodeId, incarnation: u64) -> RaftConfig {
    let mut c = RaftConfig::new(id, 1..=VOTERS, 0x5EED ^ (incarnation << 8));
    // One entry per message: a leader can then get an older-term entry acknowledged apart
    // from its own no-op after it, which the Figure 8 scenario (canary commit-old-term) needs.
    c.entries_per_message_max = 1;
    c
}

/// The message of a caught panic (core code panics on a broken invariant).
pub(crate) fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

impl RaftModel {
    /// The model with default bounds.
    pub fn new(network: Network, bounds: Bounds, canary: Option<Canary>) -> Self {
        RaftModel {
            bounds,
            network,
            canary,
        }
    }

    fn new_raft(&self, id: NodeId, incarnation: u64, disk: Durable) -> Raft {
        let mut raft = Raft::new(config(id, incarnation), disk);
        raft.set_canary(self.canary);
        raft
    }

    fn quiescent(state: &State) -> bool {
        state.net.is_empty()
            && state
                .nodes
                .iter()
                .all(|n| !n.unsynced.iter().any(|o| matches!(o, Output::Sync { .. })))
    }
}

impl State {
    fn idx(id: NodeId) -> usize {
        (id - 1) as usize
    }

    /// Feeds one input, drains every output, runs the core's own invariant check.
    fn step(&mut self, model: &RaftModel, id: NodeId, now_ms: u64, input: Input) {
        let node = &mut self.nodes[Self::idx(id)];
        let raft = &mut node.raft;
        let r = catch_unwind(AssertUnwindSafe(|| {
            raft.handle(now_ms, input);
            raft.check_invariants();
        }));
        if let Err(p) = r {
            self.fault = Some(format!("node {id}: {}", panic_text(p)));
            return;
        }
        node.clock_ms = now_ms;
        self.drain(model, id);
    }

    fn drain(&mut self, model: &RaftModel, id: NodeId) {
        let i = Self::idx(id);
        while let Some(out) = self.nodes[i].raft.poll_output() {
            match out {
                Output::PersistHardState(_)
                | Output::AppendEntries(_)
                | Output::TruncateFrom { .. }
                | Output::PersistSnapshot(_)
                | Output::Sync { .. } => self.nodes[i].unsynced.push(out),
                Output::Send { to, message } => self.net.push(Envelope {
                    from: id,
                    to,
                    message,
                }),
                Output::Apply(e) => self.on_apply(&e),
                // The model never compacts, so the only snapshot is a recovered one.
                Output::ApplySnapshot(_) => {}
                Output::RoleChanged {
                    role: Role::Leader,
                    term,
                    ..
                } => {
                    self.elected.insert((term, id));
                }
                Output::RoleChanged { .. } | Output::Proposed { .. } | Output::Refused(_) => {}
            }
        }
        self.net.sort_by_key(Envelope::key);
        if model.network == Network::Lossy {
            // A set: a second identical copy adds nothing duplication does not already give.
            self.net.dedup();
        }
        self.record_commits(id);
    }

    fn on_apply(&mut self, e: &Entry) {
        match self.applied.get(&e.index) {
            Some((t, d)) if (*t, d) != (e.term, &e.data) => self.apply_conflict = true,
            Some(_) => {}
            None => {
                self.applied.insert(e.index, (e.term, e.data.clone()));
            }
        }
    }

    /// A leader's committed prefix joins the ghost record of committed entries.
    fn record_commits(&mut self, id: NodeId) {
        let raft = &self.nodes[Self::idx(id)].raft;
        if raft.role() != Role::Leader {
            return;
        }
        let term = raft.term();
        for index in 1..=raft.commit_index() {
            let Some(t) = raft.term_at(index) else {
                continue;
            };
            match self.committed.get(&index) {
                Some(&(et, _)) if et != t => self.commit_changed = true,
                Some(_) => {}
                None => {
                    self.committed.insert(index, (t, term));
                }
            }
        }
    }

    fn fsync(&mut self, model: &RaftModel, id: NodeId) {
        let node = &mut self.nodes[Self::idx(id)];
        let Some(pos) = node
            .unsynced
            .iter()
            .position(|o| matches!(o, Output::Sync { .. }))
        else {
            return;
        };
        let ops: Vec<Output> = node.unsynced.drain(..=pos).collect();
        let mut seq = 0;
        for op in ops {
            match op {
                Output::PersistHardState(hs) => node.disk.hard_state = hs,
                Output::AppendEntries(es) => {
                    let next = node
                        .disk
                        .entries
                        .last()
                        .map(|e| e.index)
                        .or(node.disk.snapshot.as_ref().map(|s| s.index))
                        .unwrap_or(0)
                        + 1;
                    if es.first().is_some_and(|e| e.index != next) {
                        self.fault = Some(format!(
                            "node {id}: AppendEntries at {} does not follow the stored log (next {next})",
                            es[0].index
                        ));
                        return;
                    }
                    node.disk.entries.extend(es);
                }
                Output::TruncateFrom { index } => node.disk.entries.retain(|e| e.index < index),
                Output::PersistSnapshot(s) => {
                    node.disk.entries.retain(|e| e.index > s.index);
                    node.disk.snapshot = Some(s);
                }
                Output::Sync { seq: s } => seq = s,
                _ => unreachable!("only storage outputs are queued"),
            }
        }
        let now = node.clock_ms;
        self.step(model, id, now, Input::Persisted { seq });
    }

    fn crash(&mut self, model: &RaftModel, id: NodeId) {
        let i = Self::idx(id);
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.unsynced.clear();
        let (incarnation, disk, now) = (node.incarnation, node.disk.clone(), node.clock_ms);
        let r = catch_unwind(AssertUnwindSafe(|| model.new_raft(id, incarnation, disk)));
        match r {
            Ok(raft) => self.nodes[i].raft = raft,
            Err(p) => {
                self.fault = Some(format!("node {id} restart: {}", panic_text(p)));
                return;
            }
        }
        // Messages its old incarnation held back (the durability gate) are gone with it.
        self.drain(model, id);
        self.step(model, id, now, Input::Tick);
    }

    /// Whether the logs of `a` and `b` match up to their last common (index, term).
    fn logs_match(a: &Raft, b: &Raft) -> bool {
        let last = a.last_index().min(b.last_index());
        let mut agreed = false;
        for index in (1..=last).rev() {
            let (ta, tb) = (a.term_at(index), b.term_at(index));
            if agreed {
                if ta != tb {
                    return false;
                }
            } else if ta.is_some() && ta == tb {
                agreed = true;
            }
        }
        // Entries with the same index and term must also carry the same data.
        a.entries().iter().all(|ea| {
            b.entries()
                .iter()
                .find(|eb| eb.index == ea.index)
                .is_none_or(|eb| eb.term != ea.term || eb == ea)
        })
    }

    fn disk_has(d: &Durable, index: u64, term: u64) -> bool {
        d.snapshot.as_ref().is_some_and(|s| s.index >= index)
            || d.entries.iter().any(|e| e.index == index && e.term == term)
    }
}

impl Model for RaftModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut s = State {
            nodes: (1..=VOTERS)
                .map(|id| Node {
                    raft: self.new_raft(id, 0, Durable::default()),
                    clock_ms: 0,
                    unsynced: Vec::new(),
                    disk: Durable::default(),
                    incarnation: 0,
                })
                .collect(),
            net: Vec::new(),
            timeouts: 0,
            crashes: 0,
            proposals: 0,
            duplicates: 0,
            elected: BTreeSet::new(),
            committed: BTreeMap::new(),
            commit_changed: false,
            applied: BTreeMap::new(),
            apply_conflict: false,
            fault: None,
        };
        for id in 1..=VOTERS {
            s.drain(self, id);
            s.step(self, id, 0, Input::Tick);
        }
        vec![s]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.fault.is_some() {
            return;
        }
        let lossy = self.network == Network::Lossy;
        for (k, m) in s.net.iter().enumerate() {
            // Identical copies (reliable multiset) give identical successors.
            if k > 0 && s.net[k - 1] == *m {
                continue;
            }
            actions.push(Action::Deliver(m.clone()));
            if lossy {
                if s.duplicates < self.bounds.duplicates_max {
                    actions.push(Action::Duplicate(m.clone()));
                }
                actions.push(Action::Drop(m.clone()));
            }
        }
        let timeouts_ok =
            s.timeouts < self.bounds.timeouts_max && (lossy || RaftModel::quiescent(s));
        for node in &s.nodes {
            let id = node.raft.id();
            if node
                .unsynced
                .iter()
                .any(|o| matches!(o, Output::Sync { .. }))
            {
                actions.push(Action::Fsync(id));
            }
            if timeouts_ok && node.raft.poll_timeout().is_some() {
                actions.push(Action::Timeout(id));
            }
            if lossy && s.crashes < self.bounds.crashes_max {
                actions.push(Action::Crash(id));
            }
            if s.proposals < self.bounds.proposals_max && node.raft.role() == Role::Leader {
                actions.push(Action::Propose(id));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Deliver(m) => {
                let k = s.net.iter().position(|x| *x == m)?;
                s.net.remove(k);
                let now = s.nodes[State::idx(m.to)].clock_ms;
                s.step(
                    self,
                    m.to,
                    now,
                    Input::Receive {
                        from: m.from,
                        message: m.message,
                    },
                );
            }
            Action::Duplicate(m) => {
                s.duplicates += 1;
                let now = s.nodes[State::idx(m.to)].clock_ms;
                s.step(
                    self,
                    m.to,
                    now,
                    Input::Receive {
                        from: m.from,
                        message: m.message,
                    },
                );
            }
            Action::Drop(m) => {
                let k = s.net.iter().position(|x| *x == m)?;
                s.net.remove(k);
            }
            Action::Fsync(id) => s.fsync(self, id),
            Action::Timeout(id) => {
                s.timeouts += 1;
                let node = &s.nodes[State::idx(id)];
                let now = node.raft.poll_timeout()?.max(node.clock_ms);
                s.step(self, id, now, Input::Tick);
            }
            Action::Crash(id) => {
                s.crashes += 1;
                s.crash(self, id);
            }
            Action::Propose(id) => {
                let data = vec![b'p', s.proposals];
                s.proposals += 1;
                let now = s.nodes[State::idx(id)].clock_ms;
                s.step(self, id, now, Input::Propose { data });
            }
        }
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.net.len() <= self.bounds.in_flight_max
            && s.nodes.iter().all(|n| {
                n.raft.term() <= self.bounds.term_max
                    && n.raft.last_index() <= self.bounds.log_len_max
            })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut p = vec![
            Property::always("no core assertion fails", |_, s: &State| s.fault.is_none()),
            Property::always("at most one leader per term", |_, s: &State| {
                let mut terms = BTreeSet::new();
                s.elected.iter().all(|(t, _)| terms.insert(*t))
                    && s.nodes.iter().all(|a| {
                        a.raft.role() != Role::Leader
                            || s.nodes.iter().all(|b| {
                                a.raft.id() == b.raft.id()
                                    || b.raft.role() != Role::Leader
                                    || b.raft.term() != a.raft.term()
                            })
                    })
            }),
            Property::always("log matching", |_, s: &State| {
                s.nodes.iter().enumerate().all(|(i, a)| {
                    s.nodes[i + 1..]
                        .iter()
                        .all(|b| State::logs_match(&a.raft, &b.raft))
                })
            }),
            Property::always("leader completeness", |_, s: &State| {
                s.nodes.iter().all(|n| {
                    n.raft.role() != Role::Leader
                        || s.committed.iter().all(|(&index, &(t, commit_term))| {
                            n.raft.term() < commit_term
                                || n.raft.snapshot().index >= index
                                || n.raft.term_at(index) == Some(t)
                        })
                })
            }),
            Property::always("state machine safety", |_, s: &State| !s.apply_conflict),
            Property::always("committed entry never lost", |_, s: &State| {
                !s.commit_changed
                    && s.committed.iter().all(|(&index, &(t, _))| {
                        s.nodes
                            .iter()
                            .filter(|n| State::disk_has(&n.disk, index, t))
                            .count()
                            >= QUORUM
                    })
            }),
            Property::sometimes("a leader is elected", |_, s: &State| {
                s.nodes.iter().any(|n| n.raft.role() == Role::Leader)
            }),
        ];
        if self.bounds.proposals_max > 0 {
            p.push(Property::sometimes("a proposal commits", |_, s: &State| {
                s.nodes.iter().any(|n| {
                    n.raft
                        .entries()
                        .iter()
                        .any(|e| e.kind == EntryKind::Normal && e.index <= n.raft.commit_index())
                })
            }));
        }
        if self.network == Network::Reliable {
            p.push(Property::eventually(
                "a leader is elected (eventually)",
                |_, s: &State| s.nodes.iter().any(|n| n.raft.role() == Role::Leader),
            ));
        }
        p
    }
}

/// One line per node: role, term, vote, log (term per index), commit, disk.
pub fn summary(s: &State) -> String {
    let mut out = String::new();
    for n in &s.nodes {
        let r = &n.raft;
        let log: Vec<String> = r
            .entries()
            .iter()
            .map(|e| match e.kind {
                EntryKind::NoOp => format!("{}n", e.term),
                EntryKind::Normal => format!("{}p", e.term),
            })
            .collect();
        let disk: Vec<u64> = n.disk.entries.iter().map(|e| e.term).collect();
        out.push_str(&format!(
            "\n    node {}: {:?} term={} vote={:?} log=[{}] commit={} disk(term={} vote={:?} log={:?}) unsynced={}",
            r.id(),
            r.role(),
            r.term(),
            r.hard_state().voted_for,
            log.join(" "),
            r.commit_index(),
            n.disk.hard_state.term,
            n.disk.hard_state.voted_for,
            disk,
            n.unsynced.len()
        ));
    }
    out.push_str(&format!(
        "\n    in flight={} elected={:?} committed={:?} fault={:?}",
        s.net.len(),
        s.elected,
        s.committed,
        s.fault
    ));
    out
}
