//! The discrete-event engine: one seed, a queue of timed events, a node, clients, a checker.
//!
//! Shape of a run: draw the swarm from the seed; create the initial topic `t0`; a safety phase
//! (`swarm.safety_ms` of simulated time) with crashes and clean stops, pauses, torn and lost
//! writes, sector rot and misdirected writes, fsync EIO, full disks (ENOSPC), connection resets,
//! duplicated messages and network partitions (see `net.rs`), and an admin client creating and
//! deleting topics and adding partitions, and the log cleaner compacting the topics the swarm
//! made compacted (`cleaner.rs`: a clean's reads, writes and commits spread over several events,
//! so crashes, full disks and the workload fall between and inside them); then a liveness phase with every fault off and healed, in which every producer's last batch must be
//! acknowledged within [`checker::liveness::ACK_BOUND_MS`]; then a final audit reads every
//! partition from its log start to its end through the checker.
//!
//! Every injected fault and admin action is a numbered decision; a [`Schedule`] can narrow a run
//! to some of them (see `schedule.rs`, which shrinks failing runs).
//!
//! Invariants: simulated time never goes backwards and jumps straight to the next event; every
//! random choice comes from a stream forked off the seed (swarm, faults, workload, network);
//! events at equal times run in scheduling order; after every event the node's invariants hold
//! and a violated checker rule ends the run.

use std::collections::{BTreeMap, BTreeSet};

use skein_core::batch::build::{self, ProducerIdentity};
use skein_core::config::LogConfig;

use crate::checker::{self, topics, History, Verdict};
use crate::net::{Dir, Network};
use crate::node::{
    AdminOp, AdminResult, FetchResult, Node, NodeOut, PartKey, ProduceResult, SyncFile, TopicId,
    STORAGE_ERROR, UNKNOWN_TOPIC,
};
use crate::records::{self, RecordId};
use crate::rng::Rng;
use crate::swarm::{ProducerShape, Swarm};
use crate::trace::Trace;

pub use schedule::{Options, Outcome, Replay, Schedule};

mod cleaner;
mod clients;
mod events;
mod faults;
mod probe;
pub mod schedule;
pub mod shrink;

/// Upper bound on events per run; a run that needs more is itself a bug (a livelock).
pub const STEPS_MAX: u64 = 2_000_000;
/// Most records in one produced batch.
pub const BATCH_RECORDS_MAX: u64 = 5;
/// Most filler bytes per record value.
pub const FILLER_MAX: u64 = 200;
/// Topic names the workload uses: `t0` exists from the start and is never deleted (idempotent
/// producers write only to it); the admin client creates and deletes the others.
pub const TOPICS: [&str; 3] = ["t0", "t1", "t2"];
/// Most partitions the admin client grows a topic to.
pub const PARTITIONS_MAX: u32 = 6;
/// Producer id of client `c` when idempotent.
const PRODUCER_ID_BASE: i64 = 1000;
/// Backoff before retrying after an error response or a lost connection.
const RETRY_BACKOFF_MS: u64 = 10;
/// Backoff before reconnecting after a refused connection (Kafka's `reconnect.backoff.ms`).
const RECONNECT_BACKOFF_MS: u64 = 50;
/// The one node (multi-node runs index nodes from 0).
const NODE: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
}

/// A message on a client-node connection.
#[derive(Debug, Clone)]
enum Msg {
    Produce {
        req: u64,
        key: PartKey,
        bytes: Vec<u8>,
        acks: i16,
    },
    ProduceReply {
        req: u64,
        result: ProduceResult,
    },
    Fetch {
        req: u64,
        key: PartKey,
        offset: i64,
        max_bytes: u64,
    },
    FetchReply {
        req: u64,
        key: PartKey,
        offset: i64,
        result: FetchResult,
    },
    Admin {
        req: u64,
        op: AdminOp,
    },
    AdminReply {
        req: u64,
        result: AdminResult,
    },
}

impl Msg {
    fn dir(&self) -> Dir {
        match self {
            Msg::Produce { .. } | Msg::Fetch { .. } | Msg::Admin { .. } => Dir::Request,
            _ => Dir::Response,
        }
    }
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver {
        client: usize,
        epoch: u32,
        msg: Msg,
    },
    /// The client learns that its connection of `epoch` was reset.
    ConnLost {
        client: usize,
        epoch: u32,
    },
    Timeout {
        client: usize,
        req: u64,
    },
    /// A producer's backoff ended: resend what is waiting.
    Resend(usize),
    SyncStart {
        key: PartKey,
        tid: TopicId,
        inc: u32,
    },
    SyncDone {
        key: PartKey,
        tid: TopicId,
        target: i64,
        file: SyncFile,
        ok: bool,
        inc: u32,
    },
    Crash,
    Restart,
    Retention,
    /// A cleaner pass: starts a clean of the dirtiest partition due for one.
    Clean,
    /// The clean in progress runs its next steps (`commit: false`) or commits its sealed
    /// destination (`commit: true`); stale after a restart.
    CleanPiece {
        commit: bool,
        inc: u32,
    },
    Partition,
    Heal(Vec<(usize, Dir)>),
    Pause,
    Resume,
    DiskFull,
    DiskFree,
    Liveness,
    Deadline,
}

impl Event {
    /// Work the node does (held while it is paused).
    fn is_node_side(&self) -> bool {
        match self {
            Event::Deliver { msg, .. } => msg.dir() == Dir::Request,
            Event::SyncStart { .. }
            | Event::SyncDone { .. }
            | Event::Retention
            | Event::Clean
            | Event::CleanPiece { .. } => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    serial: u32,
    key: PartKey,
    ids: Vec<RecordId>,
    bytes: Vec<u8>,
    /// The attempt on the wire; `None` while waiting to be (re)sent.
    req: Option<u64>,
}

#[derive(Debug)]
struct Producer {
    shape: ProducerShape,
    next_serial: u32,
    seqs: BTreeMap<PartKey, i32>,
    /// Batches in flight, in serial order.
    inflight: Vec<InFlight>,
    tick_armed: bool,
    resend_armed: bool,
    /// Whether this client leaves its batches' header max timestamp unset or wrong.
    stamps: Stamps,
    /// An idempotent producer's newest acknowledged batch per partition (`probe.rs`).
    acked: BTreeMap<PartKey, probe::Acked>,
}

/// How a producer fills in a batch header's max timestamp (its records always carry the time
/// they were built at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamps {
    /// Right, as Kafka's own clients write it.
    Right,
    /// -1 on every batch, as sarama before 1.23 sent it.
    Unset,
    /// Too old or too new, drawn per batch.
    Wrong,
}

#[derive(Debug)]
struct Fetcher {
    /// Per partition: topic id seen, next offset, known end.
    cursors: BTreeMap<PartKey, (TopicId, i64, i64)>,
    /// Request, sent at.
    waiting: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Admin {
    waiting: Option<(u64, AdminOp)>,
}

#[derive(Debug)]
enum Client {
    Producer(Producer),
    Fetcher(Fetcher),
    Admin(Admin),
}

#[derive(Debug, Clone)]
struct ProduceReq {
    key: PartKey,
    serial: u32,
    ids: Vec<RecordId>,
    acks: i16,
    sent: u64,
}

/// The random streams of a run, each forked off the seed.
struct Streams {
    faults: Rng,
    /// Decides whether a stop is clean (SIGTERM) or a crash.
    stops: Rng,
    work: Rng,
    net: Rng,
    /// Duplicates and partitions.
    netmore: Rng,
    /// Pauses.
    pauses: Rng,
    /// Full disks and misdirected writes.
    disk: Rng,
    /// Admin actions and topic ids.
    admin: Rng,
    /// Batch headers whose max timestamp is left unset (-1) or wrong, as some clients send them.
    stamps: Rng,
    /// Record keys and tombstones on compacted topics.
    keys: Rng,
    /// The cleaner's pace (delays between a clean's events).
    clean: Rng,
}

struct Sim {
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    swarm: Swarm,
    rng: Streams,
    node: Node,
    paused: bool,
    /// Node-side events that arrived while paused, in arrival order.
    held: Vec<Event>,
    net: Network,
    /// The connection epoch each client believes it is on.
    conn_seen: Vec<u32>,
    /// A client's connection attempt was refused (node down) and it waits to reconnect: the
    /// connection epoch of the refusal, whose own ConnLost ends the wait.
    refused: Vec<Option<u32>>,
    /// Request -> the connection epoch it arrived on (the reply goes back on it).
    req_conn: BTreeMap<u64, u32>,
    clients: Vec<Client>,
    requests: BTreeMap<u64, ProduceReq>,
    next_req: u64,
    /// Topics and partition counts as the clients last learned them (Metadata).
    view: BTreeMap<String, u32>,
    history: History,
    /// The tail a reader saw when the clean in progress started (`cleaner.rs`).
    tail_watch: Option<cleaner::TailWatch>,
    trace: Trace,
    phase: Phase,
    liveness_at: u64,
    done: bool,
    allowed: Option<BTreeSet<u64>>,
    decision: u64,
    decisions: Vec<u64>,
}

fn topic_index(name: &str) -> usize {
    TOPICS
        .iter()
        .position(|t| *t == name)
        .expect("a workload topic")
}

/// Runs one seed to the end or to the first violation.
pub fn run(opts: Options) -> Outcome {
    let mut master = Rng::new(opts.seed);
    let mut swarm = Swarm::draw(&mut master.fork());
    let faults = master.fork();
    let work = master.fork();
    let net = master.fork();
    // Forked last, so adding clean stops left every earlier stream of a seed as it was.
    let mut stops = master.fork();
    swarm.clean_stop_ppm = stops.pick(&[0u32, 0, 300_000, 700_000]);
    if opts.crash_only {
        swarm.clean_stop_ppm = 0;
    }
    // Forked after that, for the same reason.
    let mut more = master.fork();
    swarm.draw_more(&mut more.fork());
    let sched = &opts.schedule;
    if let Some(ms) = sched.safety_ms {
        swarm.safety_ms = ms;
    }
    if let Some(keep) = &sched.producers {
        swarm.producers = keep
            .iter()
            .filter_map(|i| swarm.producers.get(*i).copied())
            .collect();
    }
    if let Some(n) = sched.fetchers {
        swarm.fetchers = n;
    }
    if let Some(n) = sched.partitions {
        swarm.partitions = n;
    }
    let mut rng = Streams {
        faults,
        stops,
        work,
        net,
        netmore: more.fork(),
        pauses: more.fork(),
        disk: more.fork(),
        admin: more.fork(),
        // Forked last, so adding it left every earlier stream of a seed as it was.
        stamps: more.fork(),
        // Forked after that, for the same reason.
        keys: more.fork(),
        clean: more.fork(),
    };
    swarm.bad_timestamp_ppm = rng.stamps.pick(&[0u32, 500_000, 1_000_000, 1_000_000]);
    swarm.draw_compaction(&mut more.fork());
    swarm.draw_codecs(&mut more.fork());
    let config = LogConfig {
        segment_bytes: swarm.segment_bytes,
        index_interval_bytes: swarm.index_interval_bytes,
        retention_bytes: swarm.retention_bytes,
        retention_ms: swarm.retention_ms,
        ..LogConfig::default()
    };
    let mut clients = Vec::new();
    let mut idempotent = BTreeSet::new();
    for shape in &swarm.producers {
        if shape.idempotent {
            idempotent.insert(clients.len() as u32);
        }
        clients.push(Client::Producer(Producer {
            shape: *shape,
            next_serial: 0,
            seqs: BTreeMap::new(),
            inflight: Vec::new(),
            tick_armed: false,
            resend_armed: false,
            stamps: if !rng.stamps.chance(swarm.bad_timestamp_ppm) {
                Stamps::Right
            } else if rng.stamps.chance(700_000) {
                Stamps::Unset
            } else {
                Stamps::Wrong
            },
            acked: BTreeMap::new(),
        }));
    }
    for _ in 0..swarm.fetchers {
        clients.push(Client::Fetcher(Fetcher {
            cursors: BTreeMap::new(),
            waiting: None,
        }));
    }
    if swarm.admin_mean_ms > 0 {
        clients.push(Client::Admin(Admin { waiting: None }));
    }
    let n_clients = clients.len();
    let mut history = History::new(idempotent);
    for (name, t) in TOPICS.iter().zip(&swarm.compaction.topics) {
        if let Some(t) = t {
            history.set_compacted(name, t.delete_retention_ms);
        }
    }
    let mut sim = Sim {
        now: 0,
        seq: 0,
        queue: BTreeMap::new(),
        node: Node::new(config, opts.canary, 0),
        paused: false,
        held: Vec::new(),
        net: Network::new(n_clients, 1),
        conn_seen: vec![0; n_clients],
        refused: vec![None; n_clients],
        req_conn: BTreeMap::new(),
        history,
        tail_watch: None,
        swarm,
        rng,
        clients,
        requests: BTreeMap::new(),
        next_req: 0,
        view: BTreeMap::new(),
        trace: Trace::new(opts.trace_out),
        phase: Phase::Safety,
        liveness_at: 0,
        done: false,
        allowed: opts.schedule.allowed.clone(),
        decision: 0,
        decisions: Vec::new(),
    };
    let violation = checker::run_catching(|| sim.run());
    if let Some(v) = &violation {
        let now = sim.now;
        sim.trace.event(now, &format!("VIOLATION {v}"));
    }
    sim.trace.flush();
    Outcome {
        seed: opts.seed,
        canary: opts.canary,
        crash_only: opts.crash_only,
        steps: sim.trace.steps(),
        sim_ms: sim.now,
        trace_hash: sim.trace.hash(),
        tail: sim.trace.tail(),
        acks: sim.history.acks,
        records_read: sim.history.records_read,
        swarm: sim.swarm,
        violation,
        decisions: sim.decisions,
    }
}

impl Sim {
    fn at(&mut self, delay_ms: u64, ev: Event) {
        self.seq += 1;
        self.queue.insert((self.now + delay_ms, self.seq), ev);
    }

    fn log(&mut self, what: String) {
        self.trace.event(self.now, &what);
    }

    /// A fault or admin action is about to happen: numbers it, and says whether the schedule
    /// lets it go ahead.
    fn decide(&mut self, what: &str) -> bool {
        let n = self.decision;
        self.decision += 1;
        let ok = self.allowed.as_ref().is_none_or(|a| a.contains(&n));
        if ok {
            self.decisions.push(n);
        } else {
            self.log(format!("decision #{n} ({what}) left out by the schedule"));
        }
        ok
    }

    fn safety(&self) -> bool {
        self.phase == Phase::Safety
    }

    /// Sends `msg` on `client`'s connection (see `net.rs` for the model).
    fn transmit(&mut self, client: usize, msg: Msg, epoch: u32) {
        let dir = msg.dir();
        let safety = self.safety();
        let link = self.net.link(client, NODE);
        if link.epoch != epoch || link.broken {
            return;
        }
        if safety && link.down[dir as usize] {
            link.broken = true;
            self.log(format!(
                "c{client} {dir:?} blackholed: the connection is dead until the client reconnects"
            ));
            return;
        }
        if safety && self.rng.net.chance(self.swarm.drop_ppm) && self.decide("reset") {
            self.net.reset(client, NODE);
            let d = self.rng.net.range(0, self.swarm.latency_max_ms);
            self.log(format!("c{client} connection reset (epoch {epoch} lost)"));
            self.at(d, Event::ConnLost { client, epoch });
            return;
        }
        let d = self.rng.net.range(0, self.swarm.latency_max_ms);
        let t = self.net.fifo_time(client, NODE, dir, self.now + d);
        let dup = safety && self.rng.netmore.chance(self.swarm.dup_ppm) && self.decide("dup");
        if dup {
            if let Msg::Produce { req, key, .. } = &msg {
                // The node may append a non-idempotent batch twice: one more copy the checker
                // may not see (compaction lets an unseen copy supersede a seen one).
                if let Some(r) = self.requests.get(req) {
                    if self.history.compacted(&key.0).is_some() {
                        self.history.attempt(client as u32, r.serial);
                    }
                }
            }
            let d2 = self.rng.netmore.range(0, self.swarm.latency_max_ms);
            let t2 = self.net.fifo_time(client, NODE, dir, t + d2);
            self.log(format!("c{client} {dir:?} duplicated"));
            self.seq += 1;
            self.queue.insert(
                (t2, self.seq + 1),
                Event::Deliver {
                    client,
                    epoch,
                    msg: msg.clone(),
                },
            );
            self.seq += 1;
            self.queue
                .insert((t, self.seq - 1), Event::Deliver { client, epoch, msg });
        } else {
            self.seq += 1;
            self.queue
                .insert((t, self.seq), Event::Deliver { client, epoch, msg });
        }
    }

    /// A client sends a request on the connection it believes it has. While the node is down
    /// the connection attempt is refused: nothing is sent, and the client learns it after its
    /// reconnect backoff.
    fn request(&mut self, client: usize, msg: Msg) {
        let epoch = self.conn_seen[client];
        if self.refused[client].is_some() {
            // Nothing goes out before the connection is up again (it would overtake the
            // requests waiting to be resent).
            return;
        }
        if !self.node.is_up() {
            {
                self.refused[client] = Some(epoch);
                self.log(format!("c{client} connection refused"));
                self.at(RECONNECT_BACKOFF_MS, Event::ConnLost { client, epoch });
            }
            return;
        }
        self.transmit(client, msg, epoch);
    }

    /// The node answers a request on the connection it arrived on.
    fn respond(&mut self, client: usize, req: u64, msg: Msg) {
        if let Some(epoch) = self.req_conn.remove(&req) {
            self.transmit(client, msg, epoch);
        }
    }

    fn run(&mut self) -> Verdict {
        let id = self.topic_id_bytes();
        let parts = self.swarm.partitions as u32;
        let op = AdminOp::Create {
            name: TOPICS[0].into(),
            partitions: parts,
            id,
            configs: self.topic_configs(0),
        };
        match self.node.admin(0, &op) {
            AdminResult::Ok(tid) => topics::created(&mut self.history, tid, TOPICS[0], parts),
            AdminResult::Err(code, msg) => panic!("creating t0: {code} {msg}"),
        }
        self.refresh_view();
        for c in 0..self.clients.len() {
            let d = self.rng.work.range(0, 10);
            self.at(d, Event::Tick(c));
        }
        self.schedule_crash();
        if self.swarm.retention_pass_ms > 0 {
            self.at(self.swarm.retention_pass_ms, Event::Retention);
        }
        if self.swarm.compaction.any() {
            self.at(self.swarm.compaction.pass_ms, Event::Clean);
        }
        self.at(self.swarm.safety_ms, Event::Liveness);
        self.schedule_partition();
        self.schedule_pause();
        self.schedule_disk_full();
        self.log(format!("start {}", self.swarm));
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            assert!(t >= self.now, "time went backwards");
            self.now = t;
            if self.paused && ev.is_node_side() {
                self.held.push(ev);
            } else {
                self.handle(ev)?;
            }
            if self.node.disk().is_dead() {
                self.crash_now();
            }
            self.node.check_invariants();
            if self.done {
                return Ok(());
            }
            if self.trace.steps() > STEPS_MAX {
                return Err(checker::violation(
                    "liveness",
                    format!("more than {STEPS_MAX} events"),
                ));
            }
        }
        Err(checker::violation("liveness", "event queue ran dry".into()))
    }

    /// The topic configs workload topic `TOPICS[i]` is created with (a compacted topic's, its
    /// `compression.type`).
    fn topic_configs(&self, i: usize) -> Vec<(String, String)> {
        let mut configs = self.swarm.compaction.topics[i]
            .map(|t| t.configs())
            .unwrap_or_default();
        if let Some(c) = self.swarm.topic_codecs[i] {
            configs.push(("compression.type".to_string(), c.config_name().to_string()));
        }
        configs
    }

    fn topic_id_bytes(&mut self) -> [u8; 16] {
        let (a, b) = (self.rng.admin.next_u64(), self.rng.admin.next_u64());
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes());
        id
    }

    /// Clients learn the topics from a Metadata request (taken as instant; while the node is
    /// down or paused they keep what they knew).
    fn refresh_view(&mut self) {
        // A dead disk (a crash in the middle of this event) made nothing durable: no one will
        // ever see what the node applied in memory.
        if self.node.is_up() && !self.paused && !self.node.disk().is_dead() {
            self.view = self.node.topics();
        }
    }

    fn audit_offsets(&mut self) -> Verdict {
        let parts: Vec<((TopicId, u32), i64, i64)> = self
            .node
            .partitions()
            .into_iter()
            .map(|(k, t, s, e)| ((t, k.1), s, e))
            .collect();
        self.history.on_offsets(&parts)
    }

    /// In the liveness phase: once every producer is idle, audit and finish.
    fn check_quiet(&mut self) -> Verdict {
        if self.phase != Phase::Liveness || self.done {
            return Ok(());
        }
        let busy = self
            .clients
            .iter()
            .any(|c| matches!(c, Client::Producer(p) if !p.inflight.is_empty()));
        if busy {
            return Ok(());
        }
        self.audit()
    }

    /// Reads every partition from its start to its high watermark (all a consumer may read)
    /// through the checker.
    fn audit(&mut self) -> Verdict {
        self.audit_offsets()?;
        for (key, tid, start, hw) in self.node.partitions() {
            let mut off = start;
            let mut n = 0;
            while off < hw {
                let (r, outs) = self.node.fetch(self.now, &key, off, 64 * 1024);
                self.node_outs(outs);
                self.history.on_fetch(&key, off, &r, (self.now, self.now))?;
                let FetchResult::Ok { bytes, .. } = &r else {
                    return Err(checker::violation(
                        "offsets",
                        format!("{}-{} audit read at {off} out of range", key.0, key.1),
                    ));
                };
                for item in skein_core::batch::iter_headers(bytes) {
                    let h = item.expect("integrity checked").1;
                    n += h.next_offset() - off.max(h.base_offset);
                    off = h.next_offset();
                }
            }
            // A reader from the log start to the high watermark saw every key's newest value.
            self.history.judge_keys((&key.0, (tid, key.1)), self.now)?;
            self.log(format!(
                "audit {}-{} ({:08x}) {start}..{hw} records={n}",
                key.0, key.1, tid as u32
            ));
        }
        self.done = true;
        Ok(())
    }
}
