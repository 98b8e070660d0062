//! The replication driver: controller, brokers, clients, network, disks and the checkers (see
//! the module doc of [`super`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use crate::harness::{Gate, Plan, TraceHasher};

use skein_core::canary::Canary;
use skein_core::catalog::{Catalog, MetadataRecord, PartitionState};
use skein_core::config::LogConfig;
use skein_core::log::PartitionLog;
use skein_core::reconcile::refused_isr_change;
use skein_core::replica::{FlushPolicy, Replica as CoreReplica, ReplicaConfig, ReplicaError};
use skein_core::replication::{IsrProposal, ReplicationConfig};

use super::swarm::ReplSwarm;
use super::{ReplCanary, Stats};
use crate::checker::{violation, Violation};
use crate::records::RecordId;
use crate::rng::Rng;

mod ack_latency;
mod replica;
mod settle;

use skein_core::replica::Input;

const TOPIC: &str = "t";
const HEARTBEAT_MS: u64 = 100;
const TICK_MS: u64 = 50;
const CTL_TICK_MS: u64 = 50;
/// The leader's long-poll wait (replica.fetch.wait.max.ms): a follower's fetch that finds
/// nothing new is held until the leader appends or this passes, and the follower fetches again
/// as soon as it is answered. Below the smallest replica.lag.time.max.ms a seed draws (300)
/// less a round trip at the largest delay (80): core counts a follower as caught up only when
/// one of its fetches finds the leader's end, so an idle follower must be seen within it.
const FETCH_WAIT_MS: u64 = 200;
/// A follower's fetch unanswered for this long is sent again (its request timeout: longer than
/// the long-poll wait plus a round trip).
const FETCH_RETRY_MS: u64 = 300;
const REQUEST_TIMEOUT_MS: u64 = 3_000;
const QUIET_MS: u64 = 20_000;
const BATCHES_PER_FETCH: usize = 32;
const TAIL: usize = 40;

type Res = Result<(), Violation>;

/// A network endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Node {
    Ctl,
    B(i32),
    Client,
}

/// One stored batch: bytes as the leader stamped them plus the record ids they carry.
#[derive(Debug, Clone)]
struct Stored {
    base: i64,
    last: i64,
    epoch: i32,
    bytes: Vec<u8>,
    ids: Vec<RecordId>,
}

#[derive(Debug, Clone)]
enum FetchBody {
    Err(ReplicaError),
    Diverging { epoch: i32, end_offset: i64 },
    Data { batches: Vec<Stored>, hw: i64 },
}

#[derive(Debug, Clone)]
enum Msg {
    Heartbeat {
        inc: u64,
    },
    Meta {
        version: u64,
        parts: Vec<PartitionState>,
        /// Per partition, its replicas the catalog calls fenced.
        fenced: Vec<Vec<i32>>,
        /// The incarnation whose heartbeat this answers (`None`: not a heartbeat reply).
        inc: Option<u64>,
    },
    MetaReq,
    AlterIsr {
        p: usize,
        prop: IsrProposal,
    },
    /// The controller's answer to an `AlterIsr` the catalog refused.
    IsrRefused {
        p: usize,
        prop: IsrProposal,
    },
    Fetch {
        p: usize,
        seq: u64,
        offset: i64,
        last_epoch: i32,
        epoch: i32,
    },
    FetchResp {
        p: usize,
        seq: u64,
        body: FetchBody,
    },
    Produce {
        p: usize,
        req: u64,
        acks: i8,
        ids: Vec<RecordId>,
    },
    ProduceResp {
        req: u64,
        result: Result<i64, &'static str>,
    },
    Consume {
        p: usize,
        offset: i64,
    },
    ConsumeResp {
        p: usize,
        records: Vec<(i64, RecordId)>,
    },
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        from: Node,
        to: Node,
        msg: Msg,
    },
    Sync {
        b: i32,
        inc: u64,
        p: usize,
        sgen: u64,
        upto: usize,
    },
    FetchRetry {
        b: i32,
        inc: u64,
        p: usize,
        seq: u64,
    },
    /// The long-poll wait of follower `f`'s fetch `seq`, held by leader `b`, is over.
    FetchExpire {
        b: i32,
        inc: u64,
        p: usize,
        f: i32,
        seq: u64,
    },
    Heartbeat {
        b: i32,
        inc: u64,
    },
    Tick {
        b: i32,
        inc: u64,
    },
    CtlTick,
    Produce,
    Consume,
    ClientMeta,
    Fault,
    Restart {
        b: i32,
    },
    /// The end of a controlled shutdown: the process stops.
    Stop {
        b: i32,
        inc: u64,
    },
    Unpause {
        b: i32,
    },
    Reconnect {
        b: i32,
    },
    Heal,
}

impl Ev {
    fn target(&self) -> Option<i32> {
        match self {
            Ev::Deliver { to: Node::B(b), .. }
            | Ev::Sync { b, .. }
            | Ev::FetchRetry { b, .. }
            | Ev::FetchExpire { b, .. }
            | Ev::Heartbeat { b, .. }
            | Ev::Tick { b, .. } => Some(*b),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Replica {
    store: Vec<Stored>,
    synced: usize,
    sgen: u64,
    log: PartitionLog,
    /// The core replica state machine this driver carries out.
    core: CoreReplica,
    fetch_seq: u64,
    /// Produce requests between the core's append request and the append: their acks and
    /// records.
    producing: BTreeMap<u64, (i8, Vec<RecordId>)>,
    /// acks=-1 writes this replica appended as leader and has not answered yet: (token,
    /// leader epoch, append time), oldest first.
    unanswered: Vec<(u64, i32, u64)>,
    /// The leader and epoch this follower last got records (or an empty answer) from; `None`
    /// after an error, a divergence, a role change or a restart, until such an answer comes.
    replicating: Option<(i32, i32)>,
    /// A fetch response's batches, until the core asks for them to be appended.
    fetched: Vec<Stored>,
    /// Largest hw this leadership exposed, and its epoch (the sim's own hw-monotonic check).
    lead_hw: (i32, i64),
}

impl Replica {
    fn new(config: ReplicaConfig, canary: Option<Canary>) -> Replica {
        let log = PartitionLog::new(LogConfig::default(), 0);
        let mut core = CoreReplica::new(config, &log, 0, 0);
        core.set_canary(canary);
        Replica {
            store: Vec::new(),
            synced: 0,
            sgen: 0,
            log,
            core,
            fetch_seq: 0,
            producing: BTreeMap::new(),
            unanswered: Vec::new(),
            replicating: None,
            fetched: Vec::new(),
            lead_hw: (-1, 0),
        }
    }

    fn end(&self) -> i64 {
        self.log.log_end_offset()
    }

    fn hw(&self) -> i64 {
        self.core.hw()
    }

    fn synced_end(&self) -> i64 {
        self.synced
            .checked_sub(1)
            .map(|i| self.store[i].last + 1)
            .unwrap_or(0)
    }

    /// Keeps the first `n` batches and rebuilds the log from them.
    fn keep(&mut self, n: usize, now: u64) {
        self.store.truncate(n);
        self.synced = self.synced.min(n);
        self.sgen += 1;
        let saved: Vec<(i32, i64)> = self.log.epochs().to_vec();
        let mut log = PartitionLog::new(LogConfig::default(), now);
        for s in &self.store {
            log.append_replicated(now, &s.bytes)
                .expect("stored batches replay");
        }
        let end = log.log_end_offset();
        let kept: Vec<(i32, i64)> = saved.into_iter().filter(|(_, s)| *s < end).collect();
        log.restore_epochs(&kept);
        self.log = log;
    }

    /// A restart: a fresh core over the recovered (all durable) log, knowing its old hw.
    fn restart_core(&mut self, now: u64) {
        let hw = self.core.hw().min(self.end());
        let config = self.core.config();
        let canary = self.core.canary();
        self.core = CoreReplica::new(config, &self.log, hw, now);
        self.core.set_canary(canary);
        self.producing.clear();
        self.unanswered.clear();
        self.replicating = None;
        self.fetched.clear();
        self.lead_hw = (-1, 0);
    }
}

#[derive(Debug)]
struct Broker {
    up: bool,
    /// In controlled shutdown: fenced, no longer heartbeating, still replicating until it stops.
    stopping: bool,
    inc: u64,
    paused_until: Option<u64>,
    /// Events that came during a pause wait until this time, even if healing ends it early.
    held_until: u64,
    slow: bool,
    version: u64,
    fresh: bool,
    view: Vec<PartitionState>,
    parts: Vec<Replica>,
}

/// A follower's fetch the leader holds (the long poll), as it came.
#[derive(Debug, Clone, Copy)]
struct Parked {
    /// The leader's incarnation that holds it.
    inc: u64,
    offset: i64,
    last_epoch: i32,
    epoch: i32,
}

/// Who a cut-off broker cannot reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    All,
    Controller,
}

struct Client {
    version: u64,
    view: Vec<PartitionState>,
    serial: u32,
    req: u64,
    inflight: BTreeMap<u64, (usize, Vec<RecordId>, i8)>,
    pos: Vec<i64>,
}

/// The simulation.
pub struct ReplSim {
    /// The drawn shape.
    pub swarm: ReplSwarm,
    /// Steps taken.
    pub steps: u64,
    /// Simulated now.
    pub now: u64,
    canary: Option<ReplCanary>,
    rng: Rng,
    net_rng: Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    // controller
    catalog: Catalog,
    version: u64,
    published: Vec<PartitionState>,
    /// Per partition, its replicas the catalog calls fenced, as published.
    published_fenced: Vec<Vec<i32>>,
    last_hb: BTreeMap<i32, u64>,
    override_leader: BTreeMap<usize, (i32, i32)>,
    // brokers and clients
    brokers: BTreeMap<i32, Broker>,
    /// Follower fetches the leaders hold: (leader, partition, follower, fetch seq).
    parked: BTreeMap<(i32, usize, i32, u64), Parked>,
    cut: BTreeMap<i32, Cut>,
    client: Client,
    healed: bool,
    // checker state
    acked: BTreeMap<(usize, i64), RecordId>,
    observed: BTreeMap<(usize, i64), RecordId>,
    exposed: BTreeMap<(usize, i32), i64>,
    epoch_leader: BTreeMap<(usize, i32), i32>,
    /// Since when each healthy leader's maximal ISR has differed from its committed ISR.
    unsettled: BTreeMap<(i32, usize), u64>,
    /// Since when each leader (broker, partition) and its ISR have been healthy without a
    /// lapse (the acknowledgement-latency check).
    ack_clock: BTreeMap<(i32, usize), u64>,
    /// Until when a message between two brokers (the smaller id first) that was lost,
    /// duplicated or slowed may still hold up their replication (see `disturb`).
    disturbed: BTreeMap<(i32, i32), u64>,
    stats: Stats,
    hasher: TraceHasher,
    tail: VecDeque<String>,
    /// Numbers faults; lets through those the plan allows.
    gate: Gate,
    /// Where `--trace` writes every event line.
    trace_out: Option<Box<dyn std::io::Write>>,
}

impl ReplSim {
    /// A run of `seed`.
    pub fn new(seed: u64, canary: Option<ReplCanary>) -> ReplSim {
        ReplSim::with_plan(seed, canary, &Plan::default(), None)
    }

    /// A run of `seed` narrowed by `plan`, writing every event line to `trace_out`.
    pub fn with_plan(
        seed: u64,
        canary: Option<ReplCanary>,
        plan: &Plan,
        trace_out: Option<Box<dyn std::io::Write>>,
    ) -> ReplSim {
        let mut root = Rng::new(seed);
        let mut swarm = ReplSwarm::draw(&mut root.fork());
        if let Some(ms) = plan.safety_ms {
            swarm.safety_ms = ms;
        }
        let rng = root.fork();
        let net_rng = root.fork();
        let mut catalog = Catalog::new(LogConfig::default());
        let ids: Vec<i32> = (1..=swarm.brokers as i32).collect();
        for id in &ids {
            catalog.apply(&MetadataRecord::BrokerRegistered {
                id: *id,
                incarnation: format!("{id}-0"),
                host: "h".into(),
                port: 9092,
                rack: None,
            });
        }
        let assignments: Vec<Vec<i32>> = (0..swarm.partitions)
            .map(|p| (0..swarm.rf).map(|j| ids[(p + j) % ids.len()]).collect())
            .collect();
        let mut configs = BTreeMap::new();
        configs.insert("min.insync.replicas".into(), swarm.min_isr.to_string());
        configs.insert(
            "unclean.leader.election.enable".into(),
            swarm.unclean.to_string(),
        );
        catalog.apply(&MetadataRecord::TopicCreated {
            name: TOPIC.into(),
            id: "0".repeat(32),
            partitions: swarm.partitions as u32,
            configs,
            assignments,
        });
        let published = catalog.topic(TOPIC).expect("created").parts.clone();
        let published_fenced = published
            .iter()
            .map(|st| catalog.fenced_replicas(st))
            .collect();
        let cfg = ReplicationConfig {
            lag_time_max_ms: swarm.lag_ms,
            min_insync_replicas: swarm.min_isr,
            isr_retry_ms: 500,
        };
        let brokers = ids
            .iter()
            .map(|id| {
                (
                    *id,
                    Broker {
                        up: true,
                        stopping: false,
                        inc: 0,
                        paused_until: None,
                        held_until: 0,
                        slow: false,
                        version: 0,
                        fresh: false,
                        view: Vec::new(),
                        parts: (0..swarm.partitions)
                            .map(|_| Replica::new(replica_config(*id, cfg), core_canary(canary)))
                            .collect(),
                    },
                )
            })
            .collect();
        let last_hb = ids.iter().map(|id| (*id, 0)).collect();
        let parts = swarm.partitions;
        ReplSim {
            swarm,
            steps: 0,
            now: 0,
            canary,
            rng,
            net_rng,
            queue: BTreeMap::new(),
            seq: 0,
            catalog,
            version: 1,
            published,
            published_fenced,
            last_hb,
            override_leader: BTreeMap::new(),
            brokers,
            parked: BTreeMap::new(),
            cut: BTreeMap::new(),
            client: Client {
                version: 0,
                view: Vec::new(),
                serial: 0,
                req: 0,
                inflight: BTreeMap::new(),
                pos: vec![0; parts],
            },
            healed: false,
            acked: BTreeMap::new(),
            observed: BTreeMap::new(),
            exposed: BTreeMap::new(),
            epoch_leader: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            ack_clock: BTreeMap::new(),
            disturbed: BTreeMap::new(),
            stats: Stats::default(),
            hasher: TraceHasher::new(),
            tail: VecDeque::new(),
            gate: Gate::new(plan.allowed.clone()),
            trace_out,
        }
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    fn note(&mut self, text: String) {
        (self.now, &text).hash(&mut self.hasher);
        if let Some(out) = &mut self.trace_out {
            let line = serde_json::json!({ "t": self.now, "event": text });
            let _ = writeln!(out, "{line}");
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(format!("t={} {text}", self.now));
    }

    /// A fault is about to happen: numbers it, and says whether the plan lets it go ahead
    /// (everything it needs is drawn before, so the random streams stay aligned).
    fn go(&mut self, what: &str) -> bool {
        let (n, ok) = self.gate.decide();
        if !ok {
            self.note(format!("decision #{n} ({what}) left out by the schedule"));
        }
        ok
    }

    /// The numbered decisions that went ahead.
    pub fn decisions(&self) -> Vec<u64> {
        self.gate.taken().to_vec()
    }

    /// Flushes the `--trace` file.
    pub fn flush_trace(&mut self) {
        if let Some(out) = &mut self.trace_out {
            let _ = out.flush();
        }
    }

    /// The trace hash.
    pub fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// The last event lines.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.unclean = self.catalog.unclean_elections();
        s
    }

    /// One line per broker and partition.
    pub fn status(&self) -> String {
        let mut out = format!("t={} cut={:?}\n", self.now, self.cut);
        for (p, st) in self.published.iter().enumerate() {
            let _ = writeln!(out, "  controller p{p}: {st:?}");
        }
        for (id, b) in &self.brokers {
            for (p, r) in b.parts.iter().enumerate() {
                let role = match (r.core.leader(), r.core.following()) {
                    (Some(l), _) => format!(
                        "leader e{} isr={:?} hw={} followers={:?}",
                        l.leader_epoch(),
                        l.isr(),
                        l.hw(),
                        l.followers()
                            .iter()
                            .map(|(k, f)| (*k, f.end))
                            .collect::<Vec<_>>()
                    ),
                    (None, Some((leader, epoch))) => format!("follower of {leader} e{epoch}"),
                    (None, None) => "none".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  b{id}{}{} p{p}: end={} synced={} hw={} epochs={:?} {role}",
                    if b.up { "" } else { " down" },
                    if b.paused_until.is_some() {
                        " paused"
                    } else {
                        ""
                    },
                    r.end(),
                    r.synced_end(),
                    r.hw(),
                    r.log.epochs()
                );
            }
        }
        out
    }

    // ---------------------------------------------------------------- network

    fn blocked(&self, a: Node, b: Node) -> bool {
        let cut = |x: Node, y: Node| match x {
            Node::B(id) => match self.cut.get(&id) {
                Some(Cut::All) => true,
                Some(Cut::Controller) => y == Node::Ctl,
                None => false,
            },
            _ => false,
        };
        cut(a, b) || cut(b, a)
    }

    fn send(&mut self, from: Node, to: Node, msg: Msg) {
        if self.blocked(from, to) {
            self.disturb(from, to, self.now + FETCH_RETRY_MS);
            return;
        }
        if !self.healed && self.net_rng.below(1000) < self.swarm.drop_pm {
            self.disturb(from, to, self.now + FETCH_RETRY_MS);
            return;
        }
        let copies = if !self.healed && self.net_rng.below(1000) < self.swarm.dup_pm {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut d = self.net_rng.range(1, self.swarm.delay_max_ms);
            for n in [from, to] {
                if let Node::B(id) = n {
                    if self.brokers[&id].slow {
                        d += self.net_rng.range(0, self.swarm.slow_ms);
                    }
                }
            }
            // A duplicate, or a copy slowed past the normal delays, may arrive stale.
            if copies > 1 || d > self.swarm.delay_max_ms {
                self.disturb(from, to, self.now + d + FETCH_WAIT_MS);
            }
            self.at(
                d,
                Ev::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    // ---------------------------------------------------------------- the loop

    /// Runs the safety phase, heals, runs the quiet phase and checks the end state.
    pub fn run(&mut self) -> Res {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        for id in ids {
            let (h, t) = (
                self.net_rng.range(0, HEARTBEAT_MS),
                self.net_rng.range(0, TICK_MS),
            );
            self.at(h, Ev::Heartbeat { b: id, inc: 0 });
            self.at(t, Ev::Tick { b: id, inc: 0 });
        }
        self.at(0, Ev::CtlTick);
        self.at(0, Ev::ClientMeta);
        self.at(50, Ev::Produce);
        self.at(70, Ev::Consume);
        self.at(200, Ev::Fault);
        self.at(self.swarm.safety_ms, Ev::Heal);
        let end = self.swarm.safety_ms + QUIET_MS;
        while let Some((&(t, s), _)) = self.queue.iter().next() {
            if t > end {
                break;
            }
            let ev = self.queue.remove(&(t, s)).expect("present");
            self.now = t;
            if let Some(b) = ev.target() {
                let br = &self.brokers[&b];
                if !br.up {
                    continue;
                }
                if let Some(until) = br.paused_until {
                    let wait = until.saturating_sub(self.now) + 1;
                    let br = self.brokers.get_mut(&b).expect("broker");
                    br.held_until = br.held_until.max(self.now + wait);
                    self.at(wait, ev);
                    continue;
                }
            }
            self.steps += 1;
            self.step(ev)?;
            self.check_step()?;
            if self.steps.is_multiple_of(256) {
                self.check_agreement()?;
            }
        }
        self.now = end;
        self.check_end()
    }

    fn step(&mut self, ev: Ev) -> Res {
        match ev {
            Ev::Deliver { from, to, msg } => {
                if self.blocked(from, to) {
                    self.disturb(from, to, self.now + FETCH_RETRY_MS);
                    return Ok(());
                }
                (self.now, 1u8, from, to, msg_key(&msg)).hash(&mut self.hasher);
                match to {
                    Node::Ctl => self.ctl_recv(from, msg),
                    Node::B(b) => self.broker_recv(b, from, msg)?,
                    Node::Client => self.client_recv(msg)?,
                }
            }
            Ev::Sync {
                b,
                inc,
                p,
                sgen,
                upto,
            } => {
                if self.brokers[&b].inc != inc {
                    return Ok(());
                }
                let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
                if r.sgen != sgen {
                    return Ok(());
                }
                r.synced = r.synced.max(upto.min(r.store.len()));
                let durable_end = r.synced_end();
                self.drive(b, p, Input::Synced { durable_end })?;
                // A follower fetches (reports its log end) once it is durable.
                self.send_fetch(b, p);
            }
            Ev::FetchRetry { b, inc, p, seq } => {
                let br = &self.brokers[&b];
                if br.inc == inc && br.parts[p].fetch_seq == seq {
                    self.send_fetch(b, p);
                }
            }
            Ev::FetchExpire { b, inc, p, f, seq } => self.expire_fetch(b, inc, p, f, seq)?,
            Ev::Heartbeat { b, inc } => {
                if self.brokers[&b].inc == inc {
                    let v = self.brokers[&b].inc;
                    if !self.brokers[&b].stopping {
                        self.send(Node::B(b), Node::Ctl, Msg::Heartbeat { inc: v });
                    }
                    self.at(HEARTBEAT_MS, Ev::Heartbeat { b, inc });
                }
            }
            Ev::Tick { b, inc } => {
                if self.brokers[&b].inc == inc {
                    self.broker_tick(b)?;
                    self.at(TICK_MS, Ev::Tick { b, inc });
                }
            }
            Ev::CtlTick => {
                self.ctl_tick();
                self.at(CTL_TICK_MS, Ev::CtlTick);
            }
            Ev::Produce => {
                if !self.healed {
                    self.produce();
                    let g = self.rng.range(1, self.swarm.produce_gap_ms);
                    self.at(g, Ev::Produce);
                }
            }
            Ev::Consume => {
                if self.now < self.swarm.safety_ms + QUIET_MS / 2 {
                    self.consume();
                    let g = self.rng.range(5, 60);
                    self.at(g, Ev::Consume);
                }
            }
            Ev::ClientMeta => {
                self.send(Node::Client, Node::Ctl, Msg::MetaReq);
                self.at(250, Ev::ClientMeta);
            }
            Ev::Fault => {
                if !self.healed {
                    self.fault();
                    let g = self.rng.range(1, self.swarm.fault_gap_ms);
                    self.at(g, Ev::Fault);
                }
            }
            Ev::Restart { b } => self.restart(b),
            Ev::Stop { b, inc } => {
                if self.brokers[&b].inc == inc && self.brokers[&b].stopping {
                    self.crash(b, true);
                }
            }
            Ev::Unpause { b } => {
                let br = self.brokers.get_mut(&b).expect("broker");
                if br.paused_until.is_some_and(|u| u <= self.now) {
                    br.paused_until = None;
                    self.note(format!("b{b} resumes"));
                }
            }
            Ev::Reconnect { b } => {
                if self.cut.remove(&b).is_some() {
                    self.note(format!("b{b} reconnected"));
                }
            }
            Ev::Heal => self.heal(),
        }
        Ok(())
    }

    // ---------------------------------------------------------------- faults

    fn failed(&self) -> BTreeSet<i32> {
        self.brokers
            .iter()
            .filter(|(id, b)| !b.up || b.paused_until.is_some() || self.cut.contains_key(id))
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick_victim(&mut self) -> Option<i32> {
        let failed = self.failed();
        if failed.len() >= self.swarm.max_failures {
            return None;
        }
        let ok: Vec<i32> = self
            .brokers
            .keys()
            .copied()
            .filter(|id| !failed.contains(id))
            .collect();
        if ok.is_empty() {
            return None;
        }
        // Half the time, a broker leading some partition (as the controller sees it).
        let leaders: Vec<i32> = self
            .published
            .iter()
            .map(|s| s.leader)
            .filter(|l| ok.contains(l))
            .collect();
        if !leaders.is_empty() && self.rng.chance(500_000) {
            return Some(self.rng.pick(&leaders));
        }
        Some(self.rng.pick(&ok))
    }

    /// Draws this step's faults; each is a numbered decision the plan may leave out (its
    /// draws are made either way, in the same order, so the streams stay aligned).
    fn fault(&mut self) {
        let s = self.swarm.clone();
        let roll = |r: &mut Rng, pm: u64| r.below(1000) < pm;
        if roll(&mut self.rng, s.crash_pm) {
            if let Some(b) = self.pick_victim() {
                let go = self.go(&format!("crash b{b}"));
                if go {
                    self.crash(b, false);
                }
                let d = self.rng.range(1, s.outage_max_ms);
                if go {
                    self.at(d, Ev::Restart { b });
                }
            }
        }
        if roll(&mut self.rng, s.pause_pm) {
            if let Some(b) = self.pick_victim() {
                let d = self.rng.range(1, s.outage_max_ms);
                if self.go(&format!("pause b{b}")) {
                    self.brokers.get_mut(&b).expect("broker").paused_until = Some(self.now + d);
                    self.stats.pauses += 1;
                    self.note(format!("b{b} paused for {d} ms"));
                    self.at(d, Ev::Unpause { b });
                }
            }
        }
        if roll(&mut self.rng, s.partition_pm) {
            if let Some(b) = self.pick_victim() {
                let how = if self.rng.chance(300_000) {
                    Cut::Controller
                } else {
                    Cut::All
                };
                let d = self.rng.range(1, s.outage_max_ms);
                if self.go(&format!("cut off b{b}")) {
                    self.cut.insert(b, how);
                    self.note(format!("b{b} cut off ({how:?}) for {d} ms"));
                    self.at(d, Ev::Reconnect { b });
                }
            }
        }
        if roll(&mut self.rng, s.shutdown_pm) {
            if let Some(b) = self.pick_victim() {
                // Fenced at once; it stops heartbeating but keeps replicating (fetching, and
                // so looking caught up to its leaders) until it stops.
                let linger = self.rng.range(0, s.shutdown_linger_max_ms);
                let go = self.go(&format!("controlled shutdown of b{b}"));
                if go {
                    let inc = self.brokers[&b].inc;
                    self.note(format!("b{b} controlled shutdown, stops in {linger} ms"));
                    self.ctl_apply(MetadataRecord::BrokerFenced {
                        id: b,
                        incarnation: format!("{b}-{inc}"),
                    });
                    self.brokers.get_mut(&b).expect("broker").stopping = true;
                    self.at(linger, Ev::Stop { b, inc });
                }
                let d = self.rng.range(1, s.outage_max_ms);
                if go {
                    self.at(linger + d, Ev::Restart { b });
                }
            }
        }
        if roll(&mut self.rng, s.slow_pm) {
            let ids: Vec<i32> = self.brokers.keys().copied().collect();
            let b = self.rng.pick(&ids);
            if self.go(&format!("slow link of b{b}")) {
                let br = self.brokers.get_mut(&b).expect("broker");
                br.slow = !br.slow;
                let slow = br.slow;
                self.note(format!("b{b} slow={slow}"));
            }
        }
        if roll(&mut self.rng, s.move_pm) {
            if let Some((_, part, pe, pref)) = self.catalog.imbalanced().into_iter().next() {
                if self.go(&format!("preferred leader of partition {part}")) {
                    self.ctl_apply(MetadataRecord::LeaderMoved {
                        topic: TOPIC.into(),
                        partition: part,
                        partition_epoch: pe,
                        leader: pref,
                    });
                }
            }
        }
    }

    /// Loses the unsynced writes (a clean stop syncs first) and stops the process.
    fn crash(&mut self, b: i32, clean: bool) {
        let partial = self.rng.below(1000) < self.swarm.partial_pm;
        let now = self.now;
        let br = self.brokers.get_mut(&b).expect("broker");
        if !br.up {
            return;
        }
        br.up = false;
        br.stopping = false;
        br.inc += 1;
        self.parked.retain(|k, _| k.0 != b);
        let br = self.brokers.get_mut(&b).expect("broker");
        br.paused_until = None;
        // The broker's metadata is durable: it never goes back to an older version (a delayed
        // reply to the previous incarnation must not resurrect old leaderships), but the
        // restarted process applies the current version again.
        br.fresh = true;
        let mut lost = Vec::new();
        for (p, r) in br.parts.iter_mut().enumerate() {
            let keep = if clean {
                r.store.len()
            } else if partial {
                let extra = r.store.len() - r.synced;
                r.synced + (self.rng.below(extra as u64 + 1) as usize)
            } else {
                r.synced
            };
            if keep < r.store.len() {
                lost.push((p, r.store.len() - keep));
            }
            r.keep(keep, now);
            r.synced = r.store.len();
            r.restart_core(now);
            r.fetch_seq += 1;
        }
        self.stats.crashes += 1;
        self.note(format!(
            "b{b} crashed (clean={clean}, lost batches {lost:?})"
        ));
    }

    fn restart(&mut self, b: i32) {
        let br = self.brokers.get_mut(&b).expect("broker");
        if br.up {
            return;
        }
        br.up = true;
        let inc = br.inc;
        self.note(format!("b{b} restarts as incarnation {inc}"));
        self.at(0, Ev::Heartbeat { b, inc });
        self.at(TICK_MS, Ev::Tick { b, inc });
    }

    fn heal(&mut self) {
        self.healed = true;
        self.note("heal: faults stop".into());
        self.cut.clear();
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        for b in ids {
            let br = self.brokers.get_mut(&b).expect("broker");
            br.slow = false;
            let paused = br.paused_until.is_some();
            if paused {
                br.paused_until = Some(self.now);
            }
            let down = !br.up;
            if paused {
                self.at(0, Ev::Unpause { b });
            }
            if down {
                self.restart(b);
            }
        }
    }

    // ---------------------------------------------------------------- controller

    fn ctl_apply(&mut self, rec: MetadataRecord) {
        let before: Vec<PartitionState> = self.catalog.topic(TOPIC).expect("topic").parts.clone();
        self.catalog.apply(&rec);
        self.catalog.check_invariants();
        let after: Vec<PartitionState> = self.catalog.topic(TOPIC).expect("topic").parts.clone();
        let fenced: Vec<Vec<i32>> = after
            .iter()
            .map(|st| self.catalog.fenced_replicas(st))
            .collect();
        if after == before && fenced == self.published_fenced {
            return;
        }
        self.published_fenced = fenced;
        match &rec {
            MetadataRecord::BrokerFenced { .. } => self.stats.fences += 1,
            MetadataRecord::IsrChanged { .. } => self.stats.isr_changes += 1,
            _ => {}
        }
        let mut published = after.clone();
        if self.canary == Some(ReplCanary::ElectOutsideIsr) {
            for (p, (old, new)) in before.iter().zip(&after).enumerate() {
                if old.leader >= 0
                    && new.leader != old.leader
                    && new.leader_epoch > old.leader_epoch
                {
                    let live: Vec<i32> = self
                        .catalog
                        .live_brokers()
                        .into_iter()
                        .filter(|r| new.replicas.contains(r) && *r != old.leader)
                        .collect();
                    if !live.is_empty() {
                        let pick = self.rng.pick(&live);
                        self.override_leader.insert(p, (new.leader_epoch, pick));
                    }
                }
            }
            for (p, st) in published.iter_mut().enumerate() {
                if let Some((e, l)) = self.override_leader.get(&p) {
                    if *e == st.leader_epoch {
                        st.leader = *l;
                    }
                }
            }
        }
        self.version += 1;
        self.note(format!("ctl v{} {rec:?} -> {published:?}", self.version));
        self.published = published;
    }

    fn ctl_recv(&mut self, from: Node, msg: Msg) {
        match (from, msg) {
            (Node::B(b), Msg::Heartbeat { inc }) => {
                let name = format!("{b}-{inc}");
                let info = self
                    .catalog
                    .broker(b)
                    .map(|i| (i.incarnation.clone(), i.fenced));
                match info {
                    Some((have, true)) if have == name => {
                        self.ctl_apply(MetadataRecord::BrokerUnfenced {
                            id: b,
                            incarnation: name,
                        });
                    }
                    Some((have, false)) if have == name => {}
                    Some((have, _)) => {
                        // Only a newer incarnation registers (a delayed heartbeat of an old
                        // one is ignored).
                        let old: u64 = have
                            .split_once('-')
                            .and_then(|(_, n)| n.parse().ok())
                            .unwrap_or(0);
                        if inc < old {
                            return;
                        }
                        self.ctl_apply(MetadataRecord::BrokerRegistered {
                            id: b,
                            incarnation: name,
                            host: "h".into(),
                            port: 9092,
                            rack: None,
                        });
                    }
                    None => {}
                }
                self.last_hb.insert(b, self.now);
                let m = self.meta(Some(inc));
                self.send(Node::Ctl, from, m);
            }
            (Node::B(b), Msg::AlterIsr { p, prop }) => {
                self.note(format!("ctl AlterIsr from b{b} p{p} {prop:?}"));
                let rec = MetadataRecord::IsrChanged {
                    topic: TOPIC.into(),
                    partition: p as i32,
                    leader_epoch: prop.leader_epoch,
                    partition_epoch: prop.partition_epoch,
                    isr: prop.isr,
                };
                let refused = refused_isr_change(&self.catalog, &rec);
                self.ctl_apply(rec);
                let m = self.meta(None);
                self.send(Node::Ctl, from, m);
                if let Some(prop) = refused {
                    self.note(format!("ctl refused b{b}'s ISR change of p{p}"));
                    self.send(Node::Ctl, from, Msg::IsrRefused { p, prop });
                }
            }
            (Node::Client, Msg::MetaReq) => {
                let m = self.meta(None);
                self.send(Node::Ctl, Node::Client, m);
            }
            _ => {}
        }
    }

    fn meta(&self, inc: Option<u64>) -> Msg {
        Msg::Meta {
            version: self.version,
            parts: self.published.clone(),
            fenced: self.published_fenced.clone(),
            inc,
        }
    }

    fn ctl_tick(&mut self) {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        for b in ids {
            let Some(info) = self.catalog.broker(b) else {
                continue;
            };
            if !info.fenced && self.now.saturating_sub(self.last_hb[&b]) > self.swarm.session_ms {
                let inc = info.incarnation.clone();
                self.ctl_apply(MetadataRecord::BrokerFenced {
                    id: b,
                    incarnation: inc,
                });
            }
        }
    }

    // ---------------------------------------------------------------- brokers

    fn broker_recv(&mut self, b: i32, from: Node, msg: Msg) -> Res {
        match msg {
            Msg::Meta {
                version,
                parts,
                fenced,
                inc,
            } => {
                // A restarted broker acts on no metadata before the controller has answered
                // its new incarnation (KRaft's catch-up before serving): its persisted view,
                // or a reply meant for its previous incarnation, may be stale.
                let br = &self.brokers[&b];
                if br.fresh && inc != Some(br.inc) {
                    return Ok(());
                }
                self.on_meta(b, version, parts, fenced)?
            }
            Msg::IsrRefused { p, prop } => {
                self.drive(b, p, Input::IsrRejected(prop))?;
            }
            Msg::Fetch {
                p,
                seq,
                offset,
                last_epoch,
                epoch,
            } => {
                let Node::B(f) = from else { return Ok(()) };
                let inc = self.brokers[&b].inc;
                let fetch = Parked {
                    inc,
                    offset,
                    last_epoch,
                    epoch,
                };
                self.on_follower_fetch(b, p, f, seq, fetch)?;
            }
            Msg::FetchResp { p, seq, body } => self.on_fetch_resp(b, p, seq, body)?,
            Msg::Produce { p, req, acks, ids } => self.on_produce(b, p, req, acks, ids)?,
            Msg::Consume { p, offset } => {
                let records = self.serve_consume(b, p, offset)?;
                self.send(Node::B(b), Node::Client, Msg::ConsumeResp { p, records });
            }
            _ => {}
        }
        Ok(())
    }

    // ---------------------------------------------------------------- clients

    fn produce(&mut self) {
        if self.client.view.is_empty() || self.client.inflight.len() > 20 {
            return;
        }
        let p = self.rng.below(self.swarm.partitions as u64) as usize;
        let leader = self.client.view[p].leader;
        if leader < 0 {
            return;
        }
        self.client.serial += 1;
        self.client.req += 1;
        let n = self.rng.range(1, 4) as u32;
        let ids: Vec<RecordId> = (0..n)
            .map(|index| RecordId {
                client: p as u32,
                serial: self.client.serial,
                index,
            })
            .collect();
        let acks = if self.rng.below(1000) < self.swarm.acks1_pm {
            1
        } else {
            -1
        };
        let req = self.client.req;
        self.client.inflight.insert(req, (p, ids.clone(), acks));
        self.send(
            Node::Client,
            Node::B(leader),
            Msg::Produce { p, req, acks, ids },
        );
    }

    fn consume(&mut self) {
        if self.client.view.is_empty() {
            return;
        }
        let p = self.rng.below(self.swarm.partitions as u64) as usize;
        let leader = self.client.view[p].leader;
        if leader < 0 {
            return;
        }
        if self.rng.chance(50_000) {
            self.client.pos[p] = 0;
        }
        let offset = self.client.pos[p];
        self.send(Node::Client, Node::B(leader), Msg::Consume { p, offset });
    }

    fn client_recv(&mut self, msg: Msg) -> Res {
        match msg {
            Msg::Meta { version, parts, .. } if version > self.client.version => {
                self.client.version = version;
                self.client.view = parts;
            }
            Msg::ProduceResp { req, result } => {
                let Some((p, ids, acks)) = self.client.inflight.remove(&req) else {
                    return Ok(());
                };
                match result {
                    Ok(base) if acks == -1 => {
                        self.stats.acked += 1;
                        for (i, id) in ids.iter().enumerate() {
                            let off = base + i as i64;
                            let prev = self.acked.insert((p, off), *id);
                            if let Some(prev) =
                                prev.filter(|_| self.catalog.unclean_elections() == 0)
                            {
                                return Err(violation(
                                    "durability",
                                    format!(
                                        "p{p} offset {off} acknowledged as {prev} and then as {id}"
                                    ),
                                ));
                            }
                            self.check_read(p, off, *id, "acknowledged")?;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.stats.refused += 1;
                        self.send(Node::Client, Node::Ctl, Msg::MetaReq);
                    }
                }
            }
            Msg::ConsumeResp { p, records } => {
                for (off, id) in records {
                    self.stats.read += 1;
                    if let Some(prev) = self.observed.insert((p, off), id) {
                        if prev != id && self.catalog.unclean_elections() == 0 {
                            return Err(violation(
                                "consumer-stability",
                                format!("p{p} offset {off} read as {prev}, later as {id}"),
                            ));
                        }
                    }
                    if let Some(a) = self.acked.get(&(p, off)) {
                        if *a != id && self.catalog.unclean_elections() == 0 {
                            return Err(violation(
                                "durability",
                                format!("p{p} offset {off} acknowledged as {a}, read as {id}"),
                            ));
                        }
                    }
                    if off >= self.client.pos[p] {
                        self.client.pos[p] = off + 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_read(&self, p: usize, off: i64, id: RecordId, what: &str) -> Res {
        if self.catalog.unclean_elections() > 0 {
            return Ok(());
        }
        if let Some(o) = self.observed.get(&(p, off)) {
            if *o != id {
                return Err(violation(
                    "consumer-stability",
                    format!("p{p} offset {off} read as {o}, {what} as {id}"),
                ));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- checks

    fn check_step(&mut self) -> Res {
        self.check_settled()?;
        self.check_ack_latency()?;
        let parts = self.catalog.topic(TOPIC).expect("topic").parts.clone();
        for (p, st) in parts.iter().enumerate() {
            let dup: BTreeSet<&i32> = st.isr.iter().chain(&st.elr).collect();
            if dup.len() != st.isr.len() + st.elr.len() {
                return Err(violation(
                    "catalog",
                    format!("p{p}: ISR and ELR overlap or repeat: {st:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Every two replicas agree below both their high watermarks; offsets are dense.
    fn check_agreement(&self) -> Res {
        for p in 0..self.swarm.partitions {
            let reps: Vec<(i32, &Replica)> = self
                .brokers
                .iter()
                .map(|(id, b)| (*id, &b.parts[p]))
                .collect();
            for (id, r) in &reps {
                let mut next = 0;
                for s in &r.store {
                    if s.base != next || s.last < s.base {
                        return Err(violation(
                            "dense-offsets",
                            format!(
                                "b{id} p{p}: batch {}..={} after offset {next}",
                                s.base, s.last
                            ),
                        ));
                    }
                    next = s.last + 1;
                }
            }
            if self.catalog.unclean_elections() > 0 {
                continue;
            }
            for (i, (a, ra)) in reps.iter().enumerate() {
                for (bb, rb) in &reps[i + 1..] {
                    let upto = ra.hw().min(rb.hw());
                    if let Some(off) = first_difference(ra, rb, upto) {
                        return Err(violation(
                            "replica-agreement",
                            format!(
                                "p{p}: b{a} (hw {}) and b{bb} (hw {}) differ at offset {off}, \
                                 below both high watermarks",
                                ra.hw(),
                                rb.hw()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_end(&mut self) -> Res {
        self.check_agreement()?;
        let parts = self.catalog.topic(TOPIC).expect("topic").parts.clone();
        for (p, st) in parts.iter().enumerate() {
            let leader = self.published[p].leader;
            if leader < 0 {
                return Err(violation(
                    "liveness",
                    format!("p{p} has no leader after healing: {st:?}"),
                ));
            }
            let mut isr = st.isr.clone();
            isr.sort_unstable();
            let mut all = st.replicas.clone();
            all.sort_unstable();
            if isr != all && self.canary.is_none() {
                return Err(violation(
                    "liveness",
                    format!("p{p} ISR not full after healing: {st:?}"),
                ));
            }
            let lr = &self.brokers[&leader].parts[p];
            let Some(l) = lr.core.leader() else {
                return Err(violation(
                    "liveness",
                    format!("b{leader} does not know it leads p{p}"),
                ));
            };
            if l.hw() != lr.end() {
                return Err(violation(
                    "liveness",
                    format!(
                        "p{p} leader b{leader} hw {} below its end {}",
                        l.hw(),
                        lr.end()
                    ),
                ));
            }
            for r in &st.replicas {
                let rr = &self.brokers[r].parts[p];
                if let Some(off) = first_difference(lr, rr, i64::MAX) {
                    return Err(violation(
                        if off < lr.end().min(rr.end()) { "replica-agreement" } else { "liveness" },
                        format!(
                            "p{p}: b{r} (end {}) differs from leader b{leader} (end {}) at {off} after healing",
                            rr.end(),
                            lr.end()
                        ),
                    ));
                }
            }
            if self.catalog.unclean_elections() > 0 {
                continue;
            }
            let held: BTreeMap<i64, RecordId> = lr
                .store
                .iter()
                .flat_map(|s| {
                    s.ids
                        .iter()
                        .enumerate()
                        .map(move |(i, id)| (s.base + i as i64, *id))
                })
                .collect();
            for ((q, off), id) in self.acked.range((p, i64::MIN)..=(p, i64::MAX)) {
                let _ = q;
                if held.get(off) != Some(id) {
                    return Err(violation(
                        "durability",
                        format!(
                            "p{p} offset {off} acknowledged as {id}, the final leader b{leader} holds {:?}",
                            held.get(off).map(|x| x.to_string())
                        ),
                    ));
                }
            }
            for ((_, off), id) in self.observed.range((p, i64::MIN)..=(p, i64::MAX)) {
                if held.get(off) != Some(id) {
                    return Err(violation(
                        "consumer-stability",
                        format!(
                            "p{p} offset {off} was read as {id}, the final leader b{leader} holds {:?}",
                            held.get(off).map(|x| x.to_string())
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The core replica's settings on broker `me`: the sim fsyncs before acks (see the module doc).
fn replica_config(me: i32, replication: ReplicationConfig) -> ReplicaConfig {
    ReplicaConfig {
        me,
        replication,
        flush: FlushPolicy::FsyncBeforeAck,
    }
}

/// The core canary a replication canary plants (the controller's is planted in this driver).
fn core_canary(c: Option<ReplCanary>) -> Option<Canary> {
    match c? {
        ReplCanary::AckBeforeIsr => Some(Canary::AckBeforeIsr),
        ReplCanary::SkipTruncation => Some(Canary::SkipTruncation),
        ReplCanary::HwFromLeaderOnly => Some(Canary::HwFromLeaderOnly),
        ReplCanary::KeepRefusedIsr => Some(Canary::KeepRefusedIsr),
        ReplCanary::FollowerEndClampedToFsynced => Some(Canary::FollowerEndClampedToFsynced),
        ReplCanary::ElectOutsideIsr => None,
    }
}

/// The first offset below `upto` where the two replicas' batches differ (content, epoch or
/// boundaries), looking only at offsets both hold when `upto` is unbounded.
fn first_difference(a: &Replica, b: &Replica, upto: i64) -> Option<i64> {
    for (x, y) in a.store.iter().zip(&b.store) {
        if x.base >= upto {
            return None;
        }
        if x.base != y.base || x.last != y.last || x.epoch != y.epoch || x.ids != y.ids {
            return Some(x.base.min(y.base));
        }
    }
    if upto == i64::MAX && a.end() != b.end() {
        return Some(a.end().min(b.end()));
    }
    None
}

/// A cheap digest of a message for the trace hash.
fn msg_key(m: &Msg) -> (u8, i64, i64) {
    match m {
        Msg::Heartbeat { inc } => (0, *inc as i64, 0),
        Msg::Meta { version, .. } => (1, *version as i64, 0),
        Msg::MetaReq => (2, 0, 0),
        Msg::AlterIsr { p, prop } => (3, *p as i64, i64::from(prop.partition_epoch)),
        Msg::IsrRefused { p, prop } => (10, *p as i64, i64::from(prop.partition_epoch)),
        Msg::Fetch { p, seq, offset, .. } => (4, (*p as i64) << 40 | *seq as i64, *offset),
        Msg::FetchResp { p, seq, body } => (
            5,
            (*p as i64) << 40 | *seq as i64,
            match body {
                FetchBody::Err(_) => -1,
                FetchBody::Diverging { end_offset, .. } => -2 - end_offset,
                FetchBody::Data { batches, hw } => hw * 64 + batches.len() as i64,
            },
        ),
        Msg::Produce { p, req, .. } => (6, *p as i64, *req as i64),
        Msg::ProduceResp { req, result } => (7, *req as i64, *result.as_ref().unwrap_or(&-1)),
        Msg::Consume { p, offset } => (8, *p as i64, *offset),
        Msg::ConsumeResp { p, records } => (9, *p as i64, records.len() as i64),
    }
}
