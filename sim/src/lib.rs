//! skein-sim: a VOPR-style deterministic simulator for skein.
//!
//! One u64 seed decides everything: the swarm (shape and fault rates, [`swarm`]), the faults
//! injected into a simulated node's disk ([`disk`], [`node`]), the workload of producers,
//! fetchers and an admin client ([`sim`]), and the network's resets, duplicates, partitions and
//! latencies ([`net`]). A failing run shrinks to a smaller replayable schedule ([`schedule`]).
//! There is no async runtime: a discrete-event loop jumps simulated time to the next event and drives skein-core directly.
//! The real skein-storage stores run on a node's disk through [`disk_fs`]: each partition of the
//! node simulation is a `PartitionStore`, and the broker's log cleaner compacts the topics the
//! swarm made compacted, one piece of a clean per event.
//! A client-side history checker ([`checker`], one file per property) judges every
//! acknowledgement and every record read; node invariants are asserted after every event; a
//! liveness phase without faults ends each run; the trace hash proves determinism ([`trace`]).
//! Planted bugs ([`canary`]) prove that the checkers bite.
//!
//! A second simulation, [`cluster`] (`skein-sim cluster --seed N`), covers the metadata
//! quorum: 3 or 5 voters (each also a broker) and up to two non-voting brokers running
//! skein-core's Raft, `Catalog` and `Controller` as the real shell wires them, each voter
//! persisting through skein-storage's real `RaftStore` on its own [`disk::SimDisk`], under
//! crashes that lose unsynced writes (possibly in part, perhaps torn), pauses, partitions, loss and duplication, with
//! brokers registering, dying and being fenced. Its checkers ([`cluster::check`]) judge vote
//! and election safety, log matching, leader completeness, commit safety, identical applied
//! histories (snapshots included), the catalog's invariants and the admin clients'
//! acknowledgements after every step, check-quorum once the faults heal, and convergence of
//! the metadata after a quiet period. Its canaries are the Raft ones (`vote-twice`,
//! `commit-old-term`, `no-check-quorum`); its regression seeds live in
//! `ci/cluster-regression-seeds`.
//!
//! A third, [`replication`] (`skein-sim replication --seed N`), covers partition replication:
//! followers fetching from leaders (core `replication::Leader`), ISR changes through a simulated
//! controller holding a `Catalog`, zombie leaders acting on stale metadata, truncation on
//! divergence; its regression seeds live in `ci/replication-regression-seeds`.
//!
//! A fourth, [`groups`] (`skein-sim groups --seed N`), covers consumer groups: members joining,
//! leaving, crashing and pausing against skein-core's group coordinator (`Shard`, `Group`) over
//! a simulated offsets partition that fails over; its regression seeds live in
//! `ci/groups-regression-seeds`. [`groups::kip848`] (`skein-sim groups --protocol consumer`)
//! does the same for KIP-848 groups against skein-core's `ConsumerGroup`
//! (`ci/groups-consumer-regression-seeds`).
//!
//! All of them run on one harness ([`harness`]): a [`harness::Scenario`] runs a seed under a
//! [`harness::Plan`] and reports a [`harness::Report`]; the harness brings the batch runner,
//! the stable trace hash, numbered decisions, shrinking and replay files, and [`cli`] the
//! command line (`skein-sim node|cluster|replication|groups ...`, `node` by default).
//!
//! Architecture invariant: nothing in this crate reads the clock, the OS RNG or iterates a
//! HashMap; the only I/O is writing a trace file the caller asked for.

#![deny(missing_docs)]

pub mod canary;
pub mod checker;
pub mod cli;
pub mod cluster;
pub mod disk;
pub mod disk_fs;
pub mod groups;
pub mod harness;
pub mod net;
pub mod node;
pub mod records;
pub mod replication;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod swarm;
pub mod trace;

pub use canary::SimCanary;
pub use sim::shrink::{shrink, shrink_with};
pub use sim::{run, Options, Outcome, Replay, Schedule};
