//! The client-side history checker: judges what clients saw (acknowledgements and fetched
//! records) against skein's invariants. It never looks inside the node, only at responses and
//! ListOffsets answers, as Jepsen's checkers do.
//!
//! The rules, precisely (one file per property):
//! - `integrity.rs`: every batch a fetch returns passes its CRC-32C and decodes (a Kafka client
//!   with `check.crcs` would refuse it otherwise). Corruption is only injected where recovery
//!   must find it, so a served corrupt batch is always a bug.
//! - `offsets.rs`: a fetch at offset `o` returns batches whose first covers `o`, each next one
//!   starts at the previous one's next offset, record offsets inside a batch are dense, nothing
//!   is at or above the high watermark, and a fetch below the high watermark is never empty.
//!   An acknowledgement's offsets span exactly its batch's records.
//! - `consistency.rs`: an offset, once observed (by an ack or a read) holding record R, holds R
//!   for as long as the observation stands. Observations stand until (a) retention moves the log
//!   start past them, or (b) a crash happens while they are at or above the durable frontier.
//! - `durability.rs`: the durable frontier `D` of a partition is the largest `last_offset + 1`
//!   of any acks=-1 acknowledgement and the largest high watermark any fetch answered. Both
//!   promise that everything below them is committed (with fsync-before-ack, fsynced), so it
//!   survives every crash: after each restart (and at the end) the high watermark ListOffsets
//!   answers must be `>= D`, and observations below `D` are never forgotten — so an acked
//!   record, or a record a consumer read (always below the high watermark its fetch answered),
//!   that is later lost, changed or moved shows up as a consistency or durability violation.
//!   Records at or above `D` (acks=0, acks=1 or unacknowledged, and not yet under any high
//!   watermark answered) may legitimately vanish in a crash: the checker forgets them at each
//!   crash. Injected sector corruption only hits bytes at or above `D` at the moment of the crash
//!   (see `node/faults.rs`), so it never excuses a loss below `D`.
//! - `duplicates.rs`: a record of an idempotent producer appears at no more than one offset
//!   among standing observations (non-idempotent producers that retry may legitimately duplicate).
//! - `order.rs`: an idempotent producer's records sit at increasing offsets in the order it
//!   produced them (per partition, among standing observations).
//! - `retention.rs`: a time-retention pass deletes only records older than `retention.ms` by the
//!   timestamps their producer gave them, whatever max timestamp the batch header claimed (some
//!   clients leave it at -1). Judged at each pass from the log starts right after it (as
//!   ListOffsets answers them), for the observations standing below the new start; skipped when
//!   size retention is on too (it may delete young records by design).
//! - `compaction.rs`: on a compacted topic, records may be cleaned away, so the fetch checks
//!   allow gaps (`offsets.rs`), and a record a read covers but does not return must have been
//!   cleanable: below every bound a clean started under (the high watermark, the active
//!   segment), superseded by a newer record of its key below it, or a tombstone older than
//!   `delete.retention.ms`; a reader from the log start sees every key's newest acknowledged
//!   value (or a later one); a read record has the key and value its producer gave it. Retention
//!   on `compact,delete` topics is judged only above the clean bound.
//! - `liveness.rs`: after the faults stop, every idempotent produce is acknowledged within a bound.
//! - `topics.rs`: topics are judged by topic id (produce and fetch answers carry it), so a topic
//!   deleted and created again under the same name is a new history. A topic whose creation was
//!   acknowledged (and whose name no delete was sent for since) must survive every restart with
//!   at least the partitions acknowledged; once a delete is sent for its name, its records are no
//!   longer owed; a produce or fetch sent after a delete was acknowledged must not reach the
//!   deleted topic (UNKNOWN_TOPIC_OR_PARTITION or a newer topic id).
//!
//! Partitions are keyed by (topic id, partition index).

pub mod compaction;
pub mod consistency;
pub mod duplicates;
pub mod durability;
pub mod integrity;
pub mod liveness;
pub mod offsets;
pub mod order;
pub mod retention;
pub mod topics;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::node::{FetchResult, PartKey, TopicId};
use crate::records::{KeyedSpec, RecordId};

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which property (the checker file's name).
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

/// A checker's verdict.
pub type Verdict = Result<(), Violation>;

/// Builds a violation.
pub fn violation(property: &'static str, detail: String) -> Violation {
    Violation { property, detail }
}

/// Runs a simulation; its violation, or a panic inside skein-core or the driver as a
/// `node-invariant` violation.
pub fn run_catching(run: impl FnOnce() -> Result<(), Violation>) -> Option<Violation> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(v),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Some(violation("node-invariant", msg))
        }
    }
}

/// What the clients know of one partition.
#[derive(Debug, Clone, Default)]
pub struct PartHistory {
    /// The durable frontier: every offset below it was acknowledged (acks=-1) or exposed (a
    /// fetch's high watermark) as committed.
    pub frontier: i64,
    /// The largest log start seen.
    pub log_start: i64,
    /// Standing observations: offset -> record.
    pub observed: BTreeMap<i64, RecordId>,
    /// Standing observations by record: record -> offsets.
    pub placed: BTreeMap<RecordId, BTreeSet<i64>>,
    /// A partition of a compacted topic: what `compaction.rs` tracks.
    pub compact: Option<compaction::CompactPart>,
}

impl PartHistory {
    /// Drops the observation at `offset`.
    pub fn forget(&mut self, offset: i64) {
        if let Some(id) = self.observed.remove(&offset) {
            if let Some(set) = self.placed.get_mut(&id) {
                set.remove(&offset);
                if set.is_empty() {
                    self.placed.remove(&id);
                }
            }
            if let Some(c) = &mut self.compact {
                c.unknow(offset);
            }
        }
    }
}

/// A partition of a topic, as the checker keys it.
pub type Part = (TopicId, u32);

/// What the clients know of one topic id.
#[derive(Debug, Clone, Default)]
pub struct TopicHistory {
    /// Its name.
    pub name: String,
    /// Partitions acknowledged (creation or CreatePartitions).
    pub partitions: u32,
    /// A delete was sent for its name after it was created: no longer owed.
    pub delete_sent: bool,
    /// When a delete of it was acknowledged (simulated ms).
    pub deleted_at: Option<u64>,
}

/// The whole history of a run.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Per partition.
    pub parts: BTreeMap<Part, PartHistory>,
    /// Per topic id whose creation was acknowledged.
    pub topics: BTreeMap<TopicId, TopicHistory>,
    /// Clients that are idempotent producers.
    pub idempotent: BTreeSet<u32>,
    /// Acknowledgements judged.
    pub acks: u64,
    /// Records read and judged.
    pub records_read: u64,
    /// The record timestamp each producer gave a batch: (client, batch serial) -> ms.
    pub stamps: BTreeMap<(u32, u32), i64>,
    /// Compacted topics, by name: their `delete.retention.ms`.
    pub compacted: BTreeMap<String, i64>,
    /// The key and null-ness of every record produced for a compacted topic.
    pub specs: BTreeMap<RecordId, KeyedSpec>,
    /// The records produced for a compacted topic, by (topic name, partition, key).
    pub sent: BTreeMap<(String, u32, u32), Vec<RecordId>>,
    /// Produce requests sent for each batch of a compacted topic: (client, batch serial) ->
    /// attempts (each may have appended a copy).
    pub attempts: BTreeMap<(u32, u32), u32>,
}

impl History {
    /// An empty history.
    pub fn new(idempotent: BTreeSet<u32>) -> Self {
        History {
            idempotent,
            ..Default::default()
        }
    }

    /// The durable frontier of a partition (0 if unknown).
    pub fn frontier(&self, part: Part) -> i64 {
        self.parts.get(&part).map_or(0, |p| p.frontier)
    }

    /// The first offset a crash may damage (sector rot, misdirected writes): the durable
    /// frontier, and on a compacted partition not below its clean bound either. A clean drops
    /// records superseded by newer ones below the high watermark, which clients may not have
    /// been promised yet; damaging those would lose what the clients were promised (the older
    /// records they superseded) with them: a fault one replica cannot survive.
    pub fn damage_floor(&self, part: Part) -> i64 {
        self.parts.get(&part).map_or(0, |p| {
            p.compact
                .as_ref()
                .map_or(p.frontier, |c| p.frontier.max(c.bound))
        })
    }

    fn part(&mut self, part: Part) -> &mut PartHistory {
        self.parts.entry(part).or_default()
    }

    /// The history of `part` of topic `name`, tracking compaction when the topic is compacted.
    fn part_of(&mut self, name: &str, part: Part) -> &mut PartHistory {
        let compacted = self.compacted.contains_key(name);
        let ph = self.parts.entry(part).or_default();
        if compacted && ph.compact.is_none() {
            ph.compact = Some(compaction::CompactPart::default());
        }
        ph
    }

    /// Topic `name` is compacted, with `delete.retention.ms` `delete_retention_ms`.
    pub fn set_compacted(&mut self, name: &str, delete_retention_ms: i64) {
        self.compacted.insert(name.to_string(), delete_retention_ms);
    }

    /// A producer built records `ids` for partition `key` of a compacted topic, as `specs` say.
    pub fn sent_keyed(&mut self, key: &PartKey, ids: &[RecordId], specs: &[KeyedSpec]) {
        for (id, spec) in ids.iter().zip(specs) {
            self.specs.insert(*id, *spec);
            self.sent
                .entry((key.0.clone(), key.1, spec.key))
                .or_default()
                .push(*id);
        }
    }

    /// A produce request for batch `serial` of `client` went out.
    pub fn attempt(&mut self, client: u32, serial: u32) {
        *self.attempts.entry((client, serial)).or_default() += 1;
    }

    /// A clean of compacted partition `part` started while its high watermark and its active
    /// segment's base were both at or above `bound`.
    pub fn on_clean_start(&mut self, name: &str, part: Part, bound: i64) {
        if let Some(c) = &mut self.part_of(name, part).compact {
            c.bound = c.bound.max(bound);
        }
    }

    /// Records that `offset` of `part` holds `id`.
    pub fn observe(&mut self, part: Part, offset: i64, id: RecordId) -> Verdict {
        let idempotent = self.idempotent.contains(&id.client);
        let key = self.specs.get(&id).map(|s| s.key);
        let p = part.1 as usize;
        let ph = self.part(part);
        if offset < ph.log_start {
            return Ok(());
        }
        consistency::check(ph, p, offset, id)?;
        if idempotent {
            duplicates::check(ph, p, offset, id)?;
            order::check(ph, p, offset, id)?;
        }
        if let Some(c) = &mut ph.compact {
            if let Some(prev) = c.gone.get(&offset).filter(|prev| **prev != id) {
                return Err(violation(
                    "consistency",
                    format!(
                        "p{p} offset {offset} held {prev} (cleaned away since), now holds {id}"
                    ),
                ));
            }
            if let Some(k) = key {
                c.know(offset, k);
            }
        }
        ph.observed.insert(offset, id);
        ph.placed.entry(id).or_default().insert(offset);
        Ok(())
    }

    /// A produce acknowledgement: `ids` were written at `base_offset..=last_offset` of `part`
    /// (of topic `name`); the produce was sent at `sent_ms`.
    pub fn on_ack(
        &mut self,
        (name, part): (&str, Part),
        ids: &[RecordId],
        base_offset: i64,
        last_offset: i64,
        acks: i16,
        sent_ms: u64,
    ) -> Verdict {
        self.acks += 1;
        self.part_of(name, part);
        topics::check_reached(self, part.0, sent_ms, "produce")?;
        offsets::check_ack(part.1 as usize, ids.len(), base_offset, last_offset)?;
        for (i, id) in ids.iter().enumerate() {
            self.observe(part, base_offset + i as i64, *id)?;
        }
        if acks == -1 {
            durability::advance(self.part(part), last_offset + 1);
        }
        Ok(())
    }

    /// A fetch response for `offset` of partition `key`, sent at `sent_ms`, judged at `now_ms`.
    pub fn on_fetch(
        &mut self,
        key: &PartKey,
        offset: i64,
        result: &FetchResult,
        (sent_ms, now_ms): (u64, u64),
    ) -> Verdict {
        let p = key.1;
        match result {
            FetchResult::UnknownTopic => Ok(()),
            FetchResult::OutOfRange {
                log_start,
                high_watermark,
                topic_id,
            } => {
                topics::check_reached(self, *topic_id, sent_ms, "fetch")?;
                self.on_log_start((*topic_id, p), *log_start);
                durability::advance(self.part((*topic_id, p)), *high_watermark);
                Ok(())
            }
            FetchResult::Ok {
                bytes,
                high_watermark,
                log_start,
                topic_id,
            } => {
                topics::check_reached(self, *topic_id, sent_ms, "fetch")?;
                let part = (*topic_id, p);
                self.on_log_start(part, *log_start);
                // Committed, so owed from now on (before its records are judged, so they stand).
                durability::advance(self.part(part), *high_watermark);
                let pi = p as usize;
                let batches = integrity::check(pi, bytes)?;
                if self.compacted(&key.0).is_some() {
                    self.part_of(&key.0, part);
                    let at = (offset, *high_watermark);
                    return self.on_compacted_fetch((&key.0, part), at, &batches, now_ms);
                }
                let records = offsets::check_fetch(pi, offset, *high_watermark, &batches)?;
                for (off, value) in records {
                    let Some(id) = RecordId::parse(&value) else {
                        return Err(violation(
                            "integrity",
                            format!("p{p} offset {off}: a record no client produced"),
                        ));
                    };
                    self.records_read += 1;
                    self.observe(part, off, id)?;
                }
                Ok(())
            }
        }
    }

    /// The records of a fetch at `offset` (answered with high watermark `hw`) of compacted
    /// partition `part` (of topic `name`):
    /// each judged as on any topic and against what its producer built; then every standing
    /// observation the fetch covers but did not return (`compaction.rs`).
    fn on_compacted_fetch(
        &mut self,
        (name, part): (&str, Part),
        (offset, hw): (i64, i64),
        batches: &[Vec<u8>],
        now_ms: u64,
    ) -> Verdict {
        let p = part.1 as usize;
        let (records, end) = offsets::check_fetch_compacted(p, offset, hw, batches)?;
        let mut returned = BTreeSet::new();
        for r in records {
            let Some(id) = r.id() else {
                return Err(violation(
                    "integrity",
                    format!("p{p} offset {}: a record no client produced", r.offset),
                ));
            };
            compaction::check_record(p, &r, id, self.specs.get(&id))?;
            self.records_read += 1;
            self.observe(part, r.offset, id)?;
            returned.insert(r.offset);
        }
        let missing: Vec<(i64, RecordId)> = self.parts[&part]
            .observed
            .range(offset..end)
            .filter(|(o, _)| !returned.contains(*o))
            .map(|(o, id)| (*o, *id))
            .collect();
        for (o, id) in missing {
            self.judge_missing((name, part), o, id, now_ms)?;
        }
        Ok(())
    }

    /// The log start moved (retention): observations below it no longer stand.
    pub fn on_log_start(&mut self, part: Part, log_start: i64) {
        let ph = self.part(part);
        if log_start > ph.log_start {
            ph.log_start = log_start;
            let gone: Vec<i64> = ph.observed.range(..log_start).map(|(o, _)| *o).collect();
            for o in gone {
                ph.forget(o);
            }
            if let Some(c) = &mut ph.compact {
                let cleaned: Vec<i64> = c.gone.range(..log_start).map(|(o, _)| *o).collect();
                for o in cleaned {
                    c.unknow(o);
                }
            }
        }
    }

    /// ListOffsets (log start, high watermark) of every partition the node has, after a
    /// restart or at the end; judges that nothing owed is missing.
    pub fn on_offsets(&mut self, parts: &[(Part, i64, i64)]) -> Verdict {
        for (part, log_start, hw) in parts {
            if !self.topics.get(&part.0).is_some_and(|t| t.delete_sent) {
                durability::check_end(self.part(*part), part.1 as usize, *hw)?;
            }
            self.on_log_start(*part, *log_start);
        }
        topics::check_present(self, parts)
    }

    /// A producer built batch `serial` with record timestamp `ts`.
    pub fn stamp(&mut self, client: u32, serial: u32, ts: i64) {
        self.stamps.insert((client, serial), ts);
    }

    /// A retention pass at `now_ms` under `retention_ms` left `parts` (log start and end);
    /// `by_size` says size retention was on too.
    pub fn on_retention(
        &mut self,
        now_ms: u64,
        retention_ms: i64,
        by_size: bool,
        parts: &[(Part, i64, i64)],
    ) -> Verdict {
        for (part, log_start, _) in parts {
            if !by_size && retention_ms >= 0 {
                let ph = self.parts.entry(*part).or_default();
                // A compacted partition's records below the clean bound may have been cleaned
                // away before the pass (and a cleaned segment's newest timestamp is its
                // survivors').
                let from = ph.compact.as_ref().map_or(ph.log_start, |c| c.bound);
                retention::check(
                    ph,
                    &self.stamps,
                    part.1 as usize,
                    now_ms,
                    retention_ms,
                    (from, *log_start),
                )?;
            }
            self.on_log_start(*part, *log_start);
        }
        Ok(())
    }

    /// The node stopped: observations not protected by the frontier no longer stand.
    pub fn on_crash(&mut self) {
        for ph in self.parts.values_mut() {
            durability::forget_volatile(ph);
        }
    }
}
