//! The group coordinator runtime's driver: skein-core's coordinator runtime with the group
//! shard type, fed leadership changes of `__consumer_offsets` partitions, client requests and
//! completions; `driver.rs` carries out what it asks for (read a partition to load it, append
//! records as leader, wait for the high watermark, timers). The Kafka handlers that call it
//! live in `crate::groups`. It reaches the broker only through [`GroupHost`].
//!
//! Invariants: the runtime is only touched under its lock, which is a leaf (nothing else is
//! locked while it is held); an operation's waiter is registered before its request reaches
//! the runtime, so an answer given at once is not lost; every waiter is answered by the
//! runtime or removed by its request when it gives up (and the runtime told, `Cancel`).

mod driver;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use skein_core::coordinator::group_shard::{
    GroupRequest, GroupResponse, GroupShard, GroupShardConfig,
};
use skein_core::coordinator::runtime::{CoordinatorError, Input, Output, Runtime, RuntimeConfig};
use skein_core::coordinator::shard::OpId;
use skein_proto::errors::coordinator_error;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::config::Settings;
use crate::limits::{
    GROUP_COMMIT_TIMEOUT_MS, GROUP_EXPIRE_EVERY_MS, GROUP_OFFSETS_LOAD_READ_BYTES, GROUP_TICK_MS,
    GROUP_WAITING_MAX, GROUP_WORK_QUEUED_MAX,
};
use crate::partition::Partition;

/// What the coordinator runtime's driver needs of the broker that runs it.
pub trait GroupHost: Send + Sync + 'static {
    /// The coordinator state.
    fn coordinator(&self) -> &Coordinator;
    /// The broker's monotonic clock.
    fn mono_ms(&self) -> u64;
    /// An open partition of the offsets topic.
    fn offsets_partition(&self, index: i32) -> Option<Arc<Partition>>;
    /// Partition counts of every topic (the server-side assignor's view of the cluster).
    fn topic_counts(&self) -> BTreeMap<String, i32>;
    /// Turns true when the broker shuts down.
    fn stopping(&self) -> watch::Receiver<bool>;
    /// Something was appended: wake long-polling readers.
    fn appended(&self);
}

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

type Answer = Result<GroupResponse, CoordinatorError>;

/// Work the runtime asked for, carried out by the driver task.
type Work = Output<GroupResponse>;

/// The coordinator state of one broker.
pub struct Coordinator {
    runtime: Mutex<Runtime<GroupShard>>,
    waiters: Mutex<BTreeMap<OpId, oneshot::Sender<Answer>>>,
    next_op: AtomicU64,
    work: mpsc::UnboundedSender<Work>,
    work_rx: Mutex<Option<mpsc::UnboundedReceiver<Work>>>,
    /// Work sent to the driver and not yet carried out; requests are refused while it is at
    /// [`GROUP_WORK_QUEUED_MAX`], which is what bounds the channel.
    work_queued: AtomicUsize,
}

/// Why a call to the coordinator got no answer from a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The runtime refused or failed the operation.
    Coordinator(CoordinatorError),
    /// Refused before reaching a shard (no offsets topic, an empty group id).
    Refused(E),
    /// No answer within the caller's bound (the operation is cancelled).
    TimedOut,
}

impl CallError {
    /// The Kafka error, by the one map in skein-proto (a timeout as the caller names it).
    pub(crate) fn code(self, timed_out: E) -> E {
        match self {
            CallError::Coordinator(e) => coordinator_error(e),
            CallError::Refused(e) => e,
            CallError::TimedOut => timed_out,
        }
    }
}

impl Coordinator {
    /// A coordinator leading nothing, with the broker's group settings.
    pub fn new(settings: &Settings) -> Self {
        let config = RuntimeConfig {
            commit_timeout_ms: GROUP_COMMIT_TIMEOUT_MS,
            tick_ms: GROUP_TICK_MS,
            load_retry_ms: 1_000,
            load_read_bytes: GROUP_OFFSETS_LOAD_READ_BYTES,
            waiting_max: GROUP_WAITING_MAX,
        };
        let shards = GroupShardConfig {
            group: settings.group,
            consumer: settings.consumer_group,
            offsets_retention_ms: settings.offsets_retention_ms,
            expire_every_ms: GROUP_EXPIRE_EVERY_MS,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Coordinator {
            runtime: Mutex::new(Runtime::new(config, shards)),
            waiters: Mutex::new(BTreeMap::new()),
            next_op: AtomicU64::new(1),
            work: tx,
            work_rx: Mutex::new(Some(rx)),
            work_queued: AtomicUsize::new(0),
        }
    }

    /// This broker's role for offsets partition `index` changed: `leading` is the leader epoch
    /// if it leads. A new leadership (re)loads the partition; losing it drops the shard.
    pub fn role_changed(&self, b: &dyn GroupHost, index: i32, leading: Option<i32>) {
        let input = match leading {
            Some(epoch) => Input::BecomeLeader {
                partition: index,
                epoch,
                // Fresh per load, so member ids of two loads of one partition never meet.
                salt: skein_sys::uuid().as_u64_pair().0,
            },
            None => Input::Resign { partition: index },
        };
        self.handle(b, input);
    }

    /// Feeds one input to the runtime and carries out what it asks for.
    pub(crate) fn handle(&self, b: &dyn GroupHost, input: Input<GroupShard>) {
        let (outputs, before, after): (Vec<Work>, _, _) = {
            let mut rt = self.runtime.lock().expect("runtime lock");
            let before = rt.stats();
            rt.handle(b.mono_ms(), input);
            let outputs = std::iter::from_fn(|| rt.poll_output()).collect();
            #[cfg(debug_assertions)]
            rt.check_invariants();
            (outputs, before, rt.stats())
        };
        if after.loads > before.loads {
            info!(
                loads = after.loads,
                records = after.loaded_records,
                "loaded a {OFFSETS_TOPIC} partition"
            );
        }
        if after.bad_records > before.bad_records {
            warn!(
                bad = after.bad_records - before.bad_records,
                "skipped records of {OFFSETS_TOPIC} that do not parse"
            );
        }
        if after.reloads > before.reloads {
            warn!("records this coordinator did not write appeared in {OFFSETS_TOPIC}: reloading");
        }
        for o in outputs {
            match o {
                Output::Answer { op, answer } => {
                    let tx = self.waiters.lock().expect("waiters lock").remove(&op);
                    if let Some(tx) = tx {
                        let _ = tx.send(answer);
                    }
                }
                work => {
                    self.work_queued.fetch_add(1, Ordering::Relaxed);
                    let _ = self.work.send(work);
                }
            }
        }
    }

    /// Sends `request` to the shard of `index` and waits up to `wait` for its answer.
    pub(crate) async fn call(
        &self,
        b: &dyn GroupHost,
        index: i32,
        request: GroupRequest,
        wait: Duration,
    ) -> Result<GroupResponse, CallError> {
        if self.work_queued.load(Ordering::Relaxed) >= GROUP_WORK_QUEUED_MAX {
            // The driver is far behind (a slow disk): refuse rather than queue without bound;
            // clients retry COORDINATOR_NOT_AVAILABLE after a backoff.
            return Err(CallError::Coordinator(CoordinatorError::Overloaded));
        }
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(op, tx);
        let input = Input::Request {
            partition: index,
            op,
            wall_ms: now_ms() as i64,
            request,
        };
        self.handle(b, input);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => answer.map_err(CallError::Coordinator),
            // The runtime answers every operation it accepts; a dropped sender means the
            // broker is going away.
            Ok(Err(_)) => Err(CallError::Coordinator(CoordinatorError::NotCoordinator)),
            Err(_) => {
                self.waiters.lock().expect("waiters lock").remove(&op);
                self.handle(b, Input::Cancel { op });
                Err(CallError::TimedOut)
            }
        }
    }

    /// Runs `f` on the loaded shard of `index` (reads).
    pub(crate) fn read<T>(&self, index: i32, f: impl FnOnce(&GroupShard) -> T) -> Result<T, E> {
        let rt = self.runtime.lock().expect("runtime lock");
        rt.shard(index).map(f).map_err(coordinator_error)
    }

    /// Runs `f` on the runtime (ListGroups reads every shard).
    pub(crate) fn with_runtime<T>(&self, f: impl FnOnce(&Runtime<GroupShard>) -> T) -> T {
        f(&self.runtime.lock().expect("runtime lock"))
    }
}

/// Runs the coordinator: carries out the runtime's work and fires its timers.
pub fn spawn(b: Arc<dyn GroupHost>) {
    driver::spawn(b);
}

/// Called from the broker's role changes for every partition.
pub fn note_role(b: &dyn GroupHost, topic: &str, index: i32, leading: Option<i32>) {
    if topic != OFFSETS_TOPIC {
        return;
    }
    b.coordinator().role_changed(b, index, leading);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerArgs;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_requests_are_refused_while_the_work_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let settings = BrokerArgs {
            data_dir: Some(dir.path().to_path_buf()),
            log_level: Some("warn".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let b = crate::broker::Broker::start(settings).await.unwrap();
        let c = b.coordinator();
        c.work_queued
            .store(GROUP_WORK_QUEUED_MAX, Ordering::Relaxed);
        let heartbeat = GroupRequest::Heartbeat {
            group: "g".into(),
            member: "m".into(),
            instance: None,
            generation: 1,
        };
        let r = c
            .call(b.as_ref(), 0, heartbeat, Duration::from_secs(5))
            .await;
        assert_eq!(
            r.unwrap_err(),
            CallError::Coordinator(CoordinatorError::Overloaded)
        );
        assert!(c.waiters.lock().unwrap().is_empty(), "nothing was queued");
        b.close().unwrap();
    }
}
