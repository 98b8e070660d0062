//! skein-storage: a broker's files. [`partition`] is a partition's segments, indexes, recovery
//! and retention (carrying out the storage work skein-core's `PartitionLog` and
//! `PartitionRecovery` decide); [`raft_store`] is the metadata quorum's hard state, entry log and
//! snapshot. Every file operation goes through skein-sys.
//!
//! Invariant: nothing here decides what to keep; the core decides, this crate writes, reads,
//! syncs and removes.

pub mod partition;
pub mod raft_store;
