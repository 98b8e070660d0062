//! One open partition in the shell: its store, the group-commit flusher, and the driver of its
//! core replica state machine ([`skein_core::replica::Replica`]), which decides roles, the
//! produce and acks gates, fetch-serving gates, the follower's apply rules, ISR changes and the
//! high watermark. The shell only carries out what it asks: storage work through the store,
//! fsyncs on the blocking pool, answers to the requests waiting on it, ISR proposals.
//!
//! Lock order: `store`, then `replica`, then `waiters`; every input to the replica is handed
//! with the first two held, so the log it reads is the log the storage work changes, and the
//! clock it reads is taken under them (time never goes backwards for it).
//!
//! Invariants: the replica sees every append, truncation, reset and completed fsync of the
//! store (the store changes only in [`Partition::drive`] and the flusher, which reports each
//! fsync back); an fsync that straddles a truncation publishes nothing; an acks=all produce is
//! answered with what the replica answers for its token, and nothing else.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use skein_core::catalog::PartitionState;
use skein_core::log::Appended;
use skein_core::replica::{
    FetchAnswer, FlushPolicy, Input, Output, Replica, ReplicaConfig, ReplicaError, StorageOp,
};
use skein_core::replication::IsrProposal;
use skein_storage::partition::{PartitionStore, StorageError};
use skein_sys as sys;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::clock::now_ms;

/// The answer an acks=all produce waits for: its base offset, or why not.
pub type ProduceAnswer = Result<i64, ReplicaError>;

/// Data a storage operation the replica may ask for needs, which only the input's caller has.
#[derive(Clone, Copy)]
pub enum Data<'a> {
    /// Nothing.
    None,
    /// The batch of a produce request.
    Produced(&'a [u8]),
    /// The record batches of a fetch answer (a follower).
    Fetched(&'a Bytes),
}

/// What an input led to, besides what the driver already carried out.
#[derive(Debug, Default)]
pub struct Effects {
    /// The leader append of a produce request: where it landed, or the store's error.
    pub appended: Option<Result<Appended, StorageError>>,
    /// Produce answers for tokens nobody registered a waiter for (the caller's own).
    pub produced: Vec<(u64, ProduceAnswer)>,
    /// Fetch answers, by token.
    pub fetched: Vec<(u64, Result<FetchAnswer, ReplicaError>)>,
    /// ISR changes to propose to the controller.
    pub proposals: Vec<IsrProposal>,
    /// The end the replica asked to be fsynced (the caller starts or awaits the flush).
    pub fsync: Option<i64>,
    /// Storage work that failed (a follower's append, truncation or reset).
    pub storage_error: Option<StorageError>,
    /// DeleteRecords answers, by token: the new log start, or why not.
    pub deleted: Vec<(u64, Result<i64, ReplicaError>)>,
}

/// Settings every partition of a broker shares.
#[derive(Clone)]
pub struct PartitionEnv {
    /// The replica's settings (min.insync.replicas comes with each metadata input).
    pub replica: ReplicaConfig,
    /// The broker's "something to read" signal, bumped when a high watermark advances.
    pub wake: Arc<watch::Sender<u64>>,
    /// The broker's monotonic clock origin.
    pub started: tokio::time::Instant,
}

/// One open partition.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// The id of the topic these files belong to.
    pub topic_id: [u8; 16],
    /// The log and its files.
    pub store: Mutex<PartitionStore>,
    /// The replica state machine (taken after `store`).
    replica: Mutex<Replica>,
    /// acks=all produce requests waiting for the replica's answer, by token.
    waiters: Mutex<BTreeMap<u64, oneshot::Sender<ProduceAnswer>>>,
    next_token: AtomicU64,
    /// Log end offset known to be fsynced.
    synced: watch::Sender<i64>,
    flushing: AtomicBool,
    /// A background flusher runs (one per partition; appends nobody waits for ride on it).
    background_flush: AtomicBool,
    /// Bumped by every truncation, so an fsync that straddles one publishes nothing.
    resets: AtomicU64,
    /// Bumped when the high watermark or the role changes.
    pub repl_changed: watch::Sender<u64>,
    env: PartitionEnv,
}

/// Clears a partition's `flushing` flag and wakes the other waiters (so one of them flushes)
/// when the flush that set it ends, by completing, failing or being dropped.
struct FlushGuard<'a>(&'a Partition);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.flushing.store(false, Ordering::Release);
        self.0.synced.send_modify(|_| {});
    }
}

/// A partition opened from `store` (everything in it durable), with no role yet.
pub fn new_partition(
    topic: &str,
    index: i32,
    topic_id: [u8; 16],
    store: PartitionStore,
    env: PartitionEnv,
) -> Arc<Partition> {
    let end = store.log().log_end_offset();
    let now = env.started.elapsed().as_millis() as u64;
    let replica = Replica::new(env.replica, store.log(), 0, now);
    Arc::new(Partition {
        topic: topic.to_string(),
        index,
        topic_id,
        store: Mutex::new(store),
        replica: Mutex::new(replica),
        waiters: Mutex::new(BTreeMap::new()),
        next_token: AtomicU64::new(1),
        synced: watch::channel(end).0,
        flushing: AtomicBool::new(false),
        background_flush: AtomicBool::new(false),
        resets: AtomicU64::new(0),
        repl_changed: watch::channel(0).0,
        env,
    })
}

impl Partition {
    /// The replica, to read (take it after `store` when both are needed).
    pub fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().expect("replica lock")
    }

    /// The flush policy every replica of this broker follows (fixed at start).
    pub fn flush_policy(&self) -> FlushPolicy {
        self.env.replica.flush
    }

    /// A fresh token naming one request to the replica.
    pub fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands `input` to the replica and carries out what it asks, feeding completions back,
    /// with the store lock taken here.
    pub fn drive(self: &Arc<Self>, input: Input, data: Data<'_>) -> Effects {
        let mut st = self.store.lock().expect("partition lock");
        self.drive_locked(&mut st, input, data)
    }

    /// [`Partition::drive`] with the store lock held by the caller.
    pub fn drive_locked(
        self: &Arc<Self>,
        st: &mut PartitionStore,
        input: Input,
        data: Data<'_>,
    ) -> Effects {
        let mut fx = Effects::default();
        let mut hw_changed = false;
        {
            let mut r = self.replica.lock().expect("replica lock");
            // Completions the storage work reports, fed in order after the input (allocated only
            // when there are any).
            let mut inputs = VecDeque::new();
            let mut next = Some(input);
            while let Some(input) = next.take().or_else(|| inputs.pop_front()) {
                // Read under the locks, so no other input slips in with a later time first.
                let now = self.env.started.elapsed().as_millis() as u64;
                r.handle(now, st.log(), input);
                while let Some(o) = r.poll_output() {
                    match o {
                        Output::Storage(op) => {
                            if let Some(next) = self.carry_out(st, op, data, &mut fx) {
                                inputs.push_back(next);
                            }
                        }
                        Output::ProposeIsr(p) => fx.proposals.push(p),
                        Output::ProduceDone { token, result } => {
                            let waiter = self.waiters.lock().expect("waiters").remove(&token);
                            match waiter {
                                Some(tx) => drop(tx.send(result)),
                                None => fx.produced.push((token, result)),
                            }
                        }
                        Output::FetchDone { token, result } => fx.fetched.push((token, result)),
                        Output::HwChanged(_) => hw_changed = true,
                        Output::DeleteRecordsDone { token, result } => {
                            fx.deleted.push((token, result));
                        }
                    }
                }
            }
            #[cfg(debug_assertions)]
            r.check_invariants();
        }
        if hw_changed {
            self.repl_changed.send_modify(|n| *n += 1);
            self.env.wake.send_modify(|n| *n += 1);
        }
        fx
    }

    /// Carries out one storage operation: the input reporting its completion, if any.
    fn carry_out(
        &self,
        st: &mut PartitionStore,
        op: StorageOp,
        data: Data<'_>,
        fx: &mut Effects,
    ) -> Option<Input> {
        let now = now_ms();
        match op {
            StorageOp::AppendProduced { token, .. } => {
                let Data::Produced(batch) = data else {
                    unreachable!("the replica appends only the produce request it is handed")
                };
                let res = st.append(now, batch);
                let offsets = res.as_ref().ok().map(|a| (a.base_offset, a.last_offset));
                let next = Input::leader_append_outcome(token, offsets);
                fx.appended = Some(res);
                Some(next)
            }
            StorageOp::AppendFetched => {
                if let Data::Fetched(records) = data {
                    // Batches already held (a repeated answer) are skipped; the rest go in one
                    // write per run that lands in one segment.
                    if let Err(e) = st.append_replicated_all(now, records) {
                        fx.storage_error = Some(e);
                    }
                }
                Some(Input::FetchedAppended)
            }
            StorageOp::TruncateTo(cut) => {
                let before = st.log().log_end_offset();
                if cut >= before {
                    return None;
                }
                info!(topic = %self.topic, partition = self.index, from = before, to = cut,
                    "log diverged from the leader's; truncating");
                if let Err(e) = st.truncate_to(cut, now) {
                    fx.storage_error = Some(e);
                }
                // The cut segment is fsynced and the log reopened from disk: all of it is durable.
                let end = st.log().log_end_offset();
                self.reset_synced(end);
                Some(Input::Synced { durable_end: end })
            }
            StorageOp::ResetTo(offset) => {
                warn!(topic = %self.topic, partition = self.index, from = st.log().log_end_offset(),
                    to = offset, "behind the leader's log start; restarting the log there");
                if let Err(e) = st.reset_to(offset, now) {
                    fx.storage_error = Some(e);
                }
                let end = st.log().log_end_offset();
                self.reset_synced(end);
                Some(Input::Synced { durable_end: end })
            }
            StorageOp::Fsync { upto } => {
                fx.fsync = Some(fx.fsync.map_or(upto, |u| u.max(upto)));
                None
            }
            StorageOp::AdvanceLogStart(offset) => {
                if let Err(e) = st.advance_log_start(offset) {
                    warn!(topic = %self.topic, partition = self.index, error = %e,
                        "saving the log start offset failed");
                    fx.storage_error = Some(e);
                }
                None
            }
            StorageOp::SetLeaderEpoch(epoch) => {
                if let Err(e) = st.set_leader_epoch(epoch) {
                    warn!(topic = %self.topic, partition = self.index, error = %e,
                        "saving the leader epoch failed");
                }
                None
            }
        }
    }

    /// Committed metadata for this partition (with its replicas the catalog calls fenced):
    /// the replica takes its role from it.
    pub fn set_role(
        self: &Arc<Self>,
        state: &PartitionState,
        min_insync: usize,
        fenced: &[i32],
    ) -> Effects {
        let fx = self.drive(
            Input::Metadata {
                state: state.clone(),
                min_insync_replicas: min_insync,
                fenced: fenced.to_vec(),
            },
            Data::None,
        );
        self.repl_changed.send_modify(|n| *n += 1);
        if fx.fsync.is_some() {
            self.flush_in_background();
        }
        fx
    }

    /// Registers the waiter of an acks=all produce with token `token`.
    pub fn wait_for(&self, token: u64) -> oneshot::Receiver<ProduceAnswer> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters").insert(token, tx);
        rx
    }

    /// Forgets the waiter of `token` (its request went away).
    pub fn forget(&self, token: u64) {
        self.waiters.lock().expect("waiters").remove(&token);
    }

    /// The log was cut back or restarted (and synced) at `end`; call with the store lock held.
    fn reset_synced(&self, end: i64) {
        self.resets.fetch_add(1, Ordering::AcqRel);
        self.synced.send_replace(end);
    }

    /// Waits until every offset below `end` is fsynced, sharing fsyncs among waiters (group
    /// commit). Returns at once if the log was cut back below `end` meanwhile.
    pub async fn wait_synced(self: &Arc<Self>, end: i64) -> Result<(), StorageError> {
        let mut rx = self.synced.subscribe();
        loop {
            if *rx.borrow_and_update() >= end {
                return Ok(());
            }
            let log_end = self
                .store
                .lock()
                .expect("partition lock")
                .log()
                .log_end_offset();
            if log_end < end && *rx.borrow() >= log_end {
                // Truncated below `end` and all that is left is synced: nothing to wait for.
                return Ok(());
            }
            if self
                .flushing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // The guard hands the flush on even if this future is dropped mid-flush (a
                // produce whose client went away): otherwise `flushing` would stay set and
                // every later waiter on this partition would wait forever.
                let _guard = FlushGuard(self);
                self.flush().await?;
                continue;
            }
            if rx.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// Starts this partition's background flusher unless one runs: it fsyncs (sharing the
    /// group commit with every waiter) until the whole log is synced, then ends.
    pub fn flush_in_background(self: &Arc<Self>) {
        if self.background_flush.swap(true, Ordering::AcqRel) {
            return;
        }
        let p = self.clone();
        tokio::spawn(async move {
            loop {
                let end = p.log_end();
                if p.wait_synced(end).await.is_err() {
                    p.background_flush.store(false, Ordering::Release);
                    return;
                }
                p.background_flush.store(false, Ordering::Release);
                // An append after `end` that saw the flag still set relies on this loop.
                let end = p.log_end();
                if *p.synced.borrow() >= end || p.background_flush.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    /// The log end offset.
    pub fn log_end(&self) -> i64 {
        self.store
            .lock()
            .expect("partition lock")
            .log()
            .log_end_offset()
    }

    /// The fsynced end.
    pub fn synced_end(&self) -> i64 {
        *self.synced.borrow()
    }

    /// fsyncs the active segment, publishes the offset it covers and reports it to the replica.
    async fn flush(self: &Arc<Self>) -> Result<(), StorageError> {
        let resets = self.resets.load(Ordering::Acquire);
        let (file, target) = self.store.lock().expect("partition lock").sync_target();
        let res = sys::blocking(move || file.sync_data())
            .await
            .and_then(|r| r);
        res.map_err(|source| StorageError::Io {
            path: PathBuf::from(format!("{}-{}", self.topic, self.index)),
            source,
        })?;
        let mut st = self.store.lock().expect("partition lock");
        if self.resets.load(Ordering::Acquire) != resets {
            // The log was cut back meanwhile: what this fsync covered is not the log now.
            return Ok(());
        }
        st.note_flushed();
        // Published under the lock, so no truncation slips in between.
        self.synced.send_if_modified(|s| {
            let grew = target > *s;
            *s = (*s).max(target);
            grew
        });
        let end = (*self.synced.borrow()).min(st.log().log_end_offset());
        self.drive_locked(&mut st, Input::Synced { durable_end: end }, Data::None);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
