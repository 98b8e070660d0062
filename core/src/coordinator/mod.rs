//! Coordinators over internal topics, sans-I/O: a generic [`runtime::Runtime`] that hosts one
//! shard per internal-topic partition this broker leads (loading, write -> replicate -> apply,
//! barriers, epoch fencing), the [`shard::CoordinatorShard`] trait a shard type implements, and
//! the group coordinator's shard type ([`group_shard::GroupShard`], over [`groups::Shard`]).
//!
//! Invariants (held by the runtime for every shard type): a shard's state is a replay of a
//! prefix of its partition's log, applied in log order; records planned at one leader epoch are
//! never applied after a later load; no answer leaves before the records it depends on are at
//! or below the high watermark.

pub mod group_shard;
pub mod groups;
pub mod messages;
pub mod runtime;
pub mod shard;

pub use groups::{
    load_batch, partition_for, subscribed_topics, Committed, OffsetDeletion, Record, Shard,
};
