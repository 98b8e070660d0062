//! skein-core: a fully deterministic implementation of skein's storage and coordination logic.
//! It contains no networking code, touches no files, and gets no timestamps or randomness from
//! the operating system: the driver (the tokio shell in skein-broker, or the simulator) passes the
//! current time in as a plain number of milliseconds and carries out the storage work each call
//! returns.
//!
//! Modules:
//! - [`batch`]: Kafka RecordBatch v2 header parsing, CRC checks and the leader's rewrites.
//! - [`records`] and [`compression`]: walking a batch's records (decompressed as a stream) for
//!   their framing and timestamps.
//! - [`recovery`]: opening a partition's files after a start, as steps of I/O the driver carries out.
//! - [`config`]: topic configs and topic-name rules.
//! - [`cleaner`]: log compaction — what to clean, the key map, per-record decisions, batch
//!   rewrites, and the clean as steps of I/O the driver carries out.
//! - [`producer`]: idempotent-producer sequence and epoch state.
//! - [`log`]: the partition log — segments, indexes, appends, reads, retention, recovery.
//! - [`fetch`]: the byte budget of a Fetch response across its partitions (KIP-74).
//! - `canary` (feature `canary`, for skein-sim only): planted bugs the simulator must catch.
//! - [`catalog`]: the broker's metadata — topics, partitions, configs, producer-id blocks — as a
//!   deterministic state machine over metadata records.
//! - [`coordinator`]: the coordinator runtime (slots per internal-topic partition by leader
//!   epoch, load, write -> replicate -> apply, barriers) and the group shard type on it.
//! - [`raft`]: a sans-I/O Raft (pre-vote, check-quorum, snapshots, learners) for the metadata quorum.
//! - [`replica`]: one partition replica's state machine — role, follower apply rules, leader
//!   gates, the high-watermark rule — driven through `handle` / `poll_output`.
//! - [`rng`]: SplitMix64, the seeded generator for election timeouts (and the drivers' streams).
//!
//! Calling contract for [`log::PartitionLog`]: call a mutator (`append`, `retention`), carry out
//! the storage work it returns (roll, then write) in order, and only then call the next mutator.
//! Reads (`plan_read`) may be planned at any time; the bytes they name are complete once the
//! write that produced them has been carried out.

#![deny(missing_docs)]

pub mod batch;
#[cfg(feature = "canary")]
pub mod canary;
pub mod catalog;
pub mod cleaner;
pub mod compression;
pub mod config;
pub mod config_accepted;
pub mod consumer_group;
pub mod controller;
pub mod coordinator;
pub mod fetch;
pub mod group;
pub mod log;
pub mod offsets;
pub mod producer;
pub mod raft;
pub mod recompress;
pub mod reconcile;
pub mod records;
pub mod recovery;
pub mod replica;
pub mod replication;
pub mod rng;
