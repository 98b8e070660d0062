//! A broker outside the voter set: it follows the metadata quorum without voting, the way
//! KRaft's observers do, by asking a voter (the leader once known) for committed entries and
//! applying them in order.
//!
//! It keeps no Raft state on disk: at every start it fetches the leader's snapshot and the
//! entries after it. Its proposals (registration, admin requests, producer-id blocks) are
//! forwarded to the leader like a follower's, and resolve once this node has applied the entry at
//! the index and term the leader gave.
//!
//! Invariants: the state machine sees only committed entries, each once, in index order (a
//! snapshot replaces everything up to its index); a proposal resolves `Ok` only if the entry
//! applied here at its index carries the term the leader appended it with.

use std::time::Duration;

use skein_core::raft::{Entry, EntryKind, NodeId, Role, Snapshot};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::peer::Outbox;
use crate::quorum::{
    Cmd, PeerMsg, Pending, Quorum, QuorumError, QuorumStatus, Reply, StateMachine,
};

/// How often an observer asks for new entries while caught up.
pub const OBSERVE_INTERVAL_MS: u64 = 50;
/// A voter silent this long is given up for the next one.
pub const OBSERVE_TIMEOUT_MS: u64 = 1000;

/// How to start an observer.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// This node.
    pub node_id: NodeId,
    /// The voters (the outbox knows their addresses).
    pub voters: Vec<NodeId>,
    /// This node's controller listener, where voters send their answers.
    pub addr: String,
}

struct Observer<S> {
    cfg: ObserverConfig,
    machine: S,
    outbox: Outbox<PeerMsg>,
    status: watch::Sender<QuorumStatus>,
    /// First index not applied yet.
    next: u64,
    snapshot_index: u64,
    leader: Option<NodeId>,
    term: u64,
    commit: u64,
    /// The voter asked when no leader is known (index into `cfg.voters`).
    rotate: usize,
    last_answer: Instant,
    pending: Pending,
}

/// Starts an observer driver; the handle works like a voter's.
pub fn start<S: StateMachine>(
    cfg: ObserverConfig,
    machine: S,
    outbox: Outbox<PeerMsg>,
    inbox: mpsc::Receiver<(NodeId, PeerMsg)>,
    stop: watch::Receiver<bool>,
) -> Quorum {
    let status = QuorumStatus {
        node_id: cfg.node_id,
        voters: cfg.voters.clone(),
        role: Role::Follower,
        term: 0,
        leader: None,
        commit_index: 0,
        last_applied: 0,
        last_index: 0,
        snapshot_index: 0,
        matched: Vec::new(),
    };
    let (status_tx, status_rx) = watch::channel(status);
    let (cmd_tx, cmd_rx) = mpsc::channel(crate::quorum::PROPOSALS_QUEUED_MAX);
    let o = Observer {
        cfg,
        machine,
        outbox,
        status: status_tx,
        next: 1,
        snapshot_index: 0,
        leader: None,
        term: 0,
        commit: 0,
        rotate: 0,
        last_answer: Instant::now(),
        pending: Pending::default(),
    };
    tokio::spawn(o.run(cmd_rx, inbox, stop));
    Quorum {
        cmds: cmd_tx,
        status: status_rx,
    }
}

impl<S: StateMachine> Observer<S> {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut inbox: mpsc::Receiver<(NodeId, PeerMsg)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(OBSERVE_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inbox_open = true;
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Propose { data, reply }) => self.propose(data, reply),
                    None => return,
                },
                msg = inbox.recv(), if inbox_open => match msg {
                    Some((from, m)) => self.receive(from, m),
                    None => inbox_open = false,
                },
                _ = tick.tick() => self.ask(),
                _ = stop.changed() => return,
            }
            self.expire();
            self.publish();
        }
    }

    /// The voter to ask: the leader, else the voters in turn.
    fn target(&self) -> NodeId {
        self.leader
            .unwrap_or(self.cfg.voters[self.rotate % self.cfg.voters.len()])
    }

    fn ask(&mut self) {
        if self.last_answer.elapsed() > Duration::from_millis(OBSERVE_TIMEOUT_MS) {
            // Nobody answers: forget the leader and try the next voter.
            if self.leader.take().is_none() {
                self.rotate += 1;
            }
            self.last_answer = Instant::now();
        }
        let to = self.target();
        self.outbox.send(
            to,
            PeerMsg::Observe {
                next: self.next,
                addr: self.cfg.addr.clone(),
            },
        );
    }

    fn propose(&mut self, data: Vec<u8>, reply: Reply) {
        let Some(leader) = self.leader else {
            let _ = reply.send(Err(QuorumError::NoLeader));
            return;
        };
        self.pending.forward(&self.outbox, leader, data, reply);
    }

    fn receive(&mut self, from: NodeId, m: PeerMsg) {
        match m {
            PeerMsg::Observed {
                leader,
                term,
                commit,
                snapshot,
                entries,
            } => {
                self.last_answer = Instant::now();
                if term < self.term {
                    return;
                }
                self.term = term;
                let new_leader = leader.filter(|l| self.cfg.voters.contains(l));
                if new_leader.is_some() && new_leader != self.leader {
                    self.leader = new_leader;
                    // Make sure the leader knows where to answer before anything is forwarded.
                    self.ask();
                }
                self.commit = self.commit.max(commit);
                if let Some(s) = snapshot {
                    self.restore(s);
                }
                let got = !entries.is_empty();
                for e in entries {
                    if e.index == self.next {
                        self.apply(e);
                    }
                }
                if got && self.next <= self.commit {
                    self.ask();
                }
                let _ = from;
            }
            PeerMsg::Forwarded { req, result } => {
                self.pending.answered(req, result, self.next - 1);
            }
            PeerMsg::Raft(_)
            | PeerMsg::Forward { .. }
            | PeerMsg::Observe { .. }
            | PeerMsg::Heartbeat { .. } => {}
        }
    }

    fn restore(&mut self, s: Snapshot) {
        if s.index < self.next {
            return;
        }
        info!(
            index = s.index,
            term = s.term,
            "metadata restored from a snapshot"
        );
        self.machine.restore(&s.data);
        self.next = s.index + 1;
        self.snapshot_index = s.index;
        self.pending.snapshot_installed(s.index);
    }

    fn apply(&mut self, e: Entry) {
        if e.kind == EntryKind::Normal {
            self.machine.apply(e.index, &e.data);
        }
        self.next = e.index + 1;
        self.pending.applied(e.index, e.term);
    }

    fn expire(&mut self) {
        self.pending.expire(self.leader);
    }

    fn publish(&self) {
        let applied = self.next - 1;
        let s = QuorumStatus {
            node_id: self.cfg.node_id,
            voters: self.cfg.voters.clone(),
            role: Role::Follower,
            term: self.term,
            leader: self.leader,
            commit_index: self.commit,
            last_applied: applied,
            last_index: applied,
            snapshot_index: self.snapshot_index,
            matched: Vec::new(),
        };
        self.status.send_if_modified(|old| {
            let changed = *old != s;
            if changed {
                if old.leader != s.leader {
                    match s.leader {
                        Some(l) => {
                            info!(leader = l, term = s.term, "observing the metadata quorum")
                        }
                        None => warn!("lost the metadata quorum leader; asking the other voters"),
                    }
                }
                *old = s;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::tests::Recorder;
    use crate::quorum::QuorumConfig;
    use skein_sys::net::Listener;
    use std::collections::BTreeMap;

    async fn listener() -> (Listener, String) {
        let l = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = l.local_addr().unwrap().to_string();
        (l, a)
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_observer_catches_up_from_a_snapshot_and_its_proposals_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (vl, va) = listener().await;
        let (ol, oa) = listener().await;
        let voters = BTreeMap::from([(1u64, va.clone())]);
        // A lone voter that snapshots every 4 entries.
        let (vtx, vrx) = mpsc::channel(64);
        tokio::spawn(crate::peer::serve(vl, "c".into(), vtx, stop.clone()));
        let voter_log = Recorder::default();
        let voter = Quorum::start(
            QuorumConfig {
                node_id: 1,
                voters: voters.clone(),
                dir: dir.path().join("v"),
                bootstrap: vec![],
                rng_seed: 1,
                snapshot_every: 4,
            },
            voter_log.clone(),
            Outbox::new(1, "c".into(), BTreeMap::new(), stop.clone()),
            vrx,
            stop.clone(),
        )
        .unwrap();
        for i in 0..10u8 {
            loop {
                if voter.propose(vec![i]).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert!(voter.status().snapshot_index >= 8);
        // The observer joins late: entries 1..8 exist only in the snapshot now.
        let (otx, orx) = mpsc::channel(64);
        tokio::spawn(crate::peer::serve(ol, "c".into(), otx, stop.clone()));
        let seen = Recorder::default();
        let obs = start(
            ObserverConfig {
                node_id: 9,
                voters: vec![1],
                addr: oa,
            },
            seen.clone(),
            Outbox::new(9, "c".into(), voters, stop.clone()),
            orx,
            stop.clone(),
        );
        assert!(obs.caught_up(Duration::from_secs(5)).await);
        eventually("the observer's copy", || seen.0.lock().unwrap().len() == 10).await;
        // Its proposals go through the leader and resolve once applied here.
        let index = loop {
            match obs.propose(vec![42]).await {
                Ok(i) => break i,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert!(index > 10);
        assert_eq!(seen.0.lock().unwrap().last(), Some(&vec![42]));
        eventually("the voter's copy", || {
            voter_log.0.lock().unwrap().last() == Some(&vec![42])
        })
        .await;
        assert_eq!(*seen.0.lock().unwrap(), *voter_log.0.lock().unwrap());
        stop_tx.send_replace(true);
    }
}
