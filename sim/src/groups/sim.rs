//! The consumer-group driver: the coordinator (skein-core's coordinator runtime per node over a
//! simulated offsets partition, see [`coord`]), the consumers (Kafka clients with an eager assignor), the producer that grows
//! the high watermarks, the network, the faults and the checkers (see the module doc of
//! [`super`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;

use skein_core::group::{GroupConfig, GroupError, Join, Joined};
use skein_core::offsets::OffsetValue;

use super::assignor::{assign, decode_assignment, encode_subscription, TOPIC};
use super::fencing::StaticFencing;
use super::swarm::GroupsSwarm;
use super::{GroupsCanary, Stats};
use crate::checker::{violation, Violation};
use crate::harness::{Gate, Plan, TraceHasher};
use crate::rng::Rng;

#[path = "check.rs"]
mod check;
#[path = "coord.rs"]
mod coord;

use coord::Coord;

const COORD_TICK_MS: u64 = 50;
const REQUEST_TIMEOUT_MS: u64 = 2_000;
const RETRY_MS: u64 = 100;
const QUIET_MS: u64 = 45_000;
const TAIL: usize = 40;
/// Most duplicate processes one run starts.
const MAX_DUPLICATES: u64 = 6;

type Res = Result<(), Violation>;

/// A consumer: (group index, member index).
type Cid = (usize, usize);

/// Why a request failed as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Group(GroupError),
    NotCoordinator,
    /// A commit's write failed or timed out: it may still be applied later.
    Unknown,
}

/// A request from a consumer to the coordinator.
#[derive(Debug, Clone)]
enum Body {
    Find,
    Join(Box<Join>),
    Sync {
        member: String,
        instance: Option<String>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    },
    Heartbeat {
        member: String,
        instance: Option<String>,
        generation: i32,
    },
    Commit {
        member: String,
        instance: Option<String>,
        generation: i32,
        offsets: Vec<(i32, i64)>,
    },
    Fetch {
        parts: Vec<i32>,
    },
    Leave {
        member: String,
    },
}

/// The coordinator's answer.
#[derive(Debug, Clone)]
enum Resp {
    Find(Result<(), Fail>),
    Join(Result<Joined, (Fail, String)>),
    Sync(Result<Vec<u8>, Fail>),
    Heartbeat(Result<(), Fail>),
    Commit(Result<(), Fail>),
    Fetch(Result<BTreeMap<i32, i64>, Fail>),
    Leave,
}

impl Resp {
    /// The NOT_COORDINATOR answer of a request of this kind.
    fn not_coordinator(body: &Body) -> Resp {
        let e = Fail::NotCoordinator;
        match body {
            Body::Find => Resp::Find(Err(e)),
            Body::Join(_) => Resp::Join(Err((e, String::new()))),
            Body::Sync { .. } => Resp::Sync(Err(e)),
            Body::Heartbeat { .. } => Resp::Heartbeat(Err(e)),
            Body::Commit { .. } => Resp::Commit(Err(e)),
            Body::Fetch { .. } => Resp::Fetch(Err(e)),
            Body::Leave { .. } => Resp::Leave,
        }
    }

    fn code(&self) -> u8 {
        match self {
            Resp::Find(r) => r.is_ok() as u8,
            Resp::Join(r) => 2 + r.is_ok() as u8,
            Resp::Sync(r) => 4 + r.is_ok() as u8,
            Resp::Heartbeat(r) => 6 + r.is_ok() as u8,
            Resp::Commit(r) => 8 + r.is_ok() as u8,
            Resp::Fetch(r) => 10 + r.is_ok() as u8,
            Resp::Leave => 12,
        }
    }
}

#[derive(Debug, Clone)]
enum Ev {
    ToCoord {
        cid: Cid,
        pid: u64,
        conn: u64,
        req: u64,
        body: Body,
    },
    ToClient {
        cid: Cid,
        conn: u64,
        req: u64,
        resp: Resp,
    },
    Replicated {
        epoch: u64,
        upto: usize,
    },
    CoordTick {
        node: usize,
    },
    CoordUp {
        epoch: u64,
    },
    Heartbeat {
        cid: Cid,
        inc: u64,
    },
    Work {
        cid: Cid,
        inc: u64,
    },
    Timeout {
        cid: Cid,
        inc: u64,
        req: u64,
    },
    Retry {
        cid: Cid,
        inc: u64,
    },
    Produce,
    Fault,
    Restart {
        cid: Cid,
    },
    Heal,
}

impl Ev {
    /// The consumer this event happens at, if any (paused consumers defer it).
    fn client(&self) -> Option<Cid> {
        match self {
            Ev::ToClient { cid, .. }
            | Ev::Heartbeat { cid, .. }
            | Ev::Work { cid, .. }
            | Ev::Timeout { cid, .. }
            | Ev::Retry { cid, .. } => Some(*cid),
            _ => None,
        }
    }

    /// A digest for the trace hash.
    fn key(&self) -> (u8, u64, u64) {
        let c = |cid: &Cid| (cid.0 * 16 + cid.1) as u64;
        match self {
            Ev::ToCoord { cid, req, .. } => (0, c(cid), *req),
            Ev::ToClient { cid, req, resp, .. } => (1 + resp.code(), c(cid), *req),
            Ev::Replicated { epoch, upto } => (20, *epoch, *upto as u64),
            Ev::CoordTick { node } => (21, *node as u64, 0),
            Ev::CoordUp { epoch } => (22, *epoch, 0),
            Ev::Heartbeat { cid, inc } => (23, c(cid), *inc),
            Ev::Work { cid, inc } => (24, c(cid), *inc),
            Ev::Timeout { cid, req, .. } => (25, c(cid), *req),
            Ev::Retry { cid, inc } => (26, c(cid), *inc),
            Ev::Produce => (27, 0, 0),
            Ev::Fault => (28, 0, 0),
            Ev::Restart { cid } => (29, c(cid), 0),
            Ev::Heal => (30, 0, 0),
        }
    }
}

/// Where a consumer is in its group membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Crashed or departed.
    Down,
    /// Wants to (re)join: sends JoinGroup once no commit is in flight.
    Join,
    /// Joined; SyncGroup sent or due.
    Sync,
    /// Assigned; OffsetFetch sent or due.
    Fetch,
    /// Consuming its assignment.
    Stable,
}

/// One consumer process (a new incarnation after each restart).
#[derive(Debug, Clone)]
struct Client {
    inc: u64,
    /// The process (unique in the run; a duplicate keeps its own when it moves to a new slot).
    pid: u64,
    /// A duplicate: the process that went on running after a new one was started with its
    /// group.instance.id (in a slot of its own). It never restarts once it stops.
    zombie: bool,
    paused_until: Option<u64>,
    instance: Option<String>,
    member: String,
    generation: i32,
    phase: Phase,
    /// Knows the coordinator (FindCoordinator answered on the current connection).
    coord: bool,
    /// The connection; replies on an older one are lost (it was closed).
    conn: u64,
    find_req: Option<u64>,
    join_req: Option<u64>,
    sync_req: Option<u64>,
    hb_req: Option<u64>,
    commit_req: Option<u64>,
    fetch_req: Option<u64>,
    /// As leader: the assignments to send with SyncGroup.
    leader_assign: Vec<(String, Vec<u8>)>,
    assignment: Vec<i32>,
    pos: BTreeMap<i32, i64>,
    /// The largest generation a commit of which has an unknown outcome (its connection closed
    /// before the answer; the request may still arrive and be accepted). Commit only in later
    /// generations: a rejoin may give the same generation back, and a failover may bring an
    /// older one back (a completed join is stored only with its assignment), and a commit of
    /// ours in it could land before the lost one and be overwritten by an older position. Real
    /// clients do not take this care; without it the committed offset can move backwards in
    /// Kafka too, by a late request from a closed connection.
    suspect: Option<i32>,
}

impl Client {
    fn new(instance: Option<String>) -> Client {
        Client {
            inc: 0,
            pid: 0,
            zombie: false,
            paused_until: None,
            instance,
            member: String::new(),
            generation: -1,
            phase: Phase::Join,
            coord: false,
            conn: 0,
            find_req: None,
            join_req: None,
            sync_req: None,
            hb_req: None,
            commit_req: None,
            fetch_req: None,
            leader_assign: Vec::new(),
            assignment: Vec::new(),
            pos: BTreeMap::new(),
            suspect: None,
        }
    }

    /// Whether it may commit in its generation.
    fn may_commit(&self) -> bool {
        self.suspect.is_none_or(|s| self.generation > s)
    }

    /// Who owns a partition, for the checker: the static instance (a restarted process takes
    /// its predecessor's place and assignment), or this process.
    fn identity(&self, cid: Cid) -> String {
        self.instance
            .clone()
            .unwrap_or_else(|| format!("c{}.{}#{}", cid.0, cid.1, self.inc))
    }
}

/// The simulation of one seed.
pub struct GroupsSim {
    /// The drawn shape.
    pub swarm: GroupsSwarm,
    /// Steps taken.
    pub steps: u64,
    /// Simulated time (ms).
    pub now: u64,
    canary: Option<GroupsCanary>,
    rng: Rng,
    net_rng: Rng,
    /// Draws of the duplicate-process faults (a stream of their own, so runs without them
    /// are what they were before duplicates existed).
    dup_rng: Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    next_req: u64,
    next_pid: u64,
    coord: Coord,
    clients: Vec<Vec<Client>>,
    /// Crashed or departed consumers waiting for their restart.
    away: BTreeSet<Cid>,
    /// The producer's high watermark of each partition.
    hw: Vec<i64>,
    /// FIFO connections: when the last message sent on (consumer, connection, to the
    /// coordinator) arrives.
    links: BTreeMap<(Cid, u64, bool), u64>,
    healed: bool,
    // checker state
    /// Per (group, generation): the owner of each partition SyncGroup answers handed out.
    owners: BTreeMap<(usize, i32), BTreeMap<i32, String>>,
    /// Per group: the largest generation a SyncGroup answer was sent for.
    synced_gen: BTreeMap<usize, i32>,
    /// Per (group, partition): the committed offset last seen.
    committed: BTreeMap<(usize, i32), i64>,
    /// Log offsets of admin resets (a committed offset may move backwards there).
    resets: BTreeSet<usize>,
    fencing: StaticFencing,
    /// A violation found where a `Res` cannot be returned (reported after the step).
    found: Option<Violation>,
    stats: Stats,
    hasher: TraceHasher,
    /// Numbers faults and admin actions; lets through those the plan allows.
    gate: Gate,
    /// Where every event line goes as JSON (`--trace`).
    trace_out: Option<Box<dyn std::io::Write>>,
    tail: VecDeque<String>,
}

fn group_name(g: usize) -> String {
    format!("g{g}")
}

impl GroupsSim {
    /// A run of `seed`.
    pub fn new(
        seed: u64,
        canary: Option<GroupsCanary>,
        plan: &Plan,
        trace_out: Option<Box<dyn std::io::Write>>,
    ) -> GroupsSim {
        let mut root = Rng::new(seed);
        let mut swarm = GroupsSwarm::draw(&mut root.fork());
        if let Some(ms) = plan.safety_ms {
            swarm.safety_ms = ms;
        }
        let mut rng = root.fork();
        let net_rng = root.fork();
        let dup_rng = root.fork();
        let coord_rng = root.fork();
        let fail_rng = root.fork();
        let clients = swarm
            .members
            .iter()
            .enumerate()
            .map(|(g, n)| {
                (0..*n)
                    .map(|i| {
                        let stat = rng.below(1000) < swarm.static_pm;
                        Client::new(stat.then(|| format!("g{g}-i{i}")))
                    })
                    .collect()
            })
            .collect();
        let config = GroupConfig {
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: swarm.initial_delay_ms,
            max_size: usize::MAX,
        };
        let hw = vec![0; swarm.partitions];
        let mut s = GroupsSim {
            swarm,
            steps: 0,
            now: 0,
            canary,
            rng,
            net_rng,
            dup_rng,
            queue: BTreeMap::new(),
            seq: 0,
            next_req: 0,
            next_pid: 0,
            coord: Coord::new(config, coord_rng, fail_rng),
            clients,
            away: BTreeSet::new(),
            hw,
            links: BTreeMap::new(),
            healed: false,
            owners: BTreeMap::new(),
            synced_gen: BTreeMap::new(),
            committed: BTreeMap::new(),
            resets: BTreeSet::new(),
            fencing: StaticFencing::default(),
            found: None,
            stats: Stats::default(),
            hasher: TraceHasher::new(),
            gate: Gate::new(plan.allowed.clone()),
            trace_out,
            tail: VecDeque::new(),
        };
        for c in s.clients.iter_mut().flatten() {
            s.next_pid += 1;
            c.pid = s.next_pid;
        }
        s
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    fn note(&mut self, text: String) {
        (self.now, &text).hash(&mut self.hasher);
        if let Some(out) = &mut self.trace_out {
            let obj = serde_json::json!({ "t": self.now, "event": text });
            let _ = writeln!(out, "{obj}");
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(format!("t={} {text}", self.now));
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

    /// Numbers of the faults and admin actions that went ahead.
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
        self.stats.clone()
    }

    /// The coordinator's groups and every consumer, one line each.
    pub fn status(&self) -> String {
        let mut out = format!(
            "t={} coordinator epoch={} log={} hw={} {}\n",
            self.now,
            self.coord.epoch,
            self.coord.log.len(),
            self.coord.hw,
            if self.coord.shard().is_some() {
                "up"
            } else {
                "loading"
            }
        );
        let _ = writeln!(out, "  data hw={:?}", self.hw);
        if let Some(shard) = self.coord.shard() {
            for g in shard.groups() {
                let members: Vec<String> = g
                    .members()
                    .map(|m| format!("{}:{:?}", m.id, decode_assignment(&m.assignment)))
                    .collect();
                let offs: Vec<String> = shard
                    .offsets(g.id())
                    .map(|((_, p), c)| format!("p{p}={}", c.value.offset))
                    .collect();
                let _ = writeln!(
                    out,
                    "  group {} {} gen={} leader={:?} members=[{}] offsets=[{}]",
                    g.id(),
                    g.state().name(),
                    g.generation(),
                    g.leader(),
                    members.join(" "),
                    offs.join(" ")
                );
            }
        }
        for (g, cs) in self.clients.iter().enumerate() {
            for (i, c) in cs.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  c{g}.{i} {:?}{} member={} gen={} coord={} assigned={:?}{}",
                    c.phase,
                    if c.paused_until.is_some() {
                        " paused"
                    } else {
                        ""
                    },
                    c.member,
                    c.generation,
                    c.coord,
                    c.assignment,
                    if c.suspect.is_some() { " suspect" } else { "" }
                );
            }
        }
        out
    }

    fn cl(&mut self, cid: Cid) -> &mut Client {
        &mut self.clients[cid.0][cid.1]
    }

    fn live(&self, cid: Cid) -> bool {
        self.clients[cid.0][cid.1].phase != Phase::Down
    }

    // ---------------------------------------------------------------- network

    /// Sends on the FIFO connection `conn` of `cid`, in one direction.
    fn send(&mut self, cid: Cid, conn: u64, to_coord: bool, ev: Ev) {
        if !self.healed && self.net_rng.below(1000) < self.swarm.drop_pm {
            return;
        }
        let mut d = self.net_rng.range(1, self.swarm.delay_max_ms);
        if !self.healed && self.net_rng.below(1000) < self.swarm.spike_pm {
            d += self.net_rng.range(0, self.swarm.spike_ms);
        }
        let key = (cid, conn, to_coord);
        let t = (self.now + d).max(self.links.get(&key).copied().unwrap_or(0));
        self.links.insert(key, t);
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn reply(&mut self, cid: Cid, conn: u64, req: u64, resp: Resp) {
        self.send(
            cid,
            conn,
            false,
            Ev::ToClient {
                cid,
                conn,
                req,
                resp,
            },
        );
    }

    // ---------------------------------------------------------------- the loop

    /// Runs the faulty phase, heals, runs the quiet phase and checks the end state.
    pub fn run(&mut self) -> Res {
        for g in 0..self.clients.len() {
            for i in 0..self.clients[g].len() {
                let cid = (g, i);
                let (h, w) = (self.rng.range(0, 300), self.rng.range(0, 300));
                self.at(h, Ev::Heartbeat { cid, inc: 0 });
                self.at(w, Ev::Work { cid, inc: 0 });
                self.act(cid);
            }
        }
        self.coord_up(0)?;
        self.at(10, Ev::Produce);
        self.at(500, Ev::Fault);
        self.at(self.swarm.safety_ms, Ev::Heal);
        let end = self.swarm.safety_ms + QUIET_MS;
        while let Some((&(t, s), _)) = self.queue.iter().next() {
            if t > end {
                break;
            }
            let ev = self.queue.remove(&(t, s)).expect("present");
            self.now = t;
            if let Some(cid) = ev.client() {
                if !self.live(cid) {
                    continue;
                }
                if let Some(until) = self.clients[cid.0][cid.1].paused_until {
                    if until > self.now {
                        let wait = until - self.now;
                        self.at(wait, ev);
                        continue;
                    }
                    self.cl(cid).paused_until = None;
                }
            }
            self.steps += 1;
            (self.now, ev.key()).hash(&mut self.hasher);
            if let Some(out) = &mut self.trace_out {
                let obj = serde_json::json!({ "t": self.now, "step": self.steps, "event": format!("{ev:?}") });
                let _ = writeln!(out, "{obj}");
            }
            self.step(ev)?;
            self.check_step()?;
        }
        self.now = end;
        self.check_end()
    }

    fn step(&mut self, ev: Ev) -> Res {
        match ev {
            Ev::ToCoord {
                cid,
                pid,
                conn,
                req,
                body,
            } => self.coord_recv((cid, pid), conn, req, body)?,
            Ev::ToClient {
                cid,
                conn,
                req,
                resp,
            } => {
                if self.clients[cid.0][cid.1].conn == conn {
                    self.client_recv(cid, req, resp)?;
                }
            }
            Ev::Replicated { epoch, upto } => self.replicated(epoch, upto)?,
            Ev::CoordTick { node } => self.coord_tick(node),
            Ev::CoordUp { epoch } => self.coord_up(epoch)?,
            Ev::Heartbeat { cid, inc } => {
                if self.clients[cid.0][cid.1].inc == inc {
                    self.heartbeat(cid);
                    self.at(self.swarm.session_ms / 3, Ev::Heartbeat { cid, inc });
                }
            }
            Ev::Work { cid, inc } => {
                if self.clients[cid.0][cid.1].inc == inc {
                    self.work(cid);
                    let gap = self
                        .rng
                        .range(self.swarm.commit_gap_ms / 2, self.swarm.commit_gap_ms);
                    self.at(gap, Ev::Work { cid, inc });
                }
            }
            Ev::Timeout { cid, inc, req } => {
                let c = &self.clients[cid.0][cid.1];
                let outstanding = [
                    c.find_req,
                    c.join_req,
                    c.sync_req,
                    c.hb_req,
                    c.commit_req,
                    c.fetch_req,
                ]
                .contains(&Some(req));
                if c.inc == inc && outstanding {
                    self.note(format!("c{}.{} request {req} timed out", cid.0, cid.1));
                    self.conn_lost(cid);
                }
            }
            Ev::Retry { cid, inc } => {
                if self.clients[cid.0][cid.1].inc == inc {
                    self.act(cid);
                }
            }
            Ev::Produce => {
                let p = self.rng.below(self.swarm.partitions as u64) as usize;
                self.hw[p] += self.rng.range(1, 10) as i64;
                if !self.healed {
                    let gap = self.rng.range(1, self.swarm.produce_gap_ms);
                    self.at(gap, Ev::Produce);
                }
            }
            Ev::Fault => {
                if !self.healed {
                    self.fault();
                    self.maybe_duplicate();
                    let gap = self.rng.range(1, self.swarm.fault_gap_ms);
                    self.at(gap, Ev::Fault);
                }
            }
            Ev::Restart { cid } => self.restart(cid),
            Ev::Heal => self.heal(),
        }
        Ok(())
    }

    // ---------------------------------------------------------------- faults

    fn pick_live(&mut self) -> Option<Cid> {
        let live: Vec<Cid> = (0..self.clients.len())
            .flat_map(|g| (0..self.clients[g].len()).map(move |i| (g, i)))
            .filter(|c| self.live(*c) && !self.clients[c.0][c.1].zombie)
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(live[self.rng.below(live.len() as u64) as usize])
    }

    fn fault(&mut self) {
        let r = self.rng.below(1000);
        let sw = self.swarm.clone();
        let mut acc = sw.crash_pm;
        if r < acc {
            if let Some(cid) = self.pick_live().filter(|_| self.go("crash")) {
                self.note(format!("c{}.{} crashes", cid.0, cid.1));
                self.stats.crashes += 1;
                self.take_down(cid);
            }
            return;
        }
        acc += sw.pause_pm;
        if r < acc {
            if let Some(cid) = self.pick_live() {
                if self.clients[cid.0][cid.1].paused_until.is_none() {
                    let d = self.rng.range(100, sw.pause_max_ms);
                    if !self.go("pause") {
                        return;
                    }
                    self.note(format!("c{}.{} pauses for {d} ms", cid.0, cid.1));
                    self.stats.pauses += 1;
                    self.cl(cid).paused_until = Some(self.now + d);
                }
            }
            return;
        }
        acc += sw.leave_pm;
        if r < acc {
            if let Some(cid) = self.pick_live().filter(|_| self.go("leave")) {
                self.leave(cid);
            }
            return;
        }
        acc += sw.failover_pm;
        if r < acc {
            if self.coord.shard().is_some() && self.go("failover") {
                self.failover();
            }
            return;
        }
        acc += sw.reset_pm;
        if r < acc {
            let g = self.rng.below(self.clients.len() as u64) as usize;
            self.admin_reset(g);
        }
    }

    /// The process is gone (crash, clean leave or fencing); it restarts later.
    fn take_down(&mut self, cid: Cid) {
        if self.clients[cid.0][cid.1].zombie {
            // A duplicate that stops is gone for good.
            let c = self.cl(cid);
            c.phase = Phase::Down;
            c.inc += 1;
            c.conn += 1;
            return;
        }
        self.next_pid += 1;
        let pid = self.next_pid;
        let c = self.cl(cid);
        let instance = c.instance.clone();
        let inc = c.inc + 1;
        let conn = c.conn + 1;
        *c = Client::new(instance);
        c.inc = inc;
        c.pid = pid;
        c.conn = conn;
        c.phase = Phase::Down;
        self.away.insert(cid);
        if !self.healed {
            let d = self.rng.range(100, self.swarm.away_max_ms);
            self.at(d, Ev::Restart { cid });
        }
    }

    fn restart(&mut self, cid: Cid) {
        if !self.away.remove(&cid) {
            return;
        }
        self.note(format!("c{}.{} starts", cid.0, cid.1));
        let c = self.cl(cid);
        c.phase = Phase::Join;
        let inc = c.inc;
        self.at(self.swarm.session_ms / 3, Ev::Heartbeat { cid, inc });
        self.at(50, Ev::Work { cid, inc });
        self.act(cid);
    }

    /// A clean close: commit (if it may), LeaveGroup (dynamic members only: static members do
    /// not leave on close), gone.
    fn leave(&mut self, cid: Cid) {
        let c = self.clients[cid.0][cid.1].clone();
        self.note(format!("c{}.{} leaves", cid.0, cid.1));
        self.stats.leaves += 1;
        if c.coord && c.phase == Phase::Stable && c.may_commit() && c.commit_req.is_none() {
            self.send_commit(cid);
        }
        if c.coord && c.instance.is_none() && !c.member.is_empty() {
            let member = c.member.clone();
            self.send_req(cid, Body::Leave { member }, REQUEST_TIMEOUT_MS);
        }
        self.take_down(cid);
    }

    /// Sometimes (the swarm's `dup_pm` per fault tick) a second process is started with a
    /// live static member's group.instance.id while the first goes on running, as when an
    /// operator starts a replacement without stopping the old one: the old process moves to a
    /// slot of its own (a zombie: it keeps heartbeating, syncing and committing as it did,
    /// its requests in flight lost as on a new connection), and the slot starts the new one
    /// after a restart delay.
    fn maybe_duplicate(&mut self) {
        if self.dup_rng.below(1000) >= self.swarm.dup_pm || self.stats.duplicates >= MAX_DUPLICATES
        {
            return;
        }
        let cands: Vec<Cid> = (0..self.clients.len())
            .flat_map(|g| (0..self.clients[g].len()).map(move |i| (g, i)))
            .filter(|&(g, i)| {
                let c = &self.clients[g][i];
                c.phase != Phase::Down && !c.zombie && c.instance.is_some()
            })
            .collect();
        if cands.is_empty() {
            return;
        }
        let cid = cands[self.dup_rng.below(cands.len() as u64) as usize];
        if !self.go("duplicate") {
            return;
        }
        let mut z = self.clients[cid.0][cid.1].clone();
        z.zombie = true;
        let zc = (cid.0, self.clients[cid.0].len());
        self.clients[cid.0].push(z);
        self.note(format!(
            "c{}.{} gets a duplicate: the running process goes on as c{}.{}",
            cid.0, cid.1, zc.0, zc.1
        ));
        self.stats.duplicates += 1;
        self.conn_lost(zc);
        let inc = self.clients[zc.0][zc.1].inc;
        self.at(self.swarm.session_ms / 3, Ev::Heartbeat { cid: zc, inc });
        self.at(50, Ev::Work { cid: zc, inc });
        self.take_down(cid);
    }

    fn heal(&mut self) {
        self.note("heal: no more faults, loss or spikes; everyone restarts".into());
        self.healed = true;
        let away: Vec<Cid> = self.away.iter().copied().collect();
        for cid in away {
            self.restart(cid);
        }
    }

    // ---------------------------------------------------------------- coordinator

    // ---------------------------------------------------------------- consumers

    fn send_req(&mut self, cid: Cid, body: Body, timeout_ms: u64) -> u64 {
        self.next_req += 1;
        let req = self.next_req;
        let c = &self.clients[cid.0][cid.1];
        let (conn, inc, pid) = (c.conn, c.inc, c.pid);
        self.send(
            cid,
            conn,
            true,
            Ev::ToCoord {
                cid,
                pid,
                conn,
                req,
                body,
            },
        );
        self.at(timeout_ms, Ev::Timeout { cid, inc, req });
        req
    }

    /// Sends what the consumer's phase calls for, if nothing of that kind is in flight.
    fn act(&mut self, cid: Cid) {
        let c = self.clients[cid.0][cid.1].clone();
        if c.phase == Phase::Down {
            return;
        }
        if !c.coord {
            if c.find_req.is_none() {
                let r = self.send_req(cid, Body::Find, REQUEST_TIMEOUT_MS);
                self.cl(cid).find_req = Some(r);
            }
            return;
        }
        match c.phase {
            Phase::Join if c.join_req.is_none() && c.commit_req.is_none() => {
                let sub = encode_subscription(TOPIC);
                let j = Join {
                    member_id: c.member.clone(),
                    instance_id: c.instance.clone(),
                    // One client.id for the whole group, as an application deployed on many
                    // hosts sets it: member ids must be unique without help from it.
                    client_id: format!("consumer-g{}", cid.0),
                    client_host: "/10.0.0.1".into(),
                    session_timeout_ms: self.swarm.session_ms as i32,
                    rebalance_timeout_ms: self.swarm.rebalance_ms as i32,
                    protocol_type: "consumer".into(),
                    protocols: vec![(self.swarm.assignor.name().to_string(), sub)],
                    require_known_member_id: true,
                };
                let t = self.swarm.rebalance_ms + REQUEST_TIMEOUT_MS;
                let r = self.send_req(cid, Body::Join(Box::new(j)), t);
                self.cl(cid).join_req = Some(r);
            }
            Phase::Sync if c.sync_req.is_none() => {
                let body = Body::Sync {
                    member: c.member.clone(),
                    instance: c.instance.clone(),
                    generation: c.generation,
                    assignments: c.leader_assign.clone(),
                };
                let r = self.send_req(cid, body, REQUEST_TIMEOUT_MS);
                self.cl(cid).sync_req = Some(r);
            }
            Phase::Fetch if c.fetch_req.is_none() => {
                let body = Body::Fetch {
                    parts: c.assignment.clone(),
                };
                let r = self.send_req(cid, body, REQUEST_TIMEOUT_MS);
                self.cl(cid).fetch_req = Some(r);
            }
            _ => {}
        }
    }

    /// The connection is closed (a timeout or NOT_COORDINATOR): every request on it is lost;
    /// find the coordinator again on a new one.
    fn conn_lost(&mut self, cid: Cid) {
        let c = self.cl(cid);
        c.conn += 1;
        c.coord = false;
        c.find_req = None;
        c.hb_req = None;
        c.fetch_req = None;
        if c.commit_req.take().is_some() {
            c.suspect = c.suspect.max(Some(c.generation));
        }
        c.join_req = None;
        if c.sync_req.take().is_some() {
            c.phase = Phase::Join;
        }
        let suspect_stable = !c.may_commit() && matches!(c.phase, Phase::Stable | Phase::Fetch);
        if suspect_stable {
            self.rejoin(cid, false);
        }
        let inc = self.clients[cid.0][cid.1].inc;
        self.at(RETRY_MS, Ev::Retry { cid, inc });
    }

    /// Gives the assignment up and joins again; with `commit`, commits the positions first
    /// (the generation is still valid: eager revocation).
    fn rejoin(&mut self, cid: Cid, commit: bool) {
        let c = &self.clients[cid.0][cid.1];
        if commit
            && c.phase == Phase::Stable
            && c.coord
            && c.may_commit()
            && c.commit_req.is_none()
            && !c.assignment.is_empty()
        {
            self.send_commit(cid);
        }
        let c = self.cl(cid);
        c.assignment.clear();
        c.pos.clear();
        c.leader_assign.clear();
        c.phase = Phase::Join;
        c.sync_req = None;
        c.fetch_req = None;
        self.act(cid);
    }

    fn send_commit(&mut self, cid: Cid) {
        let c = &self.clients[cid.0][cid.1];
        let offsets: Vec<(i32, i64)> = c.assignment.iter().map(|p| (*p, c.pos[p])).collect();
        let body = Body::Commit {
            member: c.member.clone(),
            instance: c.instance.clone(),
            generation: c.generation,
            offsets,
        };
        let r = self.send_req(cid, body, REQUEST_TIMEOUT_MS);
        self.cl(cid).commit_req = Some(r);
    }

    fn heartbeat(&mut self, cid: Cid) {
        let c = &self.clients[cid.0][cid.1];
        if c.coord && c.hb_req.is_none() && matches!(c.phase, Phase::Stable | Phase::Fetch) {
            let body = Body::Heartbeat {
                member: c.member.clone(),
                instance: c.instance.clone(),
                generation: c.generation,
            };
            let t = (self.swarm.session_ms / 2).min(REQUEST_TIMEOUT_MS);
            let r = self.send_req(cid, body, t);
            self.cl(cid).hb_req = Some(r);
        }
    }

    /// Consumes up to the high watermark and sometimes commits.
    fn work(&mut self, cid: Cid) {
        if self.clients[cid.0][cid.1].phase != Phase::Stable {
            return;
        }
        let parts = self.clients[cid.0][cid.1].assignment.clone();
        for p in parts {
            let step = self.rng.range(0, 20) as i64;
            let hw = self.hw[p as usize];
            let pos = self.cl(cid).pos.entry(p).or_insert(0);
            *pos = (*pos + step).min(hw).max(*pos);
        }
        let c = &self.clients[cid.0][cid.1];
        if c.coord && c.may_commit() && c.commit_req.is_none() && !c.assignment.is_empty() {
            self.send_commit(cid);
        }
    }

    /// Forgets the member id and generation (UNKNOWN_MEMBER_ID) or the generation only.
    fn reset_membership(&mut self, cid: Cid, member_too: bool) {
        let c = self.cl(cid);
        if member_too {
            c.member.clear();
        }
        c.generation = -1;
    }

    fn client_recv(&mut self, cid: Cid, req: u64, resp: Resp) -> Res {
        let name = format!("c{}.{}", cid.0, cid.1);
        let c = self.clients[cid.0][cid.1].clone();
        match resp {
            Resp::Find(r) => {
                if c.find_req != Some(req) {
                    return Ok(());
                }
                self.cl(cid).find_req = None;
                match r {
                    Ok(()) => {
                        self.cl(cid).coord = true;
                        self.act(cid);
                    }
                    Err(_) => self.at(RETRY_MS, Ev::Retry { cid, inc: c.inc }),
                }
            }
            Resp::Join(r) => {
                if c.join_req != Some(req) {
                    return Ok(());
                }
                self.cl(cid).join_req = None;
                match r {
                    Ok(j) => {
                        self.note(format!(
                            "{name} joined {} gen {} leader {}",
                            j.member_id, j.generation, j.leader
                        ));
                        let leader_assign = if j.leader == j.member_id {
                            assign(self.swarm.assignor, &j.members, self.swarm.partitions)
                        } else {
                            Vec::new()
                        };
                        let c = self.cl(cid);
                        c.member = j.member_id;
                        c.generation = j.generation;
                        c.leader_assign = leader_assign;
                        c.phase = Phase::Sync;
                        self.act(cid);
                    }
                    Err((Fail::Group(GroupError::MemberIdRequired), id)) => {
                        self.cl(cid).member = id;
                        self.act(cid);
                    }
                    Err((Fail::Group(GroupError::UnknownMemberId), _)) => {
                        self.reset_membership(cid, true);
                        self.act(cid);
                    }
                    Err((Fail::Group(GroupError::RebalanceInProgress), _)) => self.act(cid),
                    Err((Fail::Group(GroupError::FencedInstanceId), _)) => self.fenced(cid),
                    Err((Fail::NotCoordinator | Fail::Unknown, _)) => self.conn_lost(cid),
                    Err((Fail::Group(e), _)) => {
                        return Err(violation(
                            "client-error",
                            format!("{name}: JoinGroup failed with {e:?}"),
                        ))
                    }
                }
            }
            Resp::Sync(r) => {
                if c.sync_req != Some(req) {
                    return Ok(());
                }
                self.cl(cid).sync_req = None;
                match r {
                    Ok(bytes) => {
                        let parts = decode_assignment(&bytes);
                        self.note(format!(
                            "{name} {} gen {} assigned {parts:?}",
                            c.member, c.generation
                        ));
                        self.stats.syncs += 1;
                        let who = c.identity(cid);
                        let owned = self.owners.entry((cid.0, c.generation)).or_default();
                        for p in &parts {
                            if let Some(other) = owned.get(p) {
                                if *other != who {
                                    return Err(violation(
                                        "one-owner-per-generation",
                                        format!(
                                            "g{} generation {}: partition {p} assigned to {other} \
                                             and to {who}",
                                            cid.0, c.generation
                                        ),
                                    ));
                                }
                            }
                            owned.insert(*p, who.clone());
                        }
                        let c = self.cl(cid);
                        c.assignment = parts;
                        c.phase = Phase::Fetch;
                        self.act(cid);
                    }
                    Err(Fail::Group(GroupError::RebalanceInProgress)) => self.rejoin(cid, false),
                    Err(Fail::Group(
                        e @ (GroupError::IllegalGeneration
                        | GroupError::UnknownMemberId
                        | GroupError::FencedInstanceId),
                    )) => self.lost_membership(cid, e, true),
                    Err(Fail::NotCoordinator | Fail::Unknown) => {
                        self.cl(cid).phase = Phase::Join;
                        self.conn_lost(cid);
                    }
                    Err(Fail::Group(e)) => {
                        return Err(violation(
                            "client-error",
                            format!("{name}: SyncGroup failed with {e:?}"),
                        ))
                    }
                }
            }
            Resp::Heartbeat(r) => {
                if c.hb_req != Some(req) {
                    return Ok(());
                }
                self.cl(cid).hb_req = None;
                let active = matches!(c.phase, Phase::Stable | Phase::Fetch);
                match r {
                    Ok(()) => {}
                    Err(Fail::NotCoordinator | Fail::Unknown) => self.conn_lost(cid),
                    Err(_) if !active => {}
                    Err(Fail::Group(GroupError::RebalanceInProgress)) => self.rejoin(cid, true),
                    Err(Fail::Group(
                        e @ (GroupError::IllegalGeneration
                        | GroupError::UnknownMemberId
                        | GroupError::FencedInstanceId),
                    )) => self.lost_membership(cid, e, true),
                    Err(Fail::Group(e)) => {
                        return Err(violation(
                            "client-error",
                            format!("{name}: Heartbeat failed with {e:?}"),
                        ))
                    }
                }
            }
            Resp::Commit(r) => {
                if c.commit_req != Some(req) {
                    return Ok(());
                }
                self.cl(cid).commit_req = None;
                let stable = c.phase == Phase::Stable;
                match r {
                    Ok(()) => {}
                    Err(Fail::NotCoordinator) => self.conn_lost(cid),
                    Err(Fail::Unknown) => {
                        // Its record may be in the log and applied later: as a lost answer.
                        let c = self.cl(cid);
                        c.suspect = c.suspect.max(Some(c.generation));
                        self.conn_lost(cid);
                    }
                    Err(Fail::Group(GroupError::RebalanceInProgress)) if stable => {
                        self.rejoin(cid, false)
                    }
                    Err(Fail::Group(
                        e @ (GroupError::IllegalGeneration
                        | GroupError::UnknownMemberId
                        | GroupError::FencedInstanceId),
                    )) => self.lost_membership(cid, e, stable),
                    Err(_) => {}
                }
                // A rejoin may have waited for this commit.
                self.act(cid);
            }
            Resp::Fetch(r) => {
                if c.fetch_req != Some(req) {
                    return Ok(());
                }
                self.cl(cid).fetch_req = None;
                match r {
                    Ok(map) => {
                        if c.phase == Phase::Fetch {
                            let c = self.cl(cid);
                            c.pos = c
                                .assignment
                                .iter()
                                .map(|p| (*p, map.get(p).copied().unwrap_or(0)))
                                .collect();
                            c.phase = Phase::Stable;
                        }
                    }
                    Err(_) => self.conn_lost(cid),
                }
            }
            Resp::Leave => {}
        }
        Ok(())
    }

    /// FENCED_INSTANCE_ID: a newer process took this static instance id; this one exits (and,
    /// as a supervisor would, starts again later).
    /// A client's answer to an error that ends its membership as it knew it: a stale
    /// generation forgets the generation, an unknown member its member id too (both rejoin if
    /// `rejoin`), a fenced static member stops.
    fn lost_membership(&mut self, cid: Cid, e: GroupError, rejoin: bool) {
        if e == GroupError::FencedInstanceId {
            self.fenced(cid);
            return;
        }
        self.reset_membership(cid, e == GroupError::UnknownMemberId);
        if rejoin {
            self.rejoin(cid, false);
        }
    }

    fn fenced(&mut self, cid: Cid) {
        self.note(format!("c{}.{} fenced", cid.0, cid.1));
        self.stats.fenced += 1;
        self.take_down(cid);
        if self.healed {
            self.at(100, Ev::Restart { cid });
        }
    }

    // ---------------------------------------------------------------- checkers
}

fn offset_value(offset: i64, now: u64) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_ms: now as i64,
    }
}
