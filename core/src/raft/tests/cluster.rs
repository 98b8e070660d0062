//! A deterministic cluster harness: one u64 seed decides the cluster shape, the fault rates
//! and every choice. The network drops, duplicates, delays (so reorders) and partitions; the
//! disk keeps only what a `Persisted` acknowledged, so a crash loses unsynced writes; nodes
//! restart from their durable state; drivers compact periodically. The checker runs after
//! every step.
//!
//! Phases: safety (all faults) -> liveness A (no loss or crashes; the current leader and
//! possibly one more voter are cut off from a connected majority, which must elect a leader
//! and commit every proposal made, while the cut-off leader must step down) -> liveness B
//! (everything healed: every node, learners too, must apply a final proposal).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

#[cfg(feature = "canary")]
use crate::canary::Canary;
use crate::raft::{Durable, Entry, Input, NodeId, Output, Raft, RaftConfig, Role, Snapshot};

use super::checker::Checker;

pub(super) const ELECTION_MIN_MS: u64 = 100;
pub(super) const HEARTBEAT_MS: u64 = 20;
const SAFETY_MS: u64 = 2_500;
/// Bound for liveness A: a cut-off leader steps down within 2 election timeouts; the majority
/// needs one lease expiry plus a few election rounds.
const LIVENESS_A_MS: u64 = 2_500;
const LIVENESS_B_MS: u64 = 3_000;
const LIVENESS_DELAY_MAX_MS: u64 = 15;
const CLIENT_RETRY_MS: u64 = 60;
const LIVENESS_PROPOSALS: u64 = 5;
const STEPS_MAX: u64 = 200_000;

/// splitmix64, the harness's only source of choices.
#[derive(Clone, Debug)]
pub(super) struct SimRng(crate::rng::SplitMix64);

impl SimRng {
    pub(super) fn new(seed: u64) -> Self {
        Self(crate::rng::SplitMix64::new(seed))
    }
    /// Uniform in `0..n`.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    /// True with probability `per_mille / 1000`.
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The per-seed shape and fault rates (swarm testing).
#[derive(Clone, Debug)]
pub(super) struct Swarm {
    pub(super) voters: u64,
    pub(super) learners: u64,
    /// Upper bound of the election timeout (the lower is `ELECTION_MIN_MS`): a narrow range
    /// makes concurrent candidates and split votes common.
    election_max_ms: u64,
    drop_pm: u64,
    dup_pm: u64,
    delay_max_ms: u64,
    disk_delay_max_ms: u64,
    action_gap_max_ms: u64,
    crash_pm: u64,
    /// Chance that a node crashes at the moment it asks for a sync (losing that write).
    crash_on_sync_pm: u64,
    downtime_max_ms: u64,
    partition_pm: u64,
    compact_pm: u64,
    compact_threshold: u64,
    entries_per_message_max: u64,
    inflight_entries_max: u64,
}

impl Swarm {
    fn from_seed(rng: &mut SimRng, voters: u64) -> Self {
        Swarm {
            voters,
            learners: rng.below(2),
            election_max_ms: [130, 200][rng.below(2) as usize],
            drop_pm: rng.below(150),
            dup_pm: rng.below(100),
            delay_max_ms: [5, 15, 30, 60][rng.below(4) as usize],
            disk_delay_max_ms: rng.below(15),
            action_gap_max_ms: 5 + rng.below(40),
            crash_pm: 20 + rng.below(120),
            crash_on_sync_pm: rng.below(40),
            downtime_max_ms: [10, 100, 400][rng.below(3) as usize],
            // Some seeds churn partitions so fast that leaders rarely last.
            partition_pm: [20 + rng.below(120), 300 + rng.below(700)][rng.below(2) as usize],
            compact_pm: rng.below(200),
            compact_threshold: 1 + rng.below(30),
            entries_per_message_max: [1, 1, 2, 3, 8][rng.below(5) as usize],
            inflight_entries_max: [4, 16, 64][rng.below(3) as usize],
        }
    }
}

/// What a passing run reports.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) steps: u64,
    pub(super) max_term: u64,
    pub(super) committed: u64,
    pub(super) crashes: u64,
    pub(super) snapshots_applied: u64,
    /// Times a leader's commit index moved onto an entry of an earlier term (only the
    /// CommitOldTerm canary does that).
    pub(super) old_term_commits: u64,
    pub(super) trace_hash: u64,
}

enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        message: crate::raft::Message,
    },
    Persisted {
        node: NodeId,
        incarnation: u64,
        seq: u64,
    },
    Restart {
        node: NodeId,
    },
}

struct Node {
    id: NodeId,
    raft: Option<Raft>,
    incarnation: u64,
    /// What survives a crash.
    durable: Durable,
    /// What the node has written, synced or not (mirrors the in-memory log).
    volatile: Durable,
    /// seq -> the volatile state when that sync was requested.
    pending: BTreeMap<u64, Durable>,
    last_sync_done_ms: u64,
    /// The state machine: every applied (index, term, data).
    sm: Vec<(u64, u64, Vec<u8>)>,
    seen_commit: u64,
}

pub(super) struct Cluster {
    pub(super) seed: u64,
    pub(super) swarm: Swarm,
    rng: SimRng,
    now: u64,
    nodes: Vec<Node>,
    events: BTreeMap<(u64, u64), Event>,
    event_seq: u64,
    blocked: BTreeSet<(NodeId, NodeId)>,
    faults: bool,
    next_action_ms: u64,
    next_client_id: u64,
    /// Proposals refused so far.
    refused: u64,
    pub(super) checker: Checker,
    #[cfg(feature = "canary")]
    canary: Option<Canary>,
    report: Report,
    hasher: DefaultHasher,
}

fn encode_sm(sm: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, t, d) in sm {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        out.extend_from_slice(d);
    }
    out
}

fn decode_sm(mut b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let i = u64::from_le_bytes(b[0..8].try_into().unwrap());
        let t = u64::from_le_bytes(b[8..16].try_into().unwrap());
        let n = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        out.push((i, t, b[20..20 + n].to_vec()));
        b = &b[20 + n..];
    }
    out
}

fn durable_term_at(d: &Durable, index: u64) -> Option<u64> {
    let (si, st) = d.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    if index == si {
        return Some(st);
    }
    if index < si {
        return None;
    }
    d.entries.get((index - si - 1) as usize).map(|e| e.term)
}

fn durable_last_index(d: &Durable) -> u64 {
    d.snapshot.as_ref().map_or(0, |s| s.index) + d.entries.len() as u64
}

impl Cluster {
    pub(super) fn new(seed: u64, voters: u64) -> Self {
        let mut rng = SimRng::new(seed);
        let swarm = Swarm::from_seed(&mut rng, voters);
        let n = swarm.voters + swarm.learners;
        let nodes = (1..=n)
            .map(|id| Node {
                id,
                raft: None,
                incarnation: 0,
                durable: Durable::default(),
                volatile: Durable::default(),
                pending: BTreeMap::new(),
                last_sync_done_ms: 0,
                sm: Vec::new(),
                seen_commit: 0,
            })
            .collect();
        Cluster {
            seed,
            swarm,
            rng,
            now: 0,
            nodes,
            events: BTreeMap::new(),
            event_seq: 0,
            blocked: BTreeSet::new(),
            faults: true,
            next_action_ms: 0,
            next_client_id: 1,
            refused: 0,
            checker: Checker::default(),
            #[cfg(feature = "canary")]
            canary: None,
            report: Report::default(),
            hasher: DefaultHasher::new(),
        }
    }

    #[cfg(feature = "canary")]
    pub(super) fn set_canary(&mut self, canary: Option<Canary>) {
        self.canary = canary;
    }

    fn config(&self, id: NodeId, incarnation: u64) -> RaftConfig {
        let mut c = RaftConfig::new(id, 1..=self.swarm.voters, self.seed ^ (incarnation << 32));
        c.learners = (self.swarm.voters + 1..=self.swarm.voters + self.swarm.learners).collect();
        c.election_timeout_min_ms = ELECTION_MIN_MS;
        c.election_timeout_max_ms = self.swarm.election_max_ms;
        c.heartbeat_interval_ms = HEARTBEAT_MS;
        c.entries_per_message_max = self.swarm.entries_per_message_max;
        c.inflight_entries_max = self.swarm.inflight_entries_max;
        c.uncommitted_entries_max = 64;
        c
    }

    fn schedule(&mut self, at: u64, e: Event) {
        self.event_seq += 1;
        self.events.insert((at, self.event_seq), e);
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn up_rafts(&self) -> impl Iterator<Item = &Raft> {
        self.nodes.iter().filter_map(|n| n.raft.as_ref())
    }

    fn voter_ids(&self) -> Vec<NodeId> {
        (1..=self.swarm.voters).collect()
    }

    /// The leader with the highest term among running nodes, if any.
    fn leader(&self) -> Option<NodeId> {
        self.up_rafts()
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    fn start(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.node(id);
        let config = self.config(id, node.incarnation);
        #[allow(unused_mut)]
        let mut raft = Raft::new(config, node.durable.clone());
        #[cfg(feature = "canary")]
        raft.set_canary(self.canary);
        let n = self.node_mut(id);
        n.volatile = n.durable.clone();
        n.sm.clear();
        n.seen_commit = raft.commit_index();
        n.raft = Some(raft);
        self.drive(id, None)?;
        self.drive(id, Some(Input::Tick))
    }

    fn crash(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        if n.raft.is_none() {
            return;
        }
        n.raft = None;
        n.incarnation += 1;
        n.volatile = n.durable.clone();
        n.pending.clear();
        n.sm.clear();
        self.report.crashes += 1;
    }

    /// Hands `input` (if any) to node `id`, then carries out every output.
    fn drive(&mut self, id: NodeId, input: Option<Input>) -> Result<(), String> {
        let now = self.now;
        let outputs: Vec<Output> = {
            let raft = self.node_mut(id).raft.as_mut().expect("node is up");
            if let Some(i) = input {
                raft.handle(now, i);
            }
            raft.check_invariants();
            std::iter::from_fn(|| raft.poll_output()).collect()
        };
        let raft = self.nodes[(id - 1) as usize].raft.as_ref().unwrap();
        if raft.role() == Role::Leader && self.checker.leaders.get(&raft.term()) != Some(&id) {
            self.checker.on_leader(raft)?;
        }
        // Crash points: syncs, above all those of a vote or term change and those of leaders.
        let leader = raft.role() == Role::Leader;
        let mut hard_state = false;
        for o in outputs {
            let sync = matches!(o, Output::Sync { .. });
            hard_state |= matches!(o, Output::PersistHardState(_));
            self.carry_out(id, o)?;
            let crash_pm = if hard_state || leader {
                self.swarm.crash_on_sync_pm * 5
            } else {
                self.swarm.crash_on_sync_pm
            };
            if sync && self.faults && self.rng.chance(crash_pm) {
                // Crash before the write is durable; the rest of this step's outputs are lost.
                self.crash(id);
                let down = self.rng.below(self.swarm.delay_max_ms + 1);
                self.schedule(self.now + down, Event::Restart { node: id });
                return Ok(());
            }
        }
        self.after_drive(id)
    }

    fn carry_out(&mut self, id: NodeId, o: Output) -> Result<(), String> {
        if matches!(
            o,
            Output::Proposed { .. } | Output::Refused(_) | Output::RoleChanged { .. }
        ) && std::env::var("SKEIN_RAFT_TRACE").is_ok()
        {
            eprintln!("{} node {id}: {o:?}", self.now);
        }
        match o {
            Output::PersistHardState(hs) => self.node_mut(id).volatile.hard_state = hs,
            Output::AppendEntries(entries) => {
                let v = &self.node(id).volatile;
                let first = entries[0].index;
                assert_eq!(
                    first,
                    durable_last_index(v) + 1,
                    "append leaves a gap on disk"
                );
                let prev_term = durable_term_at(v, first - 1).expect("predecessor on disk");
                self.checker.on_append(id, prev_term, &entries)?;
                self.node_mut(id).volatile.entries.extend(entries);
            }
            Output::TruncateFrom { index } => self
                .node_mut(id)
                .volatile
                .entries
                .retain(|e| e.index < index),
            Output::PersistSnapshot(s) => {
                let v = &mut self.node_mut(id).volatile;
                v.entries.retain(|e| e.index > s.index);
                v.snapshot = Some(s);
            }
            Output::Sync { seq } => {
                let at = self.now + self.rng.below(self.swarm.disk_delay_max_ms + 1);
                let n = self.node_mut(id);
                n.pending.insert(seq, n.volatile.clone());
                let at = n.last_sync_done_ms.max(at);
                n.last_sync_done_ms = at;
                let incarnation = n.incarnation;
                self.schedule(
                    at,
                    Event::Persisted {
                        node: id,
                        incarnation,
                        seq,
                    },
                );
            }
            Output::Send { to, message } => {
                assert_ne!(to, id);
                if self.faults && self.rng.chance(self.swarm.drop_pm) {
                    return Ok(());
                }
                let copies = if self.faults && self.rng.chance(self.swarm.dup_pm) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    // Liveness phases run on a network that meets Raft's timing requirement
                    // (broadcast time well below the election timeout).
                    let delay_max = if self.faults {
                        self.swarm.delay_max_ms
                    } else {
                        self.swarm.delay_max_ms.min(LIVENESS_DELAY_MAX_MS)
                    };
                    let at = self.now + 1 + self.rng.below(delay_max);
                    self.schedule(
                        at,
                        Event::Deliver {
                            from: id,
                            to,
                            message: message.clone(),
                        },
                    );
                }
            }
            Output::Apply(Entry {
                index, term, data, ..
            }) => {
                self.checker.on_apply(id, index, term, &data)?;
                let sm = &mut self.node_mut(id).sm;
                let expect = sm.last().map_or(1, |e| e.0 + 1);
                if index != expect {
                    return Err(format!("node {id} applied {index}, expected {expect}"));
                }
                sm.push((index, term, data));
            }
            Output::ApplySnapshot(Snapshot { index, data, .. }) => {
                let sm = decode_sm(&data);
                if sm.len() as u64 != index {
                    return Err(format!("node {id}: snapshot at {index} holds {}", sm.len()));
                }
                for (k, (i, t, d)) in sm.iter().enumerate() {
                    assert_eq!(*i, k as u64 + 1);
                    self.checker.on_apply(id, *i, *t, d)?;
                }
                let n = self.node_mut(id);
                if let Some(last) = n.sm.last() {
                    if last.0 >= index {
                        return Err(format!("node {id}: snapshot {index} goes back"));
                    }
                }
                n.sm = sm;
                self.report.snapshots_applied += 1;
            }
            Output::RoleChanged { term, .. } => {
                // Leaders are checked from the node's state right after each step.
                self.report.max_term = self.report.max_term.max(term);
            }
            Output::Proposed { .. } => {}
            Output::Refused(_) => self.refused += 1,
        }
        Ok(())
    }

    fn after_drive(&mut self, id: NodeId) -> Result<(), String> {
        let node = &self.nodes[(id - 1) as usize];
        let raft = node.raft.as_ref().unwrap();
        // The harness's disk mirrors the node's log.
        assert_eq!(durable_last_index(&node.volatile), raft.last_index());
        assert_eq!(
            node.volatile.snapshot.as_ref().map_or(0, |s| s.index),
            raft.snapshot().index
        );
        assert_eq!(node.volatile.hard_state.term, raft.term());
        let (from, to) = (node.seen_commit, raft.commit_index());
        if raft.role() == Role::Leader && to > from && raft.term_at(to) != Some(raft.term()) {
            self.report.old_term_commits += 1;
        }
        let mut commits = Vec::new();
        for i in from + 1..=to {
            if let Some(t) = raft.term_at(i) {
                commits.push((i, t));
            }
        }
        let nodes = &self.nodes;
        let checker = &mut self.checker;
        for &(i, t) in &commits {
            let leaders = nodes
                .iter()
                .filter_map(|n| n.raft.as_ref())
                .filter(|r| r.role() == Role::Leader);
            checker.on_commit(raft, i, t, leaders)?;
        }
        self.node_mut(id).seen_commit = to.max(from);
        Ok(())
    }

    fn propose(&mut self, to: NodeId) -> Result<(), String> {
        let id = self.next_client_id;
        self.next_client_id += 1;
        self.propose_id(to, id)
    }

    fn propose_id(&mut self, to: NodeId, id: u64) -> Result<(), String> {
        if self.node(to).raft.is_some() {
            self.drive(
                to,
                Some(Input::Propose {
                    data: id.to_le_bytes().to_vec(),
                }),
            )?;
        }
        Ok(())
    }

    /// A random fault or client action during the safety phase.
    fn action(&mut self) -> Result<(), String> {
        let ids = self.ids();
        let pick = ids[self.rng.below(ids.len() as u64) as usize];
        let voter = 1 + self.rng.below(self.swarm.voters);
        if self.rng.chance(self.swarm.crash_pm) {
            // Leaders are the interesting victims: half the crashes hit the current one.
            let victim = match self.leader() {
                Some(l) if self.rng.chance(500) => l,
                _ => pick,
            };

            if self.node(victim).raft.is_some() {
                self.crash(victim);
                let down = self.rng.below(self.swarm.downtime_max_ms + 1);
                self.schedule(self.now + down, Event::Restart { node: victim });
            }
        } else if self.rng.chance(self.swarm.partition_pm) {
            self.blocked.clear();
            match self.rng.below(5) {
                0 => {} // heal
                1 => self.isolate(&[voter]),
                2 => {
                    // The leader with a minority: it keeps replicating to a few followers
                    // without committing (the road to Figure 8).
                    let mut side: Vec<NodeId> = self.leader().into_iter().collect();
                    let extra = self.rng.below(self.swarm.voters.div_ceil(2));
                    for _ in 0..extra {
                        let v = 1 + self.rng.below(self.swarm.voters);
                        if !side.contains(&v) {
                            side.push(v);
                        }
                    }
                    self.isolate(&side);
                }
                3 => {
                    // Two random sides.
                    let side: Vec<NodeId> = ids
                        .iter()
                        .copied()
                        .filter(|_| self.rng.chance(500))
                        .collect();
                    self.isolate(&side);
                }
                _ => {
                    // One-way loss between two nodes.
                    let other = ids[self.rng.below(ids.len() as u64) as usize];
                    if other != pick {
                        self.blocked.insert((pick, other));
                    }
                }
            }
        } else if self.rng.chance(self.swarm.compact_pm) {
            self.compact(pick)?;
        } else if self.rng.chance(600) {
            // Clients route by stale information too: any node that believes it leads, or
            // any node at all.
            let leaders: Vec<NodeId> = self
                .up_rafts()
                .filter(|r| r.role() == Role::Leader)
                .map(|r| r.id())
                .collect();
            let to = if !leaders.is_empty() && self.rng.chance(800) {
                leaders[self.rng.below(leaders.len() as u64) as usize]
            } else {
                pick
            };
            self.propose(to)?;
        }
        Ok(())
    }

    fn compact(&mut self, id: NodeId) -> Result<(), String> {
        let Some(raft) = self.node(id).raft.as_ref() else {
            return Ok(());
        };
        let applied = raft.last_applied();
        if applied < raft.snapshot().index + self.swarm.compact_threshold {
            return Ok(());
        }
        let sm = &self.node(id).sm;
        assert_eq!(sm.last().map_or(0, |e| e.0), applied);
        let data = encode_sm(sm);
        self.drive(
            id,
            Some(Input::Compact {
                index: applied,
                data,
            }),
        )
    }

    /// Cuts `side` off from everyone else, both ways.
    fn isolate(&mut self, side: &[NodeId]) {
        for &a in side {
            for b in self.ids() {
                if !side.contains(&b) {
                    self.blocked.insert((a, b));
                    self.blocked.insert((b, a));
                }
            }
        }
    }

    /// One step: the earliest of the next event, timer or action.
    fn step(&mut self, actions: bool) -> Result<(), String> {
        self.report.steps += 1;
        let t_event = self.events.keys().next().map(|k| k.0);
        let t_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.raft.as_ref()?.poll_timeout().map(|t| (t, n.id)))
            .min();
        let t_action = actions.then_some(self.next_action_ms);
        let t = [t_event, t_timer.map(|t| t.0), t_action]
            .into_iter()
            .flatten()
            .min()
            .expect("something is always scheduled");
        self.now = self.now.max(t);
        if t_action == Some(t) {
            self.next_action_ms = self.now + 1 + self.rng.below(self.swarm.action_gap_max_ms);
            (t, 0u8, 0u64).hash(&mut self.hasher);
            return self.action();
        }
        if t_event == Some(t) {
            let (_, e) = self.events.pop_first().unwrap();
            return match e {
                Event::Deliver { from, to, message } => {
                    if self.blocked.contains(&(from, to)) || self.node(to).raft.is_none() {
                        return Ok(());
                    }
                    (t, 1u8, from, to, &message).hash(&mut self.hasher);
                    if std::env::var("SKEIN_RAFT_TRACE").is_ok() {
                        eprintln!("{t} {from}->{to} {message:?}");
                    }
                    self.drive(to, Some(Input::Receive { from, message }))
                }
                Event::Persisted {
                    node,
                    incarnation,
                    seq,
                } => {
                    let n = self.node_mut(node);
                    if n.incarnation != incarnation || n.raft.is_none() {
                        return Ok(());
                    }
                    let d = n.pending.remove(&seq).expect("pending sync");
                    n.pending.retain(|&s, _| s > seq);
                    n.durable = d;
                    (t, 2u8, node, seq).hash(&mut self.hasher);
                    self.drive(node, Some(Input::Persisted { seq }))
                }
                Event::Restart { node } => {
                    if self.node(node).raft.is_some() {
                        return Ok(());
                    }
                    (t, 3u8, node).hash(&mut self.hasher);
                    self.start(node)
                }
            };
        }
        let (_, id) = t_timer.unwrap();
        (t, 4u8, id).hash(&mut self.hasher);
        self.drive(id, Some(Input::Tick))
    }

    fn run_until(&mut self, end_ms: u64, actions: bool) -> Result<(), String> {
        while self.now < end_ms {
            if self.report.steps > STEPS_MAX {
                return Err("step budget exhausted".into());
            }
            self.step(actions)?;
            self.check_committed_is_safe()?;
        }
        Ok(())
    }

    /// No voter lacking the highest committed entry could win an election: counting its own
    /// vote, fewer than a quorum of voters would find its log at least as up to date as theirs
    /// (taken as their durable logs, what they hold even after a crash). Raft's commit rule
    /// keeps this true at every moment, so a premature commit is caught at once, before the
    /// election that would overwrite it.
    fn check_committed_is_safe(&self) -> Result<(), String> {
        let Some((&index, &(term, _))) = self.checker.committed.last_key_value() else {
            return Ok(());
        };
        let log_end = |d: &Durable| {
            let last = durable_last_index(d);
            (durable_term_at(d, last).unwrap_or(0), last)
        };
        for x in 1..=self.swarm.voters {
            let n = self.node(x);
            let (has, x_end) = match &n.raft {
                Some(r) => (
                    index <= r.snapshot().index || r.term_at(index) == Some(term),
                    (r.last_term(), r.last_index()),
                ),
                None => (
                    durable_term_at(&n.durable, index) == Some(term)
                        || n.durable
                            .snapshot
                            .as_ref()
                            .is_some_and(|s| s.index >= index),
                    log_end(&n.durable),
                ),
            };
            if has {
                continue;
            }
            let grants = (1..=self.swarm.voters)
                .filter(|&v| v == x || x_end >= log_end(&self.node(v).durable))
                .count();
            if grants as u64 > self.swarm.voters / 2 {
                return Err(format!(
                    "commit safety: node {x} (log end {x_end:?}) lacks committed ({index}, {term}) \
                     yet {grants} of {} voters would elect it\n{}",
                    self.swarm.voters,
                    self.status()
                ));
            }
        }
        Ok(())
    }

    /// One line per node, for failure reports.
    fn status(&self) -> String {
        let mut out = format!("now={}\n", self.now);
        for n in &self.nodes {
            match &n.raft {
                None => out += &format!("  node {}: down\n", n.id),
                Some(r) => {
                    out += &format!(
                        "  node {}: {:?} term={} leader={:?} commit={} applied={} last={} \
                         persisted={} snapshot={} sm={} synced={}/{} gated={}\n",
                        n.id,
                        r.role(),
                        r.term(),
                        r.leader_id(),
                        r.commit_index(),
                        r.last_applied(),
                        r.last_index(),
                        r.persisted_index(),
                        r.snapshot().index,
                        n.sm.len(),
                        r.synced_seq,
                        r.issued_seq,
                        r.gated.len()
                    );
                    for (p, pr) in &r.progress {
                        out += &format!("    -> {p}: {pr:?}\n");
                    }
                }
            }
        }
        out
    }

    /// Runs all phases; `Err` names the first violated property.
    pub(super) fn run(mut self) -> Result<Report, String> {
        for id in self.ids() {
            self.start(id)?;
        }
        // Safety phase.
        self.run_until(SAFETY_MS, true)?;

        // Liveness A: no loss, no crashes; the leader (and maybe one more voter, when a
        // majority stays) is cut off.
        self.faults = false;
        for id in self.ids() {
            if self.node(id).raft.is_none() {
                self.start(id)?;
            }
        }
        self.events
            .retain(|_, e| !matches!(e, Event::Restart { .. }));
        self.blocked.clear();
        let voters = self.voter_ids();
        let mut cut = Vec::new();
        let first = self
            .leader()
            .unwrap_or(1 + self.rng.below(self.swarm.voters));
        if first <= self.swarm.voters {
            cut.push(first);
        }
        if self.swarm.voters >= 5 && self.rng.chance(500) {
            let other = voters[self.rng.below(voters.len() as u64) as usize];
            if !cut.contains(&other) {
                cut.push(other);
            }
        }
        self.isolate(&cut);
        let start_a = self.now;
        let mut proposed_to: Option<(NodeId, u64)> = None;
        let ids: Vec<u64> = (0..LIVENESS_PROPOSALS).map(|k| (1 << 40) + k).collect();
        while self.now < start_a + LIVENESS_A_MS {
            let next_try = self.now + CLIENT_RETRY_MS;
            let majority_leader = self
                .up_rafts()
                .filter(|r| r.role() == Role::Leader && !cut.contains(&r.id()))
                .max_by_key(|r| r.term())
                .map(|r| r.id());
            for id in self.ids() {
                if self.rng.chance(self.swarm.compact_pm) {
                    self.compact(id)?;
                }
            }
            // A proposal is made again only to a leader that has not taken it yet.
            if std::env::var("SKEIN_RAFT_TRACE").is_ok() {
                eprintln!("{} client: majority leader {majority_leader:?}", self.now);
            }
            if let Some(l) = majority_leader {
                let lt = (l, self.node(l).raft.as_ref().unwrap().term());
                if proposed_to != Some(lt) {
                    let refused = self.refused;
                    for &cid in &ids {
                        if !self.checker.applied_ids.contains(&cid) {
                            self.propose_id(l, cid)?;
                        }
                    }
                    if self.refused == refused {
                        proposed_to = Some(lt);
                    }
                }
            }
            self.run_until(next_try.min(start_a + LIVENESS_A_MS), false)?;
        }
        for &cid in &ids {
            if !self.checker.applied_ids.contains(&cid) {
                return Err(format!(
                    "liveness: proposal {cid} not committed {LIVENESS_A_MS} ms after the \
                     majority was connected (cut off: {cut:?})\n{}",
                    self.status()
                ));
            }
        }
        for r in self.up_rafts() {
            if r.role() == Role::Leader && cut.contains(&r.id()) {
                return Err(format!(
                    "check-quorum: node {} still leads term {} after {LIVENESS_A_MS} ms cut \
                     off from the majority",
                    r.id(),
                    r.term()
                ));
            }
        }

        // Liveness B: heal everything; every node must apply one more proposal.
        self.blocked.clear();
        let start_b = self.now;
        let final_id: u64 = 1 << 41;
        let mut proposed_at: Option<u64> = None;
        loop {
            let all_applied = self.nodes.iter().all(|n| {
                n.sm.iter()
                    .any(|(_, _, d)| d.as_slice() == final_id.to_le_bytes())
            });
            if all_applied {
                break;
            }
            if self.now >= start_b + LIVENESS_B_MS {
                return Err(format!(
                    "liveness: final proposal not applied everywhere {LIVENESS_B_MS} ms after \
                     heal\n{}",
                    self.status()
                ));
            }
            if proposed_at.is_none_or(|t| self.now >= t + CLIENT_RETRY_MS * 3)
                && !self.checker.applied_ids.contains(&final_id)
            {
                if let Some(l) = self.leader() {
                    self.propose_id(l, final_id)?;
                    proposed_at = Some(self.now);
                }
            }
            for id in self.ids() {
                if self.rng.chance(self.swarm.compact_pm / 4) {
                    self.compact(id)?;
                }
            }
            let until = self.now + 10;
            self.run_until(until, false)?;
        }
        // Committed entries are never lost: every state machine holds every committed entry
        // at or below what it applied.
        for n in &self.nodes {
            for (&index, &(term, _)) in &self.checker.committed {
                let Some(&(i, t, _)) = n.sm.get((index - 1) as usize) else {
                    continue;
                };
                if (i, t) != (index, term) {
                    return Err(format!(
                        "committed entry lost: node {} has ({i}, {t}) where ({index}, {term}) was committed",
                        n.id
                    ));
                }
            }
        }
        self.report.committed = self.checker.committed.len() as u64;
        for n in &self.nodes {
            n.raft.hash(&mut self.hasher);
        }
        self.report.trace_hash = self.hasher.finish();
        Ok(self.report)
    }
}
