//! What goes in and out of the coordinator [`Runtime`](super::runtime::Runtime): its inputs
//! (leadership, load reads, requests, write completions, high-watermark reports, timers), its
//! outputs (work for the driver, answers), its errors and settings.

use bytes::Bytes;

use super::shard::{CoordinatorShard, OpId, Record};

/// The id of one write (a step's records, appended as one batch).
pub type WriteId = u64;

/// Why a coordinator operation failed (each maps to one Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorError {
    /// This broker does not lead the partition (or stopped leading it).
    NotCoordinator,
    /// The partition is being loaded.
    LoadInProgress,
    /// A write the answer depends on failed.
    Write(WriteError),
    /// Too many operations wait already (`RuntimeConfig::waiting_max`); retry later.
    Overloaded,
}

/// Why a write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The partition is no longer led at the write's epoch.
    NotLeader,
    /// The local store failed (append or fsync).
    Storage,
    /// The batch is larger than the partition takes.
    TooLarge,
    /// The ISR shrank below min.insync.replicas.
    NotEnoughReplicas,
    /// The write was not committed within the commit timeout.
    Timeout,
}

/// Settings of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// How long an answer waits for the writes it depends on (offsets.commit.timeout.ms).
    pub commit_timeout_ms: u64,
    /// How often shards' timers fire.
    pub tick_ms: u64,
    /// How long after a failed read a load is retried.
    pub load_retry_ms: u64,
    /// Bytes of whole batches each load read asks for.
    pub load_read_bytes: u64,
    /// The most operations waiting for an answer at once, over all partitions.
    pub waiting_max: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            commit_timeout_ms: 5_000,
            tick_ms: 100,
            load_retry_ms: 1_000,
            load_read_bytes: 1 << 20,
            waiting_max: 100_000,
        }
    }
}

/// An input to the runtime.
#[derive(Debug)]
pub enum Input<S: CoordinatorShard> {
    /// This broker leads `partition` at `epoch`; `salt` is fresh randomness for the shard.
    BecomeLeader {
        /// The partition.
        partition: i32,
        /// Its leader epoch.
        epoch: i32,
        /// Randomness for the new shard.
        salt: u64,
    },
    /// This broker no longer leads `partition`.
    Resign {
        /// The partition.
        partition: i32,
    },
    /// Bytes read for a load: whole batches from the offset asked (the first may start
    /// before it), with the partition's log end and high watermark at the read.
    Loaded {
        /// The partition.
        partition: i32,
        /// The epoch of the `ReadForLoad`.
        epoch: i32,
        /// Whole batches.
        bytes: Bytes,
        /// The log end offset.
        log_end: i64,
        /// The high watermark.
        hw: i64,
    },
    /// A load read failed; it is retried after `load_retry_ms`.
    LoadFailed {
        /// The partition.
        partition: i32,
        /// The epoch of the `ReadForLoad`.
        epoch: i32,
    },
    /// A client's request for a shard.
    Request {
        /// The partition of the shard.
        partition: i32,
        /// The driver's id for the operation, unique among those waiting.
        op: OpId,
        /// The wall clock.
        wall_ms: i64,
        /// The request.
        request: S::Request,
    },
    /// The driver gave up waiting for `op` (a later answer is dropped).
    Cancel {
        /// The operation.
        op: OpId,
    },
    /// A write is in the log at `base..end`.
    Appended {
        /// The partition.
        partition: i32,
        /// The epoch of the `Append`.
        epoch: i32,
        /// The write.
        write: WriteId,
        /// Its first offset.
        base: i64,
        /// One past its last offset.
        end: i64,
    },
    /// A write was not appended (nothing of it is in the log).
    AppendFailed {
        /// The partition.
        partition: i32,
        /// The epoch of the `Append`.
        epoch: i32,
        /// The write.
        write: WriteId,
        /// Why.
        error: WriteError,
    },
    /// The high watermark of `partition` is at least `hw` (reports may arrive out of order).
    Committed {
        /// The partition.
        partition: i32,
        /// The epoch of the `WaitCommitted`.
        epoch: i32,
        /// A high watermark reached.
        hw: i64,
    },
    /// Waiting for the high watermark to reach `offset` failed (the records stay in the log
    /// and are applied if they commit later; answers waiting on them fail now).
    ReplicationFailed {
        /// The partition.
        partition: i32,
        /// The epoch of the `WaitCommitted`.
        epoch: i32,
        /// The offset waited for.
        offset: i64,
        /// Why.
        error: WriteError,
    },
    /// Timers are due; `wall_ms` and `env` are what shards' timers see.
    Tick {
        /// The wall clock.
        wall_ms: i64,
        /// The shards' environment.
        env: S::Env,
    },
}

/// Work for the driver, or an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<R> {
    /// Read whole batches of `partition` from `from` (or its log start, if later).
    ReadForLoad {
        /// The partition.
        partition: i32,
        /// The epoch the load is for.
        epoch: i32,
        /// The first offset wanted.
        from: i64,
        /// Bytes to read (a larger first batch is read whole).
        max_bytes: u64,
    },
    /// Append `records` as one batch to `partition` as its leader at `epoch` (refused if the
    /// leadership changed).
    Append {
        /// The partition.
        partition: i32,
        /// The epoch the write was planned at.
        epoch: i32,
        /// The write.
        write: WriteId,
        /// The records.
        records: Vec<Record>,
    },
    /// Report with `Committed` once the high watermark of `partition` reaches `offset`.
    WaitCommitted {
        /// The partition.
        partition: i32,
        /// The leader epoch.
        epoch: i32,
        /// The offset to wait for.
        offset: i64,
    },
    /// The answer to operation `op`.
    Answer {
        /// The operation.
        op: OpId,
        /// The answer.
        answer: Result<R, CoordinatorError>,
    },
}
