//! The coordinator runtime driven by a model of its partition: a toy key-value shard for the
//! runtime's own rules (load, write -> replicate -> apply, barriers, epoch fencing, failing
//! waiters), plus the group shard through the runtime.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use skein_core::batch::build;
use skein_core::coordinator::runtime::{
    CoordinatorError, Input, Output, Runtime, RuntimeConfig, WriteError,
};
use skein_core::coordinator::shard::{CoordinatorShard, OpId, Record, Step};

/// A shard whose whole state is its records: key -> (value, offset).
#[derive(Debug, Default)]
struct Kv {
    map: BTreeMap<Vec<u8>, (Vec<u8>, i64)>,
    last: i64,
}

#[derive(Debug, Clone)]
enum KvReq {
    Put(u8, u8),
    Get(u8),
}

impl CoordinatorShard for Kv {
    type Config = ();
    type Request = KvReq;
    type Response = Option<Vec<u8>>;
    type Env = ();
    type ReplayError = ();

    fn create(_: &(), _: u64) -> Self {
        Kv {
            map: BTreeMap::new(),
            last: -1,
        }
    }

    fn replay(&mut self, _: u64, offset: i64, k: &[u8], v: Option<&[u8]>) -> Result<(), ()> {
        assert!(offset > self.last, "replayed out of log order");
        self.last = offset;
        match v {
            Some(v) => self.map.insert(k.to_vec(), (v.to_vec(), offset)),
            None => self.map.remove(k),
        };
        Ok(())
    }

    fn handle(&mut self, _: u64, _: i64, op: OpId, req: KvReq) -> Step<Option<Vec<u8>>> {
        match req {
            KvReq::Put(k, v) => Step {
                records: vec![(vec![k], Some(vec![v]))],
                answers: vec![(op, None)],
            },
            KvReq::Get(k) => Step {
                records: vec![],
                answers: vec![(op, self.map.get(&vec![k]).map(|(v, _)| v.clone()))],
            },
        }
    }

    fn tick(&mut self, _: u64, _: i64, _: &()) -> Step<Option<Vec<u8>>> {
        Step::default()
    }

    fn check_invariants(&self) {}
}

const P: i32 = 3;

/// One batch of `recs` at `base`, as a partition stores it.
fn batch_at(base: i64, recs: &[Record]) -> Vec<u8> {
    let simple: Vec<build::SimpleRecord> = recs
        .iter()
        .map(|(k, v)| build::SimpleRecord {
            key: Some(k.clone()),
            value: v.clone(),
            headers: vec![],
            timestamp: 0,
        })
        .collect();
    let mut b = build::batch(&simple, None);
    b[..8].copy_from_slice(&base.to_be_bytes());
    b
}

/// The partition and its leader as the driver would carry outputs out.
struct Harness {
    rt: Runtime<Kv>,
    now: u64,
    /// The log: (epoch appended at, write id or none if loaded, record).
    log: Vec<(i32, Record)>,
    hw: i64,
    epoch: i32,
    leading: bool,
    /// Outputs not yet carried out.
    appends: Vec<(i32, u64, Vec<Record>)>,
    waits: Vec<(i32, i64)>,
    reads: Vec<(i32, i64)>,
    next_op: OpId,
    /// The log end the current load reached (answers wait for it to commit).
    load_end: Option<i64>,
    /// Write id -> its end once appended.
    write_end: BTreeMap<u64, i64>,
    /// Last write planned (its id), for the barrier check.
    last_write: Option<u64>,
    /// Highest write id planned so far.
    max_write: u64,
    /// Writes below this id were planned by a shard since dropped (a reload): when they still
    /// land they are foreign records to the new shard, which no answer of it waits for.
    foreign_below: u64,
    op_write: BTreeMap<OpId, Option<u64>>,
    answers: BTreeMap<OpId, Result<Option<Vec<u8>>, CoordinatorError>>,
    /// Appends failed so far (each may reload the shard).
    failed: u64,
    /// Reloads seen so far.
    reloads: u64,
}

impl Harness {
    fn new() -> Self {
        Harness {
            rt: Runtime::new(RuntimeConfig::default(), ()),
            now: 0,
            log: Vec::new(),
            hw: 0,
            epoch: 0,
            leading: false,
            appends: Vec::new(),
            waits: Vec::new(),
            reads: Vec::new(),
            next_op: 1,
            load_end: None,
            write_end: BTreeMap::new(),
            last_write: None,
            max_write: 0,
            foreign_below: 0,
            op_write: BTreeMap::new(),
            answers: BTreeMap::new(),
            failed: 0,
            reloads: 0,
        }
    }

    fn input(&mut self, input: Input<Kv>) {
        self.rt.handle(self.now, input);
        while let Some(o) = self.rt.poll_output() {
            match o {
                Output::ReadForLoad { epoch, from, .. } => self.reads.push((epoch, from)),
                Output::Append {
                    epoch,
                    write,
                    records,
                    ..
                } => {
                    assert_eq!(epoch, self.epoch, "a write planned at an old epoch");
                    self.last_write = Some(write);
                    self.max_write = self.max_write.max(write);
                    self.appends.push((epoch, write, records));
                }
                Output::WaitCommitted { epoch, offset, .. } => self.waits.push((epoch, offset)),
                Output::Answer { op, answer } => {
                    assert!(
                        self.answers.insert(op, answer.clone()).is_none(),
                        "op {op} answered twice"
                    );
                    if answer.is_ok() {
                        // The barrier: every write planned up to this op's step is committed.
                        // (A write that failed to append is not in the log: nothing to wait for.)
                        if let Some(Some(w)) = self.op_write.get(&op) {
                            for (_, end) in self.write_end.range(..=w) {
                                assert!(
                                    *end <= self.hw,
                                    "op {op} answered above the high watermark"
                                );
                            }
                        }
                        let load_end = self.load_end.expect("answered while not loaded");
                        assert!(
                            load_end <= self.hw,
                            "op {op} answered before the load committed"
                        );
                    }
                }
            }
        }
        if self.rt.stats().reloads > self.reloads {
            // A reloaded shard depends on the log it loads, not on the dropped shard's writes.
            self.reloads = self.rt.stats().reloads;
            self.load_end = None;
            self.last_write = None;
            self.write_end.clear();
            self.foreign_below = self.max_write + 1;
        }
        if self.load_end.is_none() {
            self.load_end = self.rt.applied_end(P);
        }
        self.rt.check_invariants();
        // Only this runtime writes the partition: it never finds a hole in its log to reload
        // for, unless an append failed (the shard is reloaded then, and writes of the dropped
        // shard still appended after it are foreign records to the new one).
        assert!(
            self.rt.stats().reloads == 0 || self.failed > 0,
            "reloaded without foreign records"
        );
        self.check_prefix();
    }

    /// The shard is a replay of a prefix of the log, and only of records that are in it now.
    fn check_prefix(&self) {
        let Ok(shard) = self.rt.shard(P) else { return };
        let end = self.rt.applied_end(P).expect("loaded");
        assert!(end as usize <= self.log.len(), "applied past the log end");
        let mut want: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = BTreeMap::new();
        for (i, (_, (k, v))) in self.log[..end as usize].iter().enumerate() {
            match v {
                Some(v) => want.insert(k.clone(), (v.clone(), i as i64)),
                None => want.remove(k),
            };
        }
        assert_eq!(shard.map, want, "state is not a replay of log[..{end}]");
    }

    fn request(&mut self, req: KvReq) {
        let op = self.next_op;
        self.next_op += 1;
        let before = self.last_write;
        self.input(Input::Request {
            partition: P,
            op,
            wall_ms: 0,
            request: req,
        });
        self.op_write.insert(op, self.last_write.or(before));
    }
}

#[derive(Debug, Clone)]
enum Act {
    Lead,
    Resign,
    Put(u8, u8),
    Get(u8),
    /// Carry out the oldest pending append; fail it if `fail`.
    Append {
        fail: bool,
    },
    /// Carry out the newest pending append first (out of order).
    AppendLast,
    /// The ISR catches up to some point of the log.
    Replicate(u8),
    /// Report one pending wait, picked by index (out of order).
    Report(u8),
    /// A stale report of an old epoch.
    Stale,
    /// Carry out a pending load read.
    Read,
    Time(u16),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => Just(Act::Lead),
        1 => Just(Act::Resign),
        // (after a resign, the next Lead is a new epoch: a failover back to this broker)
        10 => (0u8..4, any::<u8>()).prop_map(|(k, v)| Act::Put(k, v)),
        4 => (0u8..4).prop_map(Act::Get),
        8 => prop::bool::weighted(0.1).prop_map(|fail| Act::Append { fail }),
        1 => Just(Act::AppendLast),
        6 => any::<u8>().prop_map(Act::Replicate),
        8 => any::<u8>().prop_map(Act::Report),
        1 => Just(Act::Stale),
        8 => Just(Act::Read),
        2 => (0u16..600).prop_map(Act::Time),
    ]
}

impl Harness {
    fn step(&mut self, a: Act) {
        match a {
            Act::Lead => {
                // A new leader keeps the committed log and may lose the uncommitted tail.
                let keep = (self.hw as usize)
                    .max(self.log.len() * 3 / 4)
                    .min(self.log.len());
                self.log.truncate(keep.max(self.hw as usize));
                self.epoch += 1;
                self.leading = true;
                self.load_end = None;
                self.last_write = None;
                self.write_end.clear();
                self.input(Input::BecomeLeader {
                    partition: P,
                    epoch: self.epoch,
                    salt: 7,
                });
            }
            Act::Resign => {
                self.leading = false;
                self.load_end = None;
                self.last_write = None;
                self.input(Input::Resign { partition: P });
            }
            Act::Put(k, v) => self.request(KvReq::Put(k, v)),
            Act::Get(k) => self.request(KvReq::Get(k)),
            Act::Append { fail } => self.carry_append(0, fail),
            Act::AppendLast => {
                let i = self.appends.len().saturating_sub(1);
                self.carry_append(i, false)
            }
            Act::Replicate(n) => {
                let room = self.log.len() as i64 - self.hw;
                if room > 0 {
                    self.hw += i64::from(n % 8).min(room);
                }
            }
            Act::Report(i) => {
                if self.waits.is_empty() {
                    return;
                }
                let (epoch, offset) = self.waits.remove(usize::from(i) % self.waits.len());
                if epoch == self.epoch && self.leading && offset <= self.hw {
                    self.input(Input::Committed {
                        partition: P,
                        epoch,
                        hw: offset,
                    });
                } else if epoch == self.epoch && self.leading {
                    self.waits.push((epoch, offset));
                }
            }
            Act::Stale => {
                if self.epoch > 0 {
                    self.input(Input::Committed {
                        partition: P,
                        epoch: self.epoch - 1,
                        hw: i64::MAX / 2,
                    });
                }
            }
            Act::Read => {
                let Some((epoch, from)) = self.reads.pop() else {
                    return;
                };
                let from = from.max(0) as usize;
                let recs: Vec<Record> = self.log[from.min(self.log.len())..]
                    .iter()
                    .take(16)
                    .map(|(_, r)| r.clone())
                    .collect();
                let bytes = if recs.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::from(batch_at(from as i64, &recs))
                };
                let (log_end, hw) = (self.log.len() as i64, self.hw);
                self.input(Input::Loaded {
                    partition: P,
                    epoch,
                    bytes,
                    log_end,
                    hw,
                });
            }
            Act::Time(ms) => {
                self.now += u64::from(ms);
                self.input(Input::Tick {
                    wall_ms: 0,
                    env: (),
                });
            }
        }
    }

    fn carry_append(&mut self, i: usize, fail: bool) {
        if i >= self.appends.len() {
            return;
        }
        let (epoch, write, records) = self.appends.remove(i);
        if fail || !self.leading || epoch != self.epoch {
            let error = if fail {
                WriteError::Storage
            } else {
                WriteError::NotLeader
            };
            self.failed += 1;
            self.input(Input::AppendFailed {
                partition: P,
                epoch,
                write,
                error,
            });
            return;
        }
        let base = self.log.len() as i64;
        self.log.extend(records.into_iter().map(|r| (epoch, r)));
        let end = self.log.len() as i64;
        if write >= self.foreign_below {
            self.write_end.insert(write, end);
        }
        self.input(Input::Appended {
            partition: P,
            epoch,
            write,
            base,
            end,
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// After every input: the shard is a replay of a prefix of the log; no answer before its
    /// writes are at or below the high watermark; nothing of an old epoch applied; each
    /// operation answered at most once.
    #[test]
    fn runtime_keeps_its_invariants(acts in prop::collection::vec(act(), 1..200)) {
        let mut h = Harness::new();
        // Led and loaded from the start, so most requests reach a shard.
        for a in [Act::Lead, Act::Read].into_iter().chain(acts) {
            h.step(a);
        }
    }
}

#[test]
fn a_commit_is_answered_once_replicated_and_a_read_waits_behind_it() {
    let mut h = Harness::new();
    h.step(Act::Lead);
    h.step(Act::Read);
    assert!(h.rt.shard(P).is_ok(), "an empty partition loads at once");
    h.step(Act::Put(1, 10));
    h.step(Act::Get(1));
    assert!(h.answers.is_empty(), "nothing before the write is appended");
    h.step(Act::Append { fail: false });
    assert!(
        h.answers.is_empty(),
        "nothing before the write is replicated"
    );
    h.step(Act::Replicate(7));
    h.step(Act::Report(0));
    assert_eq!(h.answers.get(&1), Some(&Ok(None)));
    // The read was handled before the write applied: it saw the old state, but was released
    // only after the write it followed.
    assert_eq!(h.answers.get(&2), Some(&Ok(None)));
    h.step(Act::Get(1));
    assert_eq!(h.answers.get(&3), Some(&Ok(Some(vec![10]))));
}

#[test]
fn losing_leadership_fails_waiters_and_fences_old_writes() {
    let mut h = Harness::new();
    h.step(Act::Lead);
    h.step(Act::Read);
    h.step(Act::Put(1, 10));
    h.step(Act::Append { fail: false });
    h.step(Act::Lead); // a new epoch: the unreplicated write is cut from the log
    assert_eq!(
        h.answers.get(&1),
        Some(&Err(CoordinatorError::NotCoordinator))
    );
    assert_eq!(h.log.len(), 0);
    // The old epoch's wait reports late: ignored.
    h.hw = 0;
    h.input(Input::Committed {
        partition: P,
        epoch: 1,
        hw: 1,
    });
    h.step(Act::Read);
    assert_eq!(h.rt.applied_end(P), Some(0));
    h.step(Act::Get(1));
    assert_eq!(h.answers.get(&2), Some(&Ok(None)));
    h.step(Act::Resign);
    h.step(Act::Get(1));
    assert_eq!(
        h.answers.get(&3),
        Some(&Err(CoordinatorError::NotCoordinator))
    );
}

#[test]
fn failed_and_timed_out_writes_fail_their_answers() {
    let mut h = Harness::new();
    h.step(Act::Lead);
    h.step(Act::Read);
    h.step(Act::Put(1, 10));
    h.step(Act::Append { fail: true });
    assert_eq!(
        h.answers.get(&1),
        Some(&Err(CoordinatorError::Write(WriteError::Storage)))
    );
    // The shard is rebuilt from the log, which does not hold the failed write.
    assert_eq!(h.rt.stats().reloads, 1);
    h.step(Act::Read);
    assert_eq!(h.rt.applied_end(P), Some(0));
    h.step(Act::Put(2, 20));
    h.step(Act::Append { fail: false });
    h.step(Act::Time(2_000));
    h.step(Act::Time(2_000));
    assert!(!h.answers.contains_key(&2));
    h.step(Act::Time(2_000));
    assert_eq!(
        h.answers.get(&2),
        Some(&Err(CoordinatorError::Write(WriteError::Timeout)))
    );
    // Committed late, the write still applies: the state follows the log.
    h.step(Act::Replicate(7));
    h.step(Act::Report(0));
    assert_eq!(h.rt.applied_end(P), Some(1));
    h.step(Act::Get(2));
    assert_eq!(h.answers.get(&3), Some(&Ok(Some(vec![20]))));
}

/// A failed wait for the high watermark is asked again later: the write is in the log and,
/// with no other write to report it, would otherwise never be applied (an early version held
/// every later answer behind it until each timed out, and groups never completed a rebalance).
#[test]
fn a_failed_wait_is_asked_again() {
    let mut h = Harness::new();
    h.step(Act::Lead);
    h.step(Act::Read);
    h.step(Act::Put(1, 10));
    h.step(Act::Append { fail: false });
    let (epoch, offset) = h.waits.pop().expect("a wait");
    h.input(Input::ReplicationFailed {
        partition: P,
        epoch,
        offset,
        error: WriteError::NotEnoughReplicas,
    });
    assert_eq!(
        h.answers.get(&1),
        Some(&Err(CoordinatorError::Write(WriteError::NotEnoughReplicas)))
    );
    assert!(h.waits.is_empty());
    h.step(Act::Time(1_000));
    assert_eq!(h.waits, vec![(epoch, offset)]);
    h.step(Act::Replicate(7));
    h.step(Act::Report(0));
    assert_eq!(h.rt.applied_end(P), Some(1));
}

#[test]
fn a_load_replays_the_log_in_reads_and_waits_for_its_tail_to_commit() {
    let mut h = Harness::new();
    h.log = (0..7u8)
        .map(|i| (0, (vec![i % 3], Some(vec![i]))))
        .collect();
    h.hw = 5;
    (h.epoch, h.leading) = (1, true);
    h.input(Input::BecomeLeader {
        partition: P,
        epoch: 1,
        salt: 7,
    });
    h.step(Act::Get(0));
    assert_eq!(
        h.answers.get(&1),
        Some(&Err(CoordinatorError::LoadInProgress))
    );
    for _ in 0..4 {
        h.step(Act::Read);
    }
    assert_eq!(h.rt.applied_end(P), Some(7));
    h.step(Act::Get(0));
    assert!(
        !h.answers.contains_key(&2),
        "the loaded tail is not committed yet"
    );
    h.step(Act::Replicate(7));
    h.step(Act::Report(0));
    assert_eq!(h.answers.get(&2), Some(&Ok(Some(vec![6]))));
}

mod groups {
    use super::*;
    use skein_core::coordinator::group_shard::{GroupRequest, GroupResponse, GroupShard};
    use skein_core::group::{GroupError, Join};
    use skein_core::offsets::OffsetValue;

    fn join(member: &str) -> Join {
        Join {
            member_id: member.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), vec![])],
            require_known_member_id: false,
        }
    }

    struct G {
        rt: Runtime<GroupShard>,
        now: u64,
        end: i64,
        answers: BTreeMap<OpId, Result<GroupResponse, CoordinatorError>>,
        appends: Vec<(u64, usize)>,
    }

    impl G {
        fn new() -> Self {
            let mut g = G {
                rt: Runtime::new(RuntimeConfig::default(), Default::default()),
                now: 0,
                end: 0,
                answers: BTreeMap::new(),
                appends: Vec::new(),
            };
            g.input(Input::BecomeLeader {
                partition: 0,
                epoch: 1,
                salt: 3,
            });
            g.input(Input::Loaded {
                partition: 0,
                epoch: 1,
                bytes: Bytes::new(),
                log_end: 0,
                hw: 0,
            });
            g
        }
        fn input(&mut self, i: Input<GroupShard>) {
            self.rt.handle(self.now, i);
            while let Some(o) = self.rt.poll_output() {
                match o {
                    Output::Append { write, records, .. } => {
                        self.appends.push((write, records.len()))
                    }
                    Output::Answer { op, answer } => {
                        self.answers.insert(op, answer);
                    }
                    _ => {}
                }
            }
            self.rt.check_invariants();
        }
        fn req(&mut self, op: OpId, request: GroupRequest) {
            self.input(Input::Request {
                partition: 0,
                op,
                wall_ms: 1_000,
                request,
            });
        }
        /// Appends and commits every pending write.
        fn commit_all(&mut self) {
            for (write, n) in std::mem::take(&mut self.appends) {
                let base = self.end;
                self.end += n as i64;
                self.input(Input::Appended {
                    partition: 0,
                    epoch: 1,
                    write,
                    base,
                    end: self.end,
                });
            }
            let hw = self.end;
            self.input(Input::Committed {
                partition: 0,
                epoch: 1,
                hw,
            });
        }
    }

    #[test]
    fn a_generation_is_stored_before_its_members_learn_it() {
        let mut g = G::new();
        g.req(
            1,
            GroupRequest::Join {
                group: "g".into(),
                join: join(""),
            },
        );
        g.now = 3_100;
        g.input(Input::Tick {
            wall_ms: 1_000,
            env: BTreeMap::new(),
        });
        let Some(Ok(GroupResponse::Join(Ok(joined)))) = g.answers.get(&1).cloned() else {
            panic!("{:?}", g.answers)
        };
        g.req(
            2,
            GroupRequest::Sync {
                group: "g".into(),
                member: joined.member_id.clone(),
                instance: None,
                generation: joined.generation,
                assignments: vec![(joined.member_id.clone(), vec![9])],
                protocol_type: Some("consumer".into()),
                protocol_name: None,
            },
        );
        assert!(
            !g.answers.contains_key(&2),
            "the assignment is stored first"
        );
        assert_eq!(g.appends.len(), 1);
        g.commit_all();
        assert_eq!(
            g.answers.get(&2),
            Some(&Ok(GroupResponse::Sync {
                result: Ok(vec![9]),
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
            }))
        );
        // A commit by the member is answered once replicated, and then fetched.
        let v = OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 1,
        };
        g.req(
            3,
            GroupRequest::Commit {
                group: "g".into(),
                member: joined.member_id.clone(),
                instance: None,
                generation: joined.generation,
                offsets: vec![("t".into(), 0, v)],
            },
        );
        assert!(g
            .rt
            .shard(0)
            .unwrap()
            .groups()
            .offset("g", "t", 0)
            .is_none());
        g.commit_all();
        assert_eq!(g.answers.get(&3), Some(&Ok(GroupResponse::Commit(Ok(())))));
        let c = g.rt.shard(0).unwrap().groups().offset("g", "t", 0).unwrap();
        assert_eq!(c.value.offset, 42);
        // Refusals come back as the group's errors, without writes.
        g.req(4, GroupRequest::DeleteGroup { group: "g".into() });
        assert_eq!(
            g.answers.get(&4),
            Some(&Ok(GroupResponse::DeleteGroup(Err(
                GroupError::NonEmptyGroup
            ))))
        );
        // Losing the partition fails a join that waits.
        g.req(
            5,
            GroupRequest::Join {
                group: "g".into(),
                join: join(""),
            },
        );
        g.input(Input::Resign { partition: 0 });
        assert_eq!(
            g.answers.get(&5),
            Some(&Err(CoordinatorError::NotCoordinator))
        );
        assert_eq!(g.rt.waiting(), 0);
    }

    /// A generation whose metadata write failed is not kept in memory as if stored: the shard
    /// is reloaded from the log (an early version kept it, never wrote it again, and after a
    /// failover handed the same generation number to new members while the old ones still
    /// held their partitions).
    #[test]
    fn a_failed_generation_write_reloads_the_shard() {
        let mut g = G::new();
        g.req(
            1,
            GroupRequest::Join {
                group: "g".into(),
                join: join(""),
            },
        );
        g.now = 3_100;
        g.input(Input::Tick {
            wall_ms: 1_000,
            env: BTreeMap::new(),
        });
        let Some(Ok(GroupResponse::Join(Ok(joined)))) = g.answers.get(&1).cloned() else {
            panic!("{:?}", g.answers)
        };
        g.req(
            2,
            GroupRequest::Sync {
                group: "g".into(),
                member: joined.member_id.clone(),
                instance: None,
                generation: joined.generation,
                assignments: vec![(joined.member_id.clone(), vec![9])],
                protocol_type: None,
                protocol_name: None,
            },
        );
        assert_eq!(g.appends.len(), 1, "the generation is written");
        let (write, _) = g.appends.remove(0);
        g.input(Input::AppendFailed {
            partition: 0,
            epoch: 1,
            write,
            error: WriteError::Storage,
        });
        assert_eq!(
            g.answers.get(&2),
            Some(&Err(CoordinatorError::Write(WriteError::Storage)))
        );
        assert_eq!(g.rt.shard(0).err(), Some(CoordinatorError::LoadInProgress));
        g.input(Input::Loaded {
            partition: 0,
            epoch: 1,
            bytes: Bytes::new(),
            log_end: 0,
            hw: 0,
        });
        let groups = g.rt.shard(0).unwrap().groups();
        assert!(groups.group("g").is_none_or(|x| x.generation() == 0));
        assert_eq!(g.rt.stats().reloads, 1);
    }
}

/// Two writes appended before either commits sit back to back: not a hole (an early version
/// took the second for foreign records and reloaded, failing every waiting member).
#[test]
fn writes_appended_back_to_back_are_not_a_hole() {
    let mut h = Harness::new();
    h.step(Act::Lead);
    h.step(Act::Read);
    h.step(Act::Put(1, 10));
    h.step(Act::Put(2, 20));
    h.step(Act::Append { fail: false });
    h.step(Act::Append { fail: false });
    assert_eq!(h.rt.stats().reloads, 0);
    h.step(Act::Replicate(7));
    h.step(Act::Report(1));
    h.step(Act::Report(0));
    assert_eq!(h.rt.applied_end(P), Some(2));
    assert_eq!(h.answers.len(), 2);
}

#[test]
fn waiting_operations_are_bounded() {
    let mut h = Harness::new();
    let config = RuntimeConfig {
        waiting_max: 2,
        ..RuntimeConfig::default()
    };
    h.rt = Runtime::new(config, ());
    h.step(Act::Lead);
    h.step(Act::Read);
    for k in 0..3 {
        h.step(Act::Put(k, k));
    }
    assert_eq!(h.rt.waiting(), 2);
    assert_eq!(h.answers.get(&3), Some(&Err(CoordinatorError::Overloaded)));
    // Once the writes commit, room again.
    h.step(Act::Append { fail: false });
    h.step(Act::Append { fail: false });
    h.step(Act::Replicate(7));
    h.step(Act::Report(0));
    h.step(Act::Report(0));
    assert_eq!(h.rt.waiting(), 0);
    h.step(Act::Get(1));
    assert_eq!(h.answers.get(&4), Some(&Ok(Some(vec![1]))));
}
