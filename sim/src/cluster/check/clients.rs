//! The admin clients' history: every proposal the workload made, and what the client saw.
//!
//! A proposal is acknowledged when the node it was made on applies an entry at the index and
//! term the leader appended it at (the real driver's rule, net/src/quorum.rs). Rules:
//! - an acknowledged entry is committed: the applied history holds exactly its record at its
//!   index and term, then and at the end;
//! - acknowledged producer-id blocks never overlap one another;
//! - at the end, for every topic name whose last committed create/delete/grow was
//!   acknowledged, the converged catalog reflects it: an acknowledged create leaves the topic
//!   present, an acknowledged delete leaves it absent, an acknowledged grow leaves at least
//!   that many partitions if the topic exists.
//!
//! A proposal whose outcome the client could not learn (refused, forwarded to a leader that was
//! then replaced, made on a node that crashed, superseded by a snapshot) is owed nothing: it
//! may or may not have committed.

use std::collections::BTreeMap;

use skein_core::catalog::{Catalog, MetadataRecord};
use skein_core::raft::NodeId;

use super::metadata::MetadataChecker;
use crate::checker::{violation, Verdict};

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not answered yet.
    Pending,
    /// Applied on the proposing node at (index, term); a producer-id grant carries its block.
    Acked {
        /// Log index.
        index: u64,
        /// Term.
        term: u64,
        /// The producer-id block the proposing node saw granted.
        block: Option<(i64, i64)>,
    },
    /// Definitely not committed: another entry was applied at its index.
    Lost,
    /// Unknown: the error the client got does not say whether it committed.
    Unknown(&'static str),
}

/// One admin proposal.
#[derive(Debug, Clone)]
pub struct ClientOp {
    /// The node it was made on.
    pub node: NodeId,
    /// The record.
    pub record: MetadataRecord,
    /// Its JSON, as proposed.
    pub data: Vec<u8>,
    /// What the client saw.
    pub outcome: Outcome,
}

/// All proposals of a run.
#[derive(Debug, Default)]
pub struct ClientChecker {
    /// By op id.
    pub ops: Vec<ClientOp>,
}

impl ClientChecker {
    /// Records a new proposal; returns its id.
    pub fn begin(&mut self, node: NodeId, record: MetadataRecord, data: Vec<u8>) -> usize {
        self.ops.push(ClientOp {
            node,
            record,
            data,
            outcome: Outcome::Pending,
        });
        self.ops.len() - 1
    }

    /// Settles `op` without an acknowledgement (only the first answer counts).
    pub fn settle(&mut self, op: usize, outcome: Outcome) {
        if self.ops[op].outcome == Outcome::Pending {
            self.ops[op].outcome = outcome;
        }
    }

    /// `op` was acknowledged: its node applied `data` at (`index`, `term`).
    pub fn ack(
        &mut self,
        op: usize,
        index: u64,
        term: u64,
        data: &[u8],
        block: Option<(i64, i64)>,
    ) -> Verdict {
        let o = &self.ops[op];
        if o.data != data {
            return Err(violation(
                "client-acks",
                format!(
                    "op {op} on node {} acknowledged at ({index}, {term}), but that entry holds {} \
                     instead of {}",
                    o.node,
                    String::from_utf8_lossy(data),
                    String::from_utf8_lossy(&o.data)
                ),
            ));
        }
        if let Some((s, e)) = block {
            let clash = self.ops.iter().enumerate().find(|(_, x)| {
                matches!(x.outcome, Outcome::Acked { block: Some((xs, xe)), .. } if xs < e && s < xe)
            });
            if let Some((other, x)) = clash {
                return Err(violation(
                    "producer-ids",
                    format!(
                        "op {op} was granted [{s}, {e}), overlapping op {other}'s {:?}",
                        x.outcome
                    ),
                ));
            }
        }
        self.settle(op, Outcome::Acked { index, term, block });
        Ok(())
    }

    /// Every acknowledged entry is in the applied history.
    pub fn check_committed(&self, history: &MetadataChecker) -> Verdict {
        for (id, o) in self.ops.iter().enumerate() {
            let Outcome::Acked { index, term, .. } = o.outcome else {
                continue;
            };
            if let Some(a) = history.at(index) {
                if a.term != term || a.data != o.data {
                    return Err(violation(
                        "client-acks",
                        format!(
                            "op {id} ({:?}) was acknowledged at ({index}, {term}) but ({index}, \
                             {}) {} was committed there",
                            o.record,
                            a.term,
                            String::from_utf8_lossy(&a.data)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The converged `catalog` (through the whole history) reflects the last committed topic
    /// change of every name when that change was acknowledged.
    pub fn check_reflected(&self, history: &MetadataChecker, catalog: &Catalog) -> Verdict {
        let acked: BTreeMap<u64, usize> = self
            .ops
            .iter()
            .enumerate()
            .filter_map(|(id, o)| match o.outcome {
                Outcome::Acked { index, .. } => Some((index, id)),
                _ => None,
            })
            .collect();
        // name -> (index, record) of the last committed change.
        let mut last: BTreeMap<&str, (u64, &MetadataRecord)> = BTreeMap::new();
        for (i, a) in history.history().iter().enumerate() {
            let Some(r) = &a.record else { continue };
            let name = match r {
                MetadataRecord::TopicCreated { name, .. }
                | MetadataRecord::TopicDeleted { name }
                | MetadataRecord::PartitionsAdded { name, .. } => name.as_str(),
                _ => continue,
            };
            last.insert(name, (i as u64 + 1, r));
        }
        for (name, (index, r)) in last {
            let Some(&op) = acked.get(&index) else {
                continue;
            };
            let topic = catalog.topic(name);
            let ok = match r {
                MetadataRecord::TopicCreated { .. } => topic.is_some(),
                MetadataRecord::TopicDeleted { .. } => topic.is_none(),
                MetadataRecord::PartitionsAdded { total, .. } => {
                    topic.is_none_or(|t| t.partitions >= *total)
                }
                _ => true,
            };
            if !ok {
                return Err(violation(
                    "client-acks",
                    format!(
                        "op {op} ({r:?}) was acknowledged at index {index} and is the last change \
                         of {name:?}, but the converged catalog has {:?}",
                        topic.map(|t| t.partitions)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Counts of (acknowledged, lost, unknown or pending) proposals.
    pub fn counts(&self) -> (u64, u64, u64) {
        let mut c = (0, 0, 0);
        for o in &self.ops {
            match o.outcome {
                Outcome::Acked { .. } => c.0 += 1,
                Outcome::Lost => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }
}
