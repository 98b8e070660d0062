//! skein-storage: a broker's files. [`partition`] is a partition's segments, indexes, recovery
//! and retention (carrying out the storage work skein-core's `PartitionLog` and
//! `PartitionRecovery` decide); [`raft_store`] is the metadata quorum's hard state, entry log and
//! snapshot. Both are generic over [`fs::Fs`]: the broker runs them on real files through
//! skein-sys ([`fs::OsFs`]), the simulator on its crash-losing disk.
//!
//! Invariant: nothing here decides what to keep; the core decides, this crate writes, reads,
//! syncs and removes.

pub mod fs;
pub mod partition;
pub mod raft_store;
