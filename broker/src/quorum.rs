//! The metadata quorum's driver: runs skein-core's [`Raft`] on a tokio task, carries out its
//! storage work through [`RaftStore`], its messages through the peer transport, and feeds
//! committed entries to the broker's state machine.
//!
//! Proposals can be made on any node: the leader appends them; a follower forwards them to the
//! leader it knows and waits for the entry to be applied locally. A proposal resolves only when
//! this node has applied the entry at its index with its term, so when it returns the caller's
//! own view already includes it.
//!
//! Invariants: the driver follows Raft's calling contract (every `handle` is followed by a full
//! drain of `poll_output`, storage outputs are carried out in order, `Sync` is acknowledged only
//! after the fsync); the state machine sees only committed entries, in index order; the time
//! handed to Raft is monotonic (tokio's clock, simulated under turmoil).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skein_core::raft::{
    Durable, Entry, EntryKind, HardState, Input, Message, NodeId, Output, ProposeError, Raft,
    RaftConfig, Role, Snapshot,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::limits::{OBSERVE_ENTRIES_MAX, PROPOSALS_QUEUED_MAX, PROPOSAL_TIMEOUT_MS};
use crate::peer::Outbox;
use skein_storage::raft_store::{RaftStore, RaftStoreError};

/// Entries applied since the last snapshot before the driver takes a new one (default).
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 1024;

/// What a node applies: the broker's metadata.
pub trait StateMachine: Send + 'static {
    /// Applies the committed entry at `index` (a record the broker proposed).
    fn apply(&mut self, index: u64, data: &[u8]);
    /// Replaces the whole state with a snapshot's.
    fn restore(&mut self, data: &[u8]);
    /// The whole state, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
}

/// Messages between quorum nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerMsg {
    /// Raft's own traffic.
    Raft(Message),
    /// A follower asks the leader to propose `data`.
    Forward {
        /// The follower's request id.
        req: u64,
        /// The record.
        data: Vec<u8>,
    },
    /// A broker outside the voter set asks a voter for committed entries from `next` on;
    /// replies go to `addr` (its controller listener).
    Observe {
        /// First index it has not applied.
        next: u64,
        /// Where to send the answer.
        addr: String,
    },
    /// A voter's answer to Observe: committed entries from `next` (after `snapshot`, when
    /// `next` was compacted away), and who leads.
    Observed {
        /// The leader the voter knows.
        leader: Option<NodeId>,
        /// The voter's term.
        term: u64,
        /// The voter's commit index.
        commit: u64,
        /// The voter's snapshot, when the entries asked for are compacted.
        snapshot: Option<Snapshot>,
        /// Committed entries, in order.
        entries: Vec<Entry>,
    },
    /// A broker's liveness heartbeat to the quorum leader's controller.
    Heartbeat {
        /// The broker.
        broker: i32,
        /// Its incarnation.
        incarnation: String,
    },
    /// The leader's answer to a Forward: where the entry went, or why not.
    Forwarded {
        /// The follower's request id.
        req: u64,
        /// `(index, term)` of the appended entry, or the refusal.
        result: Result<(u64, u64), String>,
    },
}

/// Why a proposal did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// No leader is known right now (an election is under way); retry.
    #[error("the metadata quorum has no leader right now")]
    NoLeader,
    /// The leader refused or lost the entry (leadership changed); retry.
    #[error("the proposal was not committed: {0}")]
    NotCommitted(String),
    /// No answer within the proposal timeout.
    #[error("the metadata quorum did not commit the proposal in time")]
    Timeout,
    /// The driver has stopped.
    #[error("the metadata quorum is shut down")]
    Stopped,
}

/// What the quorum looks like from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// This node.
    pub node_id: NodeId,
    /// The voters.
    pub voters: Vec<NodeId>,
    /// This node's role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// Highest committed index known here.
    pub commit_index: u64,
    /// Highest index applied here.
    pub last_applied: u64,
    /// Last index in this node's log.
    pub last_index: u64,
    /// Index of the latest snapshot here.
    pub snapshot_index: u64,
    /// As leader: each voter's highest replicated index.
    pub matched: Vec<(NodeId, u64)>,
}

impl QuorumStatus {
    fn of(raft: &Raft) -> Self {
        QuorumStatus {
            node_id: raft.id(),
            voters: raft.config().voters.iter().copied().collect(),
            role: raft.role(),
            term: raft.term(),
            leader: raft.leader_id(),
            commit_index: raft.commit_index(),
            last_applied: raft.last_applied(),
            last_index: raft.last_index(),
            snapshot_index: raft.snapshot().index,
            matched: raft
                .config()
                .voters
                .iter()
                .filter_map(|v| Some((*v, raft.match_index(*v)?)))
                .collect(),
        }
    }
}

/// How to start the quorum on this node.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node.
    pub node_id: NodeId,
    /// Voter ids and their controller addresses (`host:port`).
    pub voters: BTreeMap<NodeId, String>,
    /// Where the Raft state lives.
    pub dir: PathBuf,
    /// Records to start from when the state is fresh (a single voter migrating an older
    /// single-node `__metadata.log`); ignored otherwise.
    pub bootstrap: Vec<Vec<u8>>,
    /// Seed for election timeouts (fresh per process start).
    pub rng_seed: u64,
    /// Take a snapshot (and drop the log before it) every this many applied entries.
    pub snapshot_every: u64,
}

pub(crate) enum Cmd {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<u64, QuorumError>>,
    },
}

/// A handle to the running quorum driver; cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    pub(crate) cmds: mpsc::Sender<Cmd>,
    pub(crate) status: watch::Receiver<QuorumStatus>,
}

impl Quorum {
    /// Recovers the Raft state and starts the driver task.
    pub fn start<S: StateMachine>(
        cfg: QuorumConfig,
        machine: S,
        outbox: Outbox<PeerMsg>,
        inbox: mpsc::Receiver<(NodeId, PeerMsg)>,
        stop: watch::Receiver<bool>,
    ) -> Result<Quorum, RaftStoreError> {
        let (mut store, mut durable) = RaftStore::open(&cfg.dir)?;
        let fresh = durable == Durable::default();
        if fresh && !cfg.bootstrap.is_empty() && cfg.voters.len() == 1 {
            // A lone voter may write its own term-1 log: nobody else could have voted.
            let hard = HardState {
                term: 1,
                voted_for: Some(cfg.node_id),
            };
            let entries: Vec<Entry> = cfg
                .bootstrap
                .iter()
                .enumerate()
                .map(|(i, d)| Entry {
                    term: 1,
                    index: i as u64 + 1,
                    kind: EntryKind::Normal,
                    data: d.clone(),
                })
                .collect();
            store.apply(&Output::PersistHardState(hard))?;
            store.apply(&Output::AppendEntries(entries.clone()))?;
            store.sync()?;
            durable = Durable {
                hard_state: hard,
                snapshot: None,
                entries,
            };
            info!(
                records = cfg.bootstrap.len(),
                "metadata log migrated into the quorum"
            );
        }
        let mut rc = RaftConfig::new(cfg.node_id, cfg.voters.keys().copied(), cfg.rng_seed);
        if cfg.voters.len() == 1 {
            // Nobody to wait for: elect ourselves almost at once.
            rc.election_timeout_min_ms = 20;
            rc.election_timeout_max_ms = 40;
            rc.heartbeat_interval_ms = 10;
        }
        let raft = Raft::new(rc, durable);
        let (status_tx, status_rx) = watch::channel(QuorumStatus::of(&raft));
        let (cmd_tx, cmd_rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        let driver = Driver {
            raft,
            store,
            machine,
            outbox,
            status: status_tx,
            start: Instant::now(),
            pending: Pending::default(),
            failed: false,
            snapshot_every: cfg.snapshot_every.max(1),
        };
        tokio::spawn(driver.run(cmd_rx, inbox, stop));
        Ok(Quorum {
            cmds: cmd_tx,
            status: status_rx,
        })
    }

    /// Proposes `data` and waits until it is committed and applied on this node; returns its
    /// index.
    pub async fn propose(&self, data: Vec<u8>) -> Result<u64, QuorumError> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .try_send(Cmd::Propose { data, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    QuorumError::NotCommitted("too many proposals queued".into())
                }
                mpsc::error::TrySendError::Closed(_) => QuorumError::Stopped,
            })?;
        match tokio::time::timeout(Duration::from_millis(PROPOSAL_TIMEOUT_MS), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(QuorumError::Stopped),
            Err(_) => Err(QuorumError::Timeout),
        }
    }

    /// Whether the driver has stopped (shutdown, or a storage failure it cannot recover from).
    pub fn is_stopped(&self) -> bool {
        self.cmds.is_closed()
    }

    /// Resolves when the driver stops.
    pub async fn stopped(&self) {
        self.cmds.closed().await
    }

    /// The current status.
    pub fn status(&self) -> QuorumStatus {
        self.status.borrow().clone()
    }

    /// Waits until this node has applied everything committed as of the moment a leader is
    /// known (start-up: the broker serves nothing before its metadata is current).
    pub async fn caught_up(&self, timeout: Duration) -> bool {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if s.leader.is_some() && s.last_applied >= s.commit_index && s.commit_index > 0
                    {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

pub(crate) type Reply = oneshot::Sender<Result<u64, QuorumError>>;

struct Driver<S> {
    raft: Raft,
    store: RaftStore,
    machine: S,
    outbox: Outbox<PeerMsg>,
    status: watch::Sender<QuorumStatus>,
    start: Instant,
    /// Proposals waiting to be applied or answered.
    pending: Pending,
    /// Storage failed: the node stops taking part (a restart recovers from disk).
    failed: bool,
    snapshot_every: u64,
}

impl<S: StateMachine> Driver<S> {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut inbox: mpsc::Receiver<(NodeId, PeerMsg)>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.drain();
        let now = self.now();
        self.raft.handle(now, Input::Tick);
        self.drain();
        let mut inbox_open = true;
        loop {
            if self.failed {
                error!("metadata quorum storage failed; this node no longer takes part");
                return;
            }
            let deadline = self
                .raft
                .poll_timeout()
                .map(|t| self.start + Duration::from_millis(t.max(self.now())));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Propose { data, reply }) => self.propose(data, reply),
                    None => return,
                },
                msg = inbox.recv(), if inbox_open => match msg {
                    Some((from, m)) => self.receive(from, m),
                    // A lone voter has no peer listener feeding it.
                    None => inbox_open = false,
                },
                _ = sleep => {
                    let now = self.now();
                    self.raft.handle(now, Input::Tick);
                }
                _ = stop.changed() => return,
            }
            self.drain();
            self.expire_waiters();
        }
    }

    fn propose(&mut self, data: Vec<u8>, reply: Reply) {
        match self.raft.role() {
            Role::Leader => match self.propose_here(data) {
                // A lone voter commits and applies within the proposal itself.
                Ok((index, term)) => {
                    let applied = self.raft.last_applied();
                    self.pending.appended(index, term, applied, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            _ => match self.raft.leader_id() {
                Some(leader) if leader != self.raft.id() => {
                    self.pending.forward(&self.outbox, leader, data, reply);
                }
                _ => {
                    let _ = reply.send(Err(QuorumError::NoLeader));
                }
            },
        }
    }

    /// Hands a proposal to Raft; returns the `(index, term)` it was appended at.
    fn propose_here(&mut self, data: Vec<u8>) -> Result<(u64, u64), QuorumError> {
        let now = self.now();
        self.raft.handle(now, Input::Propose { data });
        // The answer is the first Proposed/Refused output; everything else is carried out.
        let mut answer = None;
        while let Some(out) = self.raft.poll_output() {
            match out {
                Output::Proposed { index, term } if answer.is_none() => {
                    answer = Some(Ok((index, term)));
                }
                Output::Refused(e) if answer.is_none() => {
                    answer = Some(Err(match e {
                        ProposeError::NotLeader { .. } => QuorumError::NoLeader,
                        ProposeError::TooManyUncommitted => {
                            QuorumError::NotCommitted("too many uncommitted entries".into())
                        }
                    }));
                }
                other => self.carry_out(other),
            }
        }
        answer.unwrap_or_else(|| Err(QuorumError::NotCommitted("no answer from raft".into())))
    }

    fn receive(&mut self, from: NodeId, m: PeerMsg) {
        match m {
            PeerMsg::Raft(message) => {
                let now = self.now();
                self.raft.handle(now, Input::Receive { from, message });
            }
            PeerMsg::Forward { req, data } => {
                let result = if self.raft.role() == Role::Leader {
                    self.propose_here(data).map_err(|e| e.to_string())
                } else {
                    Err(QuorumError::NoLeader.to_string())
                };
                self.outbox.send(from, PeerMsg::Forwarded { req, result });
            }
            PeerMsg::Observe { next, addr } => {
                self.outbox.set_addr(from, addr);
                let answer = self.observed(next);
                self.outbox.send(from, answer);
            }
            PeerMsg::Heartbeat { .. } | PeerMsg::Observed { .. } => {}
            PeerMsg::Forwarded { req, result } => {
                let applied = self.raft.last_applied();
                self.pending.answered(req, result, applied);
            }
        }
    }

    /// Committed entries from `next` for an observer (at most [`OBSERVE_ENTRIES_MAX`]).
    fn observed(&self, next: u64) -> PeerMsg {
        let a = self.raft.observe_answer(next, OBSERVE_ENTRIES_MAX);
        PeerMsg::Observed {
            leader: a.leader,
            term: a.term,
            commit: a.commit,
            snapshot: a.snapshot,
            entries: a.entries,
        }
    }

    /// Drains and carries out every output.
    fn drain(&mut self) {
        while let Some(out) = self.raft.poll_output() {
            self.carry_out(out);
        }
        #[cfg(debug_assertions)]
        self.raft.check_invariants();
        self.publish_status();
    }

    fn carry_out(&mut self, out: Output) {
        if self.failed {
            return;
        }
        match out {
            Output::PersistHardState(_)
            | Output::AppendEntries(_)
            | Output::TruncateFrom { .. }
            | Output::PersistSnapshot(_) => {
                if let Err(e) = self.store.apply(&out) {
                    error!(error = %e, "metadata quorum storage write failed");
                    self.failed = true;
                }
            }
            Output::Sync { seq } => {
                // Metadata is small and rare: fsync inline on the driver task.
                if let Err(e) = self.store.sync() {
                    error!(error = %e, "metadata quorum fsync failed");
                    self.failed = true;
                    return;
                }
                let now = self.now();
                self.raft.handle(now, Input::Persisted { seq });
            }
            Output::Send { to, message } => {
                self.outbox.send(to, PeerMsg::Raft(message));
            }
            Output::Apply(entry) => self.apply(entry),
            Output::ApplySnapshot(s) => {
                info!(
                    index = s.index,
                    term = s.term,
                    "metadata restored from a snapshot"
                );
                self.machine.restore(&s.data);
                self.pending.snapshot_installed(s.index);
            }
            Output::RoleChanged { role, term, leader } => {
                info!(?role, term, ?leader, "metadata quorum role changed");
            }
            Output::Proposed { .. } | Output::Refused(_) => {
                warn!("unexpected proposal answer outside a proposal");
            }
        }
    }

    fn apply(&mut self, entry: Entry) {
        if entry.kind == EntryKind::Normal {
            self.machine.apply(entry.index, &entry.data);
        }
        self.pending.applied(entry.index, entry.term);
        if entry.index >= self.raft.snapshot().index + self.snapshot_every
            && entry.index == self.raft.commit_index()
        {
            let data = self.machine.snapshot();
            let now = self.now();
            self.raft.handle(
                now,
                Input::Compact {
                    index: entry.index,
                    data,
                },
            );
        }
    }

    fn expire_waiters(&mut self) {
        let leader = self.raft.leader_id();
        self.pending.expire(leader);
    }

    fn publish_status(&self) {
        let s = QuorumStatus::of(&self.raft);
        self.status.send_if_modified(|old| {
            let changed = *old != s;
            *old = s;
            changed
        });
    }
}

/// Proposals this node waits on, shared by the voter and observer drivers: entries it waits to
/// apply, proposals forwarded to the leader, and the terms of recently applied entries.
///
/// Invariant: a reply is `Ok(index)` only if the entry applied here at `index` has the term the
/// leader appended the proposal with.
#[derive(Default)]
pub(crate) struct Pending {
    /// Index -> (term the entry must have, reply).
    waiters: BTreeMap<u64, Vec<(u64, Reply)>>,
    /// Request id -> (the leader it went to, reply); failed at once when the leader changes.
    forwarded: BTreeMap<u64, (NodeId, Reply)>,
    req_next: u64,
    /// Terms of recently applied entries (for answers that arrive after the apply).
    applied_terms: BTreeMap<u64, u64>,
}

impl Pending {
    /// Sends `data` to `leader` to propose; the reply waits for its answer.
    pub(crate) fn forward(
        &mut self,
        outbox: &Outbox<PeerMsg>,
        leader: NodeId,
        data: Vec<u8>,
        reply: Reply,
    ) {
        let req = self.req_next;
        self.req_next += 1;
        if outbox.send(leader, PeerMsg::Forward { req, data }) {
            self.forwarded.insert(req, (leader, reply));
        } else {
            let _ = reply.send(Err(QuorumError::NoLeader));
        }
    }

    /// The proposal went to `(index, term)`: resolve now if applied (`last_applied`), else wait.
    pub(crate) fn appended(&mut self, index: u64, term: u64, last_applied: u64, reply: Reply) {
        if index <= last_applied {
            let r = match self.applied_terms.get(&index) {
                Some(t) if *t == term => Ok(index),
                _ => Err(QuorumError::NotCommitted("entry was replaced".into())),
            };
            let _ = reply.send(r);
        } else {
            self.waiters.entry(index).or_default().push((term, reply));
        }
    }

    /// The leader's answer to a forwarded proposal.
    pub(crate) fn answered(
        &mut self,
        req: u64,
        result: Result<(u64, u64), String>,
        last_applied: u64,
    ) {
        let Some((_, reply)) = self.forwarded.remove(&req) else {
            return;
        };
        match result {
            Ok((index, term)) => self.appended(index, term, last_applied, reply),
            Err(why) => {
                let _ = reply.send(Err(QuorumError::NotCommitted(why)));
            }
        }
    }

    /// The entry at `index` with `term` was applied here.
    pub(crate) fn applied(&mut self, index: u64, term: u64) {
        self.applied_terms.insert(index, term);
        if self.applied_terms.len() > 4096 {
            self.applied_terms.pop_first();
        }
        if let Some(ws) = self.waiters.remove(&index) {
            for (want, reply) in ws {
                let _ = reply.send(if want == term {
                    Ok(index)
                } else {
                    Err(QuorumError::NotCommitted("leadership changed".into()))
                });
            }
        }
    }

    /// A snapshot up to `index` replaced the state: waiters at or below it cannot be judged.
    pub(crate) fn snapshot_installed(&mut self, index: u64) {
        self.applied_terms.clear();
        let later = self.waiters.split_off(&(index + 1));
        for (_, ws) in std::mem::replace(&mut self.waiters, later) {
            for (_, reply) in ws {
                let _ = reply.send(Err(QuorumError::NotCommitted(
                    "replaced by a snapshot".into(),
                )));
            }
        }
    }

    /// Drops abandoned replies and fails forwards whose leader is no longer `leader`.
    pub(crate) fn expire(&mut self, leader: Option<NodeId>) {
        self.waiters.retain(|_, ws| {
            ws.retain(|(_, r)| !r.is_closed());
            !ws.is_empty()
        });
        let stale: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, (to, r))| r.is_closed() || Some(*to) != leader)
            .map(|(req, _)| *req)
            .collect();
        for req in stale {
            if let Some((_, reply)) = self.forwarded.remove(&req) {
                let _ = reply.send(Err(QuorumError::NoLeader));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A state machine that records every applied entry (snapshot: the whole list).
    #[derive(Clone, Default)]
    pub(crate) struct Recorder(pub(crate) Arc<Mutex<Vec<Vec<u8>>>>);

    impl StateMachine for Recorder {
        fn apply(&mut self, _index: u64, data: &[u8]) {
            self.0.lock().unwrap().push(data.to_vec());
        }
        fn restore(&mut self, data: &[u8]) {
            *self.0.lock().unwrap() = serde_json::from_slice(data).unwrap();
        }
        fn snapshot(&self) -> Vec<u8> {
            serde_json::to_vec(&*self.0.lock().unwrap()).unwrap()
        }
    }

    struct Node {
        quorum: Quorum,
        applied: Recorder,
        stop: watch::Sender<bool>,
    }

    async fn start(
        id: NodeId,
        voters: &BTreeMap<NodeId, String>,
        listener: skein_sys::net::Listener,
        dir: &std::path::Path,
    ) -> Node {
        let (stop, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(crate::peer::serve(
            listener,
            "c".into(),
            tx,
            stop_rx.clone(),
        ));
        let outbox = Outbox::new(id, "c".into(), voters.clone(), stop_rx.clone());
        let applied = Recorder::default();
        let cfg = QuorumConfig {
            node_id: id,
            voters: voters.clone(),
            dir: dir.join(format!("n{id}")),
            bootstrap: vec![],
            snapshot_every: SNAPSHOT_EVERY_ENTRIES,
            rng_seed: id * 7919,
        };
        let quorum = Quorum::start(cfg, applied.clone(), outbox, rx, stop_rx).unwrap();
        Node {
            quorum,
            applied,
            stop,
        }
    }

    async fn propose_retrying(q: &Quorum, data: &[u8]) -> u64 {
        for _ in 0..200 {
            match q.propose(data.to_vec()).await {
                Ok(i) => return i,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("proposal never committed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_elect_commit_from_a_follower_and_survive_losing_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for id in 1..=3u64 {
            let l = skein_sys::net::Listener::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            voters.insert(id, l.local_addr().unwrap().to_string());
            listeners.insert(id, l);
        }
        let mut nodes = BTreeMap::new();
        for (id, l) in listeners {
            nodes.insert(id, start(id, &voters, l, dir.path()).await);
        }
        // Propose through a node that is not the leader once one is elected.
        let i1 = propose_retrying(&nodes[&1].quorum, b"one").await;
        let leader = nodes[&1]
            .quorum
            .status()
            .leader
            .expect("leader after a commit");
        let follower = *nodes.keys().find(|id| **id != leader).unwrap();
        let i2 = propose_retrying(&nodes[&follower].quorum, b"two").await;
        assert!(i2 > i1);
        assert!(nodes[&follower]
            .applied
            .0
            .lock()
            .unwrap()
            .ends_with(&[b"two".to_vec()]));
        // Stop the leader: the other two elect a new one and keep committing.
        nodes[&leader].stop.send_replace(true);
        let survivor = *nodes.keys().find(|id| **id != leader).unwrap();
        propose_retrying(&nodes[&survivor].quorum, b"three").await;
        let s = nodes[&survivor].quorum.status();
        assert_ne!(s.leader, Some(leader));
        for (id, n) in &nodes {
            if *id == leader {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = n.applied.0.lock().unwrap().clone();
                if got == vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()] {
                    break;
                }
                assert!(Instant::now() < deadline, "node {id} applied {got:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
