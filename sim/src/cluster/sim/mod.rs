//! The cluster harness: a discrete-event loop over N voters (each also a broker) and up to two
//! non-voting brokers, driving skein-core's `Raft`, `Catalog` and `Controller` the way the
//! real shell does (broker/src/quorum.rs), with simulated time, disks and network.
//!
//! Each voter runs Raft over skein-storage's real `RaftStore` on its own crash-losing disk
//! ([`VoterStore`]), applies committed entries (JSON
//! `MetadataRecord`s) to its `Catalog`, snapshots the catalog every `snapshot_every` applied
//! entries, and every [`CONTROLLER_POLL_MS`] runs a round of skein-core's `Controller` (the very
//! `Controller::round` broker/src/broker.rs `control()` runs): it tells the controller whether
//! this node leads, and while it does counts its own heartbeat and proposes the cluster id if
//! none is committed, fences and unfences, and preferred-leader elections every
//! [`REBALANCE_EVERY_MS`]; a voter whose catalog names an earlier incarnation of it registers
//! again. A voter's broker registers by proposing `BrokerRegistered` through its own
//! node until the proposal is acknowledged (retrying every [`REGISTER_RETRY_MS`]), and
//! heartbeats the leader its Raft knows every [`BROKER_HEARTBEAT_MS`]. A non-voting broker has
//! no Raft: it heartbeats the leader it learned from the last answer, or else a random voter,
//! which relays to the leader it knows; its heartbeat asks for registration until an answer
//! says it is registered, and the leader then proposes `BrokerRegistered` for it. Admin
//! proposals (create, delete, grow topics; producer-id blocks) are made on random voters and
//! forwarded to the leader as the real driver does.
//!
//! Phases: safety (crashes, crash points at fsyncs, partial loss of unsynced writes,
//! partitions, loss, duplication, delays, process pauses, non-voting brokers dying and coming
//! back, admin load) -> heal and elect (every process restarted, faults off: a leader within
//! [`ELECT_WITHIN_MS`]) -> check-quorum (the leader is cut off: it must have stepped down after
//! [`CHECK_QUORUM_WINDOW_MS`]) -> quiet (healed; maybe one broker or voter dies for good): within
//! [`QUIET_MAX_MS`] the cluster must settle, and then the convergence checks run.
//!
//! Invariants: one seed decides everything (one generator, `BTreeMap`s only, no clock);
//! `Raft::check_invariants` runs after every input and the checkers of `super::check` after
//! every step; the timing scale is the real broker's divided by ten (election 100 ms+ against
//! 1 s+, session timeout 600 ms against 6 s).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;

use skein_core::catalog::{Catalog, CatalogSnapshot, MetadataRecord, Placement};
use skein_core::config::LogConfig;
use skein_core::controller::{Controller, RoundInput};
use skein_core::raft::observer::{
    ObserveAnswer, Observer, ObserverConfig, ObserverInput, ObserverOutput,
};
use skein_core::raft::{
    AppendResult, Entry, EntryKind, Input, Message, NodeId, Output, ProposeError, Raft, RaftConfig,
    Role, Snapshot,
};

use super::canary::ClusterCanary;
use super::check::clients::{ClientChecker, Outcome as OpOutcome};
use super::check::metadata::{decode, MetadataChecker};
use super::check::raft::RaftChecker;
use super::net::ClusterNet;
use super::store::{CrashLoss, VoterStore};
use super::swarm::ClusterSwarm;
use crate::checker::{violation, Verdict};
use crate::harness::{Gate, Plan, TraceHasher};
use crate::rng::Rng;

mod control;
mod faults;
mod observer;
mod report;
mod verdicts;
mod voter;

use report::describe;

/// Lower bound of the election timeout (the real broker: 1000 ms).
pub const ELECTION_MIN_MS: u64 = 100;
/// Raft heartbeat interval.
pub const RAFT_HEARTBEAT_MS: u64 = 20;
/// Broker heartbeat interval (the real broker: ~1 s).
pub const BROKER_HEARTBEAT_MS: u64 = 100;
/// How often the leader's controller is polled (the real broker: ~500 ms).
pub const CONTROLLER_POLL_MS: u64 = 50;
/// Controller session timeout (the real broker: 6 s).
pub const SESSION_TIMEOUT_MS: u64 = 600;
/// A broker retries its registration this often (the real broker: 200 ms), and a leader
/// proposes one non-voter incarnation's registration at most this often.
pub const REGISTER_RETRY_MS: u64 = 200;
/// The active controller checks for preferred-leader elections this often (the broker's
/// `--leader-imbalance-check-ms`, scaled down like every other timing here).
pub const REBALANCE_EVERY_MS: u64 = 1_000;
/// A non-voting broker asks for new entries this often (the broker's 50 ms, scaled).
pub const OBSERVE_EVERY_MS: u64 = 5;
/// ... and gives a silent voter up after this long (the broker's 1 s, scaled).
pub const OBSERVE_GIVE_UP_MS: u64 = 100;
/// At most this many entries per answer to a non-voting broker (the broker's limit).
pub const OBSERVE_ENTRIES_MAX: usize = 512;
/// A proposal unanswered this long fails (the real driver: 15 s).
pub const PROPOSAL_TIMEOUT_MS: u64 = 1_500;
/// A non-voting broker unanswered this long stops trusting the leader it knew.
pub const LEADER_FORGET_MS: u64 = 300;
/// Latency bound once the faults stop.
pub const CALM_DELAY_MAX_MS: u64 = 15;
/// After the heal, a leader must be elected within this.
pub const ELECT_WITHIN_MS: u64 = 3_000;
/// How long the leader is cut off in the check-quorum phase.
pub const CHECK_QUORUM_WINDOW_MS: u64 = 1_000;
/// The quiet period lasts at least this long (several session timeouts)...
pub const QUIET_MIN_MS: u64 = 2_500;
/// ... and the cluster must have settled by this.
pub const QUIET_MAX_MS: u64 = 8_000;
/// Upper bound on events per run; a run that needs more is itself a bug (a livelock).
pub const STEPS_MAX: u64 = 2_000_000;
/// Raft's cap on uncommitted entries (small, so refusals happen).
const UNCOMMITTED_MAX: u64 = 64;
/// Controller records proposed per poll at most.
const CONTROLLER_PROPOSALS_MAX: usize = 16;
/// Recently applied terms a node remembers (for forward answers that arrive after the apply).
const APPLIED_TERMS_MAX: usize = 4096;
/// Event lines kept for the failure report.
const TAIL_LINES: usize = 40;
/// Topic names the workload uses: few, so creates collide and names are reused.
const TOPIC_NAMES: [&str; 6] = ["t0", "t1", "t2", "t3", "t4", "t5"];

/// Raft's answer to a proposal: where the entry went, or why not.
type Answer = Result<(u64, u64), ProposeError>;

/// A message between nodes.
#[derive(Debug, Clone, Hash)]
enum Msg {
    /// Raft's own traffic.
    Raft(Message),
    /// A follower asks the leader to propose `data` (net's `PeerMsg::Forward`).
    Forward { req: u64, data: Vec<u8> },
    /// The leader's answer: where the entry went, or why not.
    Forwarded {
        req: u64,
        result: Result<(u64, u64), String>,
    },
    /// A broker's heartbeat; `register` asks for a registration of this incarnation.
    Heartbeat {
        broker: NodeId,
        incarnation: String,
        register: bool,
    },
    /// The leader's answer to a heartbeat.
    HeartbeatAck {
        incarnation: String,
        leader: NodeId,
        registered: bool,
    },
    /// A non-voting broker asks a voter for committed entries from `next` (`PeerMsg::Observe`).
    Observe { next: u64 },
    /// The voter's answer (`PeerMsg::Observed`).
    Observed(ObserveAnswer),
}

#[derive(Debug, Clone, Hash)]
enum Event {
    Deliver { from: NodeId, to: NodeId, msg: Msg },
    Persisted { node: NodeId, life: u64, seq: u64 },
    Restart { node: NodeId },
    BrokerTick { node: NodeId, life: u64 },
    ControllerTick { node: NodeId, life: u64 },
    Action,
    Heal { epoch: u64 },
    RegisterTick { node: NodeId, life: u64 },
    Resume { node: NodeId, epoch: u64 },
    ObserveTick { node: NodeId, life: u64 },
}

/// One node: a broker, and for voters also a quorum member.
struct Node {
    id: NodeId,
    voter: bool,
    up: bool,
    /// Process starts so far.
    life: u64,
    /// Stays down (or silent) through the quiet period.
    stay_dead: bool,
    /// Paused (SIGSTOP): runs nothing, receives nothing; its fsyncs complete meanwhile.
    paused: bool,
    pause_epoch: u64,
    /// Events that reached the node while it was paused (fsync completions), run on resume.
    deferred: Vec<Event>,
    // ---- broker side ----
    incarnation: String,
    believed_leader: Option<NodeId>,
    last_ack_ms: u64,
    /// Registered: a voter's registration proposal was acknowledged; for a non-voter, the last
    /// heartbeat answer said so.
    registered: bool,
    /// A voter's registration proposal in flight: (op, when proposed).
    registration: Option<(usize, u64)>,
    /// A non-voting broker's follower of the committed log (skein-core's `Observer`, as the
    /// broker's observer driver runs it).
    observer: Option<Observer>,
    // ---- quorum side (voters) ----
    raft: Option<Raft>,
    /// The voter's disk and the Raft store open on it.
    store: VoterStore,
    catalog: Catalog,
    /// Index of the last entry applied to `catalog` (or restored).
    applied: u64,
    controller: Controller,
    /// Local proposals waiting to be applied: index -> (term, op).
    waiters: BTreeMap<u64, Vec<(u64, usize)>>,
    /// Proposals forwarded to a leader: request id -> (leader, op).
    forwarded: BTreeMap<u64, (NodeId, usize)>,
    applied_terms: BTreeMap<u64, u64>,
    /// Leader: registrations proposed, broker -> (incarnation, when).
    registering: BTreeMap<NodeId, (String, u64)>,
    /// Highest commit index the checker has seen on this incarnation.
    seen_commit: u64,
    /// A term or vote was written since the last sync request (a likelier crash point).
    hard_state_unsynced: bool,
    last_sync_done_ms: u64,
}

impl Node {
    fn new(id: NodeId, voter: bool) -> Node {
        Node {
            id,
            voter,
            up: false,
            life: 0,
            stay_dead: false,
            incarnation: String::new(),
            paused: false,
            pause_epoch: 0,
            deferred: Vec::new(),
            believed_leader: None,
            last_ack_ms: 0,
            registered: false,
            registration: None,
            observer: None,
            raft: None,
            store: VoterStore::default(),
            catalog: Catalog::new(LogConfig::default()),
            applied: 0,
            controller: Controller::new(SESSION_TIMEOUT_MS)
                .with_rebalance_every(REBALANCE_EVERY_MS),
            waiters: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            applied_terms: BTreeMap::new(),
            registering: BTreeMap::new(),
            seen_commit: 0,
            hard_state_unsynced: false,
            last_sync_done_ms: 0,
        }
    }

    fn leader(&self) -> bool {
        self.raft.as_ref().is_some_and(|r| r.role() == Role::Leader)
    }
}

/// Counters for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Highest term reached.
    pub max_term: u64,
    /// Terms that had a leader.
    pub leaders: u64,
    /// Entries committed (and applied somewhere).
    pub committed: u64,
    /// Voter crashes (including those at fsyncs).
    pub crashes: u64,
    /// Snapshots taken by nodes.
    pub compactions: u64,
    /// Snapshots restored (at restart or from the leader).
    pub restores: u64,
    /// Client proposals made (admin operations and voters' registrations).
    pub proposals: u64,
    /// ... acknowledged.
    pub acked: u64,
    /// ... definitely not committed (another entry took the index).
    pub lost: u64,
    /// Broker registrations committed.
    pub registrations: u64,
    /// Fences committed (effective or not).
    pub fences: u64,
    /// Unfences committed.
    pub unfences: u64,
}

/// One line of the event tail.
enum Line {
    Deliver {
        t: u64,
        from: NodeId,
        to: NodeId,
        what: String,
    },
    Note {
        t: u64,
        text: String,
    },
}

/// The simulation of one seed.
pub(super) struct Cluster {
    pub(super) seed: u64,
    pub(super) swarm: ClusterSwarm,
    canary: Option<ClusterCanary>,
    rng: Rng,
    /// Draws added after the first version, on their own stream so `rng`'s stay put.
    rng_more: Rng,
    pub(super) now: u64,
    nodes: Vec<Node>,
    events: BTreeMap<(u64, u64), Event>,
    event_seq: u64,
    net: ClusterNet,
    /// The safety phase's faults are on.
    faults: bool,
    /// The safety phase's actions are drawn.
    actions: bool,
    partition_epoch: u64,
    next_req: u64,
    raft_check: RaftChecker,
    meta: MetadataChecker,
    clients: ClientChecker,
    hasher: TraceHasher,
    /// Numbers faults and admin actions; lets through those the plan allows.
    pub(super) gate: Gate,
    /// Where every event line goes as JSON (`--trace`).
    trace_out: Option<Box<dyn std::io::Write>>,
    tail: VecDeque<Line>,
    pub(super) steps: u64,
    pub(super) stats: Stats,
}

impl Cluster {
    pub(super) fn new(
        seed: u64,
        voters: Option<u64>,
        canary: Option<ClusterCanary>,
        plan: &Plan,
        trace_out: Option<Box<dyn std::io::Write>>,
    ) -> Cluster {
        let mut root = Rng::new(seed);
        let mut swarm = ClusterSwarm::draw(&mut root.fork());
        if let Some(v) = voters {
            swarm.voters = v;
        }
        if let Some(ms) = plan.safety_ms {
            swarm.safety_ms = ms;
        }
        let rng = root.fork();
        let mut rng_more = root.fork();
        swarm.draw_more(&mut rng_more);
        let n = swarm.voters + swarm.observers;
        let nodes = (1..=n)
            .map(|id| Node::new(id, id <= swarm.voters))
            .collect();
        let net = ClusterNet::new(
            swarm.drop_pm,
            swarm.dup_pm,
            swarm.delay_max_ms,
            CALM_DELAY_MAX_MS,
        );
        Cluster {
            seed,
            swarm,
            canary,
            rng,
            rng_more,
            now: 0,
            nodes,
            events: BTreeMap::new(),
            event_seq: 0,
            net,
            faults: false,
            actions: false,
            partition_epoch: 0,
            next_req: 0,
            raft_check: RaftChecker::default(),
            meta: MetadataChecker::default(),
            clients: ClientChecker::default(),
            hasher: TraceHasher::new(),
            gate: Gate::new(plan.allowed.clone()),
            trace_out,
            tail: VecDeque::with_capacity(TAIL_LINES + 1),
            steps: 0,
            stats: Stats::default(),
        }
    }

    // ---- plumbing ----

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The running leader of the highest term, if any.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    fn schedule(&mut self, at: u64, e: Event) {
        self.event_seq += 1;
        self.events.insert((at, self.event_seq), e);
    }

    fn chance_pm(&mut self, pm: u64) -> bool {
        pm > 0 && self.rng.below(1000) < pm
    }

    /// A fault or admin action is about to happen: numbers it, and says whether the plan lets
    /// it go ahead.
    fn go(&mut self, what: &str) -> bool {
        let (n, ok) = self.gate.decide();
        if !ok {
            self.note(format!("decision #{n} ({what}) left out by the schedule"));
        }
        ok
    }

    /// Flushes the `--trace` file.
    pub(super) fn flush_trace(&mut self) {
        if let Some(out) = &mut self.trace_out {
            let _ = out.flush();
        }
    }

    /// Records a rare event in the trace.
    fn note(&mut self, text: String) {
        (self.now, 0u8, &text).hash(&mut self.hasher);
        let t = self.now;
        self.push_line(Line::Note { t, text });
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let delays = self.net.delays(&mut self.rng, from, to);
        for d in delays {
            self.schedule(
                self.now + d,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn step(&mut self) -> Verdict {
        self.steps += 1;
        if self.steps > STEPS_MAX {
            return Err(violation(
                "liveness",
                format!("step budget of {STEPS_MAX} exhausted at t={}", self.now),
            ));
        }
        let t_event = self.events.first_key_value().map(|(k, _)| k.0);
        let t_timer = self
            .nodes
            .iter()
            .filter(|n| !n.paused)
            .filter_map(|n| n.raft.as_ref()?.poll_timeout().map(|t| (t, n.id)))
            .min();
        let timer_first = match (t_timer, t_event) {
            (Some((tt, _)), Some(te)) => tt < te,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return Err(violation("liveness", "nothing scheduled".into())),
        };
        if timer_first {
            let (t, id) = t_timer.expect("timer first");
            self.now = self.now.max(t);
            (self.now, 1u8, id).hash(&mut self.hasher);
            self.drive(id, Some(Input::Tick))?;
        } else {
            let ((t, _), e) = self.events.pop_first().expect("event first");
            self.now = self.now.max(t);
            self.event(e)?;
        }
        self.check_commit_safety()
    }

    fn event(&mut self, e: Event) -> Verdict {
        match e {
            Event::Deliver { from, to, msg } => {
                let n = self.node(to);
                if !self.net.allows(from, to) || !n.up || n.paused {
                    return Ok(());
                }
                (self.now, 2u8, from, to, &msg).hash(&mut self.hasher);
                let (t, what) = (self.now, describe(&msg));
                self.push_line(Line::Deliver { t, from, to, what });
                match msg {
                    Msg::Raft(message) => {
                        if self.node(to).raft.is_some() {
                            self.drive(to, Some(Input::Receive { from, message }))?;
                        }
                    }
                    Msg::Forward { req, data } => self.on_forward(to, from, req, data)?,
                    Msg::Forwarded { req, result } => self.on_forwarded(to, req, result)?,
                    Msg::Heartbeat {
                        broker,
                        incarnation,
                        register,
                    } => self.on_heartbeat(to, from, broker, incarnation, register)?,
                    Msg::HeartbeatAck {
                        incarnation,
                        leader,
                        registered,
                    } => self.on_heartbeat_ack(to, &incarnation, leader, registered),
                    Msg::Observe { next } => self.on_observe(to, from, next),
                    Msg::Observed(answer) => {
                        let now = self.now;
                        if let Some(o) = self.node_mut(to).observer.as_mut() {
                            o.handle(now, ObserverInput::Answer(answer));
                            self.carry_out_observer(to)?;
                        }
                    }
                }
            }
            Event::Persisted { node, life, seq } => {
                let n = self.node_mut(node);
                if n.life != life || !n.up {
                    return Ok(());
                }
                if n.paused {
                    n.deferred.push(Event::Persisted { node, life, seq });
                    return Ok(());
                }
                n.store.sync();
                if self.crash_if_disk_died(node) {
                    return Ok(()); // the fsync never returned
                }
                (self.now, 3u8, node, seq).hash(&mut self.hasher);
                self.drive(node, Some(Input::Persisted { seq }))?;
            }
            Event::Restart { node } => {
                let n = self.node(node);
                if !n.up && !n.stay_dead {
                    self.start(node)?;
                }
            }
            Event::ObserveTick { node, life } => {
                let n = self.node(node);
                if n.life == life && n.up {
                    (self.now, 9u8, node).hash(&mut self.hasher);
                    let now = self.now;
                    let n = self.node_mut(node);
                    let paused = n.paused;
                    let Some(o) = n.observer.as_mut() else {
                        return Ok(());
                    };
                    if !paused {
                        o.handle(now, ObserverInput::Tick);
                    }
                    let next = o.poll_timeout().max(now + 1);
                    self.carry_out_observer(node)?;
                    self.schedule(next, Event::ObserveTick { node, life });
                }
            }
            Event::BrokerTick { node, life } => {
                let n = self.node(node);
                if n.life == life && n.up {
                    let paused = n.paused;
                    (self.now, 4u8, node).hash(&mut self.hasher);
                    if !paused {
                        self.broker_tick(node);
                    }
                    self.schedule(
                        self.now + BROKER_HEARTBEAT_MS,
                        Event::BrokerTick { node, life },
                    );
                }
            }
            Event::ControllerTick { node, life } => {
                let n = self.node(node);
                if n.life == life && n.up {
                    let paused = n.paused;
                    (self.now, 5u8, node).hash(&mut self.hasher);
                    if !paused {
                        self.controller_tick(node)?;
                    }
                    self.schedule(
                        self.now + CONTROLLER_POLL_MS,
                        Event::ControllerTick { node, life },
                    );
                }
            }
            Event::Action => {
                if self.actions {
                    (self.now, 6u8).hash(&mut self.hasher);
                    self.action()?;
                    let gap = self.rng.range(1, self.swarm.action_gap_max_ms);
                    self.schedule(self.now + gap, Event::Action);
                }
            }
            Event::Heal { epoch } => {
                if epoch == self.partition_epoch && self.net.partitioned() {
                    self.net.heal();
                    self.note("partition heals".into());
                }
            }
            Event::RegisterTick { node, life } => {
                let n = self.node(node);
                if n.life == life && n.up && !n.registered {
                    let paused = n.paused;
                    (self.now, 7u8, node).hash(&mut self.hasher);
                    if !paused {
                        self.register_tick(node)?;
                    }
                    self.schedule(
                        self.now + REGISTER_RETRY_MS,
                        Event::RegisterTick { node, life },
                    );
                }
            }
            Event::Resume { node, epoch } => {
                let n = self.node(node);
                if n.pause_epoch == epoch && n.paused {
                    self.resume(node);
                }
            }
        }
        Ok(())
    }

    fn run_until(&mut self, end_ms: u64) -> Verdict {
        while self.now < end_ms {
            self.step()?;
        }
        Ok(())
    }

    // ---- phases ----

    /// Runs every phase; `Err` names the first violated property.
    pub(super) fn run(&mut self) -> Verdict {
        for id in self.ids() {
            self.start(id)?;
        }
        // Safety phase.
        self.faults = true;
        self.net.faults = true;
        self.actions = true;
        self.schedule(self.now, Event::Action);
        self.run_until(self.swarm.safety_ms)?;

        // Heal: faults off, every process back, every broker heartbeating.
        self.faults = false;
        self.net.faults = false;
        self.actions = false;
        self.net.heal();
        self.partition_epoch += 1;
        self.note("heal: faults stop".into());
        for n in &mut self.nodes {
            n.store.disarm();
        }
        for id in self.ids() {
            if !self.node(id).up {
                self.start(id)?;
            }
            if self.node(id).paused {
                self.resume(id);
            }
        }
        let leader = self.await_leader(ELECT_WITHIN_MS)?;

        // Check-quorum: the leader, cut off from everyone, must step down.
        let all = self.ids();
        self.net.isolate(&[leader], &all);
        self.note(format!("check-quorum: leader {leader} cut off"));
        let until = self.now + CHECK_QUORUM_WINDOW_MS;
        self.run_until(until)?;
        if let Some(r) = self
            .node(leader)
            .raft
            .as_ref()
            .filter(|r| r.role() == Role::Leader)
        {
            return Err(violation(
                "check-quorum",
                format!(
                    "node {leader} still leads term {} after {CHECK_QUORUM_WINDOW_MS} ms cut off \
                     from every other node",
                    r.term()
                ),
            ));
        }
        self.net.heal();
        self.note("check-quorum: healed".into());

        // Quiet: maybe one broker (or voter) dies for good; everything else must converge.
        self.choose_dead()?;
        let quiet_start = self.now;
        self.run_until(quiet_start + QUIET_MIN_MS)?;
        loop {
            let verdict = self.converged();
            if verdict.is_ok() || self.now >= quiet_start + QUIET_MAX_MS {
                for id in self.ids() {
                    self.check_store(id);
                }
                return verdict;
            }
            let until = self.now + 20;
            self.run_until(until)?;
        }
    }

    fn await_leader(&mut self, within_ms: u64) -> Result<NodeId, crate::checker::Violation> {
        let deadline = self.now + within_ms;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if self.now >= deadline {
                return Err(violation(
                    "liveness",
                    format!("no leader {within_ms} ms after the faults stopped"),
                ));
            }
            let until = self.now + 10;
            self.run_until(until)?;
        }
    }
}
