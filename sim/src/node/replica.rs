//! Each partition's core [`Replica`], driven as skein-broker's `partition.rs` drives it: the
//! node is the only replica (leader, ISR = replicas = [the node], min.insync.replicas from the
//! topic, [`FlushPolicy::FsyncBeforeAck`]). Produce requests, consumer fetches and fsync
//! completions go in as inputs; the storage work it asks for is carried out on the partition's
//! store before the next input, and its answers go back to the clients.
//!
//! The driver keeps only I/O state: the group-commit fsync in flight or asked for (a
//! `NeedSync` the simulator turns into `sync_start` / `sync_done` events) and, by token, the
//! acks=-1 produces waiting for their answer (the broker's `waiters`, with what a failed fsync
//! must answer). Whether and when a write is acknowledged and how far a consumer may read are
//! the replica's.
//!
//! Invariants: every input is followed by [`Replica::check_invariants`]; the replica sees every
//! append and every completed fsync of the store; an acks=-1 produce is answered with what the
//! replica answers for its token, or with KAFKA_STORAGE_ERROR when the fsync covering it fails
//! (as `produce.rs`'s `wait_acked`), and nothing else.

use std::collections::{BTreeMap, VecDeque};

use skein_core::catalog::PartitionState;
use skein_core::fetch::Grant;
use skein_core::log::{committed_len, Appended};
use skein_core::replica::{
    FetchAnswer, FlushPolicy, Input, Output, Replica, ReplicaConfig, ReplicaError, StorageOp,
};
use skein_core::replication::ReplicationConfig;
use skein_storage::fs::FsFile;
use skein_storage::partition::{read_range, PartitionStore, StorageError};

use super::{
    storage_code, FetchResult, Node, NodeOut, PartKey, ProduceResult, SyncFile, TopicId,
    STORAGE_ERROR, UNKNOWN_TOPIC,
};
use crate::disk_fs::{SimFs, SimFsFile};

/// The single node's broker id (the one broker its catalog registers).
pub(super) const NODE_ID: i32 = 1;

/// An acks=-1 produce waiting for its replica's answer.
#[derive(Debug)]
pub(super) struct Waiter {
    /// Client index.
    pub client: usize,
    /// Request id.
    pub req: u64,
    /// First offset written.
    pub base_offset: i64,
    /// Last offset written.
    pub last_offset: i64,
}

/// What one input to a partition's replica led to, besides the storage work carried out.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// The leader append of a produce request: where it landed, or the store's error.
    pub appended: Option<Result<Appended, StorageError>>,
    /// Produce answers, by token.
    pub produced: Vec<(u64, Result<i64, ReplicaError>)>,
    /// Fetch answers, by token.
    pub fetched: Vec<(u64, Result<FetchAnswer, ReplicaError>)>,
    /// The replica asked for an fsync.
    pub fsync: bool,
}

/// One open partition: its store, its replica, the group commit's state and the waiters.
pub(super) struct PartState {
    /// The id of the topic these files belong to.
    pub topic_id: TopicId,
    /// The log and its files.
    pub store: PartitionStore<SimFs>,
    /// The replica state machine.
    pub replica: Replica,
    /// A group-commit fsync runs.
    pub syncing: bool,
    /// A group-commit fsync is asked for (a `NeedSync` is out).
    pub sync_requested: bool,
    /// acks=-1 produces waiting for the replica's answer, by token.
    pub waiters: BTreeMap<u64, Waiter>,
    next_token: u64,
}

/// The Kafka error name of a replica's refusal (skein-proto's `replica_error`).
pub(super) fn replica_code(e: ReplicaError) -> &'static str {
    match e {
        ReplicaError::NotLeaderOrFollower | ReplicaError::NotReplica => "NOT_LEADER_OR_FOLLOWER",
        ReplicaError::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
        ReplicaError::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
        ReplicaError::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
        ReplicaError::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        ReplicaError::RequestTimedOut => "REQUEST_TIMED_OUT",
        ReplicaError::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
        ReplicaError::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
        ReplicaError::PolicyViolation => "POLICY_VIOLATION",
    }
}

impl PartState {
    /// A partition opened from `store` (all of it durable, as after a start), taking the role
    /// committed metadata gives it: on the single node, always the leader.
    pub fn new(
        topic_id: TopicId,
        store: PartitionStore<SimFs>,
        (state, min_insync): (&PartitionState, usize),
        canary: Option<skein_core::canary::Canary>,
        now_ms: u64,
    ) -> PartState {
        let config = ReplicaConfig {
            me: NODE_ID,
            replication: ReplicationConfig::default(),
            flush: FlushPolicy::FsyncBeforeAck,
        };
        let mut replica = Replica::new(config, store.log(), 0, now_ms);
        replica.set_canary(canary);
        let mut ps = PartState {
            topic_id,
            store,
            replica,
            syncing: false,
            sync_requested: false,
            waiters: BTreeMap::new(),
            next_token: 1,
        };
        let input = Input::Metadata {
            state: state.clone(),
            min_insync_replicas: min_insync,
            // The node is the only replica and never fences itself.
            fenced: Vec::new(),
        };
        let fx = ps.drive(now_ms, input, None);
        assert!(
            ps.replica.leader_epoch().is_some(),
            "the only replica does not lead: {state:?}"
        );
        // A new leadership over a durable log asks for no fsync and answers nothing.
        assert!(fx.produced.is_empty() && !fx.fsync, "{fx:?}");
        ps
    }

    /// A fresh token naming one request to the replica.
    pub fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// Hands `input` to the replica and carries out what it asks, feeding completions back
    /// (`Partition::drive`); `batch` is the produce request's batch, if the input is one.
    pub fn drive(&mut self, now_ms: u64, input: Input, batch: Option<&[u8]>) -> Effects {
        let mut fx = Effects::default();
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            self.replica.handle(now_ms, self.store.log(), input);
            self.replica.check_invariants();
            while let Some(o) = self.replica.poll_output() {
                match o {
                    Output::Storage(op) => {
                        inputs.extend(self.carry_out(now_ms, op, batch, &mut fx));
                    }
                    Output::ProduceDone { token, result } => fx.produced.push((token, result)),
                    Output::FetchDone { token, result } => fx.fetched.push((token, result)),
                    Output::HwChanged(_) | Output::DeleteRecordsDone { .. } => {}
                    Output::ProposeIsr(p) => {
                        panic!("the only replica proposed an ISR change: {p:?}")
                    }
                }
            }
        }
        fx
    }

    /// Carries out one storage operation: the input reporting its completion, if any.
    fn carry_out(
        &mut self,
        now_ms: u64,
        op: StorageOp,
        batch: Option<&[u8]>,
        fx: &mut Effects,
    ) -> Option<Input> {
        match op {
            StorageOp::AppendProduced { token, .. } => {
                let batch = batch.expect("the replica appends only the batch it is handed");
                let res = self.store.append(now_ms, batch);
                let offsets = res.as_ref().ok().map(|a| (a.base_offset, a.last_offset));
                let next = Input::leader_append_outcome(token, offsets);
                fx.appended = Some(res);
                Some(next)
            }
            StorageOp::Fsync { .. } => {
                fx.fsync = true;
                None
            }
            StorageOp::SetLeaderEpoch(epoch) => {
                // As the broker: a failed save is logged there, and the start goes on.
                let _ = self.store.set_leader_epoch(epoch);
                None
            }
            StorageOp::AdvanceLogStart(offset) => {
                // As the broker: a failed save is logged there; the log start moved in memory.
                let _ = self.store.advance_log_start(offset);
                None
            }
            StorageOp::AppendFetched | StorageOp::TruncateTo(_) | StorageOp::ResetTo(_) => {
                panic!("follower storage work {op:?} asked of the only replica")
            }
        }
    }
}

impl Node {
    /// Handles a produce request for one partition as `produce.rs` does: the replica gates it
    /// and asks for the append; the answer goes out as the replica gives it (acks=1 at once,
    /// acks=-1 once the high watermark covers the batch), never for acks=0.
    pub fn produce(
        &mut self,
        now_ms: u64,
        key: &PartKey,
        (client, req): (usize, u64),
        bytes: &[u8],
        acks: i16,
        timeout_ms: u64,
    ) -> Vec<NodeOut> {
        assert!(self.up, "produce to a down node");
        let mut out = Vec::new();
        let reply = |out: &mut Vec<NodeOut>, result: ProduceResult| {
            if acks != 0 {
                out.push(NodeOut::Reply {
                    client,
                    req,
                    result,
                });
            }
        };
        let Some(ps) = self.parts.get_mut(key) else {
            let msg = format!("topic '{}' has no partition {}", key.0, key.1);
            reply(&mut out, ProduceResult::Err(UNKNOWN_TOPIC, msg));
            return out;
        };
        let token = ps.token();
        let input = Input::Produce {
            token,
            acks: acks as i8,
            timeout_ms,
        };
        let mut fx = ps.drive(now_ms, input, Some(bytes));
        let own = fx.produced.iter().position(|(t, _)| *t == token);
        let answer = own.map(|i| fx.produced.remove(i).1);
        match fx.appended.take() {
            // Refused by the gate before the append.
            None => {
                let e = answer.and_then(Result::err);
                let e = e.unwrap_or(ReplicaError::NotLeaderOrFollower);
                reply(&mut out, ProduceResult::Err(replica_code(e), e.to_string()));
            }
            Some(Err(e)) => reply(
                &mut out,
                ProduceResult::Err(storage_code(&e), e.to_string()),
            ),
            Some(Ok(a)) => {
                let w = Waiter {
                    client,
                    req,
                    base_offset: a.base_offset,
                    last_offset: a.last_offset,
                };
                match answer {
                    None => drop(ps.waiters.insert(token, w)),
                    // The replica answers acks=0 too; Kafka sends nothing.
                    Some(_) if acks == 0 => {}
                    Some(result) => out.push(answered(&w, ps.topic_id, result)),
                }
            }
        }
        ps.after(key, fx, &mut out);
        out
    }

    /// True when `key` is open and belongs to topic `tid` (a sync of a deleted topic is stale).
    pub fn holds(&self, key: &PartKey, tid: TopicId) -> bool {
        self.parts.get(key).is_some_and(|ps| ps.topic_id == tid)
    }

    /// Starts a group-commit fsync: returns the offset it will cover and the file it syncs
    /// (the store's `sync_target`).
    pub fn sync_start(&mut self, key: &PartKey) -> (i64, SyncFile) {
        let ps = self.parts.get_mut(key).expect("open partition");
        ps.sync_requested = false;
        ps.syncing = true;
        let (file, target) = ps.store.sync_target();
        (target, file)
    }

    /// Completes a group-commit fsync as `partition.rs`'s `flush` does: reports the durable
    /// end to the replica, or (`ok == false`: EIO, nothing became durable) tells nothing to
    /// the replica and fails the acks=-1 produces the fsync covered, as `wait_acked` does.
    pub fn sync_done(
        &mut self,
        now_ms: u64,
        key: &PartKey,
        target: i64,
        file: &SimFsFile,
        ok: bool,
    ) -> Vec<NodeOut> {
        let ok = ok && file.sync_data().is_ok();
        let ps = self.parts.get_mut(key).expect("open partition");
        ps.syncing = false;
        let mut out = Vec::new();
        if ok {
            ps.store.note_flushed();
            let durable_end = target.min(ps.store.log().log_end_offset());
            let fx = ps.drive(now_ms, Input::Synced { durable_end }, None);
            ps.after(key, fx, &mut out);
        } else {
            let failed: Vec<u64> = ps
                .waiters
                .iter()
                .filter(|(_, w)| w.last_offset < target)
                .map(|(t, _)| *t)
                .collect();
            for t in failed {
                let w = ps.waiters.remove(&t).expect("waiter");
                let result = ProduceResult::Err(STORAGE_ERROR, "fsync failed".into());
                out.push(NodeOut::Reply {
                    client: w.client,
                    req: w.req,
                    result,
                });
            }
        }
        // The broker's flusher goes on while the log is not all synced, and after a failure
        // while acks=-1 produces still wait (each retries the fsync).
        let more = if ok {
            ps.replica.durable_end() < ps.store.log().log_end_offset()
        } else {
            !ps.waiters.is_empty()
        };
        if more {
            ps.want_sync(key, &mut out);
        }
        out
    }

    /// Serves a consumer fetch as `fetch.rs` does: the replica's gate says from where and up
    /// to what it may read (below the high watermark), then `PartitionStore::plan_fetch` +
    /// `read_range`, cut before the first batch at or above that bound. Also returns what else
    /// the input led to (the replica times acks=-1 produces out at any input).
    pub fn fetch(
        &mut self,
        now_ms: u64,
        key: &PartKey,
        offset: i64,
        max_bytes: u64,
    ) -> (FetchResult, Vec<NodeOut>) {
        let Some(ps) = self.parts.get_mut(key) else {
            return (FetchResult::UnknownTopic, Vec::new());
        };
        let topic_id = ps.topic_id;
        let token = ps.token();
        let input = Input::ConsumerFetch {
            token,
            fetch_offset: offset,
            current_leader_epoch: -1,
        };
        let mut fx = ps.drive(now_ms, input, None);
        let answer = fx.fetched.drain(..).find(|(t, _)| *t == token);
        let mut out = Vec::new();
        ps.after(key, fx, &mut out);
        let out_of_range = |ps: &PartState| FetchResult::OutOfRange {
            log_start: ps.store.log().log_start_offset(),
            high_watermark: ps.replica.hw(),
            topic_id,
        };
        let (from, upto, hw, log_start) = match answer.map(|(_, a)| a) {
            Some(Ok(FetchAnswer::Records {
                from,
                upto,
                hw,
                log_start,
            })) => (from, upto, hw, log_start),
            Some(Err(ReplicaError::OffsetOutOfRange)) => return (out_of_range(ps), out),
            other => panic!("the only replica answered a consumer fetch with {other:?}"),
        };
        let grant = Grant {
            max_bytes,
            whole_first: true,
        };
        let plan = if from >= upto {
            Ok(None)
        } else {
            ps.store.plan_fetch(from, grant)
        };
        let bytes = match plan {
            Err(_) => return (out_of_range(ps), out),
            Ok(None) => Vec::new(),
            Ok(Some(range)) => {
                let bytes = read_range(&range).expect("segment file shorter than the log says");
                bytes[..committed_len(&bytes, upto)].to_vec()
            }
        };
        let result = FetchResult::Ok {
            bytes,
            high_watermark: hw,
            log_start,
            topic_id,
        };
        (result, out)
    }
}

/// The answer to an acks=-1 produce, from its replica's.
fn answered(w: &Waiter, topic_id: TopicId, result: Result<i64, ReplicaError>) -> NodeOut {
    let result = match result {
        Ok(base) => {
            assert_eq!(base, w.base_offset, "acknowledged at another offset");
            ProduceResult::Ok {
                base_offset: w.base_offset,
                last_offset: w.last_offset,
                topic_id,
            }
        }
        Err(e) => ProduceResult::Err(replica_code(e), e.to_string()),
    };
    NodeOut::Reply {
        client: w.client,
        req: w.req,
        result,
    }
}

impl PartState {
    /// Carries out the rest of what an input led to: answers for waiting acks=-1 produces
    /// (answers for tokens nobody waits for any more are dropped, as the broker drops them) and
    /// the group-commit fsync the replica asked for.
    fn after(&mut self, key: &PartKey, fx: Effects, out: &mut Vec<NodeOut>) {
        for (token, result) in fx.produced {
            if let Some(w) = self.waiters.remove(&token) {
                out.push(answered(&w, self.topic_id, result));
            }
        }
        if fx.fsync {
            self.want_sync(key, out);
        }
    }

    /// Asks for a group-commit fsync unless one runs or is asked for already.
    fn want_sync(&mut self, key: &PartKey, out: &mut Vec<NodeOut>) {
        if !self.syncing && !self.sync_requested {
            self.sync_requested = true;
            out.push(NodeOut::NeedSync(key.clone(), self.topic_id));
        }
    }
}
