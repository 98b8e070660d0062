//! The safety properties the cluster harness checks after every step, apart from the harness
//! itself. Each method returns `Err(description)` on the first violation.
//!
//! - Election safety: at most one leader per term (every (term, leader) ever seen is kept).
//! - Log matching: two entries with the same index and term have the same contents and the
//!   same predecessor term, so (by induction) identical prefixes.
//! - Leader completeness: an entry committed while the observer was in term T is in the log
//!   of every leader of a term above T.
//! - State machine safety: every node applies the same entry at each index, and it is the
//!   committed one.
//!
//! The harness adds two more: commit safety (`Cluster::check_committed_is_safe`: no voter
//! lacking a committed entry could gather a quorum of log-based votes) and, at the end,
//! committed entries never lost (every state machine holds every committed entry).

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::{Entry, EntryKind, NodeId, Raft};

/// Everything the checker has recorded across nodes and incarnations.
#[derive(Default)]
pub(super) struct Checker {
    /// term -> the one leader of that term.
    pub(super) leaders: BTreeMap<u64, NodeId>,
    /// (index, term) -> (predecessor's term, kind, data) of every entry ever written.
    entries: BTreeMap<(u64, u64), (u64, EntryKind, Vec<u8>)>,
    /// index -> (term, lowest term of a node that saw it committed).
    pub(super) committed: BTreeMap<u64, (u64, u64)>,
    /// index -> (term, data) of what was applied there.
    applied: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Client ids (8-byte data) seen applied anywhere.
    pub(super) applied_ids: BTreeSet<u64>,
}

impl Checker {
    /// `raft` just became leader.
    pub(super) fn on_leader(&mut self, raft: &Raft) -> Result<(), String> {
        let (term, id) = (raft.term(), raft.id());
        match self.leaders.get(&term) {
            Some(&other) if other != id => {
                return Err(format!(
                    "election safety: nodes {other} and {id} both led term {term}"
                ))
            }
            _ => {
                self.leaders.insert(term, id);
            }
        }
        for (&index, &(entry_term, commit_term)) in &self.committed {
            if commit_term < term {
                check_has(raft, index, entry_term, commit_term)?;
            }
        }
        Ok(())
    }

    /// `node` wrote `entries` after an entry of term `prev_term`.
    pub(super) fn on_append(
        &mut self,
        node: NodeId,
        mut prev_term: u64,
        entries: &[Entry],
    ) -> Result<(), String> {
        for e in entries {
            let rec = (prev_term, e.kind, e.data.clone());
            match self.entries.get(&(e.index, e.term)) {
                Some(r) if *r != rec => {
                    return Err(format!(
                        "log matching: node {node} wrote ({}, {}) as {rec:?}, seen before as {r:?}",
                        e.index, e.term
                    ))
                }
                Some(_) => {}
                None => {
                    self.entries.insert((e.index, e.term), rec);
                }
            }
            prev_term = e.term;
        }
        Ok(())
    }

    /// `raft` now holds `index` (with `term`) as committed; `leaders` are the current leaders.
    pub(super) fn on_commit<'a>(
        &mut self,
        raft: &Raft,
        index: u64,
        term: u64,
        leaders: impl Iterator<Item = &'a Raft>,
    ) -> Result<(), String> {
        let observer_term = raft.term();
        match self.committed.get_mut(&index) {
            Some((t, _)) if *t != term => {
                return Err(format!(
                    "committed entry changed: node {} commits index {index} at term {term}, \
                     earlier committed at term {t}",
                    raft.id()
                ))
            }
            Some((_, ct)) => *ct = (*ct).min(observer_term),
            None => {
                self.committed.insert(index, (term, observer_term));
            }
        }
        if let Some((t, _)) = self.applied.get(&index) {
            if *t != term {
                return Err(format!(
                    "state machine safety: index {index} applied at term {t}, committed at {term}"
                ));
            }
        }
        for l in leaders {
            if l.term() > observer_term {
                check_has(l, index, term, observer_term)?;
            }
        }
        Ok(())
    }

    /// `node` applied (index, term, data).
    pub(super) fn on_apply(
        &mut self,
        node: NodeId,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> Result<(), String> {
        match self.applied.get(&index) {
            Some((t, d)) if (*t, d.as_slice()) != (term, data) => {
                return Err(format!(
                    "state machine safety: node {node} applied ({index}, {term}, {data:?}), \
                     another node applied ({index}, {t}, {d:?})"
                ))
            }
            Some(_) => {}
            None => {
                self.applied.insert(index, (term, data.to_vec()));
            }
        }
        if let Some((t, _)) = self.committed.get(&index) {
            if *t != term {
                return Err(format!(
                    "state machine safety: node {node} applied index {index} at term {term}, \
                     committed at term {t}"
                ));
            }
        }
        if let Ok(id) = <[u8; 8]>::try_from(data) {
            self.applied_ids.insert(u64::from_le_bytes(id));
        }
        Ok(())
    }
}

fn check_has(leader: &Raft, index: u64, term: u64, commit_term: u64) -> Result<(), String> {
    if index < leader.snapshot().index {
        return Ok(()); // inside its snapshot, which holds only committed state
    }
    match leader.term_at(index) {
        Some(t) if t == term => Ok(()),
        other => Err(format!(
            "leader completeness: leader {} of term {} has {other:?} at index {index}, \
             committed there at term {term} (seen committed in term {commit_term})",
            leader.id(),
            leader.term()
        )),
    }
}
