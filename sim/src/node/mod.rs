//! The simulated node: one single-node broker's metadata and storage, driven as the tokio
//! shell drives them.
//!
//! Each partition's data is skein-storage's real [`PartitionStore`] on a [`SimFs`] over the
//! node's [`SimDisk`]: appends (rolls, writes, undoing a failed one in the core), group-commit
//! fsyncs, fetch reads, retention, clean close, and crash recovery (skein-core's
//! `PartitionRecovery` carried out by `PartitionStore::open`) are the code the broker runs.
//! This module drives the stores as `broker.rs` does: a partition lives in `<topic>-<n>/`; an
//! append the store refuses or fails (ENOSPC) is answered with its Kafka error
//! (KAFKA_STORAGE_ERROR for I/O); acks=-1 is answered only once an fsync of the store's
//! `sync_target` covers the batch. Topics are created, deleted and grown through skein-core's
//! `Catalog` (`plan_*`, then `apply`) with each record made durable first ([`meta`]). Crashes
//! and the damage they reveal are in [`faults`].
//!
//! Invariants (checked by [`Node::check_invariants`] after every event): every core log passes
//! `check_invariants`; each segment has an open file on the disk holding at least the segment's
//! bytes (but an empty active segment whose roll failed before making its file); the synced
//! offset never exceeds the log end; an acks=-1 waiter is answered only when `synced_end`
//! covers its batch (unless the `ack-before-fsync` canary is on).

mod faults;
mod meta;

use std::cell::{Ref, RefMut};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use skein_core::catalog::{Catalog, MetadataRecord};
use skein_core::config::LogConfig;
use skein_core::fetch::Grant;
use skein_core::log::AppendError;
use skein_storage::fs::FsFile;
use skein_storage::partition::{read_range, PartitionStore, StorageError};

pub use faults::Scanned;
use meta::{
    catalog_code, single_broker_catalog, CLEAN_MARKER, METADATA_LOG, META_DIR, ONE_REPLICA,
};

use crate::canary::SimCanary;
use crate::disk::SimDisk;
use crate::disk_fs::{SimFs, SimFsFile};

/// A topic id (Kafka's 16-byte UUID) as a number.
pub type TopicId = u128;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
pub const UNKNOWN_TOPIC: &str = "UNKNOWN_TOPIC_OR_PARTITION";
/// Kafka's KAFKA_STORAGE_ERROR (retriable).
pub const STORAGE_ERROR: &str = "KAFKA_STORAGE_ERROR";

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
    /// Whole batches starting at or before the fetch offset (empty at the log end).
    Ok {
        /// Batch bytes.
        bytes: Vec<u8>,
        /// High watermark (the log end on a single node).
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
        /// Log end.
        log_end: i64,
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

#[derive(Debug)]
struct Waiter {
    client: usize,
    req: u64,
    end: i64,
    base_offset: i64,
    last_offset: i64,
}

/// One open partition: its store and the group commit's state.
struct PartState {
    topic_id: TopicId,
    store: PartitionStore<SimFs>,
    synced_end: i64,
    syncing: bool,
    sync_requested: bool,
    waiters: Vec<Waiter>,
}

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
            A::OutOfOrderSequence(_) => "OUT_OF_ORDER_SEQUENCE_NUMBER",
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

    /// Every open partition: key, topic id, log start and end (ListOffsets for each).
    pub fn partitions(&self) -> Vec<(PartKey, TopicId, i64, i64)> {
        self.parts
            .iter()
            .map(|(k, ps)| {
                let log = ps.store.log();
                (
                    k.clone(),
                    ps.topic_id,
                    log.log_start_offset(),
                    log.log_end_offset(),
                )
            })
            .collect()
    }

    /// Log start and end of a partition (ListOffsets); `None` while down or unknown.
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
            } => (
                self.catalog
                    .plan_create(name, *partitions as i32, &ONE_REPLICA, &[], *id),
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
        let id = topic_id(&self.catalog.topic(name).expect("topic exists").id);
        for p in from..to {
            let key = (name.to_string(), p);
            let ps = self.open_partition(&key, id, now_ms, true)?;
            self.parts.insert(key, ps);
        }
        Ok(())
    }

    /// Opens (and, unless `clean`, recovers) a partition's store: `PartitionStore::open`, with
    /// the canary that lives in skein-core handed to its recovery and log.
    fn open_partition(
        &self,
        key: &PartKey,
        topic_id: TopicId,
        now_ms: u64,
        clean: bool,
    ) -> Result<PartState, StorageError> {
        let store = PartitionStore::open_with_canary(
            self.fs.clone(),
            Path::new(&dir(key)),
            self.config.clone(),
            clean,
            now_ms,
            self.canary.and_then(SimCanary::core),
        )?;
        Ok(PartState {
            topic_id,
            synced_end: store.log().log_end_offset(),
            store,
            syncing: false,
            sync_requested: false,
            waiters: Vec::new(),
        })
    }

    fn remove_dir(&mut self, d: &str) {
        let mut disk = self.disk_mut();
        for f in disk.files_in(d) {
            disk.remove(&f);
        }
        disk.sync_dir(d);
    }

    /// Handles a produce request for one partition (`PartitionStore::append`, then the answer
    /// by acks: at once, never, or once an fsync covers the batch).
    #[allow(clippy::too_many_arguments)]
    pub fn produce(
        &mut self,
        now_ms: u64,
        key: &PartKey,
        client: usize,
        req: u64,
        bytes: &[u8],
        acks: i16,
    ) -> Vec<NodeOut> {
        assert!(self.up, "produce to a down node");
        let mut out = Vec::new();
        let reply = |out: &mut Vec<NodeOut>, result: ProduceResult| {
            if acks != 0 {
                out.push(NodeOut::Reply {
                    client,
                    req,
                    result,
                });
            }
        };
        let ack_early = self.canary == Some(SimCanary::AckBeforeFsync);
        let Some(ps) = self.parts.get_mut(key) else {
            let msg = format!("topic '{}' has no partition {}", key.0, key.1);
            reply(&mut out, ProduceResult::Err(UNKNOWN_TOPIC, msg));
            return out;
        };
        let a = match ps.store.append(now_ms, bytes) {
            Ok(a) => a,
            Err(e) => {
                reply(
                    &mut out,
                    ProduceResult::Err(storage_code(&e), e.to_string()),
                );
                return out;
            }
        };
        let ok = ProduceResult::Ok {
            base_offset: a.base_offset,
            last_offset: a.last_offset,
            topic_id: ps.topic_id,
        };
        match acks {
            0 => {}
            1 => reply(&mut out, ok),
            _ if ps.synced_end > a.last_offset || ack_early => reply(&mut out, ok),
            _ => {
                ps.waiters.push(Waiter {
                    client,
                    req,
                    end: a.last_offset + 1,
                    base_offset: a.base_offset,
                    last_offset: a.last_offset,
                });
                if !ps.syncing && !ps.sync_requested {
                    ps.sync_requested = true;
                    out.push(NodeOut::NeedSync(key.clone(), ps.topic_id));
                }
            }
        }
        out
    }

    /// True when `key` is open and belongs to topic `tid` (a sync of a deleted topic is stale).
    pub fn holds(&self, key: &PartKey, tid: TopicId) -> bool {
        self.parts.get(key).is_some_and(|ps| ps.topic_id == tid)
    }

    /// Starts a group-commit fsync: returns the offset it will cover and the file it syncs
    /// (the store's `sync_target`).
    pub fn sync_start(&mut self, key: &PartKey) -> (i64, SyncFile) {
        let ps = self.parts.get_mut(key).expect("open partition");
        ps.sync_requested = false;
        ps.syncing = true;
        let (file, target) = ps.store.sync_target();
        (target, file)
    }

    /// Completes a group-commit fsync (`ok == false`: EIO, nothing became durable).
    pub fn sync_done(
        &mut self,
        key: &PartKey,
        target: i64,
        file: &SimFsFile,
        ok: bool,
    ) -> Vec<NodeOut> {
        let ok = ok && file.sync_data().is_ok();
        let ps = self.parts.get_mut(key).expect("open partition");
        ps.syncing = false;
        if ok {
            ps.store.note_flushed();
            ps.synced_end = ps.synced_end.max(target);
        }
        let mut out = Vec::new();
        let synced = ps.synced_end;
        let tid = ps.topic_id;
        ps.waiters.retain(|w| {
            let result = if w.end <= synced {
                ProduceResult::Ok {
                    base_offset: w.base_offset,
                    last_offset: w.last_offset,
                    topic_id: tid,
                }
            } else if !ok && w.end <= target {
                ProduceResult::Err(STORAGE_ERROR, "fsync failed".into())
            } else {
                return true;
            };
            out.push(NodeOut::Reply {
                client: w.client,
                req: w.req,
                result,
            });
            false
        });
        if !ps.waiters.is_empty() && !ps.sync_requested {
            ps.sync_requested = true;
            out.push(NodeOut::NeedSync(key.clone(), tid));
        }
        out
    }

    /// Serves a fetch (`PartitionStore::plan_fetch` + `read_range`).
    pub fn fetch(&self, key: &PartKey, offset: i64, max_bytes: u64) -> FetchResult {
        let Some(ps) = self.parts.get(key) else {
            return FetchResult::UnknownTopic;
        };
        let (log, topic_id) = (ps.store.log(), ps.topic_id);
        let grant = Grant {
            max_bytes,
            whole_first: true,
        };
        let bytes = match ps.store.plan_fetch(offset, grant) {
            Err(e) => {
                return FetchResult::OutOfRange {
                    log_start: e.log_start,
                    log_end: e.log_end,
                    topic_id,
                }
            }
            Ok(None) => Vec::new(),
            Ok(Some(range)) => read_range(&range)
                .expect("segment file shorter than the log says")
                .to_vec(),
        };
        FetchResult::Ok {
            bytes,
            high_watermark: log.log_end_offset(),
            log_start: log.log_start_offset(),
            topic_id,
        }
    }

    /// A retention pass over every partition (`PartitionStore::retention`); returns the
    /// segments deleted. A failed roll (ENOSPC) ends a partition's pass before its deletions.
    pub fn retention(&mut self, now_ms: u64) -> usize {
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
                let ps = self.open_partition(&key, topic_id(&t.id), now_ms, clean)?;
                parts.insert(key, ps);
            }
        }
        // `remove_orphans`: directories of deleted topics left by a crash mid-delete.
        let dirs = self.disk().dirs();
        for d in dirs {
            let known = d
                .rsplit_once('-')
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<u32>().ok()?)))
                .is_some_and(|k| parts.contains_key(&k));
            if d != META_DIR && !known {
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
        Ok(())
    }

    /// Asserts the node's invariants (see the module docs); a no-op while down.
    pub fn check_invariants(&self) {
        if !self.up || self.disk().is_dead() {
            return;
        }
        let disk = self.disk();
        for (key, ps) in &self.parts {
            let log = ps.store.log();
            log.check_invariants();
            assert!(
                ps.synced_end <= log.log_end_offset(),
                "synced beyond the log end"
            );
            for s in log.segments() {
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
                match disk.len_if_exists(f.name()) {
                    None => panic!("segment file {} missing", f.name()),
                    Some(len) => assert!(
                        len >= s.size,
                        "segment file {} shorter than its segment",
                        f.name()
                    ),
                }
            }
            if self.canary != Some(SimCanary::AckBeforeFsync) {
                assert!(
                    ps.waiters.iter().all(|w| w.end > ps.synced_end),
                    "a covered waiter was not answered"
                );
            }
        }
    }
}
