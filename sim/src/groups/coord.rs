//! The coordinator side of the consumer-group driver: one skein-core `Runtime<GroupShard>` per
//! coordinator node over the modelled `__consumer_offsets` partition, driven as the broker's
//! shell drives it. The driver decides nothing about groups: it carries out the runtime's
//! outputs (load reads from the modelled log, appends only while the node leads at the
//! write's epoch, high-watermark reports as the replication model advances) and routes answers
//! to the consumers. A child module of the driver, so it reads the driver's state.
//!
//! Faults of its own: while faults last, some appends fail (storage, or too few in-sync
//! replicas) and some waits for the high watermark fail (too few in-sync replicas; the records
//! stay in the log), at a per-mille rate drawn per run.
//!
//! Invariants: only the leader node at the current epoch appends; the log beyond the high
//! watermark is cut at a failover; `Committed` reports reach a node in shuffled order, and
//! reports of older epochs are sent too (the runtime must ignore them); every runtime input is
//! followed by `check_invariants()` and a check that every record replayed.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use skein_core::batch::build;
use skein_core::coordinator::group_shard::{
    GroupRequest, GroupResponse, GroupShard, GroupShardConfig,
};
use skein_core::coordinator::runtime::{
    CoordinatorError, Input, Output, Runtime, RuntimeConfig, WriteError,
};
use skein_core::coordinator::{Record, Shard};
use skein_core::group::{GroupConfig, GroupError, GroupState};
use skein_core::offsets::OffsetValue;

use super::{group_name, offset_value, Body, Cid, Ev, Fail, GroupsSim, Res, Resp, COORD_TICK_MS};
use crate::checker::violation;
use crate::groups::assignor::TOPIC;
use crate::groups::fencing::{Proc, StaticFencing};
use crate::rng::Rng;

/// The offsets partition every group of the run maps to.
const P: i32 = 0;
/// Coordinator nodes; a failover moves leadership to the next.
const NODES: usize = 2;

/// A request the runtime answers later, with what judging its answer needs.
#[derive(Debug, Clone)]
pub(super) struct Owner {
    cid: Cid,
    pid: u64,
    conn: u64,
    body: Body,
    /// It named an instance id the coordinator held under another member id.
    fence: bool,
    /// The largest generation a SyncGroup answer was sent for when it arrived.
    newest: i32,
    /// An admin tool's offset reset (no consumer waits for it).
    admin: bool,
}

/// The coordinator nodes and the modelled offsets partition.
pub(super) struct Coord {
    nodes: Vec<Runtime<GroupShard>>,
    /// The node that leads (or is about to lead) the partition.
    pub(super) leader: usize,
    /// The partition's leader epoch.
    pub(super) epoch: i32,
    /// Whether `leader` was told it leads at `epoch`.
    leading: bool,
    /// The partition's log.
    pub(super) log: Vec<Record>,
    /// The replicated prefix of the log.
    pub(super) hw: usize,
    /// `WaitCommitted` not yet reported: (node, epoch, offset).
    waits: Vec<(usize, i32, i64)>,
    /// Operations the runtime has not answered yet, by op id (the request number).
    ops: BTreeMap<u64, Owner>,
    /// Outputs not carried out yet, by node.
    pending: VecDeque<(usize, Output<GroupResponse>)>,
    /// When each node's `Tick` is scheduled.
    tick_at: Vec<Option<u64>>,
    /// How far the leader's applied records were checked for admin resets.
    applied: usize,
    /// An admin reset is being handled: its appended offsets are resets.
    admin: bool,
    /// Salts for new leaderships and the order of high-watermark reports.
    rng: Rng,
    /// Draws of append failures (a stream of their own, so runs without them are unchanged).
    fail_rng: Rng,
    /// Per mille of appends that fail while faults last (storage, or too few in-sync replicas).
    fail_pm: u64,
}

impl Coord {
    /// Nodes leading nothing yet.
    pub(super) fn new(group: GroupConfig, rng: Rng, mut fail_rng: Rng) -> Coord {
        let fail_pm = [0, 0, 10, 40][fail_rng.below(4) as usize];
        let config = RuntimeConfig {
            tick_ms: COORD_TICK_MS,
            ..RuntimeConfig::default()
        };
        let shards = GroupShardConfig {
            group,
            ..GroupShardConfig::default()
        };
        Coord {
            nodes: (0..NODES).map(|_| Runtime::new(config, shards)).collect(),
            leader: 0,
            epoch: 0,
            leading: false,
            log: Vec::new(),
            hw: 0,
            waits: Vec::new(),
            ops: BTreeMap::new(),
            pending: VecDeque::new(),
            tick_at: vec![None; NODES],
            applied: 0,
            admin: false,
            rng,
            fail_rng,
            fail_pm,
        }
    }

    /// The leader's loaded groups, if it leads and has loaded them.
    pub(super) fn shard(&self) -> Option<&Shard> {
        if !self.leading {
            return None;
        }
        self.nodes[self.leader].shard(P).ok().map(|s| s.groups())
    }

    /// The leader's groups when they hold nothing above the high watermark. A reload (after a
    /// failed append) replays the whole log, unreplicated records included; no answer built on
    /// them is released before they commit, and a failover may cut them, so until the high
    /// watermark covers what was applied the shard is not what clients can observe.
    pub(super) fn committed_shard(&self) -> Option<&Shard> {
        let applied = self.nodes[self.leader].applied_end(P)?;
        (applied <= self.hw as i64).then(|| self.shard()).flatten()
    }
}

/// One batch of `recs` at offset `base`, as the partition stores it.
fn batch_at(base: usize, recs: &[Record], now: u64) -> Vec<u8> {
    let simple: Vec<build::SimpleRecord> = recs
        .iter()
        .map(|(k, v)| build::SimpleRecord {
            key: Some(k.clone()),
            value: v.clone(),
            headers: vec![],
            timestamp: now as i64,
        })
        .collect();
    let mut b = build::batch(&simple, None);
    b[..8].copy_from_slice(&(base as i64).to_be_bytes());
    b
}

impl GroupsSim {
    /// Hands `input` to `node`, checks its invariants and queues its outputs.
    fn input(&mut self, node: usize, input: Input<GroupShard>) {
        let rt = &mut self.coord.nodes[node];
        let bad = rt.stats().bad_records;
        rt.handle(self.now, input);
        rt.check_invariants();
        if rt.stats().bad_records != bad {
            let v = violation(
                "node-invariant",
                format!("node {node}: a record did not replay"),
            );
            self.found.get_or_insert(v);
        }
        while let Some(o) = rt.poll_output() {
            self.coord.pending.push_back((node, o));
        }
    }

    /// Carries out every queued output, then notes applied admin resets and schedules ticks.
    fn pump(&mut self) {
        while let Some((node, o)) = self.coord.pending.pop_front() {
            self.carry(node, o);
        }
        self.applied_records();
        for node in 0..NODES {
            let t = self.coord.nodes[node].poll_timeout().max(self.now);
            if self.coord.tick_at[node].is_none_or(|a| t < a) {
                self.coord.tick_at[node] = Some(t);
                self.at(t - self.now, Ev::CoordTick { node });
            }
        }
    }

    fn carry(&mut self, node: usize, o: Output<GroupResponse>) {
        let leads = |s: &Self, epoch: i32| {
            node == s.coord.leader && s.coord.leading && epoch == s.coord.epoch
        };
        match o {
            Output::ReadForLoad { epoch, from, .. } => {
                if let Some(shard) = self.coord.nodes[node].shard_mut(P) {
                    shard
                        .groups_mut()
                        .set_canary(self.canary.map(super::GroupsCanary::core));
                }
                if !leads(self, epoch) {
                    self.input(
                        node,
                        Input::LoadFailed {
                            partition: P,
                            epoch,
                        },
                    );
                    return;
                }
                let from = (from.max(0) as usize).min(self.coord.log.len());
                let recs = &self.coord.log[from..];
                let bytes = if recs.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::from(batch_at(from, recs, self.now))
                };
                let (log_end, hw) = (self.coord.log.len() as i64, self.coord.hw as i64);
                let input = Input::Loaded {
                    partition: P,
                    epoch,
                    bytes,
                    log_end,
                    hw,
                };
                self.input(node, input);
                if let Ok(shard) = self.coord.nodes[node].shard(P) {
                    self.fencing.loaded(shard.groups().groups().flat_map(|g| {
                        g.members()
                            .filter_map(|m| m.instance_id.as_deref().map(|i| (i, m.id.as_str())))
                    }));
                    self.note(format!("coordinator loaded {log_end} records"));
                }
            }
            Output::Append {
                epoch,
                write,
                records,
                ..
            } => {
                if !leads(self, epoch) {
                    let error = WriteError::NotLeader;
                    let input = Input::AppendFailed {
                        partition: P,
                        epoch,
                        write,
                        error,
                    };
                    self.input(node, input);
                    return;
                }
                if self.fails("append failure") {
                    let error = if self.coord.fail_rng.below(2) == 0 {
                        WriteError::Storage
                    } else {
                        WriteError::NotEnoughReplicas
                    };
                    self.note(format!("append of write {write} fails: {error:?}"));
                    let input = Input::AppendFailed {
                        partition: P,
                        epoch,
                        write,
                        error,
                    };
                    self.input(node, input);
                    return;
                }
                let base = self.coord.log.len();
                if self.coord.admin {
                    self.stats.resets += 1;
                    for (i, (k, _)) in records.iter().enumerate() {
                        if let Ok(skein_core::offsets::Key::Offset { .. }) =
                            skein_core::offsets::decode_key(k)
                        {
                            self.resets.insert(base + i);
                        }
                    }
                }
                self.coord.log.extend(records);
                let end = self.coord.log.len();
                let input = Input::Appended {
                    partition: P,
                    epoch,
                    write,
                    base: base as i64,
                    end: end as i64,
                };
                self.input(node, input);
                let d = self.rng.range(1, self.swarm.replicate_max_ms);
                let epoch = epoch as u64;
                self.at(d, Ev::Replicated { epoch, upto: end });
            }
            Output::WaitCommitted { epoch, offset, .. } => {
                if self.fails("replication failure") {
                    // The records stay in the log: a later report may still cover them.
                    let error = WriteError::NotEnoughReplicas;
                    self.note(format!("waiting for offset {offset} fails: {error:?}"));
                    let input = Input::ReplicationFailed {
                        partition: P,
                        epoch,
                        offset,
                        error,
                    };
                    self.input(node, input);
                    return;
                }
                self.coord.waits.push((node, epoch, offset));
                self.report();
            }
            Output::Answer { op, answer } => {
                if let Some(o) = self.coord.ops.remove(&op) {
                    self.answer(op, o, answer);
                }
            }
        }
    }

    /// Whether a write or a wait fails now (a numbered decision, while faults last).
    fn fails(&mut self, what: &str) -> bool {
        !self.healed && self.coord.fail_rng.below(1000) < self.coord.fail_pm && self.go(what)
    }

    /// Reports the high watermark for the waits it covers, in shuffled order, and to waits of
    /// older epochs (which the runtime ignores).
    fn report(&mut self) {
        let (epoch, hw) = (self.coord.epoch, self.coord.hw as i64);
        let mut due = Vec::new();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.coord.waits) {
            if w.1 != epoch || w.2 <= hw {
                due.push(w);
            } else {
                keep.push(w);
            }
        }
        self.coord.waits = keep;
        while !due.is_empty() {
            let i = self.coord.rng.below(due.len() as u64) as usize;
            let (node, e, _) = due.swap_remove(i);
            let input = Input::Committed {
                partition: P,
                epoch: e,
                hw,
            };
            self.input(node, input);
        }
    }

    /// The replication model reached `upto` at `epoch`.
    pub(super) fn replicated(&mut self, epoch: u64, upto: usize) -> Res {
        if epoch != self.coord.epoch as u64 || upto <= self.coord.hw {
            return Ok(());
        }
        self.coord.hw = upto;
        self.report();
        self.pump();
        Ok(())
    }

    /// Follows the records the leader applied: committed offsets of admin resets may move
    /// backwards (the checker takes them as they are), and a group's tombstone (an empty group
    /// without offsets is deleted, as Kafka's cleanup does) ends its generations: a group of
    /// that id created later counts them from the start again.
    fn applied_records(&mut self) {
        let end = if self.coord.leading {
            self.coord.nodes[self.coord.leader].applied_end(P)
        } else {
            None
        };
        let Some(end) = end.map(|e| e as usize) else {
            return;
        };
        for i in self.coord.applied..end {
            let (k, v) = &self.coord.log[i];
            let key = skein_core::offsets::decode_key(k);
            if let (Ok(skein_core::offsets::Key::Group(group)), None) = (&key, v) {
                let g: usize = group[1..].parse().expect("g<n>");
                self.owners.retain(|(gg, _), _| *gg != g);
                self.synced_gen.remove(&g);
                continue;
            }
            if !self.resets.contains(&i) {
                continue;
            }
            let Ok(skein_core::offsets::Key::Offset {
                group, partition, ..
            }) = key
            else {
                continue;
            };
            let g: usize = group[1..].parse().expect("g<n>");
            let off = v
                .as_deref()
                .and_then(|v| skein_core::offsets::decode_offset_value(v).ok())
                .map(|o| o.offset);
            match off {
                Some(o) => self.committed.insert((g, partition), o),
                None => self.committed.remove(&(g, partition)),
            };
        }
        self.coord.applied = self.coord.applied.max(end);
    }

    /// A node's `Tick` is due.
    pub(super) fn coord_tick(&mut self, node: usize) {
        if self.coord.tick_at[node] != Some(self.now) {
            return;
        }
        self.coord.tick_at[node] = None;
        if self.coord.nodes[node].poll_timeout() <= self.now {
            let env = BTreeMap::from([(TOPIC.to_string(), self.swarm.partitions as i32)]);
            let input = Input::Tick {
                wall_ms: self.now as i64,
                env,
            };
            self.input(node, input);
        }
        self.pump();
    }

    /// The leader stops leading (its waiting operations are answered NOT_COORDINATOR), the
    /// unreplicated tail of the log is lost, and the next node leads after a load delay.
    pub(super) fn failover(&mut self) {
        self.note(format!(
            "coordinator fails over (log {} records, {} replicated)",
            self.coord.log.len(),
            self.coord.hw
        ));
        self.stats.failovers += 1;
        let old = self.coord.leader;
        self.coord.leading = false;
        self.input(old, Input::Resign { partition: P });
        self.coord.epoch += 1;
        self.coord.leader = (old + 1) % NODES;
        let hw = self.coord.hw;
        self.coord.log.truncate(hw);
        self.resets.retain(|i| *i < hw);
        self.coord.applied = self.coord.applied.min(hw);
        let d = self.rng.range(10, self.swarm.load_max_ms);
        let epoch = self.coord.epoch as u64;
        self.at(d, Ev::CoordUp { epoch });
        self.pump();
    }

    /// The next leader learns it leads and loads the partition.
    pub(super) fn coord_up(&mut self, epoch: u64) -> Res {
        if self.coord.epoch as u64 != epoch || self.coord.leading {
            return Ok(());
        }
        self.coord.leading = true;
        let salt = self.coord.rng.next_u64();
        let input = Input::BecomeLeader {
            partition: P,
            epoch: self.coord.epoch,
            salt,
        };
        self.input(self.coord.leader, input);
        self.pump();
        Ok(())
    }

    /// An admin tool resets a group's offsets, as `kafka-consumer-groups --reset-offsets`
    /// does: a commit outside any generation, accepted only while the group has no members.
    pub(super) fn admin_reset(&mut self, g: usize) {
        let gid = group_name(g);
        let Some(shard) = self.coord.shard() else {
            return;
        };
        if shard
            .group(&gid)
            .is_some_and(|x| x.state() != GroupState::Empty)
        {
            return;
        }
        let mut vals = Vec::new();
        for p in 0..self.swarm.partitions {
            if self.rng.chance(500_000) {
                let off = self.rng.range(0, self.hw[p] as u64) as i64;
                vals.push((TOPIC.to_string(), p as i32, offset_value(off, self.now)));
            }
        }
        if vals.is_empty() || !self.go("admin reset") {
            return;
        }
        self.note(format!("admin resets {gid} offsets"));
        self.next_req += 1;
        let op = self.next_req;
        let owner = Owner {
            cid: (g, 0),
            pid: 0,
            conn: 0,
            body: Body::Find,
            fence: false,
            newest: -1,
            admin: true,
        };
        self.coord.ops.insert(op, owner);
        let request = GroupRequest::Commit {
            group: gid,
            member: String::new(),
            instance: None,
            generation: -1,
            offsets: vals,
        };
        self.coord.admin = true;
        self.request(op, request);
        self.pump();
        self.coord.admin = false;
    }

    fn request(&mut self, op: u64, request: GroupRequest) {
        let input = Input::Request {
            partition: P,
            op,
            wall_ms: self.now as i64,
            request,
        };
        self.input(self.coord.leader, input);
    }

    /// Whether a request of `member` naming `instance` is from a replaced member id: the
    /// coordinator holds the instance id under another one.
    fn replaced(&self, gid: &str, member: &str, instance: Option<&String>) -> bool {
        let (Some(i), Some(shard)) = (instance, self.coord.shard()) else {
            return false;
        };
        if member.is_empty() {
            return false;
        }
        shard.group(gid).is_some_and(|g| {
            g.members()
                .any(|m| m.instance_id.as_ref() == Some(i) && m.id != member)
        })
    }

    /// A request arrives at the coordinator: reads answer from the loaded groups, the rest go
    /// to the leader's runtime.
    pub(super) fn coord_recv(&mut self, (cid, pid): Proc, conn: u64, req: u64, body: Body) -> Res {
        let Some(shard) = self.coord.shard() else {
            self.reply(cid, conn, req, Resp::not_coordinator(&body));
            return Ok(());
        };
        let group = group_name(cid.0);
        let now = self.now;
        let (fence, request) = match body.clone() {
            Body::Find => {
                self.reply(cid, conn, req, Resp::Find(Ok(())));
                return Ok(());
            }
            Body::Fetch { parts } => {
                let map = parts
                    .iter()
                    .filter_map(|p| {
                        shard
                            .offset(&group, TOPIC, *p)
                            .map(|c| (*p, c.value.offset))
                    })
                    .collect();
                self.reply(cid, conn, req, Resp::Fetch(Ok(map)));
                return Ok(());
            }
            Body::Join(join) => {
                let fence = self.replaced(&group, &join.member_id, join.instance_id.as_ref());
                let join = *join;
                (fence, GroupRequest::Join { group, join })
            }
            Body::Sync {
                member,
                instance,
                generation,
                assignments,
            } => {
                let fence = self.replaced(&group, &member, instance.as_ref());
                let request = GroupRequest::Sync {
                    group,
                    member,
                    instance,
                    generation,
                    assignments,
                    protocol_type: None,
                    protocol_name: None,
                };
                (fence, request)
            }
            Body::Heartbeat {
                member,
                instance,
                generation,
            } => {
                let fence = self.replaced(&group, &member, instance.as_ref());
                let request = GroupRequest::Heartbeat {
                    group,
                    member,
                    instance,
                    generation,
                };
                (fence, request)
            }
            Body::Commit {
                member,
                instance,
                generation,
                offsets,
            } => {
                let fence = self.replaced(&group, &member, instance.as_ref());
                let offsets: Vec<(String, i32, OffsetValue)> = offsets
                    .iter()
                    .map(|(p, o)| (TOPIC.to_string(), *p, offset_value(*o, now)))
                    .collect();
                let request = GroupRequest::Commit {
                    group,
                    member,
                    instance,
                    generation,
                    offsets,
                };
                (fence, request)
            }
            Body::Leave { member } => {
                let members = vec![(member, None)];
                (false, GroupRequest::Leave { group, members })
            }
        };
        let newest = self.synced_gen.get(&cid.0).copied().unwrap_or(-1);
        let owner = Owner {
            cid,
            pid,
            conn,
            body,
            fence,
            newest,
            admin: false,
        };
        self.coord.ops.insert(req, owner);
        self.request(req, request);
        self.pump();
        Ok(())
    }

    /// Judges the runtime's answer to `op` and sends it to its consumer.
    fn answer(&mut self, op: u64, o: Owner, answer: Result<GroupResponse, CoordinatorError>) {
        if o.admin {
            if let Ok(GroupResponse::Commit(Err(e))) = answer {
                self.note(format!("admin reset of g{} refused: {e:?}", o.cid.0));
            }
            return;
        }
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let resp = match (&o.body, e) {
                    (Body::Commit { .. }, CoordinatorError::Write(_)) => {
                        Resp::Commit(Err(Fail::Unknown))
                    }
                    _ => Resp::not_coordinator(&o.body),
                };
                self.reply(o.cid, o.conn, op, resp);
                return;
            }
        };
        if let Err(v) = self.judge_answer(op, &o, answer) {
            self.found.get_or_insert(v);
        }
    }

    fn judge_answer(&mut self, op: u64, o: &Owner, answer: GroupResponse) -> Res {
        let p = (o.cid, o.pid);
        let resp = match (&o.body, answer) {
            (Body::Join(j), GroupResponse::Join(result)) => {
                if o.fence {
                    let got = result.as_ref().map(|_| ()).map_err(|(e, _)| *e);
                    let inst = j.instance_id.clone().unwrap_or_default();
                    StaticFencing::must_be_fenced(&inst, "JoinGroup", got)?;
                }
                if let (Some(i), Ok(ok)) = (&j.instance_id, &result) {
                    let start = j.member_id.is_empty();
                    self.fencing.joined(i, &ok.member_id, p, start)?;
                }
                if let Ok(j) = &result {
                    self.stats.max_generation = self.stats.max_generation.max(j.generation);
                }
                Resp::Join(result.map_err(|(e, id)| (Fail::Group(e), id)))
            }
            (
                Body::Sync {
                    instance,
                    generation,
                    ..
                },
                GroupResponse::Sync { result, .. },
            ) => {
                let inst = instance.clone().unwrap_or_default();
                let got = result.as_ref().map(|_| ()).map_err(|e| *e);
                if o.fence {
                    StaticFencing::must_be_fenced(&inst, "SyncGroup", got)?;
                } else if instance.is_some() {
                    self.fencing.answered(&inst, p, "SyncGroup", got.is_ok())?;
                }
                if result.is_ok() {
                    let e = self.synced_gen.entry(o.cid.0).or_insert(*generation);
                    *e = (*e).max(*generation);
                }
                Resp::Sync(result.map_err(Fail::Group))
            }
            (Body::Heartbeat { instance, .. }, GroupResponse::Heartbeat(r)) => {
                self.judge(p, instance.as_ref(), o.fence, "Heartbeat", r)?;
                Resp::Heartbeat(r.map_err(Fail::Group))
            }
            (
                Body::Commit {
                    member,
                    instance,
                    generation,
                    offsets,
                },
                GroupResponse::Commit(r),
            ) => {
                self.judge(p, instance.as_ref(), o.fence, "OffsetCommit", r)?;
                match r {
                    Ok(()) => {
                        let (newest, gen) = (o.newest, *generation);
                        if gen >= 0 && newest > gen {
                            return Err(violation(
                                "stale-generation-commit",
                                format!(
                                    "g{}: a commit of generation {gen} by {member} for \
                                     {offsets:?} was accepted after generation {newest} was \
                                     handed out",
                                    o.cid.0
                                ),
                            ));
                        }
                        self.stats.commits += 1;
                    }
                    Err(_) => self.stats.commits_refused += 1,
                }
                Resp::Commit(r.map_err(Fail::Group))
            }
            (Body::Leave { .. }, GroupResponse::Leave(_)) => Resp::Leave,
            (body, a) => {
                return Err(violation(
                    "node-invariant",
                    format!("{body:?} answered with {a:?}"),
                ))
            }
        };
        self.reply(o.cid, o.conn, op, resp);
        Ok(())
    }

    /// Judges an answer (Heartbeat, OffsetCommit) to `p` with the fencing checker.
    fn judge(
        &self,
        p: Proc,
        instance: Option<&String>,
        fence: bool,
        what: &str,
        got: Result<(), GroupError>,
    ) -> Res {
        let Some(i) = instance else {
            return Ok(());
        };
        if fence {
            return StaticFencing::must_be_fenced(i, what, got);
        }
        self.fencing.answered(i, p, what, got.is_ok())
    }
}
