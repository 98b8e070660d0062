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
//!   start past them, or (b) a crash happens while they are at or above the acks=all frontier.
//! - `durability.rs`: the acks=all frontier `D` of a partition is the largest `last_offset + 1`
//!   of any acks=-1 acknowledgement. Everything below `D` was fsynced before that ack, so it
//!   survives every crash: after each restart (and at the end) the log end must be `>= D`, and
//!   observations below `D` are never forgotten — so an acked record that is lost, changed or
//!   moved shows up as a consistency or durability violation. Records at or above `D` (acks=0,
//!   acks=1, unacknowledged, or read before an fsync) may legitimately vanish in a crash: the
//!   checker forgets them at each crash. Injected sector corruption only hits bytes at or above `D`
//!   at the moment of the crash (see `node.rs`), so it never excuses a loss below `D`.
//! - `duplicates.rs`: a record of an idempotent producer appears at no more than one offset
//!   among standing observations (non-idempotent producers that retry may legitimately duplicate).
//! - `order.rs`: an idempotent producer's records sit at increasing offsets in the order it
//!   produced them (per partition, among standing observations).
//! - `liveness.rs`: after the faults stop, every idempotent produce is acknowledged within a bound.

pub mod consistency;
pub mod duplicates;
pub mod durability;
pub mod integrity;
pub mod liveness;
pub mod offsets;
pub mod order;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::node::FetchResult;
use crate::records::RecordId;

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

/// What the clients know of one partition.
#[derive(Debug, Clone, Default)]
pub struct PartHistory {
    /// The acks=all frontier: every offset below it was acknowledged durable.
    pub frontier: i64,
    /// The largest log start seen.
    pub log_start: i64,
    /// Standing observations: offset -> record.
    pub observed: BTreeMap<i64, RecordId>,
    /// Standing observations by record: record -> offsets.
    pub placed: BTreeMap<RecordId, BTreeSet<i64>>,
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
        }
    }
}

/// The whole history of a run.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Per partition.
    pub parts: Vec<PartHistory>,
    /// Clients that are idempotent producers.
    pub idempotent: BTreeSet<u32>,
    /// Acknowledgements judged.
    pub acks: u64,
    /// Records read and judged.
    pub records_read: u64,
}

impl History {
    /// An empty history of `partitions` partitions.
    pub fn new(partitions: usize, idempotent: BTreeSet<u32>) -> Self {
        History {
            parts: vec![PartHistory::default(); partitions],
            idempotent,
            ..Default::default()
        }
    }

    /// The acks=all frontier of each partition.
    pub fn frontiers(&self) -> Vec<i64> {
        self.parts.iter().map(|p| p.frontier).collect()
    }

    /// Records that `offset` of partition `p` holds `id`.
    pub fn observe(&mut self, p: usize, offset: i64, id: RecordId) -> Verdict {
        let idempotent = self.idempotent.contains(&id.client);
        let ph = &mut self.parts[p];
        if offset < ph.log_start {
            return Ok(());
        }
        consistency::check(ph, p, offset, id)?;
        if idempotent {
            duplicates::check(ph, p, offset, id)?;
            order::check(ph, p, offset, id)?;
        }
        ph.observed.insert(offset, id);
        ph.placed.entry(id).or_default().insert(offset);
        Ok(())
    }

    /// A produce acknowledgement: `ids` were written at `base_offset..=last_offset`.
    pub fn on_ack(
        &mut self,
        p: usize,
        ids: &[RecordId],
        base_offset: i64,
        last_offset: i64,
        acks: i16,
    ) -> Verdict {
        self.acks += 1;
        offsets::check_ack(p, ids.len(), base_offset, last_offset)?;
        for (i, id) in ids.iter().enumerate() {
            self.observe(p, base_offset + i as i64, *id)?;
        }
        if acks == -1 {
            durability::advance(&mut self.parts[p], last_offset + 1);
        }
        Ok(())
    }

    /// A fetch response for `offset`.
    pub fn on_fetch(&mut self, p: usize, offset: i64, result: &FetchResult) -> Verdict {
        match result {
            FetchResult::OutOfRange { log_start, .. } => {
                self.on_log_start(p, *log_start);
                Ok(())
            }
            FetchResult::Ok {
                bytes,
                high_watermark,
                log_start,
            } => {
                self.on_log_start(p, *log_start);
                let batches = integrity::check(p, bytes)?;
                let records = offsets::check_fetch(p, offset, *high_watermark, &batches)?;
                for (off, value) in records {
                    let Some(id) = RecordId::parse(&value) else {
                        return Err(violation(
                            "integrity",
                            format!("p{p} offset {off}: a record no client produced"),
                        ));
                    };
                    self.records_read += 1;
                    self.observe(p, off, id)?;
                }
                Ok(())
            }
        }
    }

    /// The log start moved (retention): observations below it no longer stand.
    pub fn on_log_start(&mut self, p: usize, log_start: i64) {
        let ph = &mut self.parts[p];
        if log_start > ph.log_start {
            ph.log_start = log_start;
            let gone: Vec<i64> = ph.observed.range(..log_start).map(|(o, _)| *o).collect();
            for o in gone {
                ph.forget(o);
            }
        }
    }

    /// ListOffsets after a restart or at the end.
    pub fn on_offsets(&mut self, p: usize, log_start: i64, log_end: i64) -> Verdict {
        durability::check_end(&self.parts[p], p, log_end)?;
        self.on_log_start(p, log_start);
        Ok(())
    }

    /// The node crashed: observations not protected by the frontier no longer stand.
    pub fn on_crash(&mut self) {
        for ph in &mut self.parts {
            durability::forget_volatile(ph);
        }
    }
}
