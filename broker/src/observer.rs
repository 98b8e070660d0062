//! A broker outside the voter set: it follows the metadata quorum without voting, the way
//! KRaft's observers do. What to ask, whom, and what to apply is decided by skein-core's
//! [`Observer`] (core/src/raft/observer.rs); this driver carries it out: it sends the asks,
//! applies entries and snapshots to the broker's state machine, and forwards its proposals
//! (registration, admin requests, producer-id blocks) to the leader like a follower's.
//!
//! It keeps no Raft state on disk: at every start it fetches the leader's snapshot and the
//! entries after it.
//!
//! Invariants: the state machine sees only committed entries, each once, in index order (a
//! snapshot replaces everything up to its index); a proposal resolves `Ok` only if the entry
//! applied here at its index carries the term the leader appended it with.

use std::time::Duration;

use skein_core::raft::observer::{
    ObserveAnswer, Observer, ObserverConfig as CoreConfig, ObserverInput, ObserverOutput,
};
use skein_core::raft::{EntryKind, NodeId, Role};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::peer::Outbox;
use crate::quorum::{
    Cmd, PeerMsg, Pending, Quorum, QuorumError, QuorumStatus, Reply, StateMachine,
};

use crate::limits::{OBSERVE_INTERVAL_MS, OBSERVE_TIMEOUT_MS};

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

struct Driver<S> {
    core: Observer,
    addr: String,
    machine: S,
    outbox: Outbox<PeerMsg>,
    status: watch::Sender<QuorumStatus>,
    started: Instant,
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
    let (cmd_tx, cmd_rx) = mpsc::channel(crate::limits::PROPOSALS_QUEUED_MAX);
    let core = Observer::new(
        CoreConfig {
            node_id: cfg.node_id,
            voters: cfg.voters,
            ask_every_ms: OBSERVE_INTERVAL_MS,
            give_up_after_ms: OBSERVE_TIMEOUT_MS,
        },
        0,
    );
    let d = Driver {
        core,
        addr: cfg.addr,
        machine,
        outbox,
        status: status_tx,
        started: Instant::now(),
        pending: Pending::default(),
    };
    tokio::spawn(d.run(cmd_rx, inbox, stop));
    Quorum {
        cmds: cmd_tx,
        status: status_rx,
    }
}

impl<S: StateMachine> Driver<S> {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut inbox: mpsc::Receiver<(NodeId, PeerMsg)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut inbox_open = true;
        loop {
            let due = self.started + Duration::from_millis(self.core.poll_timeout());
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Propose { data, reply }) => self.propose(data, reply),
                    None => return,
                },
                msg = inbox.recv(), if inbox_open => match msg {
                    Some((_, m)) => self.receive(m),
                    None => inbox_open = false,
                },
                _ = tokio::time::sleep_until(due) => {
                    let now = self.now_ms();
                    self.core.handle(now, ObserverInput::Tick);
                }
                _ = stop.changed() => return,
            }
            self.carry_out();
            if cfg!(debug_assertions) {
                self.core.check_invariants();
            }
            self.pending.expire(self.core.leader());
            self.publish();
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn propose(&mut self, data: Vec<u8>, reply: Reply) {
        let Some(leader) = self.core.leader() else {
            let _ = reply.send(Err(QuorumError::NoLeader));
            return;
        };
        self.pending.forward(&self.outbox, leader, data, reply);
    }

    fn receive(&mut self, m: PeerMsg) {
        match m {
            PeerMsg::Observed {
                leader,
                term,
                commit,
                snapshot,
                entries,
            } => {
                let now = self.now_ms();
                let answer = ObserveAnswer {
                    leader,
                    term,
                    commit,
                    snapshot,
                    entries,
                };
                self.core.handle(now, ObserverInput::Answer(answer));
            }
            PeerMsg::Forwarded { req, result } => {
                self.pending.answered(req, result, self.core.last_applied());
            }
            PeerMsg::Raft(_)
            | PeerMsg::Forward { .. }
            | PeerMsg::Observe { .. }
            | PeerMsg::Heartbeat { .. } => {}
        }
    }

    /// Carries out the core's outputs: asks, snapshot restores, applies.
    fn carry_out(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                ObserverOutput::Ask { to, next } => {
                    let addr = self.addr.clone();
                    self.outbox.send(to, PeerMsg::Observe { next, addr });
                }
                ObserverOutput::Restore(s) => {
                    info!(
                        index = s.index,
                        term = s.term,
                        "metadata restored from a snapshot"
                    );
                    self.machine.restore(&s.data);
                    self.pending.snapshot_installed(s.index);
                }
                ObserverOutput::Apply(e) => {
                    if e.kind == EntryKind::Normal {
                        self.machine.apply(e.index, &e.data);
                    }
                    self.pending.applied(e.index, e.term);
                }
            }
        }
    }

    fn publish(&self) {
        let applied = self.core.last_applied();
        let s = QuorumStatus {
            node_id: self.core.node_id(),
            voters: self.core.voters().to_vec(),
            role: Role::Follower,
            term: self.core.term(),
            leader: self.core.leader(),
            commit_index: self.core.commit_index(),
            last_applied: applied,
            last_index: applied,
            snapshot_index: self.core.snapshot_index(),
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
