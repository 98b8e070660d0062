//! A node outside the voter set that follows the quorum's committed log the way KRaft's
//! observers do: it asks a voter (the leader once known, else each voter in turn) for the
//! committed entries from the first one it has not applied, and applies them in order. It keeps
//! no Raft state on disk; after a start it catches up from the leader's snapshot.
//!
//! The voter's side is [`Raft::observe_answer`](super::Raft::observe_answer). Proposals of an
//! observer are forwarded to the leader by the driver, as a follower's are.
//!
//! Invariants: entries are applied once each, in index order, and only committed ones (a voter
//! answers with committed entries only); a snapshot is restored only if it covers the next entry
//! to apply, and then replaces everything up to its index; the term never decreases, and an
//! answer from an older term changes nothing.

use std::collections::VecDeque;

use super::types::{Entry, NodeId, Snapshot};

/// How an observer asks and when it gives a voter up.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// This node.
    pub node_id: NodeId,
    /// The voters, asked in turn while no leader is known.
    pub voters: Vec<NodeId>,
    /// How often to ask while caught up, in ms.
    pub ask_every_ms: u64,
    /// A voter silent this long is given up for the next one, in ms.
    pub give_up_after_ms: u64,
}

/// A voter's answer to an observer: committed entries from the index asked for (after
/// `snapshot`, when those were compacted away), and who leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObserveAnswer {
    /// The leader the voter knows.
    pub leader: Option<NodeId>,
    /// The voter's term.
    pub term: u64,
    /// The voter's commit index.
    pub commit: u64,
    /// The voter's snapshot, when the entries asked for are compacted.
    pub snapshot: Option<Snapshot>,
    /// Committed entries, in index order.
    pub entries: Vec<Entry>,
}

/// An input to the observer.
#[derive(Debug, Clone)]
pub enum ObserverInput {
    /// Time passed (the driver calls this at [`Observer::poll_timeout`]).
    Tick,
    /// A voter answered.
    Answer(ObserveAnswer),
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObserverOutput {
    /// Ask voter `to` for committed entries from `next` on.
    Ask {
        /// The voter.
        to: NodeId,
        /// The first index not applied here.
        next: u64,
    },
    /// Replace the state machine with this snapshot.
    Restore(Snapshot),
    /// Apply this committed entry (no-ops too: the driver skips their data).
    Apply(Entry),
}

/// The observer's state.
#[derive(Debug)]
pub struct Observer {
    cfg: ObserverConfig,
    /// First index not applied yet.
    next: u64,
    snapshot_index: u64,
    leader: Option<NodeId>,
    term: u64,
    commit: u64,
    /// The voter asked when no leader is known (index into `cfg.voters`, modulo).
    rotate: usize,
    last_answer_ms: u64,
    next_ask_ms: u64,
    out: VecDeque<ObserverOutput>,
}

impl Observer {
    /// An observer that has applied nothing, started at `now_ms`.
    pub fn new(cfg: ObserverConfig, now_ms: u64) -> Observer {
        assert!(!cfg.voters.is_empty(), "an observer needs voters to ask");
        Observer {
            cfg,
            next: 1,
            snapshot_index: 0,
            leader: None,
            term: 0,
            commit: 0,
            rotate: 0,
            last_answer_ms: now_ms,
            next_ask_ms: now_ms,
            out: VecDeque::new(),
        }
    }

    /// Takes one input at monotonic time `now_ms`; drain [`Observer::poll_output`] after.
    pub fn handle(&mut self, now_ms: u64, input: ObserverInput) {
        match input {
            ObserverInput::Tick => {
                if now_ms >= self.next_ask_ms {
                    self.give_up_if_silent(now_ms);
                    self.ask(now_ms);
                }
            }
            ObserverInput::Answer(a) => self.answered(now_ms, a),
        }
    }

    /// The next piece of work, if any.
    pub fn poll_output(&mut self) -> Option<ObserverOutput> {
        self.out.pop_front()
    }

    /// When the next [`ObserverInput::Tick`] is due.
    pub fn poll_timeout(&self) -> u64 {
        self.next_ask_ms
    }

    /// The leader, as the last answer named it.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The highest term heard.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The highest commit index heard.
    pub fn commit_index(&self) -> u64 {
        self.commit
    }

    /// The last index applied (or restored from a snapshot).
    pub fn last_applied(&self) -> u64 {
        self.next - 1
    }

    /// The index of the last snapshot restored.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// This node.
    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    /// The voters.
    pub fn voters(&self) -> &[NodeId] {
        &self.cfg.voters
    }

    /// Asserts the invariants of the module docs that hold between inputs.
    pub fn check_invariants(&self) {
        assert!(self.next >= 1, "index 0 is never applied");
        assert!(
            self.snapshot_index < self.next,
            "a restored snapshot is applied"
        );
        if let Some(l) = self.leader {
            assert!(self.cfg.voters.contains(&l), "the leader is a voter");
        }
    }

    /// The voter to ask: the leader, else the voters in turn.
    fn target(&self) -> NodeId {
        self.leader
            .unwrap_or(self.cfg.voters[self.rotate % self.cfg.voters.len()])
    }

    fn give_up_if_silent(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_answer_ms) > self.cfg.give_up_after_ms {
            // Nobody answers: forget the leader, or try the next voter.
            if self.leader.take().is_none() {
                self.rotate += 1;
            }
            self.last_answer_ms = now_ms;
        }
    }

    fn ask(&mut self, now_ms: u64) {
        self.out.push_back(ObserverOutput::Ask {
            to: self.target(),
            next: self.next,
        });
        self.next_ask_ms = now_ms + self.cfg.ask_every_ms;
    }

    fn answered(&mut self, now_ms: u64, a: ObserveAnswer) {
        self.last_answer_ms = now_ms;
        if a.term < self.term {
            return;
        }
        self.term = a.term;
        let leader = a.leader.filter(|l| self.cfg.voters.contains(l));
        if leader.is_some() && leader != self.leader {
            self.leader = leader;
            // The leader learns where to answer before anything is forwarded to it.
            self.ask(now_ms);
        }
        self.commit = self.commit.max(a.commit);
        if let Some(s) = a.snapshot.filter(|s| s.index >= self.next) {
            self.next = s.index + 1;
            self.snapshot_index = s.index;
            self.out.push_back(ObserverOutput::Restore(s));
        }
        let got = !a.entries.is_empty();
        for e in a.entries {
            if e.index == self.next {
                self.next += 1;
                self.out.push_back(ObserverOutput::Apply(e));
            }
        }
        if got && self.next <= self.commit {
            self.ask(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryKind;

    fn cfg() -> ObserverConfig {
        ObserverConfig {
            node_id: 9,
            voters: vec![1, 2, 3],
            ask_every_ms: 50,
            give_up_after_ms: 1000,
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: vec![index as u8],
        }
    }

    fn drain(o: &mut Observer) -> Vec<ObserverOutput> {
        std::iter::from_fn(|| o.poll_output()).collect()
    }

    fn answer(
        leader: Option<NodeId>,
        term: u64,
        commit: u64,
        entries: Vec<Entry>,
    ) -> ObserverInput {
        ObserverInput::Answer(ObserveAnswer {
            leader,
            term,
            commit,
            snapshot: None,
            entries,
        })
    }

    #[test]
    fn asks_voters_in_turn_until_one_names_a_leader() {
        let mut o = Observer::new(cfg(), 0);
        o.handle(0, ObserverInput::Tick);
        assert_eq!(drain(&mut o), vec![ObserverOutput::Ask { to: 1, next: 1 }]);
        // Voter 1 stays silent past the give-up time: voter 2 is asked next.
        o.handle(1001, ObserverInput::Tick);
        assert_eq!(drain(&mut o), vec![ObserverOutput::Ask { to: 2, next: 1 }]);
        o.handle(1010, answer(Some(3), 4, 0, vec![]));
        assert_eq!(drain(&mut o), vec![ObserverOutput::Ask { to: 3, next: 1 }]);
        assert_eq!(o.leader(), Some(3));
        o.check_invariants();
    }

    #[test]
    fn applies_in_order_once_and_ignores_older_terms() {
        let mut o = Observer::new(cfg(), 0);
        o.handle(0, answer(Some(1), 2, 3, vec![entry(1, 1), entry(2, 2)]));
        let out = drain(&mut o);
        assert_eq!(
            out[1..],
            [
                ObserverOutput::Apply(entry(1, 1)),
                ObserverOutput::Apply(entry(2, 2)),
                // Behind the commit index: asks again at once.
                ObserverOutput::Ask { to: 1, next: 3 },
            ]
        );
        // A duplicate and a gap are skipped; an older term changes nothing.
        o.handle(5, answer(Some(1), 2, 3, vec![entry(2, 2), entry(4, 2)]));
        assert!(drain(&mut o)
            .iter()
            .all(|x| !matches!(x, ObserverOutput::Apply(_))));
        o.handle(6, answer(Some(2), 1, 9, vec![entry(3, 2)]));
        assert!(drain(&mut o).is_empty());
        assert_eq!(
            (o.last_applied(), o.commit_index(), o.leader()),
            (2, 3, Some(1))
        );
        o.check_invariants();
    }

    #[test]
    fn a_snapshot_replaces_what_it_covers() {
        let mut o = Observer::new(cfg(), 0);
        let snap = Snapshot {
            index: 10,
            term: 3,
            data: vec![1],
        };
        o.handle(
            0,
            ObserverInput::Answer(ObserveAnswer {
                leader: Some(2),
                term: 3,
                commit: 11,
                snapshot: Some(snap.clone()),
                entries: vec![entry(11, 3)],
            }),
        );
        let out = drain(&mut o);
        assert!(out.contains(&ObserverOutput::Restore(snap.clone())));
        assert!(out.contains(&ObserverOutput::Apply(entry(11, 3))));
        assert_eq!((o.last_applied(), o.snapshot_index()), (11, 10));
        // An old snapshot is not restored again.
        o.handle(
            1,
            ObserverInput::Answer(ObserveAnswer {
                leader: Some(2),
                term: 3,
                commit: 11,
                snapshot: Some(snap),
                entries: vec![],
            }),
        );
        assert!(drain(&mut o)
            .iter()
            .all(|x| !matches!(x, ObserverOutput::Restore(_))));
        o.check_invariants();
    }
}
