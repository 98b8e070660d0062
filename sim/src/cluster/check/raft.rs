//! Raft's safety properties, judged from what every node does (its role, its storage writes,
//! its commit index), across nodes and incarnations:
//!
//! - vote safety: a voter grants its vote in a term to one candidate only, across restarts
//!   (judged from the grants it sends; election safety rests on it);
//! - election safety: at most one leader per term (every (term, leader) ever seen is kept);
//! - log matching: two entries written anywhere with the same index and term have the same
//!   contents and the same predecessor term, so (by induction) identical prefixes;
//! - leader completeness: an entry committed while its observer was in term T is in the log of
//!   every leader of a term above T (checked when a node becomes leader, and when an entry
//!   commits against the leaders of that moment);
//! - commit safety: no voter lacking the highest committed entry could win an election, i.e.
//!   fewer than a quorum of voters would find its log at least as up to date as their durable
//!   logs. Raft's commit rule keeps this true at every moment, so a premature commit (the
//!   Figure 8 bug) is caught at once, before the election that would overwrite it.

use std::collections::BTreeMap;

use skein_core::raft::{Entry, EntryKind, NodeId, Raft};

use crate::checker::{violation, Verdict};

/// What commit safety needs to know of one voter.
#[derive(Debug, Clone, Copy)]
pub struct VoterLog {
    /// The voter.
    pub id: NodeId,
    /// Whether it holds the committed entry (in its log or under its snapshot).
    pub has_committed: bool,
    /// (last term, last index) of the log it would campaign with.
    pub end: (u64, u64),
    /// (last term, last index) of its durable log: what it judges a candidate against, even
    /// after a crash.
    pub durable_end: (u64, u64),
}

/// Everything the Raft checker has recorded.
#[derive(Debug, Default)]
pub struct RaftChecker {
    /// term -> the one leader of that term.
    pub leaders: BTreeMap<u64, NodeId>,
    /// (voter, term) -> the candidate it granted its vote to.
    votes: BTreeMap<(NodeId, u64), NodeId>,
    /// (index, term) -> (predecessor's term, kind, data) of every entry ever written.
    entries: BTreeMap<(u64, u64), (u64, EntryKind, Vec<u8>)>,
    /// index -> (term, lowest term of a node that saw it committed).
    pub committed: BTreeMap<u64, (u64, u64)>,
}

impl RaftChecker {
    /// `raft` is leader now.
    pub fn on_leader(&mut self, raft: &Raft) -> Verdict {
        let (term, id) = (raft.term(), raft.id());
        match self.leaders.get(&term) {
            Some(&other) if other != id => {
                return Err(violation(
                    "election-safety",
                    format!("nodes {other} and {id} both led term {term}"),
                ))
            }
            Some(_) => return Ok(()),
            None => {
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

    /// `voter` sent a vote grant for `term` to `candidate`.
    pub fn on_grant(&mut self, voter: NodeId, term: u64, candidate: NodeId) -> Verdict {
        match self.votes.insert((voter, term), candidate) {
            Some(other) if other != candidate => Err(violation(
                "vote-safety",
                format!(
                    "node {voter} granted its vote in term {term} to {other}, then to {candidate}"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `node` wrote `entries` right after an entry of term `prev_term`.
    pub fn on_append(&mut self, node: NodeId, mut prev_term: u64, entries: &[Entry]) -> Verdict {
        for e in entries {
            let rec = (prev_term, e.kind, e.data.clone());
            match self.entries.get(&(e.index, e.term)) {
                Some(r) if *r != rec => {
                    return Err(violation(
                        "log-matching",
                        format!(
                            "node {node} wrote ({}, {}) after term {} as {:?}, seen before after \
                             term {} as {:?}",
                            e.index, e.term, prev_term, e.kind, r.0, r.1
                        ),
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

    /// `raft` now holds `index` (of `term`) as committed; `leaders` are the current leaders.
    pub fn on_commit<'a>(
        &mut self,
        raft: &Raft,
        index: u64,
        term: u64,
        leaders: impl Iterator<Item = &'a Raft>,
    ) -> Verdict {
        let observer_term = raft.term();
        match self.committed.get_mut(&index) {
            Some((t, _)) if *t != term => {
                return Err(violation(
                    "state-machine-safety",
                    format!(
                        "node {} commits index {index} at term {term}, committed before at \
                         term {t}",
                        raft.id()
                    ),
                ))
            }
            Some((_, ct)) => *ct = (*ct).min(observer_term),
            None => {
                self.committed.insert(index, (term, observer_term));
            }
        }
        for l in leaders {
            if l.term() > observer_term {
                check_has(l, index, term, observer_term)?;
            }
        }
        Ok(())
    }

    /// Commit safety over the voters' logs (see the module docs).
    pub fn check_commit_safety(&self, voters: &[VoterLog]) -> Verdict {
        let Some((&index, &(term, _))) = self.committed.last_key_value() else {
            return Ok(());
        };
        for x in voters.iter().filter(|x| !x.has_committed) {
            let grants = voters
                .iter()
                .filter(|v| v.id == x.id || x.end >= v.durable_end)
                .count();
            if grants > voters.len() / 2 {
                return Err(violation(
                    "commit-safety",
                    format!(
                        "node {} (log end {:?}) lacks committed ({index}, {term}) yet {grants} of \
                         {} voters would elect it",
                        x.id,
                        x.end,
                        voters.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn check_has(leader: &Raft, index: u64, term: u64, commit_term: u64) -> Verdict {
    if index < leader.snapshot().index {
        return Ok(()); // inside its snapshot, which holds only committed state
    }
    match leader.term_at(index) {
        Some(t) if t == term => Ok(()),
        other => Err(violation(
            "leader-completeness",
            format!(
                "leader {} of term {} has {other:?} at index {index}, committed there at term \
                 {term} (seen committed in term {commit_term})",
                leader.id(),
                leader.term()
            ),
        )),
    }
}
