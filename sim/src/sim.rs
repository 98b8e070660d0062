//! The discrete-event engine: one seed, a queue of timed events, a node, clients, a checker.
//!
//! Shape of a run: draw the swarm from the seed; a safety phase (`swarm.safety_ms` of simulated
//! time) with crashes, torn and lost writes, sector rot, fsync EIO and lost messages; then a
//! liveness phase with every fault off, in which every producer's last batch must be
//! acknowledged within [`checker::liveness::ACK_BOUND_MS`]; then a final audit reads every
//! partition from its log start to its end through the checker.
//!
//! Invariants: simulated time never goes backwards and jumps straight to the next event; every
//! random choice comes from a stream forked off the seed (swarm, faults, workload, network);
//! events at equal times run in scheduling order; after every event the node's invariants hold
//! and a violated checker rule ends the run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use skein_core::batch::build::ProducerIdentity;
use skein_core::config::LogConfig;

use crate::canary::SimCanary;
use crate::checker::{self, History, Verdict, Violation};
use crate::node::{FetchResult, Node, NodeOut, ProduceResult};
use crate::records::{self, RecordId};
use crate::rng::Rng;
use crate::swarm::{ProducerShape, Swarm};
use crate::trace::Trace;

/// Upper bound on events per run; a run that needs more is itself a bug (a livelock).
pub const STEPS_MAX: u64 = 2_000_000;
/// Most records in one produced batch.
pub const BATCH_RECORDS_MAX: u64 = 5;
/// Most filler bytes per record value.
pub const FILLER_MAX: u64 = 200;
/// Producer id of client `c` when idempotent.
const PRODUCER_ID_BASE: i64 = 1000;
/// Backoff before retrying a batch after an error response.
const RETRY_BACKOFF_MS: u64 = 10;

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
}

impl Options {
    /// A plain run of `seed`.
    pub fn seed(seed: u64) -> Self {
        Options {
            seed,
            canary: None,
            trace_out: None,
            crash_only: false,
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
    /// The drawn shape.
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

#[derive(Debug)]
enum Event {
    Tick(usize),
    Produce {
        client: usize,
        req: u64,
        part: usize,
        bytes: Vec<u8>,
        acks: i16,
        inc: u32,
    },
    ProduceReply {
        client: usize,
        req: u64,
        result: ProduceResult,
        inc: u32,
    },
    Fetch {
        client: usize,
        req: u64,
        part: usize,
        offset: i64,
        max_bytes: u64,
        inc: u32,
    },
    FetchReply {
        client: usize,
        req: u64,
        part: usize,
        offset: i64,
        result: FetchResult,
        inc: u32,
    },
    Timeout {
        client: usize,
        req: u64,
    },
    SyncStart {
        part: usize,
        inc: u32,
    },
    SyncDone {
        part: usize,
        target: i64,
        file: String,
        ok: bool,
        inc: u32,
    },
    Crash,
    Restart,
    Retention,
    Liveness,
    Deadline,
}

#[derive(Debug, Clone)]
struct InFlight {
    serial: u32,
    part: usize,
    ids: Vec<RecordId>,
    bytes: Vec<u8>,
    req: u64,
}

#[derive(Debug)]
struct Producer {
    shape: ProducerShape,
    next_serial: u32,
    seqs: Vec<i32>,
    inflight: Option<InFlight>,
}

#[derive(Debug)]
struct Fetcher {
    cursors: Vec<i64>,
    known_end: Vec<i64>,
    waiting: Option<u64>,
}

#[derive(Debug)]
enum Client {
    Producer(Producer),
    Fetcher(Fetcher),
}

#[derive(Debug, Clone)]
struct ProduceReq {
    part: usize,
    serial: u32,
    ids: Vec<RecordId>,
    acks: i16,
}

struct Sim {
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    swarm: Swarm,
    faults: Rng,
    /// Decides whether a stop is clean (SIGTERM) or a crash.
    stops: Rng,
    work: Rng,
    net: Rng,
    node: Node,
    clients: Vec<Client>,
    requests: BTreeMap<u64, ProduceReq>,
    next_req: u64,
    history: History,
    trace: Trace,
    phase: Phase,
    liveness_at: u64,
    done: bool,
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
            seqs: vec![0; swarm.partitions],
            inflight: None,
        }));
    }
    for _ in 0..swarm.fetchers {
        clients.push(Client::Fetcher(Fetcher {
            cursors: vec![0; swarm.partitions],
            known_end: vec![0; swarm.partitions],
            waiting: None,
        }));
    }
    let mut sim = Sim {
        now: 0,
        seq: 0,
        queue: BTreeMap::new(),
        node: Node::new(swarm.partitions, config, opts.canary, 0),
        history: History::new(swarm.partitions, idempotent),
        swarm,
        faults,
        stops,
        work,
        net,
        clients,
        requests: BTreeMap::new(),
        next_req: 0,
        trace: Trace::new(opts.trace_out),
        phase: Phase::Safety,
        liveness_at: 0,
        done: false,
    };
    let result = catch_unwind(AssertUnwindSafe(|| sim.run()));
    let violation = match result {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(v),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Some(checker::violation("node-invariant", msg))
        }
    };
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
    }
}

impl Sim {
    fn at(&mut self, delay_ms: u64, ev: Event) {
        self.seq += 1;
        self.queue.insert((self.now + delay_ms, self.seq), ev);
    }

    fn latency(&mut self) -> u64 {
        self.net.range(0, self.swarm.latency_max_ms)
    }

    fn dropped(&mut self) -> bool {
        self.phase == Phase::Safety && self.net.chance(self.swarm.drop_ppm)
    }

    /// Sends a message over the simulated network: lost with the swarm's drop rate (safety
    /// phase only), else delivered after a random latency.
    fn deliver(&mut self, ev: Event) {
        if !self.dropped() {
            let d = self.latency();
            self.at(d, ev);
        }
    }

    fn log(&mut self, what: String) {
        self.trace.event(self.now, &what);
    }

    fn run(&mut self) -> Verdict {
        for c in 0..self.clients.len() {
            let d = self.work.range(0, 10);
            self.at(d, Event::Tick(c));
        }
        self.schedule_crash();
        if self.swarm.retention_pass_ms > 0 {
            self.at(self.swarm.retention_pass_ms, Event::Retention);
        }
        self.at(self.swarm.safety_ms, Event::Liveness);
        self.log(format!("start {}", self.swarm));
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            assert!(t >= self.now, "time went backwards");
            self.now = t;
            self.handle(ev)?;
            if self.node.disk.is_dead() {
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

    fn schedule_crash(&mut self) {
        if self.phase == Phase::Safety && self.swarm.crash_mean_ms > 0 {
            let d = self.faults.range(1, 2 * self.swarm.crash_mean_ms);
            self.at(d, Event::Crash);
        }
    }

    fn crash_now(&mut self) {
        let frontiers = self.history.frontiers();
        let (rep, rot) = self.node.crash(&mut self.faults, &self.swarm, &frontiers);
        self.history.on_crash();
        self.log(format!(
            "crash lost_writes={} torn={} zeroed={} lost_files={} resurrected={} rot={} frontiers={frontiers:?}",
            rep.writes_lost,
            rep.torn,
            rep.zero_filled,
            rep.files_lost,
            rep.files_resurrected,
            rot.unwrap_or_else(|| "-".into())
        ));
        let d = self.faults.range(1, self.swarm.downtime_max_ms.max(1));
        self.at(d, Event::Restart);
    }

    /// SIGTERM: the node closes cleanly (skein-net's `Broker::close`), then restarts later. A
    /// crash armed earlier can still kill the disk in the middle of the close.
    fn clean_stop(&mut self) {
        self.node.shutdown();
        self.history.on_crash();
        self.log("clean shutdown".into());
        let d = self.faults.range(1, self.swarm.downtime_max_ms.max(1));
        self.at(d, Event::Restart);
    }

    fn restart(&mut self) -> Verdict {
        self.node.restart(self.now);
        let mut offs = Vec::new();
        for p in 0..self.swarm.partitions {
            let (s, e) = self.node.offsets(p).expect("up");
            offs.push(format!("p{p}={s}..{e}"));
            self.history.on_offsets(p, s, e)?;
        }
        self.log(format!(
            "restart inc={} clean={} {}",
            self.node.incarnation,
            self.node.last_start_clean,
            offs.join(" ")
        ));
        Ok(())
    }

    fn handle(&mut self, ev: Event) -> Verdict {
        match ev {
            Event::Tick(c) => self.tick(c),
            Event::Produce {
                client,
                req,
                part,
                bytes,
                acks,
                inc,
            } => {
                if !self.node.is_up() || self.node.incarnation != inc {
                    self.log(format!(
                        "produce c{client} req{req} p{part} lost: connection reset"
                    ));
                    return Ok(());
                }
                let outs = self.node.produce(self.now, part, client, req, &bytes, acks);
                let (start, end) = self.node.offsets(part).expect("up");
                self.log(format!(
                    "produce c{client} req{req} p{part} acks={acks} len={} log={start}..{end}",
                    bytes.len()
                ));
                self.node_outs(outs);
                Ok(())
            }
            Event::ProduceReply {
                client,
                req,
                result,
                inc,
            } => self.produce_reply(client, req, result, inc),
            Event::Fetch {
                client,
                req,
                part,
                offset,
                max_bytes,
                inc,
            } => {
                if !self.node.is_up() || self.node.incarnation != inc {
                    self.log(format!("fetch c{client} req{req} lost: connection reset"));
                    return Ok(());
                }
                let result = self.node.fetch(part, offset, max_bytes);
                let what = match &result {
                    FetchResult::Ok {
                        bytes,
                        high_watermark,
                        ..
                    } => format!("{} bytes hw={high_watermark}", bytes.len()),
                    FetchResult::OutOfRange { log_start, log_end } => {
                        format!("out of range {log_start}..{log_end}")
                    }
                };
                self.log(format!(
                    "fetch c{client} req{req} p{part} at {offset}: {what}"
                ));
                let inc = self.node.incarnation;
                self.deliver(Event::FetchReply {
                    client,
                    req,
                    part,
                    offset,
                    result,
                    inc,
                });
                Ok(())
            }
            Event::FetchReply {
                client,
                req,
                part,
                offset,
                result,
                inc,
            } => {
                if self.node.incarnation != inc {
                    self.log(format!(
                        "fetch reply c{client} req{req} lost: connection reset"
                    ));
                    return Ok(());
                }
                self.log(format!(
                    "fetch reply c{client} req{req} p{part} at {offset}"
                ));
                self.history.on_fetch(part, offset, &result)?;
                let Client::Fetcher(f) = &mut self.clients[client] else {
                    unreachable!("fetch reply to a producer")
                };
                match &result {
                    FetchResult::Ok {
                        bytes,
                        high_watermark,
                        ..
                    } => {
                        f.known_end[part] = *high_watermark;
                        let mut next = offset;
                        for item in skein_core::batch::iter_headers(bytes) {
                            next = item.expect("integrity checked").1.next_offset();
                        }
                        f.cursors[part] = next;
                    }
                    FetchResult::OutOfRange { log_start, log_end } => {
                        f.known_end[part] = *log_end;
                        f.cursors[part] = if offset < *log_start {
                            *log_start
                        } else {
                            *log_end
                        };
                    }
                }
                if f.waiting == Some(req) {
                    f.waiting = None;
                    let d = self.work.range(5, 100);
                    self.at(d, Event::Tick(client));
                }
                Ok(())
            }
            Event::Timeout { client, req } => self.timeout(client, req),
            Event::SyncStart { part, inc } => {
                if !self.node.is_up() || self.node.incarnation != inc {
                    return Ok(());
                }
                let (target, file) = self.node.sync_start(part);
                let ok =
                    !(self.phase == Phase::Safety && self.faults.chance(self.swarm.fsync_eio_ppm));
                let d = self.faults.range(1, self.swarm.fsync_latency_max_ms);
                self.log(format!("fsync start p{part} target={target} {file}"));
                self.at(
                    d,
                    Event::SyncDone {
                        part,
                        target,
                        file,
                        ok,
                        inc,
                    },
                );
                Ok(())
            }
            Event::SyncDone {
                part,
                target,
                file,
                ok,
                inc,
            } => {
                if !self.node.is_up() || self.node.incarnation != inc {
                    return Ok(());
                }
                self.log(format!(
                    "fsync {} p{part} target={target}",
                    if ok { "done" } else { "EIO" }
                ));
                let outs = self.node.sync_done(part, target, &file, ok);
                self.node_outs(outs);
                Ok(())
            }
            Event::Crash => {
                if self.phase != Phase::Safety || !self.node.is_up() {
                    return Ok(());
                }
                if self.stops.chance(self.swarm.clean_stop_ppm) {
                    self.clean_stop();
                } else if self.faults.chance(self.swarm.mid_op_crash_ppm) {
                    let n = self.faults.range(0, 6) as u32;
                    self.node.disk.die_after(n);
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
                self.restart()?;
                self.schedule_crash();
                Ok(())
            }
            Event::Retention => {
                if self.node.is_up() {
                    let n = self.node.retention(self.now);
                    let offs: Vec<String> = (0..self.swarm.partitions)
                        .map(|p| {
                            let (s, e) = self.node.offsets(p).expect("up");
                            format!("p{p}={s}..{e}")
                        })
                        .collect();
                    self.log(format!("retention deleted={n} {}", offs.join(" ")));
                }
                if self.phase == Phase::Safety {
                    self.at(self.swarm.retention_pass_ms, Event::Retention);
                }
                Ok(())
            }
            Event::Liveness => {
                self.phase = Phase::Liveness;
                self.liveness_at = self.now;
                self.node.disk.disarm();
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

    fn pending_idempotent(&self) -> Vec<(usize, u32, usize)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(c, cl)| match cl {
                Client::Producer(p) if p.shape.idempotent => {
                    p.inflight.as_ref().map(|f| (c, f.serial, f.part))
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
            .any(|c| matches!(c, Client::Producer(p) if p.inflight.is_some()));
        if busy {
            return Ok(());
        }
        self.audit()
    }

    /// Reads every partition from its start to its end through the checker.
    fn audit(&mut self) -> Verdict {
        for p in 0..self.swarm.partitions {
            let (start, end) = self.node.offsets(p).expect("up in liveness");
            self.history.on_offsets(p, start, end)?;
            let mut off = start;
            let mut n = 0;
            while off < end {
                let r = self.node.fetch(p, off, 64 * 1024);
                self.history.on_fetch(p, off, &r)?;
                let FetchResult::Ok { bytes, .. } = &r else {
                    return Err(checker::violation(
                        "offsets",
                        format!("p{p} audit read at {off} out of range"),
                    ));
                };
                for item in skein_core::batch::iter_headers(bytes) {
                    let h = item.expect("integrity checked").1;
                    n += h.next_offset() - off.max(h.base_offset);
                    off = h.next_offset();
                }
            }
            self.log(format!("audit p{p} {start}..{end} records={n}"));
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
                } => {
                    if self.dropped() {
                        continue;
                    }
                    let d = self.latency();
                    let inc = self.node.incarnation;
                    self.at(
                        d,
                        Event::ProduceReply {
                            client,
                            req,
                            result,
                            inc,
                        },
                    );
                }
                NodeOut::NeedSync(part) => {
                    let inc = self.node.incarnation;
                    self.at(self.swarm.group_commit_ms, Event::SyncStart { part, inc });
                }
            }
        }
    }

    fn tick(&mut self, c: usize) -> Verdict {
        if self.phase != Phase::Safety {
            return Ok(());
        }
        let parts = self.swarm.partitions;
        match &mut self.clients[c] {
            Client::Producer(p) => {
                if p.inflight.is_some() {
                    return Ok(());
                }
                let part = self.work.below(parts as u64) as usize;
                let n = self.work.range(1, BATCH_RECORDS_MAX) as u32;
                let filler = self.work.range(0, FILLER_MAX) as usize;
                let serial = p.next_serial;
                p.next_serial += 1;
                let ids: Vec<RecordId> = (0..n)
                    .map(|index| RecordId {
                        client: c as u32,
                        serial,
                        index,
                    })
                    .collect();
                let identity = p.shape.idempotent.then(|| {
                    let base_sequence = p.seqs[part];
                    p.seqs[part] += n as i32;
                    ProducerIdentity {
                        id: PRODUCER_ID_BASE + c as i64,
                        epoch: 0,
                        base_sequence,
                    }
                });
                let bytes = records::build_batch(&ids, filler, self.now as i64, identity);
                p.inflight = Some(InFlight {
                    serial,
                    part,
                    ids,
                    bytes,
                    req: 0,
                });
                self.send(c);
            }
            Client::Fetcher(f) => {
                if f.waiting.is_some() {
                    return Ok(());
                }
                let part = self.work.below(parts as u64) as usize;
                let offset = match self.work.below(20) {
                    0 => 0,
                    1..=3 => self.work.range(0, f.known_end[part].max(0) as u64) as i64,
                    _ => f.cursors[part],
                };
                let max_bytes = self.work.pick(&[1u64, 500, 4096, 65536]);
                let req = self.next_req;
                self.next_req += 1;
                f.waiting = Some(req);
                let inc = self.node.incarnation;
                self.deliver(Event::Fetch {
                    client: c,
                    req,
                    part,
                    offset,
                    max_bytes,
                    inc,
                });
                self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
            }
        }
        Ok(())
    }

    /// Sends (or resends) producer `c`'s batch in flight.
    fn send(&mut self, c: usize) {
        let req = self.next_req;
        self.next_req += 1;
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        let acks = p.shape.acks;
        let f = p.inflight.as_mut().expect("a batch in flight");
        f.req = req;
        let (part, bytes, serial, ids) = (f.part, f.bytes.clone(), f.serial, f.ids.clone());
        if acks == 0 {
            // Fire and forget: the producer moves on at once.
            p.inflight = None;
        }
        self.requests.insert(
            req,
            ProduceReq {
                part,
                serial,
                ids,
                acks,
            },
        );
        self.log(format!(
            "send c{c} req{req} batch{serial} p{part} acks={acks}"
        ));
        let inc = self.node.incarnation;
        self.deliver(Event::Produce {
            client: c,
            req,
            part,
            bytes,
            acks,
            inc,
        });
        if acks == 0 {
            let d = self.work.range(1, 30);
            self.at(d, Event::Tick(c));
        } else {
            self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
        }
    }

    fn produce_reply(
        &mut self,
        client: usize,
        req: u64,
        result: ProduceResult,
        inc: u32,
    ) -> Verdict {
        if self.node.incarnation != inc {
            self.log(format!(
                "produce reply c{client} req{req} lost: connection reset"
            ));
            return Ok(());
        }
        let info = self
            .requests
            .remove(&req)
            .expect("reply to a known request");
        self.log(format!(
            "produce reply c{client} req{req} batch{} {result:?}",
            info.serial
        ));
        let current = matches!(&self.clients[client], Client::Producer(p) if p.inflight.as_ref().is_some_and(|f| f.serial == info.serial));
        match result {
            ProduceResult::Ok {
                base_offset,
                last_offset,
            } => {
                self.history
                    .on_ack(info.part, &info.ids, base_offset, last_offset, info.acks)?;
                if current {
                    self.finish_batch(client);
                }
            }
            ProduceResult::Err(_) => {
                let latest = matches!(&self.clients[client], Client::Producer(p) if p.inflight.as_ref().is_some_and(|f| f.req == req));
                if latest {
                    self.retry_or_give_up(client, RETRY_BACKOFF_MS);
                }
            }
        }
        self.check_quiet()
    }

    fn finish_batch(&mut self, c: usize) {
        if let Client::Producer(p) = &mut self.clients[c] {
            p.inflight = None;
        }
        let d = self.work.range(1, 30);
        self.at(d, Event::Tick(c));
    }

    fn retry_or_give_up(&mut self, c: usize, delay_ms: u64) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        if p.shape.idempotent || self.swarm.retries {
            if delay_ms == 0 {
                self.send(c);
            } else {
                // Mark the attempt superseded so its timeout is ignored, then resend after a backoff.
                if let Some(f) = p.inflight.as_mut() {
                    f.req = u64::MAX;
                }
                self.at(
                    delay_ms,
                    Event::Timeout {
                        client: c,
                        req: u64::MAX,
                    },
                );
            }
        } else {
            self.log(format!("c{c} gives up its batch"));
            self.finish_batch(c);
        }
    }

    fn timeout(&mut self, c: usize, req: u64) -> Verdict {
        match &mut self.clients[c] {
            Client::Producer(p) => {
                if p.inflight.as_ref().is_some_and(|f| f.req == req) {
                    self.log(format!("timeout c{c} req{req}"));
                    self.retry_or_give_up(c, 0);
                }
            }
            Client::Fetcher(f) => {
                if f.waiting == Some(req) {
                    f.waiting = None;
                    self.log(format!("timeout c{c} req{req}"));
                    self.at(0, Event::Tick(c));
                }
            }
        }
        Ok(())
    }
}
