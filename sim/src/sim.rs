//! The discrete-event engine: one seed, a queue of timed events, a node, clients, a checker.
//!
//! Shape of a run: draw the swarm from the seed; create the initial topic `t0`; a safety phase
//! (`swarm.safety_ms` of simulated time) with crashes and clean stops, pauses, torn and lost
//! writes, sector rot and misdirected writes, fsync EIO, full disks (ENOSPC), connection resets,
//! duplicated messages and network partitions (see `net.rs`), and an admin client creating and
//! deleting topics and adding partitions; then a liveness phase with every fault off and healed, in which every producer's last batch must be
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
use std::io::Write;

use skein_core::batch::build::{self, ProducerIdentity};
use skein_core::config::LogConfig;

use crate::canary::SimCanary;
use crate::checker::{self, topics, History, Verdict, Violation};
use crate::net::{Dir, Network};
use crate::node::{
    AdminOp, AdminResult, FetchResult, Node, NodeOut, PartKey, ProduceResult, SyncFile, TopicId,
    STORAGE_ERROR, UNKNOWN_TOPIC,
};
use crate::records::{self, RecordId};
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::swarm::{ProducerShape, Swarm};
use crate::trace::Trace;

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

/// How to run one seed.
pub struct Options {
    /// The seed: it decides everything.
    pub seed: u64,
    /// A planted bug to turn on.
    pub canary: Option<SimCanary>,
    /// Where to write the JSON-lines trace.
    pub trace_out: Option<Box<dyn Write>>,
    /// Every stop is a crash (no clean shutdowns): how seeds ran before clean stops existed.
    pub crash_only: bool,
    /// Narrows the run (shrinking and replay files); the default is the seed's own run.
    pub schedule: Schedule,
}

impl Options {
    /// A plain run of `seed`.
    pub fn seed(seed: u64) -> Self {
        Options {
            seed,
            canary: None,
            trace_out: None,
            crash_only: false,
            schedule: Schedule::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The canary that was on.
    pub canary: Option<SimCanary>,
    /// Whether clean stops were off.
    pub crash_only: bool,
    /// The drawn shape (after the schedule's narrowing).
    pub swarm: Swarm,
    /// Events processed.
    pub steps: u64,
    /// Simulated milliseconds.
    pub sim_ms: u64,
    /// FNV-1a 64 of every event line.
    pub trace_hash: u64,
    /// The broken invariant, if any.
    pub violation: Option<Violation>,
    /// The last event lines.
    pub tail: Vec<String>,
    /// Acknowledgements judged.
    pub acks: u64,
    /// Records read and judged.
    pub records_read: u64,
    /// Numbers of the decisions (faults, admin actions) that went ahead.
    pub decisions: Vec<u64>,
}

impl Outcome {
    /// The one summary line: `seed=<N> <swarm> steps=<n> sim_ms=<n> trace=<hex>`.
    pub fn summary(&self) -> String {
        let canary = self
            .canary
            .map(|c| format!(" canary={}", c.name()))
            .unwrap_or_default();
        format!(
            "seed={} {}{} steps={} sim_ms={} trace={:016x}",
            self.seed, self.swarm, canary, self.steps, self.sim_ms, self.trace_hash
        )
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!("skein-sim --seed {}", self.seed);
        if let Some(c) = self.canary {
            cmd += &format!(" --canary {}", c.name());
        }
        if self.crash_only {
            cmd += " --crash-only";
        }
        cmd
    }
}

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
            Event::SyncStart { .. } | Event::SyncDone { .. } | Event::Retention => true,
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
    };
    swarm.bad_timestamp_ppm = rng.stamps.pick(&[0u32, 500_000, 1_000_000, 1_000_000]);
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
        history: History::new(idempotent),
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

    fn mean_delay(r: &mut Rng, mean_ms: u64) -> u64 {
        r.range(1, 2 * mean_ms)
    }

    fn schedule_crash(&mut self) {
        if self.safety() && self.swarm.crash_mean_ms > 0 {
            let d = self.rng.faults.range(1, 2 * self.swarm.crash_mean_ms);
            self.at(d, Event::Crash);
        }
    }

    fn schedule_partition(&mut self) {
        if self.safety() && self.swarm.partition_mean_ms > 0 {
            let d = Self::mean_delay(&mut self.rng.netmore, self.swarm.partition_mean_ms);
            self.at(d, Event::Partition);
        }
    }

    fn schedule_pause(&mut self) {
        if self.safety() && self.swarm.pause_mean_ms > 0 {
            let d = Self::mean_delay(&mut self.rng.pauses, self.swarm.pause_mean_ms);
            self.at(d, Event::Pause);
        }
    }

    fn schedule_disk_full(&mut self) {
        if self.safety() && self.swarm.enospc_mean_ms > 0 {
            let d = Self::mean_delay(&mut self.rng.disk, self.swarm.enospc_mean_ms);
            self.at(d, Event::DiskFull);
        }
    }

    /// The node went away (crash or clean stop): every connection to it is reset, and its
    /// clients learn of it (the kernel closes the sockets).
    fn connections_reset(&mut self) {
        self.paused = false;
        self.held.clear();
        self.req_conn.clear();
        for c in self.net.clients_of(NODE) {
            let old = self.net.epoch(c, NODE);
            self.net.reset(c, NODE);
            let d = self.rng.net.range(0, self.swarm.latency_max_ms);
            self.at(
                d,
                Event::ConnLost {
                    client: c,
                    epoch: old,
                },
            );
        }
    }

    fn crash_now(&mut self) {
        let (rep, scanned) = self.node.crash(&mut self.rng.faults, &self.swarm);
        let rot = if self.rng.faults.chance(self.swarm.corrupt_ppm) && self.decide("rot") {
            let h = &self.history;
            let frontier = |t: TopicId, p: u32| h.frontier((t, p));
            self.node.rot(&mut self.rng.faults, &scanned, &frontier)
        } else {
            None
        };
        let mis = if self.rng.disk.chance(self.swarm.misdirect_ppm) && self.decide("misdirect") {
            let h = &self.history;
            let frontier = |t: TopicId, p: u32| h.frontier((t, p));
            self.node.misdirect(&mut self.rng.disk, &scanned, &frontier)
        } else {
            None
        };
        self.history.on_crash();
        self.connections_reset();
        self.log(format!(
            "crash lost_writes={} torn={} zeroed={} lost_files={} resurrected={} rot={} misdirected={}",
            rep.writes_lost,
            rep.torn,
            rep.zero_filled,
            rep.files_lost,
            rep.files_resurrected,
            rot.unwrap_or_else(|| "-".into()),
            mis.unwrap_or_else(|| "-".into()),
        ));
        let d = self.rng.faults.range(1, self.swarm.downtime_max_ms.max(1));
        self.at(d, Event::Restart);
    }

    /// SIGTERM: the node closes cleanly (skein-broker's `Broker::close`), then restarts later. A
    /// crash armed earlier can still kill the disk in the middle of the close.
    fn clean_stop(&mut self) {
        self.node.shutdown();
        self.history.on_crash();
        self.connections_reset();
        self.log("clean shutdown".into());
        let d = self.rng.faults.range(1, self.swarm.downtime_max_ms.max(1));
        self.at(d, Event::Restart);
    }

    fn restart(&mut self) -> Verdict {
        if let Err(e) = self.node.restart(self.now) {
            self.log(format!("start failed: {e}; the broker exits"));
            let d = self.rng.faults.range(1, self.swarm.downtime_max_ms.max(1));
            self.at(d, Event::Restart);
            return Ok(());
        }
        let parts = self.node.partitions();
        let offs: Vec<String> = parts
            .iter()
            .map(|(k, _, s, e)| format!("{}-{}={s}..{e}", k.0, k.1))
            .collect();
        self.log(format!(
            "restart inc={} clean={} {}",
            self.node.incarnation,
            self.node.last_start_clean,
            offs.join(" ")
        ));
        self.audit_offsets()?;
        self.refresh_view();
        self.schedule_crash();
        Ok(())
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

    fn handle(&mut self, ev: Event) -> Verdict {
        match ev {
            Event::Tick(c) => self.tick(c),
            Event::Deliver { client, epoch, msg } => {
                if self.net.epoch(client, NODE) != epoch {
                    // Lost with its connection (the reset is in the trace already).
                    return Ok(());
                }
                if msg.dir() == Dir::Response {
                    return self.client_receive(client, msg);
                }
                if !self.node.is_up() {
                    // Connection refused: the client notices at once.
                    self.net.reset(client, NODE);
                    let d = self.rng.net.range(0, self.swarm.latency_max_ms);
                    self.at(d, Event::ConnLost { client, epoch });
                    return Ok(());
                }
                self.node_receive(client, epoch, msg);
                Ok(())
            }
            Event::ConnLost { client, epoch } => {
                // Only the refusal's own ConnLost ends it, and it always counts: every request
                // made while refused was dropped and must be resent, in order, before anything
                // newer (an older, stale ConnLost ending the refusal let a later batch overtake
                // them: seed 100186).
                let refusal_over = self.refused[client] == Some(epoch);
                if refusal_over {
                    self.refused[client] = None;
                }
                if self.conn_seen[client] <= epoch || refusal_over {
                    self.conn_seen[client] = self.net.epoch(client, NODE);
                    self.log(format!("c{client} reconnects"));
                    self.conn_lost(client, RETRY_BACKOFF_MS);
                }
                Ok(())
            }
            Event::Timeout { client, req } => self.timeout(client, req),
            Event::Resend(c) => {
                self.resend(c);
                Ok(())
            }
            Event::SyncStart { key, tid, inc } => {
                if !self.node.is_up() || self.node.incarnation != inc || !self.node.holds(&key, tid)
                {
                    return Ok(());
                }
                let (target, file) = self.node.sync_start(&key);
                let ok = !(self.safety()
                    && self.rng.faults.chance(self.swarm.fsync_eio_ppm)
                    && self.decide("eio"));
                let d = self.rng.faults.range(1, self.swarm.fsync_latency_max_ms);
                self.log(format!(
                    "fsync start {}-{} target={target} {}",
                    key.0,
                    key.1,
                    file.name()
                ));
                self.at(
                    d,
                    Event::SyncDone {
                        key,
                        tid,
                        target,
                        file,
                        ok,
                        inc,
                    },
                );
                Ok(())
            }
            Event::SyncDone {
                key,
                tid,
                target,
                file,
                ok,
                inc,
            } => {
                if !self.node.is_up() || self.node.incarnation != inc || !self.node.holds(&key, tid)
                {
                    return Ok(());
                }
                self.log(format!(
                    "fsync {} {}-{} target={target}",
                    if ok { "done" } else { "EIO" },
                    key.0,
                    key.1
                ));
                let outs = self.node.sync_done(&key, target, &file, ok);
                self.node_outs(outs);
                Ok(())
            }
            Event::Crash => {
                if !self.safety() || !self.node.is_up() {
                    return Ok(());
                }
                let clean = self.rng.stops.chance(self.swarm.clean_stop_ppm);
                if !self.decide("stop") {
                    self.schedule_crash();
                } else if clean && !self.paused {
                    self.clean_stop();
                } else if self.rng.faults.chance(self.swarm.mid_op_crash_ppm) && !self.paused {
                    let n = self.rng.faults.range(0, 6) as u32;
                    self.node.disk_mut().die_after(n);
                    self.log(format!(
                        "crash armed: disk dies at the {n}th next storage op"
                    ));
                } else {
                    self.crash_now();
                }
                Ok(())
            }
            Event::Restart => {
                if self.node.is_up() {
                    return Ok(());
                }
                self.restart()
            }
            Event::Retention => {
                if self.node.is_up() {
                    let n = self.node.retention(self.now);
                    // The log starts right after the pass, as ListOffsets would answer them.
                    let parts: Vec<_> = self
                        .node
                        .partitions()
                        .into_iter()
                        .map(|(k, t, s, e)| ((t, k.1), s, e))
                        .collect();
                    let (bytes, ms) = (self.swarm.retention_bytes, self.swarm.retention_ms);
                    self.history
                        .on_retention(self.now, ms, bytes >= 0, &parts)?;
                    let offs: Vec<String> = self
                        .node
                        .partitions()
                        .iter()
                        .map(|(k, _, s, e)| format!("{}-{}={s}..{e}", k.0, k.1))
                        .collect();
                    self.log(format!("retention deleted={n} {}", offs.join(" ")));
                }
                if self.safety() {
                    self.at(self.swarm.retention_pass_ms, Event::Retention);
                }
                Ok(())
            }
            Event::Partition => {
                self.partition();
                Ok(())
            }
            Event::Heal(cut) => {
                for (c, dir) in &cut {
                    self.net.link(*c, NODE).down[*dir as usize] = false;
                }
                self.log(format!("heal {cut:?}"));
                Ok(())
            }
            Event::Pause => {
                if self.safety() && self.node.is_up() && !self.paused && self.decide("pause") {
                    self.paused = true;
                    let d = self.rng.pauses.range(1, self.swarm.pause_max_ms);
                    self.log(format!("pause for {d}ms"));
                    self.at(d, Event::Resume);
                } else {
                    self.schedule_pause();
                }
                Ok(())
            }
            Event::Resume => {
                self.schedule_pause();
                self.resume()
            }
            Event::DiskFull => {
                if self.safety() && self.decide("enospc") {
                    self.node.disk_mut().set_full(true);
                    let d = self.rng.disk.range(1, self.swarm.enospc_max_ms);
                    self.log(format!("disk full for {d}ms"));
                    self.at(d, Event::DiskFree);
                } else {
                    self.schedule_disk_full();
                }
                Ok(())
            }
            Event::DiskFree => {
                if self.node.disk().is_full() {
                    self.node.disk_mut().set_full(false);
                    self.log("disk has room again".into());
                }
                self.schedule_disk_full();
                Ok(())
            }
            Event::Liveness => {
                self.phase = Phase::Liveness;
                self.liveness_at = self.now;
                self.node.disk_mut().disarm();
                self.node.disk_mut().set_full(false);
                self.net.heal_all();
                self.resume()?;
                self.log("liveness: faults off".into());
                if !self.node.is_up() {
                    self.restart()?;
                }
                self.at(checker::liveness::ACK_BOUND_MS, Event::Deadline);
                self.check_quiet()
            }
            Event::Deadline => {
                let pending = self.pending_idempotent();
                checker::liveness::check(&pending, self.now - self.liveness_at)?;
                self.audit()
            }
        }
    }

    /// Resumes a paused node: it works through what arrived meanwhile, in arrival order, before
    /// anything else (so a connection stays FIFO across a pause).
    fn resume(&mut self) -> Verdict {
        if !self.paused {
            return Ok(());
        }
        self.paused = false;
        self.log(format!("resume ({} held)", self.held.len()));
        for ev in std::mem::take(&mut self.held) {
            if self.node.disk().is_dead() {
                break;
            }
            self.handle(ev)?;
        }
        Ok(())
    }

    /// Cuts links: one client both ways, one client's requests, one client's responses, or the
    /// node from every client.
    fn partition(&mut self) {
        if !self.safety() {
            return;
        }
        let r = &mut self.rng.netmore;
        let mode = r.below(4);
        let n = self.clients.len();
        let one = r.below(n as u64) as usize;
        let cut: Vec<(usize, Dir)> = match mode {
            0 => vec![(one, Dir::Request), (one, Dir::Response)],
            1 => vec![(one, Dir::Request)],
            2 => vec![(one, Dir::Response)],
            _ => (0..n)
                .flat_map(|c| [(c, Dir::Request), (c, Dir::Response)])
                .collect(),
        };
        let d = self.rng.netmore.range(1, self.swarm.partition_max_ms);
        if self.decide("partition") {
            for (c, dir) in &cut {
                self.net.link(*c, NODE).down[*dir as usize] = true;
            }
            self.log(format!("partition {cut:?} for {d}ms"));
            self.at(d, Event::Heal(cut));
        }
        self.schedule_partition();
    }

    /// A request reaches the running node.
    fn node_receive(&mut self, client: usize, epoch: u32, msg: Msg) {
        match msg {
            Msg::Produce {
                req,
                key,
                bytes,
                acks,
            } => {
                if acks != 0 {
                    self.req_conn.insert(req, epoch);
                }
                let outs = self.node.produce(self.now, &key, client, req, &bytes, acks);
                let offs = self
                    .node
                    .offsets(&key)
                    .map_or("-".to_string(), |(s, e)| format!("{s}..{e}"));
                self.log(format!(
                    "produce c{client} req{req} {}-{} acks={acks} len={} log={offs}",
                    key.0,
                    key.1,
                    bytes.len()
                ));
                self.node_outs(outs);
            }
            Msg::Fetch {
                req,
                key,
                offset,
                max_bytes,
            } => {
                self.req_conn.insert(req, epoch);
                let result = self.node.fetch(&key, offset, max_bytes);
                let what = match &result {
                    FetchResult::Ok {
                        bytes,
                        high_watermark,
                        ..
                    } => format!("{} bytes hw={high_watermark}", bytes.len()),
                    FetchResult::OutOfRange {
                        log_start, log_end, ..
                    } => format!("out of range {log_start}..{log_end}"),
                    FetchResult::UnknownTopic => UNKNOWN_TOPIC.to_string(),
                };
                self.log(format!(
                    "fetch c{client} req{req} {}-{} at {offset}: {what}",
                    key.0, key.1
                ));
                self.respond(
                    client,
                    req,
                    Msg::FetchReply {
                        req,
                        key,
                        offset,
                        result,
                    },
                );
            }
            Msg::Admin { req, op } => {
                self.req_conn.insert(req, epoch);
                let result = self.node.admin(self.now, &op);
                self.log(format!("admin c{client} req{req} {op:?}: {result}"));
                self.refresh_view();
                self.respond(client, req, Msg::AdminReply { req, result });
            }
            _ => unreachable!("a response sent to the node"),
        }
    }

    fn client_receive(&mut self, client: usize, msg: Msg) -> Verdict {
        match msg {
            Msg::ProduceReply { req, result } => self.produce_reply(client, req, result),
            Msg::FetchReply {
                req,
                key,
                offset,
                result,
            } => self.fetch_reply(client, req, key, offset, result),
            Msg::AdminReply { req, result } => self.admin_reply(client, req, result),
            _ => unreachable!("a request sent to a client"),
        }
    }

    fn pending_idempotent(&self) -> Vec<(usize, u32, usize)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(c, cl)| match cl {
                Client::Producer(p) if p.shape.idempotent => {
                    p.inflight.first().map(|f| (c, f.serial, f.key.1 as usize))
                }
                _ => None,
            })
            .collect()
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

    /// Reads every partition from its start to its end through the checker.
    fn audit(&mut self) -> Verdict {
        self.audit_offsets()?;
        for (key, tid, start, end) in self.node.partitions() {
            let mut off = start;
            let mut n = 0;
            while off < end {
                let r = self.node.fetch(&key, off, 64 * 1024);
                self.history.on_fetch(key.1, off, &r, self.now)?;
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
            self.log(format!(
                "audit {}-{} ({:08x}) {start}..{end} records={n}",
                key.0, key.1, tid as u32
            ));
        }
        self.done = true;
        Ok(())
    }

    fn node_outs(&mut self, outs: Vec<NodeOut>) {
        for o in outs {
            match o {
                NodeOut::Reply {
                    client,
                    req,
                    result,
                } => self.respond(client, req, Msg::ProduceReply { req, result }),
                NodeOut::NeedSync(key, tid) => {
                    let inc = self.node.incarnation;
                    self.at(
                        self.swarm.group_commit_ms,
                        Event::SyncStart { key, tid, inc },
                    );
                }
            }
        }
    }

    fn new_req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    fn tick(&mut self, c: usize) -> Verdict {
        if !self.safety() {
            return Ok(());
        }
        self.refresh_view();
        match &self.clients[c] {
            Client::Producer(_) => self.producer_tick(c),
            Client::Fetcher(_) => self.fetcher_tick(c),
            Client::Admin(_) => self.admin_tick(c),
        }
        Ok(())
    }

    fn arm_tick(&mut self, c: usize) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        if !p.tick_armed {
            p.tick_armed = true;
            let d = self.rng.work.range(1, 30);
            self.at(d, Event::Tick(c));
        }
    }

    fn producer_tick(&mut self, c: usize) {
        let t0 = TOPICS[0];
        let choices: Vec<(usize, u32)> = self
            .view
            .iter()
            .map(|(name, n)| (topic_index(name), *n))
            .collect();
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        p.tick_armed = false;
        if p.inflight.len() >= p.shape.in_flight as usize {
            return;
        }
        // Idempotent producers write only to t0 (never deleted); the others to any topic.
        let (topic, parts) = if p.shape.idempotent || choices.len() <= 1 {
            (0, self.view.get(t0).copied().unwrap_or(1))
        } else {
            choices[self.rng.work.below(choices.len() as u64) as usize]
        };
        let part = self.rng.work.below(u64::from(parts)) as u32;
        let n = self.rng.work.range(1, BATCH_RECORDS_MAX) as u32;
        let filler = self.rng.work.range(0, FILLER_MAX) as usize;
        let serial = p.next_serial;
        p.next_serial += 1;
        let key = (TOPICS[topic].to_string(), part);
        let ids: Vec<RecordId> = (0..n)
            .map(|index| RecordId {
                client: c as u32,
                serial,
                index,
            })
            .collect();
        let identity = p.shape.idempotent.then(|| {
            let seq = p.seqs.entry(key.clone()).or_insert(0);
            let base_sequence = *seq;
            *seq += n as i32;
            ProducerIdentity {
                id: PRODUCER_ID_BASE + c as i64,
                epoch: 0,
                base_sequence,
            }
        });
        let ts = self.now as i64;
        let mut bytes = records::build_batch(&ids, filler, ts, identity);
        let wrong = match p.stamps {
            Stamps::Right => None,
            Stamps::Unset => Some(-1),
            // Too old (down to 0) or too new (up to 10 s ahead).
            Stamps::Wrong => Some(match self.rng.stamps.below(2) {
                0 => self.rng.stamps.below(ts.max(0) as u64 + 1) as i64 - 1,
                _ => ts + 1 + self.rng.stamps.below(10_000) as i64,
            }),
        };
        if let Some(max) = wrong {
            bytes = build::with_max_timestamp(bytes, max);
        }
        self.history.stamp(c as u32, serial, ts);
        p.inflight.push(InFlight {
            serial,
            key,
            ids,
            bytes,
            req: None,
        });
        let room = p.inflight.len() < p.shape.in_flight as usize;
        self.resend(c);
        if room {
            self.arm_tick(c);
        }
    }

    fn fetcher_tick(&mut self, c: usize) {
        let choices: Vec<(String, u32)> = self.view.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let Client::Fetcher(f) = &mut self.clients[c] else {
            unreachable!()
        };
        if f.waiting.is_some() || choices.is_empty() {
            return;
        }
        let (name, parts) = &choices[self.rng.work.below(choices.len() as u64) as usize];
        let part = self.rng.work.below(u64::from(*parts)) as u32;
        let key = (name.clone(), part);
        let (_, cursor, known_end) = f.cursors.get(&key).copied().unwrap_or((0, 0, 0));
        let offset = match self.rng.work.below(20) {
            0 => 0,
            1..=3 => self.rng.work.range(0, known_end.max(0) as u64) as i64,
            _ => cursor,
        };
        let max_bytes = self.rng.work.pick(&[1u64, 500, 4096, 65536]);
        let req = self.next_req;
        self.next_req += 1;
        f.waiting = Some((req, self.now));
        self.request(
            c,
            Msg::Fetch {
                req,
                key,
                offset,
                max_bytes,
            },
        );
        self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
    }

    fn admin_tick(&mut self, c: usize) {
        let r = &mut self.rng.admin;
        let name = TOPICS[r.range(1, TOPICS.len() as u64 - 1) as usize].to_string();
        let op = match r.below(3) {
            0 => {
                let partitions = r.range(1, 3) as u32;
                let id = self.topic_id_bytes();
                AdminOp::Create {
                    name,
                    partitions,
                    id,
                }
            }
            1 => AdminOp::Delete { name },
            _ => {
                let name = TOPICS[r.below(TOPICS.len() as u64) as usize].to_string();
                let total = self.view.get(&name).copied().unwrap_or(1) + r.range(1, 2) as u32;
                AdminOp::AddPartitions {
                    name,
                    total: total.min(PARTITIONS_MAX),
                }
            }
        };
        if !self.decide("admin") {
            let d = Self::mean_delay(&mut self.rng.admin, self.swarm.admin_mean_ms);
            self.at(d, Event::Tick(c));
            return;
        }
        if let AdminOp::Delete { name } = &op {
            topics::delete_sent(&mut self.history, name);
        }
        let req = self.new_req();
        self.log(format!("admin send c{c} req{req} {op:?}"));
        let Client::Admin(a) = &mut self.clients[c] else {
            unreachable!()
        };
        a.waiting = Some((req, op.clone()));
        self.request(c, Msg::Admin { req, op });
        self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
    }

    fn admin_reply(&mut self, c: usize, req: u64, result: AdminResult) -> Verdict {
        let Client::Admin(a) = &mut self.clients[c] else {
            unreachable!("admin reply to another client")
        };
        let Some((_, op)) = a.waiting.take_if(|(r, _)| *r == req) else {
            return Ok(());
        };
        self.log(format!("admin reply c{c} req{req} {result}"));
        if let AdminResult::Ok(tid) = result {
            match &op {
                AdminOp::Create {
                    name, partitions, ..
                } => topics::created(&mut self.history, tid, name, *partitions),
                AdminOp::Delete { .. } => topics::deleted(&mut self.history, tid, self.now),
                AdminOp::AddPartitions { total, .. } => {
                    topics::grown(&mut self.history, tid, *total)
                }
            }
        }
        self.admin_next(c);
        Ok(())
    }

    fn admin_next(&mut self, c: usize) {
        if self.safety() {
            let d = Self::mean_delay(&mut self.rng.admin, self.swarm.admin_mean_ms);
            self.at(d, Event::Tick(c));
        }
    }

    /// Sends every batch of producer `c` waiting to be (re)sent, in serial order.
    fn resend(&mut self, c: usize) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        p.resend_armed = false;
        let acks = p.shape.acks;
        let waiting: Vec<usize> = (0..p.inflight.len())
            .filter(|i| p.inflight[*i].req.is_none())
            .collect();
        for i in waiting {
            let req = self.new_req();
            let Client::Producer(p) = &mut self.clients[c] else {
                unreachable!()
            };
            let f = &mut p.inflight[i];
            f.req = Some(req);
            let (key, bytes, serial, ids) =
                (f.key.clone(), f.bytes.clone(), f.serial, f.ids.clone());
            self.requests.insert(
                req,
                ProduceReq {
                    key: key.clone(),
                    serial,
                    ids,
                    acks,
                    sent: self.now,
                },
            );
            self.log(format!(
                "send c{c} req{req} batch{serial} {}-{} acks={acks}",
                key.0, key.1
            ));
            self.request(
                c,
                Msg::Produce {
                    req,
                    key,
                    bytes,
                    acks,
                },
            );
            if acks != 0 {
                self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
            }
        }
        if acks == 0 {
            // Fire and forget: the producer moves on at once.
            if let Client::Producer(p) = &mut self.clients[c] {
                p.inflight.clear();
            }
            self.arm_tick(c);
        }
    }

    fn arm_resend(&mut self, c: usize, delay_ms: u64) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        if !p.resend_armed {
            p.resend_armed = true;
            self.at(delay_ms, Event::Resend(c));
        }
    }

    fn produce_reply(&mut self, client: usize, req: u64, result: ProduceResult) -> Verdict {
        let Some(info) = self.requests.remove(&req) else {
            self.log(format!("produce reply c{client} req{req} again: ignored"));
            return Ok(());
        };
        self.log(format!(
            "produce reply c{client} req{req} batch{} {result}",
            info.serial
        ));
        let Client::Producer(p) = &mut self.clients[client] else {
            unreachable!("produce reply to another client")
        };
        let idempotent = p.shape.idempotent;
        let current = p.inflight.iter().position(|f| f.serial == info.serial);
        let latest = current.filter(|i| p.inflight[*i].req == Some(req));
        match result {
            ProduceResult::Ok {
                base_offset,
                last_offset,
                topic_id,
            } => {
                self.history.on_ack(
                    (topic_id, info.key.1),
                    &info.ids,
                    base_offset,
                    last_offset,
                    info.acks,
                    info.sent,
                )?;
                if let Some(i) = current {
                    self.finish_batch(client, i);
                }
            }
            ProduceResult::Err(code, _) => {
                if let Some(i) = latest {
                    if idempotent {
                        // As a Kafka idempotent producer: a failed batch is retried, and every
                        // batch after it with it, in order, on a fresh connection.
                        self.reset_connection(client);
                        self.conn_lost(client, RETRY_BACKOFF_MS);
                    } else if code == UNKNOWN_TOPIC || !self.swarm.retries {
                        self.log(format!("c{client} gives up its batch ({code})"));
                        self.finish_batch(client, i);
                    } else {
                        debug_assert!(code == STORAGE_ERROR || !code.is_empty());
                        if let Client::Producer(p) = &mut self.clients[client] {
                            p.inflight[i].req = None;
                        }
                        self.arm_resend(client, RETRY_BACKOFF_MS);
                    }
                }
            }
        }
        self.check_quiet()
    }

    fn finish_batch(&mut self, c: usize, i: usize) {
        if let Client::Producer(p) = &mut self.clients[c] {
            p.inflight.remove(i);
        }
        self.arm_tick(c);
    }

    /// The client closes its connection and opens a new one (Kafka does on a request timeout).
    fn reset_connection(&mut self, c: usize) {
        self.conn_seen[c] = self.net.reset(c, NODE);
    }

    /// Client `c`'s connection is gone: whatever it had in flight on it failed.
    fn conn_lost(&mut self, c: usize, delay_ms: u64) {
        let retries = self.swarm.retries;
        let mut give_up = false;
        match &mut self.clients[c] {
            Client::Producer(p) => {
                if p.inflight.is_empty() {
                    return;
                }
                for f in &mut p.inflight {
                    f.req = None;
                }
                if !p.shape.idempotent && !retries {
                    give_up = true;
                }
            }
            Client::Fetcher(f) => {
                if f.waiting.take().is_some() {
                    let d = self.rng.work.range(delay_ms, 100);
                    self.at(d, Event::Tick(c));
                }
                return;
            }
            Client::Admin(a) => {
                // Not retried: CreateTopics and DeleteTopics are not idempotent; the outcome
                // stays unknown to the checker.
                if a.waiting.take().is_some() {
                    self.admin_next(c);
                }
                return;
            }
        }
        if give_up {
            self.log(format!("c{c} gives up its batch"));
            self.finish_batch(c, 0);
        } else if delay_ms == 0 {
            self.resend(c);
        } else {
            self.arm_resend(c, delay_ms);
        }
    }

    fn fetch_reply(
        &mut self,
        client: usize,
        req: u64,
        key: PartKey,
        offset: i64,
        result: FetchResult,
    ) -> Verdict {
        let Client::Fetcher(f) = &mut self.clients[client] else {
            unreachable!("fetch reply to a producer")
        };
        let Some((_, sent)) = f.waiting.take_if(|(r, _)| *r == req) else {
            self.log(format!("fetch reply c{client} req{req} again: ignored"));
            return Ok(());
        };
        self.log(format!(
            "fetch reply c{client} req{req} {}-{} at {offset}",
            key.0, key.1
        ));
        self.history.on_fetch(key.1, offset, &result, sent)?;
        let Client::Fetcher(f) = &mut self.clients[client] else {
            unreachable!()
        };
        match &result {
            FetchResult::Ok {
                bytes,
                high_watermark,
                topic_id,
                ..
            } => {
                let mut next = offset;
                for item in skein_core::batch::iter_headers(bytes) {
                    next = item.expect("integrity checked").1.next_offset();
                }
                f.cursors.insert(key, (*topic_id, next, *high_watermark));
            }
            FetchResult::OutOfRange {
                log_start,
                log_end,
                topic_id,
            } => {
                let next = if offset < *log_start {
                    *log_start
                } else {
                    *log_end
                };
                f.cursors.insert(key, (*topic_id, next, *log_end));
            }
            FetchResult::UnknownTopic => {
                f.cursors.remove(&key);
            }
        }
        let d = self.rng.work.range(5, 100);
        self.at(d, Event::Tick(client));
        Ok(())
    }

    fn timeout(&mut self, c: usize, req: u64) -> Verdict {
        let pending = match &self.clients[c] {
            Client::Producer(p) => p.inflight.iter().any(|f| f.req == Some(req)),
            Client::Fetcher(f) => f.waiting.is_some_and(|(r, _)| r == req),
            Client::Admin(a) => a.waiting.as_ref().is_some_and(|(r, _)| *r == req),
        };
        if pending {
            self.log(format!("timeout c{c} req{req}: reconnect"));
            self.reset_connection(c);
            self.conn_lost(c, 0);
        }
        Ok(())
    }
}
