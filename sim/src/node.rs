//! The simulated node: one single-node broker's storage, driven like the tokio shell drives it.
//!
//! This is the sim's counterpart of `skein-net`'s `storage.rs` + the group commit of `broker.rs`,
//! over a [`SimDisk`] instead of files: it carries out the rolls and writes `PartitionLog::append`
//! returns, fsyncs in groups, answers acks=-1 only once an fsync covers the batch, serves fetches
//! with `plan_read` + `trim_read`, runs retention, and recovers after a crash exactly as
//! `PartitionStore::open` does (sealed segments from indexes plus a tail scan, a full scan of the
//! active segment, truncation at the first bad batch, producer state from the newest snapshot
//! plus replay). Keep the two in step: a divergence makes the sim test something else.
//!
//! Invariants (checked by [`Node::check_invariants`] after every event): every core log passes
//! `check_invariants`; each segment's file exists and holds at least the segment's bytes; the
//! synced offset never exceeds the log end; an acks=-1 waiter is answered only when
//! `synced_end` covers its batch (unless the `ack-before-fsync` canary is on).
//!
//! Fault-injection rule for sector corruption (why it is safe to check strictly): bit rot is
//! injected only at a crash, only into the durable bytes of batches at or above the acks=all
//! frontier the checker holds, and only where recovery must scan (the active segment, or a sealed
//! segment after its last index point). So the checker may forget everything at or above the
//! frontier at a crash (see `checker/durability.rs`) and still demand that no corrupt batch is
//! ever served. Corruption before a sealed segment's last index point is not injected: neither
//! Kafka nor skein re-verifies sealed segments on recovery, so it would be served (a Kafka client's
//! CRC check would catch it); that needs a scrubber or fetch-side checks first.

use std::collections::BTreeSet;

use skein_core::batch::{self, BatchHeader};
use skein_core::config::LogConfig;
use skein_core::log::{trim_read, PartitionLog, ReadPlan, Rolled, Segment, SegmentScan};
use skein_core::producer::ProducerStates;

use crate::canary::SimCanary;
use crate::disk::{CrashReport, SimDisk};
use crate::rng::Rng;
use crate::swarm::Swarm;

/// Snapshots kept beyond the live segments' bases (as `storage.rs` does).
const SNAPSHOTS_KEPT: usize = 3;

/// The result of a produce, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceResult {
    /// Appended (or recognised as a duplicate) at these offsets.
    Ok {
        /// First offset.
        base_offset: i64,
        /// Last offset.
        last_offset: i64,
    },
    /// Refused or failed; the text is the Kafka error.
    Err(String),
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
    },
    /// OFFSET_OUT_OF_RANGE.
    OutOfRange {
        /// First offset held.
        log_start: i64,
        /// Log end.
        log_end: i64,
    },
}

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
    /// Start a group-commit fsync of this partition after the group-commit delay.
    NeedSync(usize),
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
    /// Bumped at every crash; requests and replies of an older incarnation are dropped.
    pub incarnation: u32,
    /// Whether the last start found the clean-shutdown marker.
    pub last_start_clean: bool,
    parts: Vec<PartState>,
    up: bool,
    partitions: usize,
    config: LogConfig,
    canary: Option<SimCanary>,
}

/// Directory of the broker-wide files.
const META_DIR: &str = "meta";
/// skein-net's `.clean-shutdown` marker.
const CLEAN_MARKER: &str = "meta/.clean-shutdown";

/// `<dir>` of partition `p`.
pub fn dir(p: usize) -> String {
    format!("p{p}")
}

/// A segment-related file name, as `storage.rs` names it.
pub fn file(p: usize, base: i64, ext: &str) -> String {
    format!("p{p}/{base:020}.{ext}")
}

impl Node {
    /// A node with an empty disk, started.
    pub fn new(
        partitions: usize,
        config: LogConfig,
        canary: Option<SimCanary>,
        now_ms: u64,
    ) -> Self {
        let mut n = Node {
            disk: SimDisk::new(),
            incarnation: 0,
            last_start_clean: false,
            parts: Vec::new(),
            up: false,
            partitions,
            config,
            canary,
        };
        n.restart(now_ms);
        n
    }

    /// True while running.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Log start and end of a partition (ListOffsets); `None` while down.
    pub fn offsets(&self, p: usize) -> Option<(i64, i64)> {
        let ps = self.parts.get(p)?;
        Some((ps.log.log_start_offset(), ps.log.log_end_offset()))
    }

    /// Number of segments over all partitions (for the trace).
    pub fn segment_count(&self) -> usize {
        self.parts.iter().map(|p| p.log.segments().count()).sum()
    }

    fn core_canary(&self) -> Option<skein_core::canary::Canary> {
        self.canary.and_then(SimCanary::core)
    }

    /// Handles a produce request.
    pub fn produce(
        &mut self,
        now_ms: u64,
        p: usize,
        client: usize,
        req: u64,
        bytes: &[u8],
        acks: i16,
    ) -> Vec<NodeOut> {
        assert!(self.up, "produce to a down node");
        let mut out = Vec::new();
        let mut buf = bytes.to_vec();
        let appended = self.parts[p].log.append(now_ms, &mut buf);
        let a = match appended {
            Ok(a) => a,
            Err(e) => {
                if acks != 0 {
                    out.push(NodeOut::Reply {
                        client,
                        req,
                        result: ProduceResult::Err(e.to_string()),
                    });
                }
                return out;
            }
        };
        if let Some(r) = &a.roll {
            self.carry_out_roll(p, r);
        }
        if let Some(w) = a.write {
            self.active_file(p, w.segment_base);
            self.disk
                .write(&file(p, w.segment_base, "log"), w.position, &buf);
        }
        let ok = ProduceResult::Ok {
            base_offset: a.base_offset,
            last_offset: a.last_offset,
        };
        let ps = &mut self.parts[p];
        match acks {
            0 => {}
            1 => out.push(NodeOut::Reply {
                client,
                req,
                result: ok,
            }),
            _ => {
                let end = a.last_offset + 1;
                if ps.synced_end >= end || self.canary == Some(SimCanary::AckBeforeFsync) {
                    out.push(NodeOut::Reply {
                        client,
                        req,
                        result: ok,
                    });
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
                        out.push(NodeOut::NeedSync(p));
                    }
                }
            }
        }
        out
    }

    /// Starts a group-commit fsync: returns the offset it will cover and the file it syncs.
    pub fn sync_start(&mut self, p: usize) -> (i64, String) {
        let ps = &mut self.parts[p];
        ps.sync_requested = false;
        ps.syncing = true;
        let active = ps.log.segments().last().expect("active").base_offset;
        (ps.log.log_end_offset(), file(p, active, "log"))
    }

    /// Completes a group-commit fsync (`ok == false`: EIO, nothing became durable).
    pub fn sync_done(&mut self, p: usize, target: i64, name: &str, ok: bool) -> Vec<NodeOut> {
        if ok {
            self.disk.fsync(name);
        }
        let ps = &mut self.parts[p];
        ps.syncing = false;
        if ok {
            ps.synced_end = ps.synced_end.max(target);
        }
        let mut out = Vec::new();
        let synced = ps.synced_end;
        ps.waiters.retain(|w| {
            if w.end <= synced {
                out.push(NodeOut::Reply {
                    client: w.client,
                    req: w.req,
                    result: ProduceResult::Ok {
                        base_offset: w.base_offset,
                        last_offset: w.last_offset,
                    },
                });
                false
            } else if !ok && w.end <= target {
                out.push(NodeOut::Reply {
                    client: w.client,
                    req: w.req,
                    result: ProduceResult::Err("KAFKA_STORAGE_ERROR: fsync failed".into()),
                });
                false
            } else {
                true
            }
        });
        if !ps.waiters.is_empty() && !ps.sync_requested {
            ps.sync_requested = true;
            out.push(NodeOut::NeedSync(p));
        }
        out
    }

    /// Serves a fetch (`storage.rs`'s `plan_fetch` + `read_range`).
    pub fn fetch(&self, p: usize, offset: i64, max_bytes: u64) -> FetchResult {
        let log = &self.parts[p].log;
        match log.plan_read(offset, max_bytes) {
            Err(e) => FetchResult::OutOfRange {
                log_start: e.log_start,
                log_end: e.log_end,
            },
            Ok(ReadPlan::Empty) => FetchResult::Ok {
                bytes: Vec::new(),
                high_watermark: log.log_end_offset(),
                log_start: log.log_start_offset(),
            },
            Ok(ReadPlan::Range {
                segment_base,
                position,
                len,
            }) => {
                let seg_size = log.segment(segment_base).expect("segment").size;
                let name = file(p, segment_base, "log");
                let mut buf = self.disk.read(&name, position, len);
                assert_eq!(
                    buf.len() as u64,
                    len,
                    "segment file shorter than the log says"
                );
                let (s, e) = match trim_read(&buf, offset, max_bytes) {
                    Ok(r) => r,
                    Err(total) => {
                        let total = (total as u64).min(seg_size - position);
                        buf = self.disk.read(&name, position, total);
                        trim_read(&buf, offset, max_bytes).unwrap_or((0, 0))
                    }
                };
                FetchResult::Ok {
                    bytes: buf[s..e].to_vec(),
                    high_watermark: log.log_end_offset(),
                    log_start: log.log_start_offset(),
                }
            }
        }
    }

    /// A retention pass over every partition; returns the segments deleted.
    pub fn retention(&mut self, now_ms: u64) -> usize {
        let mut total = 0;
        for p in 0..self.partitions {
            let r = self.parts[p].log.retention(now_ms);
            if let Some(roll) = &r.roll {
                self.carry_out_roll(p, roll);
            }
            for base in &r.deleted {
                self.parts[p].open.remove(base);
                self.remove_segment_files(p, *base);
            }
            if !r.deleted.is_empty() {
                self.disk.sync_dir(&dir(p));
                self.prune_snapshots(p);
            }
            total += r.deleted.len();
        }
        total
    }

    /// Power loss: volatile state is gone, the disk keeps what it keeps; may rot one sector
    /// (see the module docs for where). `frontiers[p]` is the checker's acks=all frontier.
    pub fn crash(
        &mut self,
        r: &mut Rng,
        swarm: &Swarm,
        frontiers: &[i64],
    ) -> (CrashReport, Option<String>) {
        // Where recovery will scan, from the in-memory state before it is lost.
        let mut scanned: Vec<(usize, i64, u64)> = Vec::new();
        for (p, ps) in self.parts.iter().enumerate() {
            let n = ps.log.segments().count();
            for (i, s) in ps.log.segments().enumerate() {
                let from = if i + 1 == n {
                    0
                } else {
                    s.points().last().map_or(0, |pt| u64::from(pt.position))
                };
                scanned.push((p, s.base_offset, from));
            }
        }
        self.parts.clear();
        self.up = false;
        self.incarnation += 1;
        let rep = self.disk.crash(r, swarm);
        let mut rot = None;
        if r.chance(swarm.corrupt_ppm) {
            let mut candidates: Vec<(String, u64, usize)> = Vec::new();
            for (p, base, from) in scanned {
                let name = file(p, base, "log");
                let Some(bytes) = self.disk.read_all(&name) else {
                    continue;
                };
                for item in batch::iter_headers(&bytes) {
                    let Ok((pos, h)) = item else { break };
                    if pos as u64 >= from && h.base_offset >= frontiers[p] {
                        candidates.push((name.clone(), pos as u64, h.size));
                    }
                }
            }
            if !candidates.is_empty() {
                let (name, pos, size) =
                    candidates[r.below(candidates.len() as u64) as usize].clone();
                // Inside the CRC-covered part (the CRC field and after); the base offset and leader
                // epoch sit outside the CRC by Kafka's design.
                let at = pos + r.range(17, size as u64 - 1);
                let bit = r.below(8) as u8;
                self.disk.flip_bit(&name, at, bit);
                rot = Some(format!("{name}@{at}.{bit}"));
            }
        }
        (rep, rot)
    }

    /// SIGTERM, as skein-net's `Broker::close` and `PartitionStore::close`: per partition, fsync
    /// the active segment, write its indexes and a producer snapshot at the log end, sync the
    /// directory; then leave the clean-shutdown marker. Volatile state is gone afterwards.
    pub fn shutdown(&mut self) {
        for p in 0..self.partitions {
            let ps = &self.parts[p];
            let active = ps.log.segments().last().expect("active").clone();
            let (end, snap) = (ps.log.log_end_offset(), ps.log.producer_snapshot());
            self.disk.fsync(&file(p, active.base_offset, "log"));
            self.write_indexes(p, &active);
            let name = file(p, end, "snapshot");
            self.disk.write_file(&name, &snap);
            self.disk.fsync(&name);
            self.disk.sync_dir(&dir(p));
            self.prune_snapshots(p);
        }
        self.disk.create(CLEAN_MARKER);
        self.disk.fsync(CLEAN_MARKER);
        self.disk.sync_dir(META_DIR);
        self.parts.clear();
        self.up = false;
        self.incarnation += 1;
    }

    /// Starts the node: recovers every partition from the disk, clean if the marker is there.
    pub fn restart(&mut self, now_ms: u64) {
        assert!(!self.up);
        let clean = self.disk.exists(CLEAN_MARKER);
        self.parts = (0..self.partitions)
            .map(|p| self.recover(p, now_ms, clean))
            .collect();
        // As skein-net: only once every partition is recovered is a crash unclean again.
        if clean {
            self.disk.remove(CLEAN_MARKER);
            self.disk.sync_dir(META_DIR);
        }
        self.last_start_clean = clean;
        self.up = true;
    }

    /// `PartitionStore::open` over the SimDisk.
    fn recover(&mut self, p: usize, now_ms: u64, clean: bool) -> PartState {
        let d = dir(p);
        let mut bases = self.disk.list(&d, "log");
        if bases.is_empty() {
            self.disk.create(&file(p, 0, "log"));
            self.disk.sync_dir(&d);
            bases.push(0);
        }
        let interval = self.config.index_interval_bytes;
        let canary = self.core_canary();
        let new_scan = |base: i64, loaded: Option<Segment>| {
            let mut s = match loaded {
                Some(s) => SegmentScan::resume(s, interval),
                None => SegmentScan::new(base, now_ms, interval),
            };
            s.set_canary(canary);
            s
        };
        let mut segs: Vec<Segment> = Vec::new();
        let mut truncated_at: Option<usize> = None;
        for (i, base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let path = file(p, *base, "log");
            let size = self.disk.len(&path);
            let loaded = if last && !clean {
                None
            } else {
                match (
                    self.disk.read_all(&file(p, *base, "index")),
                    self.disk.read_all(&file(p, *base, "timeindex")),
                ) {
                    (Some(o), Some(t)) => Segment::from_indexes(*base, size, &o, &t, now_ms),
                    _ => None,
                }
            };
            let from_index = loaded.is_some();
            let (mut seg, mut complete) = self.scan_file(&path, new_scan(*base, loaded), size);
            if !complete && from_index {
                (seg, complete) = self.scan_file(&path, new_scan(*base, None), size);
            }
            if !from_index && !last {
                self.write_indexes(p, &seg);
            }
            if segs
                .last()
                .is_some_and(|prev| seg.base_offset != prev.next_offset)
            {
                // As in skein-net's PartitionStore::open: a gap is left only by an interrupted
                // retention (its deletions are durable only after the directory sync), so keep
                // the newer side and drop the resurrected older fragments.
                for old in segs.drain(..) {
                    self.remove_segment_files(p, old.base_offset);
                }
            }
            let keep = seg.size;
            segs.push(seg);
            if !complete {
                self.disk.truncate(&path, keep);
                if !last {
                    truncated_at = Some(i + 1);
                    break;
                }
            }
        }
        if let Some(cut) = truncated_at {
            for base in &bases[cut..] {
                self.remove_segment_files(p, *base);
            }
            bases.truncate(cut);
        }
        // As in skein-net: recovery's removals are made durable before anything new is written.
        self.disk.sync_dir(&d);
        if segs.is_empty() {
            segs.push(Segment::new(bases.first().copied().unwrap_or(0), now_ms));
        }
        let log_end = segs.last().map_or(0, |s| s.next_offset);
        let log_start = segs[0].base_offset;
        let snapshots = self.disk.list(&d, "snapshot");
        let mut producers = ProducerStates::new();
        let mut replay_from = log_start;
        for off in snapshots.iter().rev() {
            let name = file(p, *off, "snapshot");
            if *off > log_end {
                self.disk.remove(&name);
                continue;
            }
            if let Some(s) = self
                .disk
                .read_all(&name)
                .and_then(|b| ProducerStates::from_snapshot(&b))
            {
                producers = s;
                replay_from = (*off).max(log_start);
                break;
            }
        }
        for seg in segs.iter().filter(|s| s.next_offset > replay_from) {
            for h in self.scan_headers(&file(p, seg.base_offset, "log"), seg.size) {
                if h.base_offset >= replay_from {
                    producers.record(&h, now_ms);
                }
            }
        }
        let open = segs.iter().map(|s| s.base_offset).collect();
        let mut log = PartitionLog::recovered(self.config.clone(), segs, producers, 0);
        log.set_canary(canary);
        let synced_end = log.log_end_offset();
        PartState {
            log,
            open,
            synced_end,
            syncing: false,
            sync_requested: false,
            waiters: Vec::new(),
        }
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

    fn write_indexes(&mut self, p: usize, seg: &Segment) {
        self.disk.write_file(
            &file(p, seg.base_offset, "index"),
            &seg.encode_offset_index(),
        );
        self.disk.write_file(
            &file(p, seg.base_offset, "timeindex"),
            &seg.encode_time_index(),
        );
    }

    fn remove_segment_files(&mut self, p: usize, base: i64) {
        for ext in ["log", "index", "timeindex", "snapshot"] {
            self.disk.remove(&file(p, base, ext));
        }
    }

    fn active_file(&mut self, p: usize, base: i64) {
        if self.parts[p].open.insert(base) {
            self.disk.create(&file(p, base, "log"));
            self.disk.sync_dir(&dir(p));
        }
    }

    /// `storage.rs`'s `carry_out_roll`.
    fn carry_out_roll(&mut self, p: usize, r: &Rolled) {
        self.disk.fsync(&file(p, r.sealed_base, "log"));
        if let Some(seg) = self.parts[p].log.segment(r.sealed_base).cloned() {
            self.write_indexes(p, &seg);
        }
        self.active_file(p, r.new_base);
        self.disk
            .write_file(&file(p, r.new_base, "snapshot"), &r.producer_snapshot);
        self.disk.sync_dir(&dir(p));
        self.prune_snapshots(p);
    }

    fn prune_snapshots(&mut self, p: usize) {
        let start = self.parts[p].log.log_start_offset();
        let snaps = self.disk.list(&dir(p), "snapshot");
        let keep_from = snaps.len().saturating_sub(SNAPSHOTS_KEPT);
        for (i, off) in snaps.iter().enumerate() {
            if *off < start || i < keep_from {
                self.disk.remove(&file(p, *off, "snapshot"));
            }
        }
    }

    /// Asserts the node's invariants (see the module docs); a no-op while down.
    pub fn check_invariants(&self) {
        if !self.up || self.disk.is_dead() {
            return;
        }
        for (p, ps) in self.parts.iter().enumerate() {
            ps.log.check_invariants();
            assert!(
                ps.synced_end <= ps.log.log_end_offset(),
                "synced beyond the log end"
            );
            for s in ps.log.segments() {
                let name = file(p, s.base_offset, "log");
                assert!(self.disk.exists(&name), "segment file {name} missing");
                assert!(
                    self.disk.len(&name) >= s.size,
                    "segment file {name} shorter than its segment"
                );
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
