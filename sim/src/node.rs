//! The simulated node: one single-node broker's metadata and storage, driven like the tokio shell
//! drives it.
//!
//! This is the sim's counterpart of `skein-net`'s `storage.rs` + the catalog and group commit of
//! `broker.rs`, over a [`SimDisk`] instead of files: topics are created, deleted and grown
//! through skein-core's `Catalog` (`plan_*`, then `apply`), a partition lives in `<topic>-<n>/`,
//! and on an I/O error (ENOSPC) an append is undone in the core and answered
//! KAFKA_STORAGE_ERROR, as `PartitionStore::append` and `api::produce` do. The real broker
//! commits metadata records through its Raft quorum; here, as a one-voter quorum does, a record
//! is made durable on the node's own disk before it is applied (a CRC-framed record appended to
//! `meta/__metadata.log` and fsynced; `skein-sim cluster` simulates the quorum itself). It carries
//! out the rolls and writes `PartitionLog::append`
//! returns, fsyncs in groups, answers acks=-1 only once an fsync covers the batch, serves fetches
//! with `plan_read` + `trim_read`, runs retention, and recovers after a crash with the same
//! skein-core `PartitionRecovery` plan `PartitionStore::open` carries out (sealed segments from
//! indexes plus a tail scan, a full scan of the active segment, truncation at the first bad
//! batch, producer state from the newest snapshot plus replay); only the I/O differs.
//!
//! Invariants (checked by [`Node::check_invariants`] after every event): every core log passes
//! `check_invariants`; each segment's file exists (but an empty active segment whose roll failed)
//! and holds at least the segment's bytes; the
//! synced offset never exceeds the log end; an acks=-1 waiter is answered only when
//! `synced_end` covers its batch (unless the `ack-before-fsync` canary is on).
//!
//! Fault-injection rule for sector corruption and misdirected writes (why it is safe to check
//! strictly): both are
//! injected only at a crash, only into the durable bytes of batches at or above the acks=all
//! frontier the checker holds, and only where recovery must scan (the active segment, or a sealed
//! segment after its last index point). So the checker may forget everything at or above the
//! frontier at a crash (see `checker/durability.rs`) and still demand that no corrupt batch is
//! ever served. Corruption before a sealed segment's last index point is not injected: neither
//! Kafka nor skein re-verifies sealed segments on recovery, so it would be served (a Kafka client's
//! CRC check would catch it); that needs a scrubber or fetch-side checks first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use skein_core::batch::{self, BatchHeader};
use skein_core::catalog::{Catalog, CatalogError, MetadataRecord, Placement};
use skein_core::config::LogConfig;
use skein_core::log::{trim_read, PartitionLog, ReadPlan, Rolled, Segment, SegmentScan};
use skein_core::recovery::{PartitionRecovery, SegmentFile, Step};

use crate::canary::SimCanary;
use crate::disk::{CrashReport, NoSpace, SimDisk};
use crate::rng::Rng;
use crate::swarm::Swarm;

/// Snapshots kept beyond the live segments' bases (as `storage.rs` does).
const SNAPSHOTS_KEPT: usize = 3;

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

/// Where recovery will scan a segment, noted before a crash (see the module docs).
#[derive(Debug, Clone)]
pub struct Scanned {
    topic_id: TopicId,
    key: PartKey,
    base: i64,
    from: u64,
}

#[derive(Debug)]
struct Waiter {
    client: usize,
    req: u64,
    end: i64,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug)]
struct PartState {
    topic_id: TopicId,
    log: PartitionLog,
    /// Segment files the shell has open (`storage.rs`'s `files` map).
    open: BTreeSet<i64>,
    synced_end: i64,
    syncing: bool,
    sync_requested: bool,
    waiters: Vec<Waiter>,
}

/// One simulated broker node.
#[derive(Debug)]
pub struct Node {
    /// The node's disk; survives crashes.
    pub disk: SimDisk,
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

/// Directory of the broker-wide files.
const META_DIR: &str = "meta";
/// skein-broker's `.clean-shutdown` marker.
const CLEAN_MARKER: &str = "meta/.clean-shutdown";
/// skein-broker's `__metadata.log`.
const METADATA_LOG: &str = "meta/__metadata.log";

/// `<topic>-<p>`: the directory of a partition (`broker.rs`'s `partition_dir`).
pub fn dir(key: &PartKey) -> String {
    format!("{}-{}", key.0, key.1)
}

/// A segment-related file name, as `storage.rs` names it.
pub fn file(key: &PartKey, base: i64, ext: &str) -> String {
    // By hand: this runs for every segment after every event (check_invariants), and `format!`
    // with zero padding is the simulator's hottest spot.
    let mut s = String::with_capacity(key.0.len() + 32 + ext.len());
    s.push_str(&key.0);
    s.push('-');
    s.push_str(&key.1.to_string());
    s.push('/');
    let digits = base.max(0).to_string();
    for _ in digits.len()..20 {
        s.push('0');
    }
    s.push_str(&digits);
    s.push('.');
    s.push_str(ext);
    s
}

fn catalog_code(e: &CatalogError) -> &'static str {
    match e {
        CatalogError::TopicExists(_) => "TOPIC_ALREADY_EXISTS",
        CatalogError::UnknownTopic(_) => UNKNOWN_TOPIC,
        CatalogError::InvalidTopic(_) => "INVALID_TOPIC_EXCEPTION",
        CatalogError::InvalidPartitions(_) => "INVALID_PARTITIONS",
        CatalogError::InvalidReplicationFactor(_) => "INVALID_REPLICATION_FACTOR",
        CatalogError::InvalidReplicaAssignment(_) => "INVALID_REPLICA_ASSIGNMENT",
        CatalogError::InvalidConfig(_) => "INVALID_CONFIG",
    }
}

fn append_code(e: &skein_core::log::AppendError) -> &'static str {
    use skein_core::log::AppendError as A;
    match e {
        A::Corrupt(_) => "CORRUPT_MESSAGE",
        A::InvalidRecord(_) => "INVALID_RECORD",
        A::TooLarge { .. } => "MESSAGE_TOO_LARGE",
        A::LargerThanSegment { .. } => "RECORD_LIST_TOO_LARGE",
        A::OutOfOrderSequence(_) => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        A::InvalidProducerEpoch(_) => "INVALID_PRODUCER_EPOCH",
        A::InvalidTimestamp { .. } => "INVALID_TIMESTAMP",
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

/// One replica on the one broker.
const ONE_REPLICA: Placement = Placement::Spread {
    replication_factor: 1,
    start: 0,
};

/// The single node's catalog before its metadata log is replayed: broker 1 registered (the
/// cluster simulation covers registration and fencing; here the one broker is always live).
fn single_broker_catalog(config: &LogConfig) -> Catalog {
    let mut c = Catalog::new(config.clone());
    c.apply(&MetadataRecord::BrokerRegistered {
        id: 1,
        incarnation: "sim".into(),
        host: "sim".into(),
        port: 9092,
        rack: None,
    });
    c
}

impl Node {
    /// A node with an empty disk and no topics, started.
    pub fn new(config: LogConfig, canary: Option<SimCanary>, now_ms: u64) -> Self {
        let mut n = Node {
            disk: SimDisk::new(),
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
                (
                    k.clone(),
                    ps.topic_id,
                    ps.log.log_start_offset(),
                    ps.log.log_end_offset(),
                )
            })
            .collect()
    }

    /// Log start and end of a partition (ListOffsets); `None` while down or unknown.
    pub fn offsets(&self, key: &PartKey) -> Option<(i64, i64)> {
        let ps = self.parts.get(key)?;
        Some((ps.log.log_start_offset(), ps.log.log_end_offset()))
    }

    /// Number of segments over all partitions (for the trace).
    pub fn segment_count(&self) -> usize {
        self.parts.values().map(|p| p.log.segments().count()).sum()
    }

    fn core_canary(&self) -> Option<skein_core::canary::Canary> {
        self.canary.and_then(SimCanary::core)
    }

    /// Handles an admin request as `broker.rs` does: validate into a record, make it durable,
    /// apply it, then open or remove the partitions it creates or deletes.
    pub fn admin(&mut self, now_ms: u64, op: &AdminOp) -> AdminResult {
        assert!(self.up, "admin request to a down node");
        let planned = match op {
            AdminOp::Create {
                name,
                partitions,
                id,
            } => self
                .catalog
                .plan_create(name, *partitions as i32, &ONE_REPLICA, &[], *id),
            AdminOp::Delete { name } => self.catalog.plan_delete(name),
            AdminOp::AddPartitions { name, total } => {
                self.catalog
                    .plan_partitions(name, *total as i32, &ONE_REPLICA)
            }
        };
        let rec = match planned {
            Ok(r) => r,
            Err(e) => return AdminResult::Err(catalog_code(&e), e.to_string()),
        };
        let name = match op {
            AdminOp::Create { name, .. }
            | AdminOp::Delete { name }
            | AdminOp::AddPartitions { name, .. } => name.clone(),
        };
        let before = self.catalog.topic(&name).map(|t| topic_id(&t.id));
        if let Err(e) = self.commit(now_ms, &rec) {
            return AdminResult::Err(STORAGE_ERROR, format!("storage failure: {e}"));
        }
        let id = self
            .catalog
            .topic(&name)
            .map(|t| topic_id(&t.id))
            .or(before)
            .expect("the topic acted on");
        AdminResult::Ok(id)
    }

    /// `Broker::commit`: append the record to the metadata log and fsync it, apply it, carry it
    /// out on the partitions.
    fn commit(&mut self, now_ms: u64, rec: &MetadataRecord) -> Result<(), NoSpace> {
        let payload = serde_json::to_vec(rec).expect("records serialize");
        let mut frame = Vec::with_capacity(8 + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        // As skein-broker's `append_metadata`: a failed (short) write is cut off again, or the
        // records after it would be unreachable at the next start.
        let before = self.disk.len(METADATA_LOG);
        if let Err(e) = self.disk.append(METADATA_LOG, &frame) {
            self.disk.truncate(METADATA_LOG, before);
            return Err(e);
        }
        self.disk.fsync(METADATA_LOG);
        self.catalog.apply(rec);
        match rec {
            MetadataRecord::TopicCreated {
                name, partitions, ..
            } => self.open_partitions(name, 0, *partitions, now_ms)?,
            MetadataRecord::PartitionsAdded { name, total, .. } => {
                let have = self
                    .parts
                    .range((name.clone(), 0)..=(name.clone(), u32::MAX))
                    .count();
                self.open_partitions(name, have as u32, *total, now_ms)?;
            }
            MetadataRecord::TopicDeleted { name } => {
                let keys: Vec<PartKey> = self
                    .parts
                    .range((name.clone(), 0)..=(name.clone(), u32::MAX))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
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

    fn open_partitions(
        &mut self,
        name: &str,
        from: u32,
        to: u32,
        now_ms: u64,
    ) -> Result<(), NoSpace> {
        let id = topic_id(&self.catalog.topic(name).expect("topic exists").id);
        for p in from..to {
            let key = (name.to_string(), p);
            let ps = self.recover(&key, id, now_ms, true)?;
            self.parts.insert(key, ps);
        }
        Ok(())
    }

    fn remove_dir(&mut self, d: &str) {
        for f in self.disk.files_in(d) {
            self.disk.remove(&f);
        }
        self.disk.sync_dir(d);
    }

    /// Handles a produce request for one partition.
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
        let Some(ps) = self.parts.get_mut(key) else {
            let msg = format!("topic '{}' has no partition {}", key.0, key.1);
            reply(&mut out, ProduceResult::Err(UNKNOWN_TOPIC, msg));
            return out;
        };
        let tid = ps.topic_id;
        let mut buf = bytes.to_vec();
        let a = match ps.log.append(now_ms, &mut buf) {
            Ok(a) => a,
            Err(e) => {
                reply(&mut out, ProduceResult::Err(append_code(&e), e.to_string()));
                return out;
            }
        };
        // `PartitionStore::append`: a failed roll or write is undone in the core and reported.
        let mut failed = None;
        if let Some(r) = &a.roll {
            failed = self.carry_out_roll(key, r).err();
        }
        if let (None, Some(w)) = (failed, a.write) {
            self.active_file(key, w.segment_base);
            let name = file(key, w.segment_base, "log");
            if let Err(e) = self.disk.write(&name, w.position, &buf) {
                self.disk.set_len(&name, w.position);
                failed = Some(e);
            }
        }
        let ps = self.parts.get_mut(key).expect("open");
        if let Some(e) = failed {
            ps.log.abort_append(&a);
            reply(&mut out, ProduceResult::Err(STORAGE_ERROR, e.to_string()));
            return out;
        }
        let ok = ProduceResult::Ok {
            base_offset: a.base_offset,
            last_offset: a.last_offset,
            topic_id: tid,
        };
        match acks {
            0 => {}
            1 => reply(&mut out, ok),
            _ => {
                let end = a.last_offset + 1;
                if ps.synced_end >= end || self.canary == Some(SimCanary::AckBeforeFsync) {
                    reply(&mut out, ok);
                } else {
                    ps.waiters.push(Waiter {
                        client,
                        req,
                        end,
                        base_offset: a.base_offset,
                        last_offset: a.last_offset,
                    });
                    if !ps.syncing && !ps.sync_requested {
                        ps.sync_requested = true;
                        out.push(NodeOut::NeedSync(key.clone(), tid));
                    }
                }
            }
        }
        out
    }

    /// True when `key` is open and belongs to topic `tid` (a sync of a deleted topic is stale).
    pub fn holds(&self, key: &PartKey, tid: TopicId) -> bool {
        self.parts.get(key).is_some_and(|ps| ps.topic_id == tid)
    }

    /// Starts a group-commit fsync: returns the offset it will cover and the file it syncs.
    pub fn sync_start(&mut self, key: &PartKey) -> (i64, String) {
        let ps = self.parts.get_mut(key).expect("open partition");
        ps.sync_requested = false;
        ps.syncing = true;
        let active = ps.log.segments().last().expect("active").base_offset;
        (ps.log.log_end_offset(), file(key, active, "log"))
    }

    /// Completes a group-commit fsync (`ok == false`: EIO, nothing became durable).
    pub fn sync_done(&mut self, key: &PartKey, target: i64, name: &str, ok: bool) -> Vec<NodeOut> {
        if ok {
            self.disk.fsync(name);
        }
        let ps = self.parts.get_mut(key).expect("open partition");
        ps.syncing = false;
        if ok {
            ps.synced_end = ps.synced_end.max(target);
        }
        let mut out = Vec::new();
        let synced = ps.synced_end;
        let tid = ps.topic_id;
        ps.waiters.retain(|w| {
            if w.end <= synced {
                out.push(NodeOut::Reply {
                    client: w.client,
                    req: w.req,
                    result: ProduceResult::Ok {
                        base_offset: w.base_offset,
                        last_offset: w.last_offset,
                        topic_id: tid,
                    },
                });
                false
            } else if !ok && w.end <= target {
                out.push(NodeOut::Reply {
                    client: w.client,
                    req: w.req,
                    result: ProduceResult::Err(STORAGE_ERROR, "fsync failed".into()),
                });
                false
            } else {
                true
            }
        });
        if !ps.waiters.is_empty() && !ps.sync_requested {
            ps.sync_requested = true;
            out.push(NodeOut::NeedSync(key.clone(), tid));
        }
        out
    }

    /// Serves a fetch (`storage.rs`'s `plan_fetch` + `read_range`).
    pub fn fetch(&self, key: &PartKey, offset: i64, max_bytes: u64) -> FetchResult {
        let Some(ps) = self.parts.get(key) else {
            return FetchResult::UnknownTopic;
        };
        let (log, topic_id) = (&ps.log, ps.topic_id);
        match log.plan_read(offset, max_bytes) {
            Err(e) => FetchResult::OutOfRange {
                log_start: e.log_start,
                log_end: e.log_end,
                topic_id,
            },
            Ok(ReadPlan::Empty) => FetchResult::Ok {
                bytes: Vec::new(),
                high_watermark: log.log_end_offset(),
                log_start: log.log_start_offset(),
                topic_id,
            },
            Ok(ReadPlan::Range {
                segment_base,
                position,
                len,
            }) => {
                let seg_size = log.segment(segment_base).expect("segment").size;
                let name = file(key, segment_base, "log");
                let mut buf = self.disk.read(&name, position, len);
                assert_eq!(
                    buf.len() as u64,
                    len,
                    "segment file shorter than the log says"
                );
                let (s, e) = match trim_read(&buf, offset, max_bytes, true) {
                    Ok(r) => r,
                    Err(total) => {
                        let total = (total as u64).min(seg_size - position);
                        buf = self.disk.read(&name, position, total);
                        trim_read(&buf, offset, max_bytes, true).unwrap_or((0, 0))
                    }
                };
                FetchResult::Ok {
                    bytes: buf[s..e].to_vec(),
                    high_watermark: log.log_end_offset(),
                    log_start: log.log_start_offset(),
                    topic_id,
                }
            }
        }
    }

    /// A retention pass over every partition (`PartitionStore::retention`); returns the
    /// segments deleted. A failed roll (ENOSPC) ends a partition's pass before its deletions.
    pub fn retention(&mut self, now_ms: u64) -> usize {
        let mut total = 0;
        let keys: Vec<PartKey> = self.parts.keys().cloned().collect();
        for key in keys {
            let r = self
                .parts
                .get_mut(&key)
                .expect("open")
                .log
                .retention(now_ms);
            if let Some(roll) = &r.roll {
                if self.carry_out_roll(&key, roll).is_err() {
                    continue;
                }
            }
            for base in &r.deleted {
                self.parts.get_mut(&key).expect("open").open.remove(base);
                self.remove_segment_files(&key, *base);
            }
            if !r.deleted.is_empty() {
                self.disk.sync_dir(&dir(&key));
                self.prune_snapshots(&key);
            }
            total += r.deleted.len();
        }
        total
    }

    /// Power loss: volatile state is gone, the disk keeps what it keeps. Returns where recovery
    /// will scan, for [`Node::rot`] and [`Node::misdirect`].
    pub fn crash(&mut self, r: &mut Rng, swarm: &Swarm) -> (CrashReport, Vec<Scanned>) {
        // Where recovery will scan, from the in-memory state before it is lost.
        let mut scanned = Vec::new();
        for (key, ps) in &self.parts {
            let n = ps.log.segments().count();
            for (i, s) in ps.log.segments().enumerate() {
                let from = if i + 1 == n {
                    0
                } else {
                    s.points().last().map_or(0, |pt| u64::from(pt.position))
                };
                scanned.push(Scanned {
                    topic_id: ps.topic_id,
                    key: key.clone(),
                    base: s.base_offset,
                    from,
                });
            }
        }
        self.stop();
        let rep = self.disk.crash(r, swarm);
        (rep, scanned)
    }

    fn stop(&mut self) {
        self.parts.clear();
        self.catalog = single_broker_catalog(&self.config);
        self.up = false;
        self.incarnation += 1;
    }

    /// Batches recovery will scan whose base offset is at or above their partition's acks=all
    /// frontier: (file, position, size).
    fn damageable(
        &self,
        scanned: &[Scanned],
        frontier: &dyn Fn(TopicId, u32) -> i64,
    ) -> Vec<(String, u64, usize)> {
        let mut candidates = Vec::new();
        for s in scanned {
            let name = file(&s.key, s.base, "log");
            let Some(bytes) = self.disk.read_all(&name) else {
                continue;
            };
            let f = frontier(s.topic_id, s.key.1);
            for item in batch::iter_headers(&bytes) {
                let Ok((pos, h)) = item else { break };
                if pos as u64 >= s.from && h.base_offset >= f {
                    candidates.push((name.clone(), pos as u64, h.size));
                }
            }
        }
        candidates
    }

    /// Bit rot at a crash: flips one bit inside the CRC-covered part of one batch recovery will
    /// scan, at or above its partition's acks=all frontier.
    pub fn rot(
        &mut self,
        r: &mut Rng,
        scanned: &[Scanned],
        frontier: &dyn Fn(TopicId, u32) -> i64,
    ) -> Option<String> {
        let candidates = self.damageable(scanned, frontier);
        if candidates.is_empty() {
            return None;
        }
        let (name, pos, size) = candidates[r.below(candidates.len() as u64) as usize].clone();
        // Inside the CRC-covered part (the CRC field and after); the base offset and leader
        // epoch sit outside the CRC by Kafka's design.
        let at = pos + r.range(17, size as u64 - 1);
        let bit = r.below(8) as u8;
        self.disk.flip_bit(&name, at, bit);
        Some(format!("{name}@{at}.{bit}"))
    }

    /// A misdirected write found at a crash: a piece of some segment file's bytes (from this or
    /// another file) landed inside the CRC-covered part of one batch recovery will scan, at or
    /// above its partition's acks=all frontier, where it was never meant to go.
    pub fn misdirect(
        &mut self,
        r: &mut Rng,
        scanned: &[Scanned],
        frontier: &dyn Fn(TopicId, u32) -> i64,
    ) -> Option<String> {
        let candidates = self.damageable(scanned, frontier);
        if candidates.is_empty() {
            return None;
        }
        let (name, pos, size) = candidates[r.below(candidates.len() as u64) as usize].clone();
        let src = &scanned[r.below(scanned.len() as u64) as usize];
        let src_name = file(&src.key, src.base, "log");
        let src_bytes = self.disk.read_all(&src_name).unwrap_or_default();
        let at = pos + r.range(17, size as u64 - 1);
        let room = (pos + size as u64 - at) as usize;
        let len = (r.range(1, 512) as usize).min(room);
        let from = r.below(src_bytes.len().max(1) as u64) as usize;
        let mut piece: Vec<u8> = src_bytes.iter().skip(from).take(len).copied().collect();
        piece.resize(len, 0);
        let old = self.disk.read(&name, at, len as u64);
        if old == piece {
            // Landing on identical bytes changes nothing: make the damage real.
            piece[0] ^= 0xff;
        }
        self.disk.clobber(&name, at, &piece);
        Some(format!("{src_name}@{from}->{name}@{at}+{len}"))
    }

    /// SIGTERM, as skein-broker's `Broker::close` and `PartitionStore::close`: per partition, fsync
    /// the active segment, write its indexes and a producer snapshot at the log end, sync the
    /// directory; then, only if every partition closed, leave the clean-shutdown marker.
    /// Volatile state is gone afterwards.
    pub fn shutdown(&mut self) {
        let mut ok = true;
        let keys: Vec<PartKey> = self.parts.keys().cloned().collect();
        for key in keys {
            ok &= self.close_partition(&key).is_ok();
        }
        if ok {
            self.disk.create(CLEAN_MARKER);
            self.disk.fsync(CLEAN_MARKER);
            self.disk.sync_dir(META_DIR);
        }
        self.stop();
    }

    fn close_partition(&mut self, key: &PartKey) -> Result<(), NoSpace> {
        let ps = &self.parts[key];
        let active = ps.log.segments().last().expect("active").clone();
        let (end, snap) = (ps.log.log_end_offset(), ps.log.producer_snapshot());
        self.disk.fsync(&file(key, active.base_offset, "log"));
        self.write_indexes(key, &active)?;
        let name = file(key, end, "snapshot");
        self.disk.write_file(&name, &snap)?;
        self.disk.fsync(&name);
        self.disk.sync_dir(&dir(key));
        self.prune_snapshots(key);
        Ok(())
    }

    /// Starts the node (`Broker::open`): replays the metadata log, recovers every partition of
    /// every topic (clean if the marker is there), removes directories of deleted topics. Fails
    /// (the process exits, the node stays down) when recovery cannot write (ENOSPC).
    pub fn restart(&mut self, now_ms: u64) -> Result<(), NoSpace> {
        assert!(!self.up);
        let clean = self.disk.exists(CLEAN_MARKER);
        let mut catalog = single_broker_catalog(&self.config);
        for rec in self.read_metadata_log() {
            catalog.apply(&rec);
        }
        if !self.disk.exists(METADATA_LOG) {
            self.disk.create(METADATA_LOG);
        }
        let mut parts = BTreeMap::new();
        let topics: Vec<(String, TopicId, u32)> = catalog
            .topics()
            .map(|t| (t.name.clone(), topic_id(&t.id), t.partitions))
            .collect();
        for (name, id, n) in topics {
            for p in 0..n {
                let key = (name.clone(), p);
                let ps = self.recover(&key, id, now_ms, clean)?;
                parts.insert(key, ps);
            }
        }
        // `remove_orphans`: directories of deleted topics left by a crash mid-delete.
        for d in self.disk.dirs() {
            let known = d
                .rsplit_once('-')
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<u32>().ok()?)))
                .is_some_and(|k| parts.contains_key(&k));
            if d != META_DIR && !known {
                self.remove_dir(&d);
            }
        }
        // As skein-broker: only once every partition is recovered is a crash unclean again.
        self.disk.remove(CLEAN_MARKER);
        self.disk.sync_dir(META_DIR);
        self.catalog = catalog;
        self.parts = parts;
        self.last_start_clean = clean;
        self.up = true;
        Ok(())
    }

    /// `read_metadata_log`: the valid frames; a torn or corrupt tail is cut off (and synced).
    fn read_metadata_log(&mut self) -> Vec<MetadataRecord> {
        let Some(bytes) = self.disk.read_all(METADATA_LOG) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
            let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4"));
            let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if crc32c::crc32c(payload) != crc {
                break;
            }
            match serde_json::from_slice(payload) {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
            pos += 8 + len;
        }
        if pos < bytes.len() {
            self.disk.truncate(METADATA_LOG, pos as u64);
        }
        out
    }

    /// `PartitionStore::open` over the SimDisk: skein-core's `PartitionRecovery` decides, this
    /// carries out its steps.
    fn recover(
        &mut self,
        key: &PartKey,
        topic_id: TopicId,
        now_ms: u64,
        clean: bool,
    ) -> Result<PartState, NoSpace> {
        let d = dir(key);
        let mut bases = self.disk.list(&d, "log");
        if bases.is_empty() {
            self.disk.create(&file(key, 0, "log"));
            self.disk.sync_dir(&d);
            bases.push(0);
        }
        let files = bases
            .iter()
            .map(|base| SegmentFile {
                base: *base,
                size: self.disk.len(&file(key, *base, "log")),
                modified_ms: now_ms,
            })
            .collect();
        let snapshots = self.disk.list(&d, "snapshot");
        let canary = self.core_canary();
        // The simulated disk holds no data written before timestamps were checked.
        let mut rec = PartitionRecovery::new(files, snapshots, clean, true, &self.config, now_ms);
        rec.set_canary(canary);
        loop {
            match rec.poll() {
                Step::Done => break,
                step => self.carry_out(key, step, &mut rec)?,
            }
        }
        let mut log = rec.finish(self.config.clone(), &[]);
        let open = log.segments().map(|s| s.base_offset).collect();
        log.set_canary(canary);
        let synced_end = log.log_end_offset();
        Ok(PartState {
            topic_id,
            log,
            open,
            synced_end,
            syncing: false,
            sync_requested: false,
            waiters: Vec::new(),
        })
    }

    /// Carries out one recovery step on the SimDisk.
    fn carry_out(
        &mut self,
        key: &PartKey,
        step: Step,
        rec: &mut PartitionRecovery,
    ) -> Result<(), NoSpace> {
        match step {
            Step::ReadIndexes { base } => {
                let idx = self.disk.read_all(&file(key, base, "index"));
                let tidx = self.disk.read_all(&file(key, base, "timeindex"));
                let answer = rec.on_indexes(idx.zip(tidx));
                self.carry_out(key, answer, rec)?;
            }
            Step::Scan {
                base, size, scan, ..
            } => {
                let (seg, complete) = self.scan_file(&file(key, base, "log"), scan, size);
                rec.on_scanned(seg, complete);
            }
            Step::WriteIndexes(seg) => self.write_indexes(key, &seg)?,
            Step::Truncate { base, len, .. } => self.disk.truncate(&file(key, base, "log"), len),
            Step::RemoveSegment { base, .. } => self.remove_segment_files(key, base),
            Step::SyncDir => self.disk.sync_dir(&dir(key)),
            Step::ReadSnapshot { offset } => {
                rec.on_snapshot(self.disk.read_all(&file(key, offset, "snapshot")));
            }
            Step::RemoveSnapshot { offset } => self.disk.remove(&file(key, offset, "snapshot")),
            Step::ReadHeaders { base, size } => {
                let headers = self.scan_headers(&file(key, base, "log"), size);
                rec.on_headers(&headers);
            }
            Step::Done => {}
        }
        Ok(())
    }

    /// `storage.rs`'s `scan_file`: the segment and whether the whole file was valid.
    fn scan_file(&self, path: &str, mut scan: SegmentScan, size: u64) -> (Segment, bool) {
        let bytes = self.disk.read_all(path).unwrap_or_default();
        let mut pos = scan.position();
        let mut complete = true;
        while pos < size {
            if size - pos < batch::LOG_OVERHEAD as u64 {
                complete = false;
                break;
            }
            let Ok(len) = batch::peek_size(&bytes[pos as usize..]) else {
                complete = false;
                break;
            };
            if len as u64 > size - pos
                || scan.push(&bytes[pos as usize..pos as usize + len]).is_err()
            {
                complete = false;
                break;
            }
            pos += len as u64;
        }
        (scan.finish(), complete)
    }

    /// `storage.rs`'s `scan_headers`.
    fn scan_headers(&self, path: &str, size: u64) -> Vec<BatchHeader> {
        let bytes = self.disk.read(path, 0, size);
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos + batch::HEADER_LEN <= bytes.len() {
            let Ok(h) = batch::parse_header(&bytes[pos..pos + batch::HEADER_LEN]) else {
                break;
            };
            out.push(h);
            pos += h.size;
        }
        out
    }

    fn write_indexes(&mut self, key: &PartKey, seg: &Segment) -> Result<(), NoSpace> {
        self.disk.write_file(
            &file(key, seg.base_offset, "index"),
            &seg.encode_offset_index(),
        )?;
        self.disk.write_file(
            &file(key, seg.base_offset, "timeindex"),
            &seg.encode_time_index(),
        )
    }

    fn remove_segment_files(&mut self, key: &PartKey, base: i64) {
        for ext in ["log", "index", "timeindex", "snapshot"] {
            self.disk.remove(&file(key, base, ext));
        }
    }

    fn active_file(&mut self, key: &PartKey, base: i64) {
        if self.parts.get_mut(key).expect("open").open.insert(base) {
            self.disk.create(&file(key, base, "log"));
            self.disk.sync_dir(&dir(key));
        }
    }

    /// `storage.rs`'s `carry_out_roll`; stops at the first failed step, as it does.
    fn carry_out_roll(&mut self, key: &PartKey, r: &Rolled) -> Result<(), NoSpace> {
        self.disk.fsync(&file(key, r.sealed_base, "log"));
        if let Some(seg) = self.parts[key].log.segment(r.sealed_base).cloned() {
            self.write_indexes(key, &seg)?;
        }
        self.active_file(key, r.new_base);
        self.disk
            .write_file(&file(key, r.new_base, "snapshot"), &r.producer_snapshot)?;
        self.disk.sync_dir(&dir(key));
        self.prune_snapshots(key);
        Ok(())
    }

    fn prune_snapshots(&mut self, key: &PartKey) {
        let start = self.parts[key].log.log_start_offset();
        let snaps = self.disk.list(&dir(key), "snapshot");
        let keep_from = snaps.len().saturating_sub(SNAPSHOTS_KEPT);
        for (i, off) in snaps.iter().enumerate() {
            if *off < start || i < keep_from {
                self.disk.remove(&file(key, *off, "snapshot"));
            }
        }
    }

    /// Asserts the node's invariants (see the module docs); a no-op while down.
    pub fn check_invariants(&self) {
        if !self.up || self.disk.is_dead() {
            return;
        }
        for (key, ps) in &self.parts {
            ps.log.check_invariants();
            assert!(
                ps.synced_end <= ps.log.log_end_offset(),
                "synced beyond the log end"
            );
            for s in ps.log.segments() {
                let name = file(key, s.base_offset, "log");
                // A roll that failed (ENOSPC) before creating its file leaves the new, empty
                // active segment without one; the next append creates it (as in storage.rs).
                let unborn = s.size == 0 && !ps.open.contains(&s.base_offset);
                match self.disk.len_if_exists(&name) {
                    None => assert!(unborn, "segment file {name} missing"),
                    Some(len) => assert!(
                        len >= s.size,
                        "segment file {name} shorter than its segment"
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
