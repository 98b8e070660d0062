//! What a shard type provides to the coordinator [`Runtime`](super::runtime::Runtime): replay a
//! record of its partition, answer requests with records to write, fire its timers, check its
//! invariants.
//!
//! The groups coordinator ([`GroupShard`](super::group_shard::GroupShard) over
//! `__consumer_offsets`) is one shard type. A transaction coordinator is meant to be a second:
//! a `TxnShard` over `__transaction_state` whose records are transactional-id keys with their
//! producer id, epoch, state and partitions; `replay` rebuilds the transaction table, `handle`
//! answers InitProducerId / AddPartitionsToTxn / EndTxn with the state-change record to write
//! (the answer released by the runtime once that record is committed, as for an offset
//! commit), and `tick` aborts transactions past their timeout and expires idle ids. Writing
//! the markers to data partitions is the shell's job on the answer of EndTxn; everything about
//! loading, epochs, barriers and failing waiters on a leadership change comes from the runtime
//! unchanged.
//!
//! Contract: `handle` and `tick` may change the shard's in-memory state at once (a group's
//! membership), but state that the log holds changes only in `replay`, which the runtime calls
//! for loaded records and for the shard's own records once they are committed. An answer in a
//! [`Step`] may be for any operation still waiting (a JoinGroup completed by another member's
//! request), not only the one being handled.

/// A record to append to an internal partition: key and value (none for a tombstone).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

/// The id of one request to a shard; the driver keeps it to route the answer.
pub type OpId = u64;

/// What a shard decided: records to append, and answers to operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<R> {
    /// Records to append, in order (none for a pure read or a refusal).
    pub records: Vec<Record>,
    /// Answers, released once `records` (and every earlier write) are committed.
    pub answers: Vec<(OpId, R)>,
}

impl<R> Default for Step<R> {
    fn default() -> Self {
        Step {
            records: Vec::new(),
            answers: Vec::new(),
        }
    }
}

/// A shard type: the state of one internal-topic partition.
pub trait CoordinatorShard: std::fmt::Debug {
    /// Settings every shard of this type is created with.
    type Config: Clone + std::fmt::Debug;
    /// An operation on the shard.
    type Request: std::fmt::Debug;
    /// The answer to an operation.
    type Response: std::fmt::Debug;
    /// What the driver passes to timers (e.g. the topics' partition counts).
    type Env: std::fmt::Debug;
    /// Why a record did not replay (it is skipped and counted).
    type ReplayError: std::fmt::Debug;

    /// An empty shard for a new load; `salt` is randomness from the driver (member ids).
    fn create(config: &Self::Config, salt: u64) -> Self;

    /// Applies the record at log offset `offset` (loading, and the shard's own records once
    /// committed).
    fn replay(
        &mut self,
        now: u64,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), Self::ReplayError>;

    /// Handles operation `op`; `wall_ms` is the wall clock for what is stored.
    fn handle(
        &mut self,
        now: u64,
        wall_ms: i64,
        op: OpId,
        request: Self::Request,
    ) -> Step<Self::Response>;

    /// Fires the shard's timers.
    fn tick(&mut self, now: u64, wall_ms: i64, env: &Self::Env) -> Step<Self::Response>;

    /// Asserts the shard's invariants (tests and simulation).
    fn check_invariants(&self);
}
