//! The simulated node: one single-node broker's metadata and storage, driven as the tokio
//! shell drives them.
//!
//! Each partition's data is skein-storage's real [`PartitionStore`] on a [`SimFs`] over the
//! node's [`SimDisk`]: appends (rolls, writes, undoing a failed one in the core), group-commit
//! fsyncs, fetch reads, retention, clean close, and crash recovery (skein-core's
//! `PartitionRecovery` carried out by `PartitionStore::open`) are the code the broker runs.
//! This module drives the stores as `broker.rs` does: a partition lives in `<topic>-<n>/`; an
//! append the store refuses or fails (ENOSPC) is answered with its Kafka error
//! (KAFKA_STORAGE_ERROR for I/O). Every decision about a partition's requests is its core
//! [`Replica`](skein_core::replica::Replica)'s, driven as `partition.rs` drives it ([`replica`]):
//! the produce gate and when acks=1 and acks=-1 are answered (acks=-1 once the high watermark,
//! the fsynced end, covers the batch), and how far a consumer fetch may read (below the high
//! watermark); the node only carries out the storage work it asks for and runs the group-commit
//! fsyncs (`NeedSync`, [`Node::sync_start`], [`Node::sync_done`]). A start creates each replica
//! from the recovered log, all of it durable. Topics are created, deleted and grown through
//! skein-core's `Catalog` (`plan_*`, then `apply`) with each record made durable first
//! ([`meta`]), each partition's store opened with its topic's configs (a compacted topic's
//! `cleanup.policy`, `segment.bytes`, ...). The log cleaner runs as the broker's cleaner thread
//! does, one piece per event ([`clean`]). Crashes and the damage they reveal are in [`faults`].
//!
//! Invariants (checked by [`Node::check_invariants`] after every event, and each replica's
//! `check_invariants` after every input): every core log passes `check_invariants`; each
//! segment has an open file on the disk holding at least the segment's bytes (but an empty
//! active segment whose roll failed before making its file); no acks=-1 produce still waits
//! for an answer its replica's high watermark already covers. The segment files are checked
//! all after anything that may change sealed segments (a start, an admin change, retention, a
//! piece of a clean) and after every 32nd event; after the others only each partition's last
//! two segments (all an append or a roll touches): compacted topics hold many small segments.

mod clean;
mod faults;
mod meta;
mod replica;

use std::cell::{Cell, Ref, RefMut};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use skein_core::catalog::{Catalog, MetadataRecord};
use skein_core::config::LogConfig;
use skein_core::log::AppendError;
use skein_storage::partition::{is_orphan_partition_dir, PartitionStore, StorageError};

pub use clean::{CleanStarted, CleanStatus};
pub use faults::Scanned;
use meta::{
    catalog_code, single_broker_catalog, CLEAN_MARKER, METADATA_LOG, META_DIR, ONE_REPLICA,
};

use crate::canary::SimCanary;
use crate::disk::SimDisk;
use crate::disk_fs::{SimFs, SimFsFile};
use replica::PartState;

/// A topic id (Kafka's 16-byte UUID) as a number.
pub type TopicId = u128;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
pub const UNKNOWN_TOPIC: &str = "UNKNOWN_TOPIC_OR_PARTITION";
/// Kafka's KAFKA_STORAGE_ERROR (retriable).
pub const STORAGE_ERROR: &str = "KAFKA_STORAGE_ERROR";
/// Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER.
pub const OUT_OF_ORDER: &str = "OUT_OF_ORDER_SEQUENCE_NUMBER";

/// The result of a produce, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceResult {
    /// Appended (or recognised as a duplicate) at these offsets of this topic.
    Ok {
        /// First offset.
        base_offset: i64,
        /// Last offset.
        last_offset: i64,
        /// The topic the name resolved to.
        topic_id: TopicId,
    },
    /// Refused or failed: the Kafka error name and its message.
    Err(&'static str, String),
}

/// The result of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// Whole batches starting at or before the fetch offset, all below the high watermark
    /// (empty at it).
    Ok {
        /// Batch bytes.
        bytes: Vec<u8>,
        /// High watermark (the replica's: the fsynced end); no batch at or above it is sent.
        high_watermark: i64,
        /// First offset held.
        log_start: i64,
        /// The topic the name resolved to.
        topic_id: TopicId,
    },
    /// OFFSET_OUT_OF_RANGE.
    OutOfRange {
        /// First offset held.
        log_start: i64,
        /// High watermark.
        high_watermark: i64,
        /// The topic the name resolved to.
        topic_id: TopicId,
    },
    /// UNKNOWN_TOPIC_OR_PARTITION.
    UnknownTopic,
}

/// An admin request (CreateTopics, DeleteTopics, CreatePartitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// Create `name` with `partitions` partitions; `id` is the random topic id the shell draws.
    Create {
        /// Topic name.
        name: String,
        /// Partition count.
        partitions: u32,
        /// Topic id bytes.
        id: [u8; 16],
        /// Topic configs (`cleanup.policy=compact`, ...).
        configs: Vec<(String, String)>,
    },
    /// Delete `name`.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Grow `name` to `total` partitions.
    AddPartitions {
        /// Topic name.
        name: String,
        /// New partition count.
        total: u32,
    },
}

/// An admin request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminResult {
    /// Done (the metadata record is durable and applied); the topic it acted on.
    Ok(TopicId),
    /// Refused or failed: the Kafka error name and its message.
    Err(&'static str, String),
}

/// A partition: topic name and index.
pub type PartKey = (String, u32);

/// What the node asks of the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOut {
    /// Send this produce response.
    Reply {
        /// Client index.
        client: usize,
        /// Request id.
        req: u64,
        /// Result.
        result: ProduceResult,
    },
    /// Start a group-commit fsync of this partition (of this topic id) after the group-commit
    /// delay.
    NeedSync(PartKey, TopicId),
}

/// The file a group-commit fsync syncs (the store's `sync_target`).
pub type SyncFile = Arc<SimFsFile>;

/// One simulated broker node.
pub struct Node {
    /// The node's disk (survives crashes), as the stores' file system.
    fs: SimFs,
    /// Bumped at every stop; requests and replies of an older incarnation are dropped.
    pub incarnation: u32,
    /// Whether the last start found the clean-shutdown marker.
    pub last_start_clean: bool,
    catalog: Catalog,
    parts: BTreeMap<PartKey, PartState>,
    up: bool,
    config: LogConfig,
    canary: Option<SimCanary>,
    /// The clean in progress ([`clean`]).
    clean: Option<clean::CleanRun>,
    /// Sealed segments may have changed since the last check of every segment file.
    sealed_changed: Cell<bool>,
    /// Checks since the last check of every segment file.
    checks: Cell<u32>,
}

/// `<topic>-<p>`: the directory of a partition (`broker.rs`'s `partition_dir`).
pub fn dir(key: &PartKey) -> String {
    format!("{}-{}", key.0, key.1)
}

/// The Kafka error name of a failed append.
fn storage_code(e: &StorageError) -> &'static str {
    use AppendError as A;
    match e {
        StorageError::Io { .. } => STORAGE_ERROR,
        StorageError::Append(e) => match e {
            A::Corrupt(_) => "CORRUPT_MESSAGE",
            A::InvalidRecord(_) => "INVALID_RECORD",
            A::TooLarge { .. } => "MESSAGE_TOO_LARGE",
            A::LargerThanSegment { .. } => "RECORD_LIST_TOO_LARGE",
            A::OutOfOrderSequence(_) => OUT_OF_ORDER,
            A::InvalidProducerEpoch(_) => "INVALID_PRODUCER_EPOCH",
            A::InvalidTimestamp { .. } => "INVALID_TIMESTAMP",
        },
    }
}

fn topic_id(id: &[u8; 16]) -> TopicId {
    u128::from_be_bytes(*id)
}

impl fmt::Display for ProduceResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProduceResult::Ok {
                base_offset,
                last_offset,
                topic_id,
            } => write!(
                f,
                "ok {base_offset}..={last_offset} topic {:08x}",
                *topic_id as u32
            ),
            ProduceResult::Err(code, msg) => write!(f, "{code}: {msg}"),
        }
    }
}

impl fmt::Display for AdminResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminResult::Ok(id) => write!(f, "ok topic {:08x}", *id as u32),
            AdminResult::Err(code, msg) => write!(f, "{code}: {msg}"),
        }
    }
}

impl Node {
    /// A node with an empty disk and no topics, started.
    pub fn new(config: LogConfig, canary: Option<SimCanary>, now_ms: u64) -> Self {
        let mut n = Node {
            fs: SimFs::new(SimDisk::new()),
            incarnation: 0,
            last_start_clean: false,
            catalog: single_broker_catalog(&config),
            parts: BTreeMap::new(),
            up: false,
            config,
            canary,
            clean: None,
            sealed_changed: Cell::new(true),
            checks: Cell::new(0),
        };
        n.restart(now_ms).expect("an empty disk has room");
        n
    }

    /// The node's disk, to inspect.
    pub fn disk(&self) -> Ref<'_, SimDisk> {
        self.fs.disk()
    }

    /// The node's disk, to inject faults into.
    pub fn disk_mut(&self) -> RefMut<'_, SimDisk> {
        self.fs.disk_mut()
    }

    /// True while running.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Topics and their partition counts, as a Metadata request would tell (empty while down).
    pub fn topics(&self) -> BTreeMap<String, u32> {
        self.catalog
            .topics()
            .map(|t| (t.name.clone(), t.partitions))
            .collect()
    }

    /// Every open partition: key, topic id, log start and high watermark (ListOffsets
    /// EARLIEST and LATEST for each, as `offsets.rs` answers them).
    pub fn partitions(&self) -> Vec<(PartKey, TopicId, i64, i64)> {
        self.parts
            .iter()
            .map(|(k, ps)| {
                let start = ps.store.log().log_start_offset();
                (k.clone(), ps.topic_id, start, ps.replica.hw())
            })
            .collect()
    }

    /// Log start and end of a partition (for the trace); `None` while down or unknown.
    pub fn offsets(&self, key: &PartKey) -> Option<(i64, i64)> {
        let log = self.parts.get(key)?.store.log();
        Some((log.log_start_offset(), log.log_end_offset()))
    }

    /// Number of segments over all partitions (for the trace).
    pub fn segment_count(&self) -> usize {
        self.parts
            .values()
            .map(|p| p.store.log().segments().count())
            .sum()
    }

    /// Handles an admin request as `broker.rs` does: validate into a record, make it durable,
    /// apply it, then open or remove the partitions it creates or deletes.
    pub fn admin(&mut self, now_ms: u64, op: &AdminOp) -> AdminResult {
        assert!(self.up, "admin request to a down node");
        let (planned, name) = match op {
            AdminOp::Create {
                name,
                partitions,
                id,
                configs,
            } => (
                self.catalog
                    .plan_create(name, *partitions as i32, &ONE_REPLICA, configs, *id),
                name,
            ),
            AdminOp::Delete { name } => (self.catalog.plan_delete(name), name),
            AdminOp::AddPartitions { name, total } => (
                self.catalog
                    .plan_partitions(name, *total as i32, &ONE_REPLICA),
                name,
            ),
        };
        let rec = match planned {
            Ok(r) => r,
            Err(e) => return AdminResult::Err(catalog_code(&e), e.to_string()),
        };
        let before = self.catalog.topic(name).map(|t| topic_id(&t.id));
        if let Err(e) = self.commit(now_ms, &rec) {
            return AdminResult::Err(STORAGE_ERROR, format!("storage failure: {e}"));
        }
        let id = self
            .catalog
            .topic(name)
            .map(|t| topic_id(&t.id))
            .or(before)
            .expect("the topic acted on");
        AdminResult::Ok(id)
    }

    /// `Broker::commit`: make the record durable, apply it, carry it out on the partitions.
    fn commit(&mut self, now_ms: u64, rec: &MetadataRecord) -> Result<(), StorageError> {
        self.sealed_changed.set(true);
        self.append_metadata(rec)?;
        self.catalog.apply(rec);
        match rec {
            MetadataRecord::TopicCreated {
                name, partitions, ..
            } => self.open_partitions(name, 0, *partitions, now_ms)?,
            MetadataRecord::PartitionsAdded { name, total, .. } => {
                let have = self.partitions_of(name).len();
                self.open_partitions(name, have as u32, *total, now_ms)?;
            }
            MetadataRecord::TopicDeleted { name } => {
                // A clean of it ends first: its open `.cleaned` file goes with the directory.
                if self.cleaning().is_some_and(|k| k.0 == *name) {
                    self.clean = None;
                }
                for k in self.partitions_of(name) {
                    self.parts.remove(&k);
                    // skein-net renames the directory away and syncs the data directory, then
                    // deletes the files in the background: durably gone at once.
                    self.remove_dir(&dir(&k));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The open partitions of topic `name`.
    fn partitions_of(&self, name: &str) -> Vec<PartKey> {
        let range = (name.to_string(), 0)..=(name.to_string(), u32::MAX);
        self.parts.range(range).map(|(k, _)| k.clone()).collect()
    }

    fn open_partitions(
        &mut self,
        name: &str,
        from: u32,
        to: u32,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        for p in from..to {
            let key = (name.to_string(), p);
            let ps = self.open_partition(&self.catalog, &key, now_ms, true)?;
            self.parts.insert(key, ps);
        }
        Ok(())
    }

    /// Opens (and, unless `clean`, recovers) a partition's store with its topic's configs:
    /// `PartitionStore::open`, with the canary that lives in skein-core handed to its recovery,
    /// log and cleaner; then its replica, from the opened log, taking the role `catalog` gives it.
    fn open_partition(
        &self,
        catalog: &Catalog,
        key: &PartKey,
        now_ms: u64,
        clean: bool,
    ) -> Result<PartState, StorageError> {
        let canary = self.canary.and_then(SimCanary::core);
        let config = catalog.log_config(&key.0).expect("topic exists");
        let min_insync = config.min_insync_replicas as usize;
        let store = PartitionStore::open_with_canary(
            self.fs.clone(),
            Path::new(&dir(key)),
            config,
            clean,
            now_ms,
            canary,
        )?;
        let tid = topic_id(&catalog.topic(&key.0).expect("topic exists").id);
        let state = catalog
            .partition(&key.0, key.1 as i32)
            .expect("partition exists");
        Ok(PartState::new(
            tid,
            store,
            (state, min_insync),
            canary,
            now_ms,
        ))
    }

    fn remove_dir(&mut self, d: &str) {
        let mut disk = self.disk_mut();
        for f in disk.files_in(d) {
            disk.remove(&f);
        }
        disk.sync_dir(d);
    }

    /// A retention pass over every partition (`PartitionStore::retention`); returns the
    /// segments deleted. A failed roll (ENOSPC) ends a partition's pass before its deletions.
    pub fn retention(&mut self, now_ms: u64) -> usize {
        self.sealed_changed.set(true);
        self.parts
            .values_mut()
            .map(|ps| ps.store.retention(now_ms).unwrap_or(0))
            .sum()
    }

    /// SIGTERM, as skein-broker's `Broker::close`: `PartitionStore::close` for every partition
    /// (fsync, the active segment's indexes, a producer snapshot at the log end), then, only if
    /// every partition closed, the clean-shutdown marker. Volatile state is gone afterwards.
    pub fn shutdown(&mut self) {
        let mut ok = true;
        for ps in self.parts.values_mut() {
            ok &= ps.store.close().is_ok();
        }
        if ok {
            let mut disk = self.disk_mut();
            disk.create(CLEAN_MARKER);
            disk.fsync(CLEAN_MARKER);
            disk.sync_dir(META_DIR);
        }
        self.stop();
    }

    fn stop(&mut self) {
        // A clean in progress ends with the process; the next start removes its leftovers.
        self.clean = None;
        self.parts.clear();
        self.catalog = single_broker_catalog(&self.config);
        self.up = false;
        self.incarnation += 1;
    }

    /// Starts the node (`Broker::open`): replays the metadata log, opens every partition of
    /// every topic (recovering it unless the marker is there), removes directories of deleted
    /// topics. Fails (the process exits, the node stays down) when a store cannot open.
    pub fn restart(&mut self, now_ms: u64) -> Result<(), StorageError> {
        assert!(!self.up);
        let clean = self.disk().exists(CLEAN_MARKER);
        let mut catalog = single_broker_catalog(&self.config);
        for rec in self.read_metadata_log() {
            catalog.apply(&rec);
        }
        if !self.disk().exists(METADATA_LOG) {
            self.disk_mut().create(METADATA_LOG);
        }
        let mut parts = BTreeMap::new();
        for t in catalog.topics() {
            for p in 0..t.partitions {
                let key = (t.name.clone(), p);
                let ps = self.open_partition(&catalog, &key, now_ms, clean)?;
                parts.insert(key, ps);
            }
        }
        // As the broker's `remove_orphans`: directories of deleted topics left by a crash
        // mid-delete, by skein-storage's own rule.
        let dirs = self.disk().dirs();
        for d in dirs {
            let prefix = format!("{d}/");
            let inside: Vec<(String, bool)> = self
                .disk()
                .files_in(&d)
                .iter()
                .map(|f| (f.strip_prefix(&prefix).unwrap_or(f).to_string(), true))
                .collect();
            let held = |t: &str, p: i32| {
                u32::try_from(p).is_ok_and(|p| parts.contains_key(&(t.to_string(), p)))
            };
            if is_orphan_partition_dir(&d, &inside, held) {
                self.remove_dir(&d);
            }
        }
        // As skein-broker: only once every partition is recovered is a crash unclean again.
        let mut disk = self.disk_mut();
        disk.remove(CLEAN_MARKER);
        disk.sync_dir(META_DIR);
        drop(disk);
        self.catalog = catalog;
        self.parts = parts;
        self.last_start_clean = clean;
        self.up = true;
        self.sealed_changed.set(true);
        Ok(())
    }

    /// Asserts the node's invariants (see the module docs); a no-op while down.
    pub fn check_invariants(&self) {
        if !self.up || self.disk().is_dead() {
            return;
        }
        let disk = self.disk();
        let n = self.checks.get().wrapping_add(1);
        self.checks.set(n);
        let all = self.sealed_changed.replace(false) || n.is_multiple_of(32);
        for (key, ps) in &self.parts {
            let log = ps.store.log();
            log.check_invariants();
            ps.replica.check_invariants();
            let count = log.segments().count();
            let skip = if all { 0 } else { count.saturating_sub(2) };
            for s in log.segments().skip(skip) {
                // A roll that failed (ENOSPC) before creating its file leaves the new, empty
                // active segment without one; the next append creates it.
                let Some(f) = ps.store.segment_file(s.base_offset) else {
                    assert!(
                        s.size == 0,
                        "segment {} of {key:?} has no file",
                        s.base_offset
                    );
                    continue;
                };
                let len = disk.len_if_exists(&f.name());
                match len {
                    None => panic!("segment file {} missing", f.name()),
                    Some(len) => assert!(
                        len >= s.size,
                        "segment file {} shorter than its segment",
                        f.name()
                    ),
                }
            }
            let hw = ps.replica.hw();
            assert!(
                ps.waiters.values().all(|w| w.last_offset >= hw),
                "{key:?}: an acks=-1 produce covered by the high watermark {hw} was not answered"
            );
        }
    }
}
