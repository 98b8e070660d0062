//! Unit tests for each Raft rule (on `Tiny`, a hand-driven lossless cluster), and the seeded
//! cluster harness (`cluster.rs`, checked by `checker.rs`) over many seeds and the canaries.

mod checker;
mod cluster;
mod seeds;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;

const ETO_MIN: u64 = 100;
const ETO_MAX: u64 = 200;
const HB: u64 = 20;

fn config(id: NodeId, voters: u64) -> RaftConfig {
    let mut c = RaftConfig::new(id, 1..=voters, 7);
    c.election_timeout_min_ms = ETO_MIN;
    c.election_timeout_max_ms = ETO_MAX;
    c.heartbeat_interval_ms = HB;
    c
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: vec![index as u8],
    }
}

fn log_of(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(k, &t)| entry(k as u64 + 1, t))
        .collect()
}

fn drain(r: &mut Raft) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// A hand-driven cluster: messages wait in a FIFO until `deliver`ed, syncs complete when
/// `auto_sync` is on (at once, after each handle) or when acknowledged by hand; only nodes the
/// test names are ticked.
struct Tiny {
    now: u64,
    nodes: BTreeMap<NodeId, Raft>,
    disks: BTreeMap<NodeId, Durable>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    /// Nodes cut off from everyone (messages to or from them are dropped on delivery).
    cut: BTreeSet<NodeId>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    snapshots_applied: BTreeMap<NodeId, u64>,
    auto_sync: bool,
    /// Every message ever sent, for assertions.
    sent: Vec<(NodeId, NodeId, Message)>,
}

impl Tiny {
    fn new(voters: u64) -> Tiny {
        Self::with(
            (1..=voters)
                .map(|id| (config(id, voters), Durable::default()))
                .collect(),
        )
    }

    fn with(nodes: Vec<(RaftConfig, Durable)>) -> Tiny {
        let mut t = Tiny {
            now: 0,
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            snapshots_applied: BTreeMap::new(),
            auto_sync: true,
            sent: Vec::new(),
        };
        for (c, d) in nodes {
            let id = c.id;
            t.disks.insert(id, d.clone());
            t.nodes.insert(id, Raft::new(c, d));
            t.applied.insert(id, Vec::new());
            t.handle(id, Input::Tick);
        }
        t
    }

    fn raft(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    fn handle(&mut self, id: NodeId, input: Input) -> Vec<Output> {
        let r = self.nodes.get_mut(&id).unwrap();
        r.handle(self.now, input);
        r.check_invariants();
        let outs = drain(r);
        let mut syncs = Vec::new();
        for o in &outs {
            let disk = self.disks.get_mut(&id).unwrap();
            match o {
                Output::PersistHardState(hs) => disk.hard_state = *hs,
                Output::AppendEntries(es) => disk.entries.extend(es.iter().cloned()),
                Output::TruncateFrom { index } => disk.entries.retain(|e| e.index < *index),
                Output::PersistSnapshot(s) => {
                    disk.entries.retain(|e| e.index > s.index);
                    disk.snapshot = Some(s.clone());
                }
                Output::Sync { seq } => syncs.push(*seq),
                Output::Send { to, message } => {
                    self.sent.push((id, *to, message.clone()));
                    self.queue.push_back((id, *to, message.clone()));
                }
                Output::Apply(e) => self.applied.get_mut(&id).unwrap().push(e.clone()),
                Output::ApplySnapshot(s) => {
                    self.snapshots_applied.insert(id, s.index);
                }
                _ => {}
            }
        }
        if self.auto_sync {
            for seq in syncs {
                self.handle(id, Input::Persisted { seq });
            }
        }
        outs
    }

    /// Delivers the oldest queued message; returns it unless it was dropped by a cut.
    fn deliver(&mut self) -> Option<(NodeId, NodeId, Message)> {
        let (from, to, m) = self.queue.pop_front()?;
        if self.cut.contains(&from) || self.cut.contains(&to) || !self.nodes.contains_key(&to) {
            return None;
        }
        self.handle(
            to,
            Input::Receive {
                from,
                message: m.clone(),
            },
        );
        Some((from, to, m))
    }

    /// Delivers until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            if self.queue.is_empty() {
                return;
            }
            self.deliver();
        }
        panic!("network never settled");
    }

    /// Moves time to `id`'s next deadline and ticks only `id`.
    fn fire(&mut self, id: NodeId) {
        let at = self.raft(id).poll_timeout().expect("node has a timer");
        self.now = self.now.max(at);
        self.handle(id, Input::Tick);
    }

    /// Advances time by `ms`, ticking the named nodes at every heartbeat-sized step and
    /// settling the network in between.
    fn run(&mut self, ms: u64, tick: &[NodeId]) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + HB / 2).min(end);
            for &id in tick {
                if self.raft(id).poll_timeout().is_some_and(|t| t <= self.now) {
                    self.handle(id, Input::Tick);
                }
            }
            self.settle();
        }
    }

    fn elect(&mut self, id: NodeId) {
        self.fire(id);
        self.settle();
        assert_eq!(self.raft(id).role(), Role::Leader, "node {id} not elected");
    }

    fn propose(&mut self, id: NodeId, data: &[u8]) -> Vec<Output> {
        self.handle(
            id,
            Input::Propose {
                data: data.to_vec(),
            },
        )
    }
}

#[test]
fn three_nodes_elect_one_leader_and_commit_its_noop() {
    let mut t = Tiny::new(3);
    t.elect(1);
    assert_eq!(t.raft(1).term(), 1);
    for id in [2, 3] {
        assert_eq!(t.raft(id).role(), Role::Follower);
        assert_eq!(t.raft(id).leader_id(), Some(1));
    }
    t.run(HB * 2, &[1]);
    for id in 1..=3 {
        assert_eq!(t.raft(id).commit_index(), 1);
        assert_eq!(t.applied[&id].len(), 1);
        assert_eq!(t.applied[&id][0].kind, EntryKind::NoOp);
    }
    t.propose(1, b"x");
    t.run(HB * 2, &[1]);
    for id in 1..=3 {
        assert_eq!(t.applied[&id][1].data, b"x");
    }
}

#[test]
fn single_voter_elects_itself_after_its_vote_is_durable() {
    let mut t = Tiny::new(1);
    t.auto_sync = false;
    t.fire(1);
    // Pre-vote and candidacy happen at once, but the self-vote counts only after the sync.
    assert_eq!(t.raft(1).role(), Role::Candidate);
    t.handle(1, Input::Persisted { seq: 1 });
    assert_eq!(t.raft(1).role(), Role::Leader);
}

#[test]
fn follower_refuses_proposals_with_a_leader_hint() {
    let mut t = Tiny::new(3);
    t.elect(2);
    let outs = t.propose(3, b"x");
    assert!(outs.contains(&Output::Refused(ProposeError::NotLeader {
        leader_hint: Some(2)
    })));
    let outs = t.propose(2, b"x");
    assert!(outs.contains(&Output::Proposed { index: 2, term: 1 }));
}

#[test]
fn pre_vote_keeps_a_partitioned_node_from_raising_terms() {
    let mut t = Tiny::new(3);
    t.elect(1);
    t.cut.insert(3);
    // Node 3 times out again and again while cut off; without pre-vote its term would climb.
    for _ in 0..10 {
        t.fire(3);
        t.settle();
        t.run(HB, &[1]);
    }
    assert_eq!(t.raft(3).term(), 1);
    assert_eq!(t.raft(3).role(), Role::PreCandidate);
    // Healed, it rejoins under the same leader and term.
    t.cut.clear();
    t.run(HB * 3, &[1]);
    assert_eq!(t.raft(1).role(), Role::Leader);
    assert_eq!(t.raft(1).term(), 1);
    assert_eq!(t.raft(3).leader_id(), Some(1));
}

#[test]
fn leader_lease_rejects_pre_votes_while_the_leader_is_live() {
    let mut t = Tiny::new(3);
    t.elect(1);
    t.run(HB * 2, &[1]);
    let (last_log_index, last_log_term) = (t.raft(3).last_index(), t.raft(3).last_term());
    let pre_vote = Message::PreVote {
        term: 2,
        last_log_index,
        last_log_term,
    };
    let outs = t.handle(
        2,
        Input::Receive {
            from: 3,
            message: pre_vote.clone(),
        },
    );
    assert!(outs.contains(&Output::Send {
        to: 3,
        message: Message::PreVoteResponse {
            term: 1,
            granted: false
        }
    }));
    // Once the leader has been silent for the minimum election timeout, node 2 would help.
    t.now += ETO_MIN;
    let outs = t.handle(
        2,
        Input::Receive {
            from: 3,
            message: pre_vote,
        },
    );
    assert!(outs.contains(&Output::Send {
        to: 3,
        message: Message::PreVoteResponse {
            term: 2,
            granted: true
        }
    }));
    assert_eq!(t.raft(2).term(), 1, "a pre-vote never changes the term");
}

#[test]
fn vote_refused_for_a_less_up_to_date_log() {
    let mut nodes = Vec::new();
    for (id, terms) in [(1, vec![1, 1]), (2, vec![1, 1, 2]), (3, vec![1, 1, 2])] {
        let d = Durable {
            hard_state: HardState {
                term: 2,
                voted_for: None,
            },
            snapshot: None,
            entries: log_of(&terms),
        };
        nodes.push((config(id, 3), d));
    }
    let mut t = Tiny::with(nodes);
    // Node 1's log ends at (2, term 1): both others refuse, even its pre-vote.
    t.fire(1);
    t.settle();
    assert_ne!(t.raft(1).role(), Role::Leader);
    assert_eq!(t.raft(1).term(), 2);
    let refusals = t
        .sent
        .iter()
        .filter(|(_, to, m)| {
            *to == 1 && matches!(m, Message::PreVoteResponse { granted: false, .. })
        })
        .count();
    assert_eq!(refusals, 2);
    // A direct vote request is refused too, and the refusal needs no fsync.
    t.auto_sync = false;
    let outs = t.handle(
        2,
        Input::Receive {
            from: 1,
            message: Message::Vote {
                term: 3,
                last_log_index: 2,
                last_log_term: 1,
            },
        },
    );
    assert!(outs.contains(&Output::Send {
        to: 1,
        message: Message::VoteResponse {
            term: 3,
            granted: false
        }
    }));
    // Node 3, equally up to date, is elected with node 2's vote (its first pre-vote only
    // learns that node 2 moved to term 3).
    t.auto_sync = true;
    t.fire(3);
    t.settle();
    t.elect(3);
}

#[test]
fn durability_gate_holds_vote_grants_and_append_acks_until_persisted() {
    let mut t = Tiny::new(3);
    t.auto_sync = false;
    let outs = t.handle(
        2,
        Input::Receive {
            from: 1,
            message: Message::Vote {
                term: 1,
                last_log_index: 0,
                last_log_term: 0,
            },
        },
    );
    assert!(outs.contains(&Output::PersistHardState(HardState {
        term: 1,
        voted_for: Some(1)
    })));
    let seq = outs
        .iter()
        .find_map(|o| match o {
            Output::Sync { seq } => Some(*seq),
            _ => None,
        })
        .expect("a sync is requested");
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Send { .. })),
        "the grant left before its fsync: {outs:?}"
    );
    let outs = t.handle(2, Input::Persisted { seq });
    assert_eq!(
        outs,
        vec![Output::Send {
            to: 1,
            message: Message::VoteResponse {
                term: 1,
                granted: true
            }
        }]
    );
    // An AppendEntries success is held the same way.
    let outs = t.handle(
        2,
        Input::Receive {
            from: 1,
            message: Message::AppendEntries {
                term: 1,
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![entry(1, 1)],
                leader_commit: 0,
            },
        },
    );
    assert!(outs.contains(&Output::AppendEntries(vec![entry(1, 1)])));
    assert!(!outs.iter().any(|o| matches!(o, Output::Send { .. })));
    let outs = t.handle(2, Input::Persisted { seq: seq + 1 });
    assert!(outs.contains(&Output::Send {
        to: 1,
        message: Message::AppendEntriesResponse {
            term: 1,
            result: AppendResult::Success { match_index: 1 }
        }
    }));
}

#[test]
fn leader_counts_its_own_log_only_up_to_its_persisted_index() {
    let mut t = Tiny::new(1);
    t.fire(1);
    assert_eq!(t.raft(1).role(), Role::Leader);
    assert_eq!(t.raft(1).commit_index(), 1);
    t.auto_sync = false;
    let outs = t.propose(1, b"x");
    assert_eq!(t.raft(1).commit_index(), 1, "committed before its fsync");
    let seq = outs
        .iter()
        .find_map(|o| match o {
            Output::Sync { seq } => Some(*seq),
            _ => None,
        })
        .unwrap();
    t.handle(1, Input::Persisted { seq });
    assert_eq!(t.raft(1).commit_index(), 2);
    assert_eq!(t.applied[&1].last().unwrap().data, b"x");
}

#[test]
fn log_conflict_is_resolved_with_fast_back_off() {
    // Node 2 holds 50 entries of term 2 that a minority leader never committed.
    let mut leader_log = vec![1; 10];
    leader_log.extend([3; 10]);
    let mut stale_log = vec![1; 10];
    stale_log.extend([2; 50]);
    let hs = HardState {
        term: 3,
        voted_for: None,
    };
    let mut t = Tiny::with(vec![
        (
            config(1, 3),
            Durable {
                hard_state: hs,
                snapshot: None,
                entries: log_of(&leader_log),
            },
        ),
        (
            config(2, 3),
            Durable {
                hard_state: hs,
                snapshot: None,
                entries: log_of(&stale_log),
            },
        ),
        (
            config(3, 3),
            Durable {
                hard_state: hs,
                snapshot: None,
                entries: log_of(&leader_log),
            },
        ),
    ]);
    t.elect(1);
    t.run(HB * 3, &[1]);
    let rejects = t
        .sent
        .iter()
        .filter(|(from, _, m)| {
            *from == 2
                && matches!(
                    m,
                    Message::AppendEntriesResponse {
                        result: AppendResult::Reject { .. },
                        ..
                    }
                )
        })
        .count();
    assert_eq!(rejects, 1, "one rejection skips the whole term-2 run");
    assert_eq!(t.raft(2).entries(), t.raft(1).entries());
    assert_eq!(t.raft(2).last_index(), 21);
    assert_eq!(t.raft(2).commit_index(), 21);
}

#[test]
fn figure_8_old_term_entries_commit_only_with_a_current_term_entry() {
    figure_8(None);
}

#[cfg(feature = "canary")]
#[test]
fn figure_8_commit_old_term_canary_commits_by_counting() {
    figure_8(Some(Canary::CommitOldTerm));
}

#[cfg_attr(not(feature = "canary"), allow(unused_variables))]
fn figure_8(canary: Option<Canary>) {
    // Raft paper Figure 8 (c): S1 leads again with (2, term 2) on S1 and S2; S5 holds
    // (2, term 3). S1 may not commit index 2 by counting replicas, or S5 could overwrite it.
    let hs = HardState {
        term: 4,
        voted_for: None,
    };
    let mut nodes = Vec::new();
    for (id, terms) in [
        (1, vec![1, 2]),
        (2, vec![1, 2]),
        (3, vec![1]),
        (4, vec![1]),
        (5, vec![1, 3]),
    ] {
        let mut c = config(id, 5);
        c.entries_per_message_max = 1;
        nodes.push((
            c,
            Durable {
                hard_state: hs,
                snapshot: None,
                entries: log_of(&terms),
            },
        ));
    }
    let mut t = Tiny::with(nodes);
    #[cfg(feature = "canary")]
    t.nodes.get_mut(&1).unwrap().set_canary(canary);
    t.cut.insert(4);
    t.cut.insert(5);
    t.fire(1);
    // Deliver one message at a time until S3 holds index 2 (term 2) but not the no-op.
    let mut steps = 0;
    while t.raft(3).last_index() < 2 {
        t.deliver();
        steps += 1;
        assert!(steps < 1000);
    }
    assert_eq!(t.raft(1).role(), Role::Leader);
    assert_eq!(t.raft(1).term(), 5);
    // Deliver the answers queued for S1 and drop the rest, so index 3 (the no-op of term 5)
    // reaches no one else: S1 and S2 hold it, S1, S2 and S3 hold index 2.
    while let Some((from, to, m)) = t.queue.pop_front() {
        if to == 1 {
            t.handle(1, Input::Receive { from, message: m });
        }
    }
    assert_eq!(t.raft(3).last_index(), 2);
    assert_eq!(t.raft(1).term_at(2), Some(2));
    let holders = (1..=3)
        .filter(|&id| t.raft(id).term_at(2) == Some(2))
        .count();
    assert_eq!(holders, 3, "index 2 (term 2) is on a majority");
    #[cfg(feature = "canary")]
    if canary == Some(Canary::CommitOldTerm) {
        assert_eq!(
            t.raft(1).commit_index(),
            2,
            "the canary commits by counting"
        );
        return;
    }
    assert_eq!(
        t.raft(1).commit_index(),
        0,
        "old-term entry committed by counting"
    );
    // S5 could still win (its last term 3 beats term 2), so index 2 must stay uncommitted.
    // Once the no-op of term 5 reaches a majority, both commit.
    t.queue.clear();
    t.run(HB * 3, &[1]);
    assert_eq!(t.raft(1).commit_index(), 3);
}

#[test]
fn check_quorum_steps_down_a_cut_off_leader() {
    let mut t = Tiny::new(3);
    t.elect(1);
    t.run(ETO_MIN * 3, &[1]);
    assert_eq!(t.raft(1).role(), Role::Leader, "a connected leader stays");
    t.cut.insert(1);
    t.run(ETO_MIN * 2 + HB, &[1]);
    assert_eq!(t.raft(1).role(), Role::Follower);
    assert_eq!(t.raft(1).leader_id(), None);
    assert_eq!(t.raft(1).term(), 1, "stepping down does not raise the term");
    assert_eq!(
        t.propose(1, b"x"),
        vec![Output::Refused(ProposeError::NotLeader {
            leader_hint: None
        })]
    );
}

#[test]
fn lagging_follower_gets_an_install_snapshot() {
    let mut t = Tiny::new(3);
    t.elect(1);
    t.cut.insert(3);
    for k in 0..20u8 {
        t.propose(1, &[k]);
        t.settle();
    }
    t.run(HB * 2, &[1]);
    assert_eq!(t.raft(1).commit_index(), 21);
    let applied = t.raft(1).last_applied();
    t.handle(
        1,
        Input::Compact {
            index: applied,
            data: b"state@21".to_vec(),
        },
    );
    assert_eq!(t.raft(1).snapshot().index, 21);
    assert!(t.raft(1).entries().is_empty());
    t.propose(1, b"after");
    t.cut.clear();
    t.run(HB * 4, &[1]);
    assert!(t
        .sent
        .iter()
        .any(|(_, to, m)| *to == 3 && matches!(m, Message::InstallSnapshot { .. })));
    let f = t.raft(3);
    assert_eq!(f.snapshot().index, 21);
    assert_eq!(f.snapshot().data, b"state@21");
    assert_eq!(t.snapshots_applied.get(&3), Some(&21));
    assert_eq!(f.last_applied(), 22);
    assert_eq!(t.applied[&3].last().unwrap().data, b"after");
    assert_eq!(t.disks[&3].snapshot.as_ref().unwrap().index, 21);
}

#[test]
fn a_snapshot_over_a_conflicting_log_deletes_the_old_suffix_first() {
    // Node 2 holds entries 3..=4 of a deposed term-2 leader; the term-3 leader's snapshot ends
    // at index 3 with term 3 (found by skein-sim cluster; seeds in ci/cluster-regression-seeds).
    let d = Durable {
        hard_state: HardState {
            term: 2,
            voted_for: None,
        },
        snapshot: None,
        entries: log_of(&[1, 1, 2, 2]),
    };
    let mut r = Raft::new(config(2, 3), d.clone());
    r.handle(0, Input::Tick);
    drain(&mut r);
    let snapshot = Snapshot {
        index: 3,
        term: 3,
        data: b"s3".to_vec(),
    };
    r.handle(
        1,
        Input::Receive {
            from: 1,
            message: Message::InstallSnapshot { term: 3, snapshot },
        },
    );
    r.check_invariants();
    let outs = drain(&mut r);
    let truncate = outs
        .iter()
        .position(|o| *o == Output::TruncateFrom { index: 4 })
        .expect("the old suffix is deleted");
    let snap = outs
        .iter()
        .position(|o| matches!(o, Output::PersistSnapshot(_)))
        .expect("the snapshot is written");
    assert!(truncate < snap, "{outs:?}");
    // A crash right after the snapshot became durable together with everything written before
    // it (as RaftStore makes it), before the next sync: the disk holds a valid log.
    let mut disk = d;
    for o in &outs[..=snap] {
        match o {
            Output::PersistHardState(hs) => disk.hard_state = *hs,
            Output::TruncateFrom { index } => disk.entries.retain(|e| e.index < *index),
            Output::PersistSnapshot(s) => {
                disk.entries.retain(|e| e.index > s.index);
                disk.snapshot = Some(s.clone());
            }
            _ => {}
        }
    }
    let mut r = Raft::new(config(2, 3), disk);
    drain(&mut r);
    r.check_invariants();
    assert_eq!((r.last_index(), r.last_term()), (3, 3));
}

#[test]
fn a_hard_state_behind_the_log_is_raised_at_recovery() {
    // The hard-state write of term 3 was lost in a crash, the log's append of a term-3 entry
    // was not (they live in different files); found by skein-sim cluster.
    let d = Durable {
        hard_state: HardState {
            term: 2,
            voted_for: Some(2),
        },
        snapshot: None,
        entries: log_of(&[1, 2, 3]),
    };
    let mut r = Raft::new(config(1, 3), d);
    r.check_invariants();
    assert_eq!(r.term(), 3);
    assert_eq!(
        r.hard_state().voted_for,
        None,
        "no vote is assumed in the raised term"
    );
    let outs = drain(&mut r);
    assert_eq!(
        outs,
        vec![
            Output::PersistHardState(HardState {
                term: 3,
                voted_for: None
            }),
            Output::Sync { seq: 1 },
        ]
    );
    r.handle(0, Input::Persisted { seq: 1 });
    r.handle(0, Input::Tick);
    r.check_invariants();
    // It votes in term 3 at most once, like any node in a term it has not voted in.
    r.handle(
        1,
        Input::Receive {
            from: 2,
            message: Message::Vote {
                term: 3,
                last_log_index: 3,
                last_log_term: 3,
            },
        },
    );
    r.check_invariants();
    assert_eq!(r.hard_state().voted_for, Some(2));
}

#[test]
fn restart_recovers_snapshot_and_log_from_durable_state() {
    let mut t = Tiny::new(3);
    t.elect(1);
    for k in 0..5u8 {
        t.propose(1, &[k]);
    }
    t.run(HB * 2, &[1]);
    let applied = t.raft(2).last_applied();
    t.handle(
        2,
        Input::Compact {
            index: 3,
            data: b"s3".to_vec(),
        },
    );
    assert!(applied >= 3);
    // Restart node 2 from its disk.
    let durable = t.disks[&2].clone();
    assert_eq!(durable.snapshot.as_ref().unwrap().index, 3);
    let mut r = Raft::new(config(2, 3), durable);
    let outs = drain(&mut r);
    assert_eq!(
        outs,
        vec![Output::ApplySnapshot(Snapshot {
            index: 3,
            term: 1,
            data: b"s3".to_vec()
        })]
    );
    assert_eq!(r.term(), 1);
    assert_eq!(r.hard_state().voted_for, Some(1));
    assert_eq!(r.last_index(), 6);
    assert_eq!(r.commit_index(), 3);
    r.check_invariants();
}

#[test]
fn learners_replicate_but_neither_vote_nor_count() {
    let voters = 3;
    let mk = |id| {
        let mut c = config(id, voters);
        c.learners = [4].into();
        (c, Durable::default())
    };
    let mut t = Tiny::with((1..=4).map(mk).collect());
    assert_eq!(t.raft(4).poll_timeout(), None, "a learner never campaigns");
    t.elect(1);
    t.propose(1, b"x");
    t.run(HB * 2, &[1]);
    assert_eq!(t.applied[&4].last().unwrap().data, b"x");
    assert!(!t
        .sent
        .iter()
        .any(|(_, to, m)| *to == 4 && matches!(m, Message::Vote { .. } | Message::PreVote { .. })));
    // With two voters cut off, the learner's acks do not make a quorum.
    t.cut.insert(2);
    t.cut.insert(3);
    t.propose(1, b"y");
    t.run(HB * 2, &[1]);
    assert_eq!(t.applied[&4].last().unwrap().data, b"x");
    assert_eq!(t.raft(4).last_index(), t.raft(1).last_index());
    assert_eq!(t.raft(1).commit_index(), 2);
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_must_not_go_backwards() {
    let mut r = Raft::new(config(1, 3), Durable::default());
    r.handle(10, Input::Tick);
    r.handle(9, Input::Tick);
}
