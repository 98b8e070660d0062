//! The coordinator runtime: one slot per internal-topic partition this broker leads, keyed by
//! the leader epoch it was loaded for, each hosting a shard of type `S`.
//!
//! Calling contract: `handle(now, Input)`, then drain `poll_output()` until empty, carry out
//! each output, and call `handle` with `Input::Tick` when `poll_timeout()` is due. The driver
//! carries out three kinds of work: read the partition for a load (`ReadForLoad`, answered
//! with `Loaded` or `LoadFailed`), append a write's records as leader at the epoch given
//! (`Append`, answered with `Appended` or `AppendFailed`), and report when the high watermark
//! (replicated to the ISR and, where the shell promises it, fsynced) reaches an offset
//! (`WaitCommitted`, answered with `Committed` or `ReplicationFailed`). `Answer` goes to the
//! client whose request carried that operation id.
//!
//! Invariants:
//! - a shard's state is a replay of a prefix of its partition's log: the loaded records, then
//!   the shard's own writes in log order, each applied only once the high watermark covers it;
//! - a new leadership (or losing it) drops the slot: inputs about writes of the old slot are
//!   ignored, so nothing planned at an old epoch is applied after a new load, and every
//!   operation waiting on the old slot is answered `NotCoordinator`;
//! - an answer leaves only when the high watermark covers the loaded log and every write the
//!   shard planned up to the step that produced it (Kafka's deferred-event rule: a member that
//!   syncs while its generation's assignment is being stored waits for the store);
//! - every operation accepted by a ready slot is answered exactly once, or cancelled;
//! - a failed append fails every answer waiting on it or on a later write (Kafka fails its
//!   deferred events alike) and reloads the partition: the shard's memory already holds what
//!   the write carried (a generation, an assignment) and believes it stored, so it is rebuilt
//!   from the log, as Kafka reverts its state to the last committed offset; a write that misses the commit timeout fails its answers but is
//!   still applied if it commits later, since the log has it (after a failed wait the
//!   runtime asks again, `load_retry_ms` later, for the writes still not applied);
//! - records between this runtime's writes that it did not write (a hole in what it knows of
//!   the log) make it reload the partition rather than apply past them.

use std::collections::{BTreeMap, VecDeque};

pub use super::messages::{CoordinatorError, Input, Output, RuntimeConfig, WriteError, WriteId};
use super::shard::{CoordinatorShard, OpId, Record, Step};
use crate::batch;
use crate::offsets;

/// One write not yet applied.
#[derive(Debug)]
struct Write {
    records: Vec<Record>,
    /// Where it landed, once appended.
    at: Option<(i64, i64)>,
}

/// Answers waiting for the writes of their partition up to `needs` to be committed.
#[derive(Debug)]
struct Held<R> {
    needs: Option<WriteId>,
    deadline: u64,
    answers: Vec<(OpId, R)>,
}

/// A loaded shard and its writes.
#[derive(Debug)]
struct Ready<S: CoordinatorShard> {
    shard: S,
    /// The log end the load reached: answers wait for the high watermark to cover it.
    load_end: i64,
    /// One past the last record applied.
    applied_end: i64,
    hw: i64,
    writes: BTreeMap<WriteId, Write>,
    last_write: Option<WriteId>,
    held: VecDeque<Held<S::Response>>,
    /// When to ask again for the high watermark after a failed wait (the records are in the
    /// log and may still commit; no other report may come).
    rewait_at: Option<u64>,
}

#[derive(Debug)]
enum State<S: CoordinatorShard> {
    Loading {
        shard: S,
        next: i64,
        retry_at: Option<u64>,
    },
    Ready(Ready<S>),
}

#[derive(Debug)]
struct Slot<S: CoordinatorShard> {
    epoch: i32,
    salt: u64,
    state: State<S>,
}

/// Counters of what the runtime did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Loads completed.
    pub loads: u64,
    /// Records replayed while loading.
    pub loaded_records: u64,
    /// Records that did not replay (skipped).
    pub bad_records: u64,
    /// Reloads after a failed append, or after records not written by this runtime appeared
    /// in a partition.
    pub reloads: u64,
}

/// The coordinator runtime over shards of type `S`.
#[derive(Debug)]
pub struct Runtime<S: CoordinatorShard> {
    config: RuntimeConfig,
    shard_config: S::Config,
    slots: BTreeMap<i32, Slot<S>>,
    /// Operations accepted by a ready slot and not yet answered, with their partition.
    ops: BTreeMap<OpId, i32>,
    next_write: WriteId,
    next_tick: u64,
    now: u64,
    out: VecDeque<Output<S::Response>>,
    stats: RuntimeStats,
}

impl<S: CoordinatorShard> Runtime<S> {
    /// A runtime leading nothing.
    pub fn new(config: RuntimeConfig, shard_config: S::Config) -> Self {
        Runtime {
            config,
            shard_config,
            slots: BTreeMap::new(),
            ops: BTreeMap::new(),
            next_write: 1,
            next_tick: 0,
            now: 0,
            out: VecDeque::new(),
            stats: RuntimeStats::default(),
        }
    }

    /// Handles one input; drain `poll_output` afterwards.
    pub fn handle(&mut self, now: u64, input: Input<S>) {
        assert!(now >= self.now, "time went backwards: {now} < {}", self.now);
        self.now = now;
        match input {
            Input::BecomeLeader {
                partition,
                epoch,
                salt,
            } => self.become_leader(partition, epoch, salt),
            Input::Resign { partition } => self.drop_slot(partition),
            Input::Loaded {
                partition,
                epoch,
                bytes,
                log_end,
                hw,
            } => self.loaded(partition, epoch, &bytes, log_end, hw),
            Input::LoadFailed { partition, epoch } => {
                let retry = now + self.config.load_retry_ms;
                if let Some(Slot {
                    state: State::Loading { retry_at, .. },
                    ..
                }) = self.slot_at(partition, epoch)
                {
                    *retry_at = Some(retry);
                }
            }
            Input::Request {
                partition,
                op,
                wall_ms,
                request,
            } => self.request(partition, op, wall_ms, request),
            Input::Cancel { op } => {
                self.ops.remove(&op);
            }
            Input::Appended {
                partition,
                epoch,
                write,
                base,
                end,
            } => self.appended(partition, epoch, write, base, end),
            Input::AppendFailed {
                partition,
                epoch,
                write,
                error,
            } => self.append_failed(partition, epoch, write, error),
            Input::Committed {
                partition,
                epoch,
                hw,
            } => {
                if let Some(r) = self.ready_at(partition, epoch) {
                    r.hw = r.hw.max(hw);
                    self.advance(partition);
                }
            }
            Input::ReplicationFailed {
                partition,
                epoch,
                offset,
                error,
            } => self.replication_failed(partition, epoch, offset, error),
            Input::Tick { wall_ms, env } => self.tick(wall_ms, &env),
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output<S::Response>> {
        self.out.pop_front()
    }

    /// When `Input::Tick` is next due.
    pub fn poll_timeout(&self) -> u64 {
        let mut at = self.next_tick;
        for slot in self.slots.values() {
            match &slot.state {
                State::Loading {
                    retry_at: Some(t), ..
                } => at = at.min(*t),
                State::Loading { .. } => {}
                State::Ready(r) => {
                    if let Some(h) = r.held.front() {
                        at = at.min(h.deadline);
                    }
                    if let Some(t) = r.rewait_at {
                        at = at.min(t);
                    }
                }
            }
        }
        at
    }

    /// The shard of `partition`, if loaded (reads answer from it directly).
    pub fn shard(&self, partition: i32) -> Result<&S, CoordinatorError> {
        match self.slots.get(&partition).map(|s| &s.state) {
            None => Err(CoordinatorError::NotCoordinator),
            Some(State::Loading { .. }) => Err(CoordinatorError::LoadInProgress),
            Some(State::Ready(r)) => Ok(&r.shard),
        }
    }

    /// The shard of `partition`, loading or loaded, to change directly (planting canaries).
    #[cfg(feature = "canary")]
    pub fn shard_mut(&mut self, partition: i32) -> Option<&mut S> {
        match &mut self.slots.get_mut(&partition)?.state {
            State::Loading { shard, .. } => Some(shard),
            State::Ready(r) => Some(&mut r.shard),
        }
    }

    /// Every loaded shard, by partition.
    pub fn shards(&self) -> impl Iterator<Item = (i32, &S)> {
        self.slots.iter().filter_map(|(p, s)| match &s.state {
            State::Ready(r) => Some((*p, &r.shard)),
            State::Loading { .. } => None,
        })
    }

    /// Whether any partition is being loaded.
    pub fn loading(&self) -> bool {
        self.slots
            .values()
            .any(|s| matches!(s.state, State::Loading { .. }))
    }

    /// The epoch `partition` is led at here, if it is.
    pub fn epoch(&self, partition: i32) -> Option<i32> {
        self.slots.get(&partition).map(|s| s.epoch)
    }

    /// One past the last record applied to `partition`'s shard, if loaded.
    pub fn applied_end(&self, partition: i32) -> Option<i64> {
        match &self.slots.get(&partition)?.state {
            State::Ready(r) => Some(r.applied_end),
            State::Loading { .. } => None,
        }
    }

    /// What the runtime did so far.
    pub fn stats(&self) -> RuntimeStats {
        self.stats
    }

    /// Operations waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.ops.len()
    }

    fn slot_at(&mut self, partition: i32, epoch: i32) -> Option<&mut Slot<S>> {
        self.slots.get_mut(&partition).filter(|s| s.epoch == epoch)
    }

    fn ready_at(&mut self, partition: i32, epoch: i32) -> Option<&mut Ready<S>> {
        match &mut self.slot_at(partition, epoch)?.state {
            State::Ready(r) => Some(r),
            State::Loading { .. } => None,
        }
    }

    fn become_leader(&mut self, partition: i32, epoch: i32, salt: u64) {
        if self.epoch(partition) == Some(epoch) {
            return;
        }
        self.drop_slot(partition);
        self.start_load(partition, epoch, salt);
    }

    fn start_load(&mut self, partition: i32, epoch: i32, salt: u64) {
        let shard = S::create(&self.shard_config, salt);
        let state = State::Loading {
            shard,
            next: 0,
            retry_at: None,
        };
        self.slots.insert(partition, Slot { epoch, salt, state });
        self.out.push_back(Output::ReadForLoad {
            partition,
            epoch,
            from: 0,
            max_bytes: self.config.load_read_bytes,
        });
    }

    /// Drops the slot of `partition`; every operation waiting on it gets NOT_COORDINATOR.
    fn drop_slot(&mut self, partition: i32) {
        if self.slots.remove(&partition).is_none() {
            return;
        }
        let ops: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, p)| **p == partition)
            .map(|(op, _)| *op)
            .collect();
        for op in ops {
            self.ops.remove(&op);
            self.out.push_back(Output::Answer {
                op,
                answer: Err(CoordinatorError::NotCoordinator),
            });
        }
    }

    fn loaded(&mut self, partition: i32, epoch: i32, bytes: &[u8], log_end: i64, hw: i64) {
        let now = self.now;
        let max_bytes = self.config.load_read_bytes;
        let Some(slot) = self.slot_at(partition, epoch) else {
            return;
        };
        let State::Loading { shard, next, .. } = &mut slot.state else {
            return;
        };
        let before = *next;
        let (records, bad) = replay_batches(shard, now, next, bytes);
        let next = *next;
        self.stats.loaded_records += records;
        self.stats.bad_records += bad;
        if next < log_end && next > before {
            self.out.push_back(Output::ReadForLoad {
                partition,
                epoch,
                from: next,
                max_bytes,
            });
            return;
        }
        // Done at the log end (a read that made no progress below it found nothing more).
        let Some(Slot {
            epoch,
            salt,
            state: State::Loading { shard, .. },
        }) = self.slots.remove(&partition)
        else {
            unreachable!("a loading slot, checked above")
        };
        let ready = Ready {
            shard,
            load_end: log_end,
            applied_end: log_end,
            hw,
            writes: BTreeMap::new(),
            last_write: None,
            held: VecDeque::new(),
            rewait_at: None,
        };
        let state = State::Ready(ready);
        self.slots.insert(partition, Slot { epoch, salt, state });
        self.stats.loads += 1;
        if hw < log_end {
            self.out.push_back(Output::WaitCommitted {
                partition,
                epoch,
                offset: log_end,
            });
        }
    }

    fn request(&mut self, partition: i32, op: OpId, wall_ms: i64, request: S::Request) {
        let now = self.now;
        let refused = match self.slots.get_mut(&partition).map(|s| &mut s.state) {
            None => Some(CoordinatorError::NotCoordinator),
            Some(State::Loading { .. }) => Some(CoordinatorError::LoadInProgress),
            // The bound on waiting operations: refused before the shard sees the request.
            Some(State::Ready(_)) if self.ops.len() >= self.config.waiting_max => {
                Some(CoordinatorError::Overloaded)
            }
            Some(State::Ready(r)) => {
                self.ops.insert(op, partition);
                let step = r.shard.handle(now, wall_ms, op, request);
                self.absorb(partition, step);
                None
            }
        };
        if let Some(e) = refused {
            self.out.push_back(Output::Answer { op, answer: Err(e) });
        }
    }

    /// Takes a shard's step: its records become a write, its answers wait behind it.
    fn absorb(&mut self, partition: i32, step: Step<S::Response>) {
        let deadline = self.now + self.config.commit_timeout_ms;
        let Some(slot) = self.slots.get_mut(&partition) else {
            return;
        };
        let epoch = slot.epoch;
        let State::Ready(r) = &mut slot.state else {
            return;
        };
        if !step.records.is_empty() {
            let write = self.next_write;
            self.next_write += 1;
            r.writes.insert(
                write,
                Write {
                    records: step.records.clone(),
                    at: None,
                },
            );
            r.last_write = Some(write);
            self.out.push_back(Output::Append {
                partition,
                epoch,
                write,
                records: step.records,
            });
        }
        if !step.answers.is_empty() {
            r.held.push_back(Held {
                needs: r.last_write,
                deadline,
                answers: step.answers,
            });
        }
        self.advance(partition);
    }

    fn appended(&mut self, partition: i32, epoch: i32, write: WriteId, base: i64, end: i64) {
        let Some(r) = self.ready_at(partition, epoch) else {
            return;
        };
        let Some(w) = r.writes.get_mut(&write) else {
            return;
        };
        assert!(w.at.is_none(), "write {write} appended twice");
        assert_eq!(
            end - base,
            w.records.len() as i64,
            "write {write} appended with the wrong record count"
        );
        w.at = Some((base, end));
        if r.hw < end {
            self.out.push_back(Output::WaitCommitted {
                partition,
                epoch,
                offset: end,
            });
        }
        self.advance(partition);
    }

    fn append_failed(&mut self, partition: i32, epoch: i32, write: WriteId, error: WriteError) {
        let Some(r) = self.ready_at(partition, epoch) else {
            return;
        };
        if r.writes.remove(&write).is_none() {
            return;
        }
        self.fail_held(partition, |h| h.needs >= Some(write), error);
        self.reload(partition);
    }

    /// Drops the shard of `partition` (its waiting operations get NOT_COORDINATOR) and loads
    /// it again from the log at the same epoch.
    fn reload(&mut self, partition: i32) {
        let Some(slot) = self.slots.get(&partition) else {
            return;
        };
        let (epoch, salt) = (slot.epoch, slot.salt);
        self.stats.reloads += 1;
        self.drop_slot(partition);
        self.start_load(partition, epoch, salt.wrapping_add(1));
    }

    fn replication_failed(&mut self, partition: i32, epoch: i32, offset: i64, error: WriteError) {
        let retry = self.now + self.config.load_retry_ms;
        let Some(r) = self.ready_at(partition, epoch) else {
            return;
        };
        r.rewait_at = Some(retry);
        // The first write still waiting for `offset`: answers behind it fail.
        let Some(first) = r
            .writes
            .iter()
            .find(|(_, w)| w.at.is_some_and(|(_, end)| end <= offset))
            .map(|(id, _)| *id)
        else {
            return;
        };
        self.fail_held(partition, |h| h.needs >= Some(first), error);
    }

    /// Answers the held entries of `partition` that `which` picks with `error`.
    fn fail_held(
        &mut self,
        partition: i32,
        which: impl Fn(&Held<S::Response>) -> bool,
        error: WriteError,
    ) {
        let Some(State::Ready(r)) = self.slots.get_mut(&partition).map(|s| &mut s.state) else {
            return;
        };
        let (failed, kept): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut r.held).into_iter().partition(&which);
        r.held = kept;
        for h in failed {
            for (op, _) in h.answers {
                if self.ops.remove(&op).is_some() {
                    self.out.push_back(Output::Answer {
                        op,
                        answer: Err(CoordinatorError::Write(error)),
                    });
                }
            }
        }
    }

    /// Applies committed writes in log order and releases the answers they unblock.
    fn advance(&mut self, partition: i32) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(&partition) else {
            return;
        };
        let State::Ready(r) = &mut slot.state else {
            return;
        };
        loop {
            let next = r.writes.iter().find_map(|(id, w)| match w.at {
                Some((base, end)) if base == r.applied_end && end <= r.hw => Some(*id),
                _ => None,
            });
            let Some(id) = next else { break };
            let w = r.writes.remove(&id).expect("found");
            for (i, (k, v)) in w.records.iter().enumerate() {
                let offset = r.applied_end + i as i64;
                if r.shard.replay(now, offset, k, v.as_deref()).is_err() {
                    self.stats.bad_records += 1;
                }
            }
            r.applied_end += w.records.len() as i64;
        }
        // Records this runtime did not write lie between its writes (nothing of ours is in
        // flight to fill the hole): the shard no longer knows its log, so it is reloaded.
        let in_flight = r.writes.values().any(|w| w.at.is_none());
        let mut ranges: Vec<(i64, i64)> = r.writes.values().filter_map(|w| w.at).collect();
        ranges.sort_unstable();
        let mut cursor = r.applied_end;
        let mut gap = false;
        for (base, end) in ranges {
            gap |= base != cursor;
            cursor = end;
        }
        if gap && !in_flight {
            self.reload(partition);
            return;
        }
        let committed = r.hw >= r.load_end;
        while let Some(h) = r.held.front() {
            let blocked = h
                .needs
                .is_some_and(|n| r.writes.range(..=n).next().is_some());
            if !committed || blocked {
                break;
            }
            let h = r.held.pop_front().expect("front");
            for (op, answer) in h.answers {
                if self.ops.remove(&op).is_some() {
                    self.out.push_back(Output::Answer {
                        op,
                        answer: Ok(answer),
                    });
                }
            }
        }
    }

    fn tick(&mut self, wall_ms: i64, env: &S::Env) {
        let now = self.now;
        let mut work = Vec::new();
        let mut expired = Vec::new();
        for (p, slot) in self.slots.iter_mut() {
            match &mut slot.state {
                State::Loading { next, retry_at, .. } => {
                    if retry_at.is_some_and(|t| t <= now) {
                        *retry_at = None;
                        work.push(Output::ReadForLoad {
                            partition: *p,
                            epoch: slot.epoch,
                            from: *next,
                            max_bytes: self.config.load_read_bytes,
                        });
                    }
                }
                State::Ready(r) => {
                    if r.held.iter().any(|h| h.deadline <= now) {
                        expired.push(*p);
                    }
                    if r.rewait_at.is_some_and(|t| t <= now) {
                        r.rewait_at = None;
                        let end = r.writes.values().filter_map(|w| w.at.map(|a| a.1)).max();
                        if let Some(offset) = end.filter(|e| *e > r.hw) {
                            work.push(Output::WaitCommitted {
                                partition: *p,
                                epoch: slot.epoch,
                                offset,
                            });
                        }
                    }
                }
            }
        }
        self.out.extend(work);
        for p in expired {
            self.fail_held(p, |h| h.deadline <= now, WriteError::Timeout);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.tick_ms;
            let parts: Vec<i32> = self.slots.keys().copied().collect();
            for p in parts {
                let Some(State::Ready(r)) = self.slots.get_mut(&p).map(|s| &mut s.state) else {
                    continue;
                };
                let step = r.shard.tick(now, wall_ms, env);
                self.absorb(p, step);
            }
        }
    }

    /// Asserts the runtime's invariants and every shard's (tests and simulation).
    pub fn check_invariants(&self) {
        assert!(
            self.ops.len() <= self.config.waiting_max,
            "{} operations wait, over the bound {}",
            self.ops.len(),
            self.config.waiting_max
        );
        for (p, op_part) in &self.ops {
            assert!(
                matches!(
                    self.slots.get(op_part).map(|s| &s.state),
                    Some(State::Ready(_))
                ),
                "operation {p} waits on partition {op_part}, which is not loaded"
            );
        }
        for (p, slot) in &self.slots {
            let State::Ready(r) = &slot.state else {
                continue;
            };
            assert!(
                r.applied_end >= r.load_end,
                "partition {p}: applied below the load"
            );
            assert!(
                r.applied_end == r.load_end || r.applied_end <= r.hw,
                "partition {p}: applied {} above the high watermark {}",
                r.applied_end,
                r.hw
            );
            let mut ranges: Vec<(i64, i64)> = r.writes.values().filter_map(|w| w.at).collect();
            ranges.sort_unstable();
            let mut end = r.applied_end;
            for (b, e) in ranges {
                assert!(
                    b >= end,
                    "partition {p}: writes overlap or lie below the applied end"
                );
                end = e;
            }
            for w in r.writes.keys() {
                assert!(Some(*w) <= r.last_write, "partition {p}: unknown write {w}");
            }
            let mut prev = None;
            for h in &r.held {
                assert!(h.needs >= prev, "partition {p}: held answers out of order");
                assert!(
                    h.needs <= r.last_write,
                    "partition {p}: held on a future write"
                );
                prev = h.needs;
            }
            r.shard.check_invariants();
        }
    }
}

/// Replays the records at or after `*next` of the whole batches in `bytes` into `shard`,
/// moving `*next` past them: (records replayed, records that did not replay).
fn replay_batches<S: CoordinatorShard>(
    shard: &mut S,
    now: u64,
    next: &mut i64,
    bytes: &[u8],
) -> (u64, u64) {
    let (mut records, mut bad) = (0u64, 0u64);
    let mut pos = 0;
    while pos < bytes.len() {
        let Ok(h) = batch::parse_header(&bytes[pos..]) else {
            break;
        };
        if h.size == 0 || pos + h.size > bytes.len() {
            break;
        }
        // A read may start inside a batch already loaded: skip what is behind `next`.
        if h.next_offset() > *next {
            match offsets::batch_records(&bytes[pos..pos + h.size]) {
                Ok(recs) => {
                    for (offset, key, value) in recs {
                        if offset < *next {
                            continue;
                        }
                        records += 1;
                        let ok = key.is_some_and(|k| shard.replay(now, offset, k, value).is_ok());
                        bad += u64::from(!ok);
                    }
                }
                Err(_) => bad += 1,
            }
            *next = h.next_offset();
        }
        pos += h.size;
    }
    (records, bad)
}
