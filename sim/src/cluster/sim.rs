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

#[path = "verdicts.rs"]
mod verdicts;

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

fn describe(msg: &Msg) -> String {
    match msg {
        Msg::Raft(m) => match m {
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            } => format!("PreVote t{term} last=({last_log_term},{last_log_index})"),
            Message::PreVoteResponse { term, granted } => {
                format!("PreVoteResponse t{term} granted={granted}")
            }
            Message::Vote {
                term,
                last_log_index,
                last_log_term,
            } => format!("Vote t{term} last=({last_log_term},{last_log_index})"),
            Message::VoteResponse { term, granted } => {
                format!("VoteResponse t{term} granted={granted}")
            }
            Message::AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => format!(
                "AppendEntries t{term} prev=({prev_log_term},{prev_log_index}) n={} commit={leader_commit}",
                entries.len()
            ),
            Message::AppendEntriesResponse { term, result } => match result {
                AppendResult::Success { match_index } => {
                    format!("AppendEntriesResponse t{term} ok match={match_index}")
                }
                AppendResult::Reject {
                    prev_log_index,
                    conflict_term,
                    conflict_index,
                } => format!(
                    "AppendEntriesResponse t{term} reject prev={prev_log_index} conflict={conflict_term:?}@{conflict_index}"
                ),
            },
            Message::InstallSnapshot { term, snapshot } => format!(
                "InstallSnapshot t{term} ({},{})",
                snapshot.term, snapshot.index
            ),
            Message::InstallSnapshotResponse { term, match_index } => {
                format!("InstallSnapshotResponse t{term} match={match_index}")
            }
        },
        Msg::Forward { req, data } => {
            format!("Forward req={req} {}", String::from_utf8_lossy(data))
        }
        Msg::Forwarded { req, result } => format!("Forwarded req={req} {result:?}"),
        Msg::Heartbeat {
            broker,
            incarnation,
            register,
        } => format!("Heartbeat broker={broker} inc={incarnation} register={register}"),
        Msg::HeartbeatAck {
            incarnation,
            leader,
            registered,
        } => format!("HeartbeatAck inc={incarnation} leader={leader} registered={registered}"),
        Msg::Observe { next } => format!("Observe next={next}"),
        Msg::Observed(a) => format!(
            "Observed t{} leader={:?} commit={} snapshot={:?} n={}",
            a.term,
            a.leader,
            a.commit,
            a.snapshot.as_ref().map(|s| (s.term, s.index)),
            a.entries.len()
        ),
    }
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

    fn push_line(&mut self, line: Line) {
        if let Some(out) = &mut self.trace_out {
            let obj = match &line {
                Line::Deliver { t, from, to, what } => {
                    serde_json::json!({ "t": t, "from": from, "to": to, "event": what })
                }
                Line::Note { t, text } => serde_json::json!({ "t": t, "event": text }),
            };
            let _ = writeln!(out, "{obj}");
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
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

    fn config(&self, id: NodeId, life: u64) -> RaftConfig {
        let seed = self.seed ^ life.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut c = RaftConfig::new(id, 1..=self.swarm.voters, seed);
        c.election_timeout_min_ms = ELECTION_MIN_MS;
        c.election_timeout_max_ms = self.swarm.election_max_ms;
        c.heartbeat_interval_ms = RAFT_HEARTBEAT_MS;
        c.entries_per_message_max = self.swarm.entries_per_message_max;
        c.inflight_entries_max = self.swarm.inflight_entries_max;
        c.uncommitted_entries_max = UNCOMMITTED_MAX;
        c
    }

    // ---- processes ----

    /// Starts (or restarts) node `id` as a new incarnation.
    fn start(&mut self, id: NodeId) -> Verdict {
        let life = self.node(id).life + 1;
        let config = self.node(id).voter.then(|| self.config(id, life));
        let canary = self.canary;
        let now = self.now;
        let n = self.node_mut(id);
        n.life = life;
        n.up = true;
        n.incarnation = format!("{id}.{life}");
        n.registered = false;
        n.registration = None;
        n.believed_leader = None;
        n.paused = false;
        n.pause_epoch += 1;
        n.deferred.clear();
        if let Some(config) = config {
            let durable = n.store.open().map_err(|e| {
                violation(
                    "raft-store",
                    format!("node {id} cannot recover its Raft state: {e}"),
                )
            })?;
            let mut raft = Raft::new(config, durable);
            raft.set_canary(canary.map(ClusterCanary::core));
            n.seen_commit = raft.commit_index();
            n.raft = Some(raft);
            n.catalog = Catalog::new(LogConfig::default());
            n.applied = 0;
            n.controller =
                Controller::new(SESSION_TIMEOUT_MS).with_rebalance_every(REBALANCE_EVERY_MS);
            n.controller.set_canary(canary.map(ClusterCanary::core));
            n.hard_state_unsynced = false;
            n.last_sync_done_ms = now;
            self.drive(id, None)?;
            if !self.node(id).up {
                return Ok(()); // crashed at the fsync of a hard state raised at recovery
            }
            self.drive(id, Some(Input::Tick))?;
            let at = self.now + 1 + self.rng.below(CONTROLLER_POLL_MS);
            self.schedule(at, Event::ControllerTick { node: id, life });
            self.schedule(self.now, Event::RegisterTick { node: id, life });
        } else {
            let voters = (1..=self.swarm.voters).collect();
            let n = self.node_mut(id);
            n.observer = Some(Observer::new(
                ObserverConfig {
                    node_id: id,
                    voters,
                    ask_every_ms: OBSERVE_EVERY_MS,
                    give_up_after_ms: OBSERVE_GIVE_UP_MS,
                },
                now,
            ));
            n.catalog = Catalog::new(LogConfig::default());
            n.applied = 0;
            self.schedule(now, Event::ObserveTick { node: id, life });
        }
        self.note(format!("node {id} starts, incarnation {id}.{life}"));
        let at = self.now + 1 + self.rng.below(BROKER_HEARTBEAT_MS);
        self.schedule(at, Event::BrokerTick { node: id, life });
        Ok(())
    }

    /// Kills node `id`'s process between steps: a voter's store must hold its Raft state (see
    /// [`Self::check_store`]) and loses its unsynced writes (or part of them).
    fn crash(&mut self, id: NodeId, why: &str) {
        self.check_store(id);
        self.crash_mid_step(id, why);
    }

    /// If voter `id`'s disk died in the middle of a storage operation, its process crashes now
    /// (and restarts later); says whether it did.
    fn crash_if_disk_died(&mut self, id: NodeId) -> bool {
        if !self.node(id).up || !self.node(id).store.dead() {
            return false;
        }
        self.crash_mid_step(id, "its disk died mid-operation");
        let down = self.rng_more.below(self.swarm.downtime_max_ms + 1);
        self.schedule(self.now + down, Event::Restart { node: id });
        true
    }

    /// [`Self::crash`] in the middle of a step, before its later outputs were carried out.
    fn crash_mid_step(&mut self, id: NodeId, why: &str) {
        if !self.node(id).up {
            return;
        }
        let partial = self.chance_pm(self.swarm.partial_loss_pm);
        let loss = if partial {
            let torn_write_ppm = (self.swarm.torn_write_pm * 1000) as u32;
            CrashLoss::Partial { torn_write_ppm }
        } else {
            CrashLoss::All
        };
        let n = &mut self.nodes[(id - 1) as usize];
        n.up = false;
        n.paused = false;
        n.deferred.clear();
        n.registration = None;
        n.observer = None;
        let lost = if n.voter {
            n.raft = None;
            n.store.crash(&mut self.rng_more, loss).writes_lost
        } else {
            0
        };
        n.catalog = Catalog::new(LogConfig::default());
        n.applied = 0;
        n.controller = Controller::new(SESSION_TIMEOUT_MS).with_rebalance_every(REBALANCE_EVERY_MS);
        n.applied_terms.clear();
        n.registering.clear();
        let waiting: Vec<usize> = n
            .waiters
            .values()
            .flatten()
            .map(|w| w.1)
            .chain(n.forwarded.values().map(|f| f.1))
            .collect();
        n.waiters.clear();
        n.forwarded.clear();
        for op in waiting {
            self.clients
                .settle(op, OpOutcome::Unknown("the proposing node crashed"));
        }
        if self.node(id).voter {
            self.stats.crashes += 1;
        }
        self.note(format!(
            "node {id} crashes ({why}), {lost} unsynced writes lost{}",
            if partial { " (partial loss)" } else { "" }
        ));
    }

    // ---- driving Raft ----

    /// Hands `input` (if any) to voter `id`, then carries out every output. Returns the answer
    /// to a proposal; `None` also when the node crashed at a crash point on the way.
    fn drive(
        &mut self,
        id: NodeId,
        input: Option<Input>,
    ) -> Result<Option<Answer>, crate::checker::Violation> {
        let now = self.now;
        {
            let raft = self.node_mut(id).raft.as_mut().expect("voter is up");
            if let Some(i) = input {
                raft.handle(now, i);
            }
            raft.check_invariants();
        }
        let mut answer = None;
        loop {
            let Some(raft) = self.node_mut(id).raft.as_mut() else {
                return Ok(None); // crashed at a crash point
            };
            let Some(out) = raft.poll_output() else {
                break;
            };
            match out {
                Output::Proposed { index, term } if answer.is_none() => {
                    answer = Some(Ok((index, term)))
                }
                Output::Refused(e) if answer.is_none() => answer = Some(Err(e)),
                o => {
                    self.carry_out(id, o)?;
                    self.crash_if_disk_died(id);
                }
            }
        }
        self.after_drive(id)?;
        Ok(answer)
    }

    fn carry_out(&mut self, id: NodeId, o: Output) -> Verdict {
        match o {
            Output::PersistHardState(_) => {
                let n = self.node_mut(id);
                n.store.apply(&o);
                n.hard_state_unsynced = true;
            }
            Output::AppendEntries(ref entries) => {
                let first = entries[0].index;
                let raft = self.node(id).raft.as_ref().expect("voter is up");
                let prev_term = raft.term_at(first - 1).unwrap_or_else(|| {
                    panic!("harness: node {id} appends at {first} after no entry")
                });
                self.raft_check.on_append(id, prev_term, entries)?;
                self.node_mut(id).store.apply(&o);
            }
            Output::TruncateFrom { .. } | Output::PersistSnapshot(_) => {
                self.node_mut(id).store.apply(&o)
            }
            Output::Sync { seq } => {
                let at = self.now + self.rng.below(self.swarm.disk_delay_max_ms + 1);
                let n = self.node_mut(id);
                let at = at.max(n.last_sync_done_ms);
                n.last_sync_done_ms = at;
                let life = n.life;
                let likely = std::mem::take(&mut n.hard_state_unsynced) || n.leader();
                self.schedule(
                    at,
                    Event::Persisted {
                        node: id,
                        life,
                        seq,
                    },
                );
                let pm = self.swarm.crash_on_sync_pm * if likely { 5 } else { 1 };
                if self.faults && self.chance_pm(pm) && self.go("crash at an fsync") {
                    // Crash before the write is durable; this step's later outputs are lost.
                    self.crash_mid_step(id, "at an fsync");
                    let down = self.rng.below(self.swarm.delay_max_ms + 1);
                    self.schedule(self.now + down, Event::Restart { node: id });
                }
            }
            Output::Send { to, message } => {
                if let Message::VoteResponse {
                    term,
                    granted: true,
                } = message
                {
                    self.raft_check.on_grant(id, term, to)?;
                }
                self.send(id, to, Msg::Raft(message));
            }
            Output::Apply(entry) => self.apply_entry(id, entry)?,
            Output::ApplySnapshot(s) => self.restore(id, s)?,
            Output::RoleChanged { role, term, leader } => {
                // The controller learns of leadership at its next poll, as in broker.rs.
                if role == Role::Leader {
                    self.node_mut(id).registering.clear();
                }
                self.stats.max_term = self.stats.max_term.max(term);
                if matches!(role, Role::Leader | Role::Follower) {
                    self.note(format!(
                        "node {id} is {role:?} of term {term} (leader {leader:?})"
                    ));
                }
            }
            // Answers outside a proposal cannot happen (the contract); nothing to do.
            Output::Proposed { .. } | Output::Refused(_) => {}
        }
        Ok(())
    }

    fn apply_entry(&mut self, id: NodeId, entry: Entry) -> Verdict {
        let Entry {
            index,
            term,
            kind,
            data,
        } = entry;
        let expect = self.node(id).applied + 1;
        if index != expect {
            return Err(violation(
                "state-machine-safety",
                format!("node {id} applied index {index}, expected {expect}"),
            ));
        }
        self.meta.on_apply(id, index, term, kind, &data)?;
        let now = self.now;
        let every = self.swarm.snapshot_every;
        let n = &mut self.nodes[(id - 1) as usize];
        n.applied = index;
        let mut block = None;
        if kind == EntryKind::Normal {
            let rec = decode(&data).expect("the checker decoded it");
            n.catalog.apply(&rec);
            n.catalog.check_invariants();
            if let MetadataRecord::ProducerIdsAllocated { broker } = rec {
                block = n.catalog.producer_block(broker);
            }
        }
        n.applied_terms.insert(index, term);
        if n.applied_terms.len() > APPLIED_TERMS_MAX {
            n.applied_terms.pop_first();
        }
        let waiting = n.waiters.remove(&index).unwrap_or_default();
        // Snapshot as the real driver does: every `every` entries, at the commit point.
        let raft = n.raft.as_mut().expect("applying node is up");
        let compact = index >= raft.snapshot().index + every && index == raft.commit_index();
        if compact {
            let snap = serde_json::to_vec(&n.catalog.snapshot()).expect("catalog encodes");
            raft.handle(now, Input::Compact { index, data: snap });
            raft.check_invariants();
            self.stats.compactions += 1;
        }
        for (t, op) in waiting {
            if t == term {
                let block = block.filter(|_| {
                    matches!(
                        self.clients.ops[op].record,
                        MetadataRecord::ProducerIdsAllocated { .. }
                    )
                });
                self.clients.ack(op, index, term, &data, block)?;
                self.note(format!(
                    "op {op} acknowledged at ({index}, {term}) on node {id}"
                ));
            } else {
                self.clients.settle(op, OpOutcome::Lost);
            }
        }
        Ok(())
    }

    fn restore(&mut self, id: NodeId, s: Snapshot) -> Verdict {
        let snap: CatalogSnapshot = serde_json::from_slice(&s.data).map_err(|e| {
            violation(
                "snapshot",
                format!("node {id}: snapshot at {} does not decode: {e}", s.index),
            )
        })?;
        let catalog = Catalog::from_snapshot(LogConfig::default(), &snap);
        catalog.check_invariants();
        self.meta.on_restore(id, s.index, s.term, &catalog)?;
        let n = self.node_mut(id);
        if s.index <= n.applied {
            return Err(violation(
                "state-machine-safety",
                format!(
                    "node {id} restored a snapshot at {} after applying {}",
                    s.index, n.applied
                ),
            ));
        }
        n.catalog = catalog;
        n.applied = s.index;
        n.applied_terms.clear();
        let later = n.waiters.split_off(&(s.index + 1));
        let covered = std::mem::replace(&mut n.waiters, later);
        for op in covered.into_values().flatten().map(|w| w.1) {
            self.clients
                .settle(op, OpOutcome::Unknown("replaced by a snapshot"));
        }
        self.stats.restores += 1;
        self.note(format!(
            "node {id} restores snapshot ({}, {})",
            s.term, s.index
        ));
        Ok(())
    }

    /// A voter answers a non-voting broker with committed entries from `next`.
    fn on_observe(&mut self, at: NodeId, from: NodeId, next: u64) {
        let Some(raft) = self.node(at).raft.as_ref() else {
            return;
        };
        let answer = raft.observe_answer(next, OBSERVE_ENTRIES_MAX);
        self.send(at, from, Msg::Observed(answer));
    }

    /// Carries out a non-voting broker's observer outputs: asks, restores, applies.
    fn carry_out_observer(&mut self, id: NodeId) -> Verdict {
        loop {
            let Some(o) = self.node_mut(id).observer.as_mut() else {
                return Ok(());
            };
            o.check_invariants();
            let Some(out) = o.poll_output() else {
                return Ok(());
            };
            match out {
                ObserverOutput::Ask { to, next } => self.send(id, to, Msg::Observe { next }),
                ObserverOutput::Restore(s) => self.restore(id, s)?,
                ObserverOutput::Apply(e) => self.observer_apply(id, e)?,
            }
        }
    }

    /// A non-voting broker applies a committed entry to its catalog.
    fn observer_apply(&mut self, id: NodeId, entry: Entry) -> Verdict {
        let expect = self.node(id).applied + 1;
        if entry.index != expect {
            return Err(violation(
                "state-machine-safety",
                format!(
                    "observer {id} applied index {}, expected {expect}",
                    entry.index
                ),
            ));
        }
        self.meta
            .on_apply(id, entry.index, entry.term, entry.kind, &entry.data)?;
        let n = self.node_mut(id);
        n.applied = entry.index;
        if entry.kind == EntryKind::Normal {
            let rec = decode(&entry.data).expect("the checker decoded it");
            n.catalog.apply(&rec);
            n.catalog.check_invariants();
        }
        Ok(())
    }

    /// Panics unless voter `id`'s Raft store holds exactly its running Raft's state (see
    /// [`VoterStore::check_holds`]); a node that is down or no voter passes.
    fn check_store(&self, id: NodeId) {
        let n = self.node(id);
        if let Some(raft) = n.raft.as_ref() {
            if let Err(e) = n.store.check_holds(raft) {
                panic!("harness: node {id}'s raft store does not hold its Raft state: {e}");
            }
        }
    }

    /// After a node's step: its store ends where its log does; election safety; commits.
    fn after_drive(&mut self, id: NodeId) -> Verdict {
        let n = &self.nodes[(id - 1) as usize];
        let Some(raft) = n.raft.as_ref() else {
            return Ok(());
        };
        assert_eq!(
            n.store.last(),
            Some((raft.last_term(), raft.last_index())),
            "harness: node {id}'s raft store does not end where its log does"
        );
        if raft.role() == Role::Leader && self.raft_check.leaders.get(&raft.term()) != Some(&id) {
            self.raft_check.on_leader(raft)?;
            self.stats.leaders += 1;
        }
        let (from, to) = (n.seen_commit, raft.commit_index());
        for i in from + 1..=to {
            if let Some(t) = raft.term_at(i) {
                let leaders = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.raft.as_ref())
                    .filter(|r| r.role() == Role::Leader);
                self.raft_check.on_commit(raft, i, t, leaders)?;
            }
        }
        let leader = raft.leader_id();
        let n = self.node_mut(id);
        n.seen_commit = to.max(from);
        // Forwarded proposals whose leader is gone fail (net/src/quorum.rs expire_waiters).
        let stale: Vec<u64> = n
            .forwarded
            .iter()
            .filter(|(_, (to, _))| Some(*to) != leader)
            .map(|(req, _)| *req)
            .collect();
        for req in stale {
            let (_, op) = self.node_mut(id).forwarded.remove(&req).expect("listed");
            self.clients
                .settle(op, OpOutcome::Unknown("the leader changed"));
        }
        Ok(())
    }

    // ---- proposals ----

    /// Proposes `data` on leader `id`; `op` is the client proposal it carries, if any.
    fn propose_here(
        &mut self,
        id: NodeId,
        data: Vec<u8>,
        op: Option<usize>,
    ) -> Result<Result<(u64, u64), String>, crate::checker::Violation> {
        let answer = self.drive(id, Some(Input::Propose { data }))?;
        let result = match answer {
            None => Err("crashed".to_string()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok((index, term))) => {
                if let Some(op) = op {
                    let n = self.node_mut(id);
                    if n.up {
                        n.waiters.entry(index).or_default().push((term, op));
                    }
                }
                Ok((index, term))
            }
        };
        if let (Some(op), Err(why)) = (op, &result) {
            let unknown = if why == "crashed" {
                "the proposing node crashed"
            } else {
                "refused"
            };
            self.clients.settle(op, OpOutcome::Unknown(unknown));
        }
        Ok(result)
    }

    /// Client proposal `op` on node `p`: proposed here if `p` leads, else forwarded.
    fn submit(&mut self, p: NodeId, op: usize) -> Verdict {
        let data = self.clients.ops[op].data.clone();
        let raft = self.node(p).raft.as_ref().expect("proposing node is up");
        if raft.role() == Role::Leader {
            // The answer is recorded on the op (waiting, or settled as refused).
            let _ = self.propose_here(p, data, Some(op))?;
            return Ok(());
        }
        match raft.leader_id() {
            Some(l) if l != p => {
                let req = self.next_req;
                self.next_req += 1;
                self.node_mut(p).forwarded.insert(req, (l, op));
                self.send(p, l, Msg::Forward { req, data });
            }
            _ => self.clients.settle(op, OpOutcome::Unknown("no leader")),
        }
        Ok(())
    }

    fn on_forward(&mut self, at: NodeId, from: NodeId, req: u64, data: Vec<u8>) -> Verdict {
        let result = if self.node(at).leader() {
            match self.propose_here(at, data, None)? {
                Err(why) if why == "crashed" => return Ok(()),
                r => r,
            }
        } else {
            Err("not the leader".to_string())
        };
        if self.node(at).up {
            self.send(at, from, Msg::Forwarded { req, result });
        }
        Ok(())
    }

    fn on_forwarded(
        &mut self,
        at: NodeId,
        req: u64,
        result: Result<(u64, u64), String>,
    ) -> Verdict {
        let Some((_, op)) = self.node_mut(at).forwarded.remove(&req) else {
            return Ok(());
        };
        let (index, term) = match result {
            Ok(it) => it,
            Err(_) => {
                self.clients.settle(op, OpOutcome::Unknown("refused"));
                return Ok(());
            }
        };
        let n = self.node_mut(at);
        if index > n.applied {
            n.waiters.entry(index).or_default().push((term, op));
            return Ok(());
        }
        match n.applied_terms.get(&index) {
            Some(&t) if t == term => {
                let data = self.meta.at(index).expect("applied here").data.clone();
                self.clients.ack(op, index, term, &data, None)?;
                self.note(format!(
                    "op {op} acknowledged at ({index}, {term}) on node {at}"
                ));
            }
            Some(_) => self.clients.settle(op, OpOutcome::Lost),
            None => self
                .clients
                .settle(op, OpOutcome::Unknown("applied before the answer")),
        }
        Ok(())
    }

    // ---- brokers and the controller ----

    fn broker_tick(&mut self, id: NodeId) {
        let n = self.node(id);
        let target = if n.voter {
            // The leader's own broker is heard by its controller directly.
            n.raft
                .as_ref()
                .and_then(|r| r.leader_id())
                .filter(|&l| l != id)
        } else {
            match n.believed_leader {
                Some(l) if self.now <= n.last_ack_ms + LEADER_FORGET_MS => Some(l),
                _ => Some(1 + self.rng.below(self.swarm.voters)),
            }
        };
        let Some(to) = target else {
            return;
        };
        let n = self.node(id);
        let msg = Msg::Heartbeat {
            broker: id,
            incarnation: n.incarnation.clone(),
            register: !n.voter && !n.registered,
        };
        self.send(id, to, msg);
    }

    fn on_heartbeat(
        &mut self,
        at: NodeId,
        from: NodeId,
        broker: NodeId,
        incarnation: String,
        register: bool,
    ) -> Verdict {
        let n = self.node(at);
        let Some(raft) = n.raft.as_ref() else {
            return Ok(());
        };
        if raft.role() != Role::Leader {
            // Relay a broker's own heartbeat once to the leader this voter knows.
            if let Some(l) = raft.leader_id().filter(|&l| l != at && from == broker) {
                let msg = Msg::Heartbeat {
                    broker,
                    incarnation,
                    register,
                };
                self.send(at, l, msg);
            }
            return Ok(());
        }
        let now = self.now;
        let n = self.node_mut(at);
        n.controller.heartbeat(now, broker as i32, &incarnation);
        n.controller.check_invariants();
        let registered = n
            .catalog
            .broker(broker as i32)
            .is_some_and(|b| b.incarnation == incarnation);
        let recent = n
            .registering
            .get(&broker)
            .is_some_and(|(inc, t)| *inc == incarnation && now < t + REGISTER_RETRY_MS);
        if register && !registered && !recent {
            n.registering.insert(broker, (incarnation.clone(), now));
            let rec = MetadataRecord::BrokerRegistered {
                id: broker as i32,
                incarnation: incarnation.clone(),
                host: format!("n{broker}"),
                port: 9092,
                rack: None,
            };
            let data = serde_json::to_vec(&rec).expect("record encodes");
            // A lost registration is proposed again on a later heartbeat.
            let _ = self.propose_here(at, data, None)?;
        }
        // Only non-voting brokers need an answer: a voter knows the leader from its Raft.
        if self.node(at).up && !self.node(broker).voter {
            let msg = Msg::HeartbeatAck {
                incarnation,
                leader: at,
                registered,
            };
            self.send(at, broker, msg);
        }
        Ok(())
    }

    fn on_heartbeat_ack(
        &mut self,
        at: NodeId,
        incarnation: &str,
        leader: NodeId,
        registered: bool,
    ) {
        let now = self.now;
        let n = self.node_mut(at);
        if n.incarnation != incarnation {
            return; // an answer to an earlier incarnation
        }
        n.believed_leader = Some(leader);
        n.last_ack_ms = now;
        n.registered = registered;
    }

    /// One controller round of a voter, through skein-core's `Controller::round` as the
    /// broker's `control()` runs it.
    fn controller_tick(&mut self, id: NodeId) -> Verdict {
        let now = self.now;
        let cluster_id = format!("sim-{:x}", self.seed);
        let n = self.node_mut(id);
        let input = RoundInput {
            me: id as i32,
            incarnation: &n.incarnation,
            leading: n.leader(),
            stopping: false,
            local_cluster_id: &cluster_id,
        };
        let round = n.controller.round(now, &n.catalog, input);
        n.controller.check_invariants();
        if round.register_again && n.registered {
            // An earlier incarnation's registration committed after ours: register again.
            n.registered = false;
            n.registration = None;
        }
        for rec in round.proposals.into_iter().take(CONTROLLER_PROPOSALS_MAX) {
            if !self.node(id).leader() {
                break;
            }
            let data = serde_json::to_vec(&rec).expect("record encodes");
            self.note(format!(
                "controller {id} proposes {}",
                String::from_utf8_lossy(&data)
            ));
            // A lost proposal is made again at a later round.
            let _ = self.propose_here(id, data, None)?;
        }
        Ok(())
    }

    /// A voter's broker registers through its own node until acknowledged (broker.rs
    /// `register()`); a proposal unanswered for [`PROPOSAL_TIMEOUT_MS`] counts as failed.
    fn register_tick(&mut self, id: NodeId) -> Verdict {
        let n = self.node(id);
        if n.registered || n.raft.is_none() {
            return Ok(());
        }
        if let Some((op, since)) = n.registration {
            match self.clients.ops[op].outcome {
                OpOutcome::Acked { .. } => {
                    self.node_mut(id).registered = true;
                    return Ok(());
                }
                OpOutcome::Pending if self.now < since + PROPOSAL_TIMEOUT_MS => return Ok(()),
                OpOutcome::Pending => self.clients.settle(op, OpOutcome::Unknown("timed out")),
                _ => {}
            }
        }
        let rec = MetadataRecord::BrokerRegistered {
            id: id as i32,
            incarnation: self.node(id).incarnation.clone(),
            host: format!("n{id}"),
            port: 9092,
            rack: None,
        };
        let data = serde_json::to_vec(&rec).expect("record encodes");
        let op = self.clients.begin(id, rec, data);
        self.node_mut(id).registration = Some((op, self.now));
        self.submit(id, op)
    }

    // ---- the workload and the faults ----

    /// A replica caught up again, as a partition leader reports it: node `p`, leading a
    /// partition in its own (maybe stale) catalog, takes a live replica outside the ISR back
    /// in (which later makes preferred-leader elections possible).
    fn isr_catch_up(&self, p: NodeId) -> Option<MetadataRecord> {
        let catalog = &self.node(p).catalog;
        catalog.topics().find_map(|t| {
            t.parts.iter().enumerate().find_map(|(i, st)| {
                let back = st.replicas.iter().find(|r| {
                    !st.isr.contains(r) && catalog.broker(**r).is_some_and(|b| !b.fenced)
                })?;
                (st.leader == p as i32).then(|| MetadataRecord::IsrChanged {
                    topic: t.name.clone(),
                    partition: i as i32,
                    leader_epoch: st.leader_epoch,
                    partition_epoch: st.partition_epoch,
                    isr: st.isr.iter().copied().chain([*back]).collect(),
                })
            })
        })
    }

    /// An admin proposal on a random running voter, planned against its own (maybe stale)
    /// catalog.
    fn admin(&mut self) -> Verdict {
        let ups: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.raft.is_some() && !n.paused)
            .map(|n| n.id)
            .collect();
        if ups.is_empty() {
            return Ok(());
        }
        let p = self.rng.pick(&ups);
        let names: Vec<String> = self
            .node(p)
            .catalog
            .topics()
            .map(|t| t.name.clone())
            .collect();
        let kind = self.rng.below(10);
        let start = self.rng.below(64) as u32;
        let rec = match kind {
            0..=3 => {
                let name = self.rng.pick(&TOPIC_NAMES);
                let partitions = self.rng.range(1, 4) as i32;
                let rf = self.rng.range(1, 3) as i16;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                id[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                let how = Placement::Spread {
                    replication_factor: rf,
                    start,
                };
                self.node(p)
                    .catalog
                    .plan_create(name, partitions, &how, &[], id)
                    .ok()
            }
            4 | 5 if !names.is_empty() => {
                let name = names[self.rng.below(names.len() as u64) as usize].clone();
                self.node(p).catalog.plan_delete(&name).ok()
            }
            6 | 7 if !names.is_empty() => {
                let name = names[self.rng.below(names.len() as u64) as usize].clone();
                let have = self
                    .node(p)
                    .catalog
                    .topic(&name)
                    .map_or(1, |t| t.partitions);
                let total = have as i32 + self.rng.range(1, 3) as i32;
                let how = Placement::Spread {
                    replication_factor: 1,
                    start,
                };
                self.node(p)
                    .catalog
                    .plan_partitions(&name, total, &how)
                    .ok()
            }
            9 => self.isr_catch_up(p),
            _ => Some(MetadataRecord::ProducerIdsAllocated { broker: p as i32 }),
        };
        let Some(rec) = rec else {
            return Ok(());
        };
        let data = serde_json::to_vec(&rec).expect("record encodes");
        let op = self.clients.begin(p, rec, data);
        let text = format!(
            "op {op} on node {p}: {}",
            String::from_utf8_lossy(&self.clients.ops[op].data)
        );
        self.note(text);
        self.submit(p, op)
    }

    /// A network partition (or a heal) that heals by itself later.
    fn partition(&mut self) {
        self.net.heal();
        self.partition_epoch += 1;
        let all = self.ids();
        let what = match self.rng.below(5) {
            0 => "heal".to_string(),
            1 => {
                let x = self.rng.pick(&all);
                self.net.isolate(&[x], &all);
                format!("isolate {x}")
            }
            2 => {
                // The leader with a minority: it keeps replicating to a few followers without
                // committing (the road to Figure 8).
                let mut side: Vec<NodeId> = self.leader().into_iter().collect();
                let extra = self.rng.below(self.swarm.voters.div_ceil(2));
                for _ in 0..extra {
                    let v = 1 + self.rng.below(self.swarm.voters);
                    if !side.contains(&v) {
                        side.push(v);
                    }
                }
                self.net.isolate(&side, &all);
                format!("isolate {side:?}")
            }
            3 => {
                let side: Vec<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(500_000))
                    .collect();
                self.net.isolate(&side, &all);
                format!("split {side:?}")
            }
            _ => {
                let (a, b) = (self.rng.pick(&all), self.rng.pick(&all));
                self.net.block(a, b);
                format!("block {a}->{b}")
            }
        };
        let heal_at = self.now + self.rng.range(1, self.swarm.partition_max_ms);
        let epoch = self.partition_epoch;
        self.schedule(heal_at, Event::Heal { epoch });
        self.note(format!("partition: {what} until {heal_at}"));
    }

    /// A process pauses for a while (as under SIGSTOP, or a long GC pause) and resumes as the
    /// same incarnation; a non-voting broker may instead die and come back as a new one.
    fn pause(&mut self) {
        let id = 1 + self.rng.below(self.nodes.len() as u64);
        let down = self.rng.range(50, self.swarm.pause_max_ms);
        let n = self.node(id);
        if !n.up || n.paused {
            return;
        }
        if !n.voter && self.rng.chance(500_000) {
            self.crash(id, "broker dies");
            self.schedule(self.now + down, Event::Restart { node: id });
            return;
        }
        let n = self.node_mut(id);
        n.paused = true;
        n.pause_epoch += 1;
        let epoch = n.pause_epoch;
        self.schedule(self.now + down, Event::Resume { node: id, epoch });
        self.note(format!("node {id} pauses for {down} ms"));
    }

    fn resume(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        n.paused = false;
        n.pause_epoch += 1;
        let deferred = std::mem::take(&mut n.deferred);
        for e in deferred {
            self.schedule(self.now, e);
        }
        self.note(format!("node {id} resumes"));
    }

    fn action(&mut self) -> Verdict {
        if self.chance_pm(self.swarm.crash_pm) {
            // Leaders are the interesting victims: half the crashes hit the current one.
            let victim = match self.leader() {
                Some(l) if self.rng.chance(500_000) => l,
                _ => 1 + self.rng.below(self.swarm.voters),
            };
            if self.node(victim).up && self.go("crash") {
                let pm = self.swarm.mid_op_crash_pm;
                if pm > 0 && self.rng_more.below(1000) < pm {
                    let n = self.rng_more.below(16) as u32;
                    self.node_mut(victim).store.die_after(n);
                    self.note(format!(
                        "node {victim}'s disk dies at its mutation #{n} from now"
                    ));
                } else {
                    self.crash(victim, "crash");
                    let down = self.rng.below(self.swarm.downtime_max_ms + 1);
                    self.schedule(self.now + down, Event::Restart { node: victim });
                }
            }
        } else if self.chance_pm(self.swarm.partition_pm) {
            if self.go("partition") {
                self.partition();
            }
        } else if self.chance_pm(self.swarm.pause_pm) {
            if self.go("pause") {
                self.pause();
            }
        } else if self.chance_pm(self.swarm.admin_pm) && self.go("admin") {
            self.admin()?;
        }
        Ok(())
    }

    // ---- the event loop ----

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

    /// Picks what stays dead through the quiet period: nothing, a non-voting broker, or a voter
    /// (a majority stays).
    fn choose_dead(&mut self) -> Verdict {
        let observers: Vec<NodeId> = (self.swarm.voters + 1..=self.nodes.len() as u64).collect();
        let victim = match self.rng.below(3) {
            1 if !observers.is_empty() => Some(self.rng.pick(&observers)),
            2 => Some(1 + self.rng.below(self.swarm.voters)),
            _ => None,
        };
        if let Some(id) = victim.filter(|_| self.go("dies for good")) {
            self.crash(id, "dies for good");
            self.node_mut(id).stay_dead = true;
        }
        Ok(())
    }

    // ---- reports ----

    /// The trace hash so far.
    pub(super) fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// The last event lines.
    pub(super) fn tail(&self) -> Vec<String> {
        self.tail
            .iter()
            .map(|l| match l {
                Line::Deliver { t, from, to, what } => format!("t={t} {from}->{to} {what}"),
                Line::Note { t, text } => format!("t={t} {text}"),
            })
            .collect()
    }

    /// One line per node.
    pub(super) fn status(&self) -> String {
        let mut out = format!("t={} blocked={:?}\n", self.now, self.net.blocked());
        for n in &self.nodes {
            let kind = if n.voter { "voter" } else { "broker" };
            let _ = write!(
                out,
                "  node {} ({kind}, inc {}{}{}{}): ",
                n.id,
                n.incarnation,
                if n.paused { ", paused" } else { "" },
                if n.stay_dead { ", dead for good" } else { "" },
                if n.registered { ", registered" } else { "" },
            );
            match (&n.raft, n.up) {
                (_, false) => out.push_str("down\n"),
                (None, true) => {
                    let _ = writeln!(out, "up, believes leader {:?}", n.believed_leader);
                }
                (Some(r), true) => {
                    let _ = writeln!(
                        out,
                        "{:?} term={} leader={:?} commit={} applied={} last={} persisted={} \
                         snapshot={} brokers={:?}",
                        r.role(),
                        r.term(),
                        r.leader_id(),
                        r.commit_index(),
                        n.applied,
                        r.last_index(),
                        r.persisted_index(),
                        r.snapshot().index,
                        n.catalog
                            .brokers()
                            .map(|b| format!(
                                "{}@{}{}",
                                b.id,
                                b.incarnation,
                                if b.fenced { "/fenced" } else { "" }
                            ))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        out
    }

    /// Fills the counters the history decides.
    pub(super) fn finish_stats(&mut self) {
        self.stats.committed = self.meta.len();
        (self.stats.acked, self.stats.lost, _) = self.clients.counts();
        self.stats.proposals = self.clients.ops.len() as u64;
        for a in self.meta.history() {
            match &a.record {
                Some(MetadataRecord::BrokerRegistered { .. }) => self.stats.registrations += 1,
                Some(MetadataRecord::BrokerFenced { .. }) => self.stats.fences += 1,
                Some(MetadataRecord::BrokerUnfenced { .. }) => self.stats.unfences += 1,
                _ => {}
            }
        }
    }
}
