//! State machine safety for the metadata: every node applies the same committed records in the
//! same order, and a restored snapshot is the catalog those records build.
//!
//! The checker keeps the applied history (index -> term, kind, data) as first applied anywhere;
//! every later apply at that index, on any node and incarnation, must be identical. Each node
//! applies densely (`Apply` at `applied + 1`), so comparing every apply is comparing prefixes.
//! Alongside it runs a reference [`Catalog`] that applies the history from empty, with
//! checkpoints, so the catalog at any index can be rebuilt: a node restoring a snapshot at
//! index S must end up with exactly that catalog (and the snapshot's term must be the history's
//! term at S). The reference also asserts `Catalog::check_invariants` after each record, checks
//! that every partition leader is a registered, unfenced broker (or none), and records every
//! producer-id block granted, which must never overlap an earlier one.

use std::collections::BTreeMap;

use skein_core::catalog::{Catalog, MetadataRecord};
use skein_core::config::LogConfig;
use skein_core::raft::{EntryKind, NodeId};

use crate::checker::{violation, Verdict};

/// The reference catalog is kept at every multiple of this index, to rebuild past states.
const CHECKPOINT_EVERY: u64 = 32;

/// One applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Its term.
    pub term: u64,
    /// Normal or no-op.
    pub kind: EntryKind,
    /// The record's JSON (empty for a no-op).
    pub data: Vec<u8>,
    /// The decoded record (`None` for a no-op).
    pub record: Option<MetadataRecord>,
}

/// The applied history and the reference catalog.
#[derive(Debug)]
pub struct MetadataChecker {
    /// Entry `i` is at `history[i - 1]`.
    history: Vec<Applied>,
    reference: Catalog,
    checkpoints: BTreeMap<u64, Catalog>,
    /// Producer-id blocks granted, in commit order: (index, broker, start, end).
    pub granted: Vec<(u64, i32, i64, i64)>,
}

impl Default for MetadataChecker {
    fn default() -> Self {
        let empty = Catalog::new(LogConfig::default());
        MetadataChecker {
            history: Vec::new(),
            reference: empty.clone(),
            checkpoints: BTreeMap::from([(0, empty)]),
            granted: Vec::new(),
        }
    }
}

/// Every partition leader is a registered, unfenced broker (or -1).
pub fn leaders_are_live(c: &Catalog) -> Result<(), String> {
    for t in c.topics() {
        for (i, p) in t.parts.iter().enumerate() {
            if p.leader >= 0 && c.broker(p.leader).is_none_or(|b| b.fenced) {
                return Err(format!(
                    "{}-{i} ({p:?}) is led by broker {}, which is {:?}",
                    t.name,
                    p.leader,
                    c.broker(p.leader)
                ));
            }
        }
    }
    Ok(())
}

/// Decodes a record's JSON.
pub fn decode(data: &[u8]) -> Result<MetadataRecord, String> {
    serde_json::from_slice(data).map_err(|e| format!("undecodable record: {e}"))
}

impl MetadataChecker {
    /// Entries applied anywhere so far (the committed prefix known).
    pub fn len(&self) -> u64 {
        self.history.len() as u64
    }

    /// Whether nothing was applied yet.
    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// The entry applied at `index`.
    pub fn at(&self, index: u64) -> Option<&Applied> {
        index
            .checked_sub(1)
            .and_then(|i| self.history.get(i as usize))
    }

    /// Every applied entry, from index 1.
    pub fn history(&self) -> &[Applied] {
        &self.history
    }

    /// `node` applied the entry (`index`, `term`).
    pub fn on_apply(
        &mut self,
        node: NodeId,
        index: u64,
        term: u64,
        kind: EntryKind,
        data: &[u8],
    ) -> Verdict {
        if let Some(a) = self.at(index) {
            if (a.term, a.kind, a.data.as_slice()) != (term, kind, data) {
                return Err(violation(
                    "state-machine-safety",
                    format!(
                        "node {node} applied ({index}, {term}, {kind:?}, {}), another node \
                         applied ({index}, {}, {:?}, {}) there",
                        String::from_utf8_lossy(data),
                        a.term,
                        a.kind,
                        String::from_utf8_lossy(&a.data)
                    ),
                ));
            }
            return Ok(());
        }
        if index != self.len() + 1 {
            return Err(violation(
                "state-machine-safety",
                format!(
                    "node {node} applied index {index} first, but only {} entries were applied \
                     anywhere",
                    self.len()
                ),
            ));
        }
        let record =
            match kind {
                EntryKind::NoOp => None,
                EntryKind::Normal => Some(decode(data).map_err(|e| {
                    violation("state-machine-safety", format!("index {index}: {e}"))
                })?),
            };
        if let Some(r) = &record {
            self.reference.apply(r);
            self.reference.check_invariants();
            leaders_are_live(&self.reference).map_err(|e| {
                violation(
                    "partition-leadership",
                    format!("after index {index} ({r:?}): {e}"),
                )
            })?;
            if let MetadataRecord::ProducerIdsAllocated { broker } = r {
                let (start, end) = self
                    .reference
                    .producer_block(*broker)
                    .expect("a block was just granted");
                if let Some(&(i, b, s, e)) = self.granted.iter().find(|g| g.2 < end && start < g.3)
                {
                    return Err(violation(
                        "producer-ids",
                        format!(
                            "block [{start}, {end}) for broker {broker} at index {index} overlaps \
                             [{s}, {e}) granted to broker {b} at index {i}"
                        ),
                    ));
                }
                self.granted.push((index, *broker, start, end));
            }
        }
        self.history.push(Applied {
            term,
            kind,
            data: data.to_vec(),
            record,
        });
        if index.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoints.insert(index, self.reference.clone());
        }
        Ok(())
    }

    /// The catalog the history builds through `index` (`index <= len()`).
    pub fn catalog_at(&self, index: u64) -> Catalog {
        assert!(index <= self.len());
        if index == self.len() {
            return self.reference.clone();
        }
        let (&from, base) = self
            .checkpoints
            .range(..=index)
            .next_back()
            .expect("checkpoint 0 exists");
        let mut c = base.clone();
        for a in &self.history[from as usize..index as usize] {
            if let Some(r) = &a.record {
                c.apply(r);
            }
        }
        c
    }

    /// `node` restored a snapshot of (`index`, `term`) into `catalog`.
    pub fn on_restore(&self, node: NodeId, index: u64, term: u64, catalog: &Catalog) -> Verdict {
        let Some(a) = self.at(index) else {
            if index == 0 {
                return Ok(());
            }
            return Err(violation(
                "state-machine-safety",
                format!(
                    "node {node} restored a snapshot at {index}, beyond the {} entries applied \
                     anywhere",
                    self.len()
                ),
            ));
        };
        if a.term != term {
            return Err(violation(
                "state-machine-safety",
                format!(
                    "node {node} restored a snapshot at ({index}, {term}); index {index} was \
                     applied at term {}",
                    a.term
                ),
            ));
        }
        let want = self.catalog_at(index);
        if *catalog != want {
            return Err(violation(
                "snapshot",
                format!(
                    "node {node} restored a snapshot at {index} whose catalog differs from the \
                     one the records through {index} build:\n  restored: {catalog:?}\n  records:  \
                     {want:?}"
                ),
            ));
        }
        Ok(())
    }
}
