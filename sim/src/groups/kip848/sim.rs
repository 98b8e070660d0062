//! The KIP-848 driver: one group held by skein-core's `ConsumerGroup`, members that speak
//! ConsumerGroupHeartbeat over FIFO connections that delay, stall and lose messages, and the
//! faults (crashes, clean leaves, pauses, subscription changes). The checkers are in
//! [`super::check`]; see [`super`] for the model.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Write as _;

use skein_core::consumer_group::{
    Beat, CgConfig, CgError, ConsumerGroup, Heartbeat, Tp, LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};

use super::swarm::Kip848Swarm;
use super::{Kip848Canary, Stats};
use crate::checker::Violation;
use crate::harness::{Gate, Plan, TraceHasher};
use crate::rng::Rng;

/// The topics members may subscribe to.
pub const TOPICS: [&str; 2] = ["t0", "t1"];
const TICK_MS: u64 = 50;
const REQUEST_TIMEOUT_MS: u64 = 1_000;
const RETRY_MS: u64 = 100;
/// Length of the quiet period that ends every run.
pub const QUIET_MS: u64 = 20_000;
const TAIL: usize = 40;

pub(super) type Res = Result<(), Violation>;

/// One member slot: the process now running in it (a restart is a new process with a new
/// member id; a static one keeps its group.instance.id).
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub(super) instance: Option<String>,
    /// Incarnation: events of an earlier process of this slot are dropped.
    pub(super) inc: u64,
    pub(super) up: bool,
    pub(super) member: String,
    pub(super) epoch: i32,
    /// Partitions the process works on.
    pub(super) owned: BTreeSet<Tp>,
    /// What it reports as owned (the same as `owned` unless the `keep-revoked` canary is on).
    pub(super) claims: BTreeSet<Tp>,
    pub(super) subscribed: Vec<String>,
    /// The next heartbeat carries subscription and owned partitions.
    full: bool,
    last_claims: Option<BTreeSet<Tp>>,
    last_sub: Option<Vec<String>>,
    outstanding: Option<u64>,
    paused_until: Option<u64>,
}

#[derive(Debug, Clone)]
enum Ev {
    /// The heartbeat timer of a process (it sets itself again).
    Beat {
        c: usize,
        inc: u64,
    },
    /// A heartbeat to send now (an acknowledgement, a rejoin, a retry).
    Now {
        c: usize,
        inc: u64,
    },
    ToCoord {
        c: usize,
        req: u64,
        hb: Heartbeat,
    },
    ToClient {
        c: usize,
        inc: u64,
        req: u64,
        res: Result<Beat, CgError>,
    },
    Timeout {
        c: usize,
        inc: u64,
        req: u64,
    },
    Tick,
    Fault,
    Restart {
        c: usize,
    },
    Heal,
}

impl Ev {
    fn client(&self) -> Option<(usize, u64)> {
        match self {
            Ev::Beat { c, inc }
            | Ev::Now { c, inc }
            | Ev::ToClient { c, inc, .. }
            | Ev::Timeout { c, inc, .. } => Some((*c, *inc)),
            _ => None,
        }
    }
}

/// The simulation of one seed.
pub struct Kip848Sim {
    /// The drawn shape.
    pub swarm: Kip848Swarm,
    /// Steps taken.
    pub steps: u64,
    /// Simulated time (ms).
    pub now: u64,
    canary: Option<Kip848Canary>,
    rng: Rng,
    net_rng: Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    next_req: u64,
    pub(super) group: ConsumerGroup,
    pub(super) topics: BTreeMap<String, i32>,
    pub(super) clients: Vec<Client>,
    /// When the last message on (client, to the coordinator) arrives (FIFO connections).
    links: BTreeMap<(usize, bool), u64>,
    healed: bool,
    /// Per member id: the largest epoch an answer gave it (checker state).
    pub(super) epochs: BTreeMap<String, i32>,
    pub(super) stats: Stats,
    gate: Gate,
    hasher: TraceHasher,
    tail: VecDeque<String>,
    trace_out: Option<Box<dyn std::io::Write>>,
}

impl Kip848Sim {
    /// A run of `seed` narrowed by `plan`.
    pub fn new(
        seed: u64,
        canary: Option<Kip848Canary>,
        plan: &Plan,
        trace_out: Option<Box<dyn std::io::Write>>,
    ) -> Kip848Sim {
        let mut root = Rng::new(seed);
        let mut swarm = Kip848Swarm::draw(&mut root.fork());
        if let Some(ms) = plan.safety_ms {
            swarm.safety_ms = ms;
        }
        let mut rng = root.fork();
        let net_rng = root.fork();
        let clients = (0..swarm.members)
            .map(|i| {
                let stat = rng.below(1000) < swarm.static_pm;
                Client {
                    instance: stat.then(|| format!("i{i}")),
                    inc: 0,
                    up: true,
                    member: format!("m{i}-0"),
                    epoch: 0,
                    owned: BTreeSet::new(),
                    claims: BTreeSet::new(),
                    subscribed: draw_subscription(&mut rng),
                    full: true,
                    last_claims: None,
                    last_sub: None,
                    outstanding: None,
                    paused_until: None,
                }
            })
            .collect();
        let config = CgConfig {
            session_timeout_ms: swarm.session_ms,
            heartbeat_interval_ms: swarm.heartbeat_ms as i32,
            max_size: usize::MAX,
        };
        let mut group = ConsumerGroup::new("g", config);
        group.set_canary(canary.and_then(Kip848Canary::core));
        let topics = TOPICS
            .iter()
            .zip(swarm.partitions)
            .map(|(t, n)| (t.to_string(), n))
            .collect();
        Kip848Sim {
            swarm,
            steps: 0,
            now: 0,
            canary,
            rng,
            net_rng,
            queue: BTreeMap::new(),
            seq: 0,
            next_req: 0,
            group,
            topics,
            clients,
            links: BTreeMap::new(),
            healed: false,
            epochs: BTreeMap::new(),
            stats: Stats::default(),
            gate: Gate::new(plan.allowed.clone()),
            hasher: TraceHasher::new(),
            tail: VecDeque::new(),
            trace_out,
        }
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    pub(super) fn note(&mut self, text: String) {
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

    /// A fault is about to happen: numbers it, and says whether the plan lets it go ahead.
    fn go(&mut self, what: &str) -> bool {
        let (n, ok) = self.gate.decide();
        if !ok {
            self.note(format!("decision #{n} ({what}) left out by the schedule"));
        }
        ok
    }

    /// Numbers of the faults that went ahead.
    pub fn decisions(&self) -> Vec<u64> {
        self.gate.taken().to_vec()
    }

    /// The stable trace hash.
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

    /// Flushes the `--trace` file.
    pub fn flush_trace(&mut self) {
        if let Some(out) = &mut self.trace_out {
            let _ = out.flush();
        }
    }

    /// The group and every process, one line each.
    pub fn status(&self) -> String {
        let g = &self.group;
        let mut s = format!(
            "group {} epoch={} assignment_epoch={}\n",
            g.state_name(),
            g.group_epoch(),
            g.assignment_epoch()
        );
        for m in g.members() {
            s += &format!(
                "  member {} epoch={} sub={:?} assigned={:?} revoking={:?}\n",
                m.id, m.epoch, m.subscribed, m.assigned, m.revoking
            );
        }
        for (i, c) in self.clients.iter().enumerate() {
            s += &format!(
                "  c{i} {} {} epoch={} sub={:?} owned={:?}\n",
                if c.up { "up" } else { "down" },
                c.member,
                c.epoch,
                c.subscribed,
                c.owned
            );
        }
        s
    }

    // ------------------------------------------------------------------ the loop

    /// Runs the faulty phase, heals, runs the quiet phase and checks the end state.
    pub fn run(&mut self) -> Res {
        for c in 0..self.clients.len() {
            let d = self.rng.range(0, 200);
            self.at(d, Ev::Beat { c, inc: 0 });
        }
        self.at(0, Ev::Tick);
        self.at(300, Ev::Fault);
        self.at(self.swarm.safety_ms, Ev::Heal);
        let end = self.swarm.safety_ms + QUIET_MS;
        while let Some((&(t, s), _)) = self.queue.iter().next() {
            if t > end {
                break;
            }
            let ev = self.queue.remove(&(t, s)).expect("present");
            self.now = t;
            if let Some((c, inc)) = ev.client() {
                let cl = &self.clients[c];
                if !cl.up || cl.inc != inc {
                    continue;
                }
                if let Some(until) = cl.paused_until {
                    if until > self.now {
                        let wait = until - self.now;
                        self.at(wait, ev);
                        continue;
                    }
                    self.clients[c].paused_until = None;
                }
            }
            self.steps += 1;
            (self.now, self.steps).hash(&mut self.hasher);
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
            Ev::Beat { c, inc } => {
                self.send_heartbeat(c);
                self.at(self.swarm.heartbeat_ms, Ev::Beat { c, inc });
            }
            Ev::Now { c, .. } => self.send_heartbeat(c),
            Ev::ToCoord { c, req, hb } => self.coord_recv(c, req, hb),
            Ev::ToClient { c, req, res, .. } => {
                if self.clients[c].outstanding == Some(req) {
                    self.clients[c].outstanding = None;
                    self.client_recv(c, res)?;
                }
            }
            Ev::Timeout { c, req, .. } => {
                if self.clients[c].outstanding == Some(req) {
                    self.note(format!("c{c} heartbeat {req} timed out"));
                    let cl = &mut self.clients[c];
                    cl.outstanding = None;
                    cl.full = true;
                    self.send_heartbeat(c);
                }
            }
            Ev::Tick => {
                if self.group.tick(self.now, &self.topics) {
                    self.note(format!(
                        "coordinator removes timed-out members (group epoch {})",
                        self.group.group_epoch()
                    ));
                }
                self.at(TICK_MS, Ev::Tick);
            }
            Ev::Fault => {
                if !self.healed {
                    self.fault();
                    let gap = self.rng.range(1, self.swarm.fault_gap_ms);
                    self.at(gap, Ev::Fault);
                }
            }
            Ev::Restart { c } => self.restart(c),
            Ev::Heal => {
                self.note("heal: no more faults, loss or spikes; everyone restarts".into());
                self.healed = true;
                for c in 0..self.clients.len() {
                    if !self.clients[c].up {
                        self.restart(c);
                    }
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ the network

    fn deliver_at(&mut self, c: usize, to_coord: bool) -> Option<u64> {
        let faulty = !self.healed;
        if faulty && self.net_rng.below(1000) < self.swarm.drop_pm {
            return None;
        }
        let mut d = self.net_rng.range(1, self.swarm.delay_max_ms);
        if faulty && self.net_rng.below(1000) < self.swarm.spike_pm {
            d += self.net_rng.range(1, self.swarm.spike_ms);
        }
        let at = (self.now + d).max(self.links.get(&(c, to_coord)).copied().unwrap_or(0));
        self.links.insert((c, to_coord), at);
        Some(at)
    }

    fn send_heartbeat(&mut self, c: usize) {
        let cl = &self.clients[c];
        if !cl.up || cl.outstanding.is_some() {
            return;
        }
        let full = cl.full || cl.epoch == 0;
        let subscribed =
            (full || cl.last_sub.as_ref() != Some(&cl.subscribed)).then(|| cl.subscribed.clone());
        let owned = (full || cl.last_claims.as_ref() != Some(&cl.claims))
            .then(|| cl.claims.iter().cloned().collect());
        let hb = Heartbeat {
            member_id: cl.member.clone(),
            member_epoch: cl.epoch,
            instance_id: cl.instance.clone(),
            rack_id: None,
            rebalance_timeout_ms: self.swarm.rebalance_ms as i32,
            subscribed,
            owned,
            client_id: format!("c{c}"),
            client_host: "sim".into(),
        };
        self.next_req += 1;
        let req = self.next_req;
        let cl = &mut self.clients[c];
        cl.outstanding = Some(req);
        cl.last_sub = Some(cl.subscribed.clone());
        cl.last_claims = Some(cl.claims.clone());
        cl.full = false;
        let inc = cl.inc;
        self.stats.heartbeats += 1;
        self.at(REQUEST_TIMEOUT_MS, Ev::Timeout { c, inc, req });
        self.send_to_coord(c, req, hb);
    }

    fn send_to_coord(&mut self, c: usize, req: u64, hb: Heartbeat) {
        if let Some(at) = self.deliver_at(c, true) {
            let d = at - self.now;
            self.at(d, Ev::ToCoord { c, req, hb });
        }
    }

    // ------------------------------------------------------------------ the coordinator

    fn coord_recv(&mut self, c: usize, req: u64, hb: Heartbeat) {
        let (member, epoch) = (hb.member_id.clone(), hb.member_epoch);
        let res = self.group.heartbeat(self.now, hb, &self.topics);
        match &res {
            Ok(b) => self.note(format!(
                "coordinator: {member}@{epoch} -> epoch {} assignment {:?}",
                b.member_epoch, b.assignment
            )),
            Err(e) => self.note(format!("coordinator: {member}@{epoch} -> {e:?}")),
        }
        self.stats.max_epoch = self.stats.max_epoch.max(self.group.group_epoch());
        let inc = self.clients[c].inc;
        if let Some(at) = self.deliver_at(c, false) {
            let d = at - self.now;
            self.at(d, Ev::ToClient { c, inc, req, res });
        }
    }

    // ------------------------------------------------------------------ the members

    fn client_recv(&mut self, c: usize, res: Result<Beat, CgError>) -> Res {
        match res {
            Ok(b) if b.member_epoch < 0 => {}
            Ok(b) => {
                self.check_epoch(c, &b)?;
                self.clients[c].epoch = b.member_epoch;
                if let Some(a) = b.assignment {
                    let new: BTreeSet<Tp> = a.into_iter().collect();
                    let cl = &self.clients[c];
                    let gained: Vec<Tp> = new.difference(&cl.owned).cloned().collect();
                    let lost = cl.owned.difference(&new).count();
                    for tp in &gained {
                        self.check_acquire(c, tp)?;
                    }
                    if !gained.is_empty() || lost > 0 {
                        self.stats.revoked += lost as u64;
                        self.note(format!(
                            "c{c} {} now owns {new:?} at epoch {}",
                            self.clients[c].member, b.member_epoch
                        ));
                    }
                    let keep = self.canary == Some(Kip848Canary::KeepRevoked);
                    let cl = &mut self.clients[c];
                    if keep {
                        // The planted client bug: it goes on working on what it gave up.
                        cl.owned.extend(new.iter().cloned());
                    } else {
                        cl.owned = new.clone();
                    }
                    cl.claims = new;
                    if lost > 0 || !gained.is_empty() {
                        // Acknowledge the change at once, as Kafka's client does.
                        let inc = cl.inc;
                        self.at(1, Ev::Now { c, inc });
                    }
                }
            }
            Err(e) => self.client_error(c, e),
        }
        Ok(())
    }

    fn client_error(&mut self, c: usize, e: CgError) {
        let inc = self.clients[c].inc;
        match e {
            CgError::UnknownMemberId | CgError::FencedMemberEpoch => {
                self.note(format!(
                    "c{c} fenced ({e:?}): drops its partitions, rejoins"
                ));
                self.stats.fenced += 1;
                let cl = &mut self.clients[c];
                cl.owned.clear();
                cl.claims.clear();
                cl.epoch = 0;
                cl.full = true;
                self.at(1, Ev::Now { c, inc });
            }
            CgError::FencedInstanceId => {
                self.note(format!("c{c} fenced instance: the process stops"));
                self.take_down(c);
            }
            _ => {
                let cl = &mut self.clients[c];
                cl.full = true;
                self.at(RETRY_MS, Ev::Now { c, inc });
            }
        }
    }

    // ------------------------------------------------------------------ faults

    fn pick_up(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.clients.len())
            .filter(|c| self.clients[*c].up)
            .collect();
        (!up.is_empty()).then(|| self.rng.pick(&up))
    }

    fn fault(&mut self) {
        let r = self.rng.below(1000);
        let sw = self.swarm.clone();
        let Some(c) = self.pick_up() else {
            return;
        };
        let mut acc = sw.crash_pm;
        if r < acc {
            if self.go("crash") {
                self.note(format!("c{c} crashes"));
                self.stats.crashes += 1;
                self.take_down(c);
            }
            return;
        }
        acc += sw.leave_pm;
        if r < acc {
            if self.go("leave") {
                self.leave(c);
            }
            return;
        }
        acc += sw.pause_pm;
        if r < acc {
            let d = self.rng.range(100, sw.pause_max_ms);
            if self.clients[c].paused_until.is_none() && self.go("pause") {
                self.note(format!("c{c} pauses for {d} ms"));
                self.stats.pauses += 1;
                self.clients[c].paused_until = Some(self.now + d);
            }
            return;
        }
        acc += sw.resubscribe_pm;
        if r < acc {
            let sub = draw_subscription(&mut self.rng);
            if sub != self.clients[c].subscribed && self.go("resubscribe") {
                self.note(format!("c{c} subscribes to {sub:?}"));
                self.stats.resubscribes += 1;
                self.clients[c].subscribed = sub;
                let inc = self.clients[c].inc;
                self.at(1, Ev::Now { c, inc });
            }
        }
    }

    /// The process is gone (it owns nothing); it restarts later as a new process.
    fn take_down(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        cl.up = false;
        cl.inc += 1;
        cl.owned.clear();
        cl.claims.clear();
        cl.outstanding = None;
        cl.paused_until = None;
        if !self.healed {
            let d = self.rng.range(50, self.swarm.away_max_ms);
            self.at(d, Ev::Restart { c });
        }
    }

    /// A clean close: the process gives up its partitions and sends a leave (-1; a static
    /// member -2, keeping its place for its next process), then stops.
    fn leave(&mut self, c: usize) {
        self.note(format!("c{c} leaves"));
        self.stats.leaves += 1;
        let cl = &self.clients[c];
        let epoch = if cl.instance.is_some() {
            LEAVE_GROUP_STATIC_MEMBER_EPOCH
        } else {
            -1
        };
        let hb = Heartbeat {
            member_id: cl.member.clone(),
            member_epoch: epoch,
            instance_id: cl.instance.clone(),
            client_id: format!("c{c}"),
            client_host: "sim".into(),
            rebalance_timeout_ms: -1,
            ..Heartbeat::default()
        };
        self.take_down(c);
        self.next_req += 1;
        let req = self.next_req;
        self.send_to_coord(c, req, hb);
    }

    fn restart(&mut self, c: usize) {
        if self.clients[c].up {
            return;
        }
        let cl = &mut self.clients[c];
        cl.up = true;
        cl.member = format!("m{c}-{}", cl.inc);
        cl.epoch = 0;
        cl.full = true;
        cl.last_claims = None;
        cl.last_sub = None;
        let (inc, member) = (cl.inc, cl.member.clone());
        self.note(format!("c{c} starts as {member}"));
        self.at(1, Ev::Beat { c, inc });
    }
}

/// A non-empty subscription: `t0`, `t1` or both.
fn draw_subscription(rng: &mut Rng) -> Vec<String> {
    match rng.below(3) {
        0 => vec![TOPICS[0].to_string()],
        1 => vec![TOPICS[1].to_string()],
        _ => TOPICS.iter().map(|t| t.to_string()).collect(),
    }
}
