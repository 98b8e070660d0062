//! The KIP-848 checkers, judged from what members saw (answers received, partitions worked on)
//! against the coordinator's membership, apart from the driver:
//!
//! - `one-owner`: a process that starts working on a partition (an answer handed it over) is
//!   the only member process working on it: no other process whose member id the coordinator
//!   still counts in the group holds it. (A process the coordinator already removed may still
//!   hold partitions until its next heartbeat is fenced: that is KIP-848's zombie window, and
//!   its commits are refused by epoch.)
//! - `epoch-monotonic`: the epochs the answers give one member id never go down.
//! - `node-invariant`: `ConsumerGroup::check_invariants` after every step (a panic is one too).
//! - `group-liveness`: after the quiet period the group is Stable, its members are exactly the
//!   running processes, all at the assignment epoch, and every partition of a subscribed topic
//!   is worked on by exactly one process, one that subscribes to its topic.

use std::collections::{BTreeMap, BTreeSet};

use skein_core::consumer_group::{Beat, Tp};

use super::sim::{Kip848Sim, Res};
use crate::checker::violation;

impl Kip848Sim {
    /// `one-owner`, when process `c` starts working on `tp`.
    pub(super) fn check_acquire(&mut self, c: usize, tp: &Tp) -> Res {
        let members: BTreeSet<&str> = self.group.members().map(|m| m.id.as_str()).collect();
        let me = &self.clients[c];
        if !members.contains(me.member.as_str()) {
            return Ok(());
        }
        for (d, other) in self.clients.iter().enumerate() {
            if d != c
                && other.up
                && other.owned.contains(tp)
                && members.contains(other.member.as_str())
            {
                return Err(violation(
                    "one-owner",
                    format!(
                        "{tp:?} handed to {} (c{c}) while {} (c{d}) still works on it",
                        me.member, other.member
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `epoch-monotonic`, at each answer process `c` takes.
    pub(super) fn check_epoch(&mut self, c: usize, b: &Beat) -> Res {
        let member = self.clients[c].member.clone();
        let last = self.epochs.entry(member.clone()).or_insert(b.member_epoch);
        if b.member_epoch < *last {
            return Err(violation(
                "epoch-monotonic",
                format!(
                    "{member} got epoch {} after epoch {}",
                    b.member_epoch, *last
                ),
            ));
        }
        *last = b.member_epoch;
        Ok(())
    }

    /// After every step: the coordinator's own invariants (a panic is a `node-invariant`
    /// violation).
    pub(super) fn check_step(&mut self) -> Res {
        self.group.check_invariants();
        Ok(())
    }

    /// `group-liveness` after the quiet period.
    pub(super) fn check_end(&mut self) -> Res {
        let fail = |d: String| Err(violation("group-liveness", d));
        let g = &self.group;
        if g.state_name() != "Stable" {
            return fail(format!(
                "the group is {} after the quiet period",
                g.state_name()
            ));
        }
        let members: BTreeSet<&str> = g.members().map(|m| m.id.as_str()).collect();
        let running: BTreeSet<&str> = self
            .clients
            .iter()
            .filter(|c| c.up)
            .map(|c| c.member.as_str())
            .collect();
        if members != running {
            return fail(format!("members {members:?} but processes {running:?}"));
        }
        let mut owner: BTreeMap<&Tp, usize> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate().filter(|(_, c)| c.up) {
            if c.epoch != g.assignment_epoch() {
                return fail(format!(
                    "c{i} {} at epoch {}, the assignment is at {}",
                    c.member,
                    c.epoch,
                    g.assignment_epoch()
                ));
            }
            for tp in &c.owned {
                if let Some(j) = owner.insert(tp, i) {
                    return fail(format!("{tp:?} worked on by c{j} and c{i}"));
                }
                if !c.subscribed.contains(&tp.0) {
                    return fail(format!("c{i} works on {tp:?} without subscribing to it"));
                }
            }
        }
        let subscribed: BTreeSet<&String> = self
            .clients
            .iter()
            .filter(|c| c.up)
            .flat_map(|c| &c.subscribed)
            .collect();
        for t in subscribed {
            for p in 0..self.topics[t] {
                if !owner.contains_key(&(t.clone(), p)) {
                    return fail(format!("{t}-{p} is subscribed but nobody works on it"));
                }
            }
        }
        Ok(())
    }
}
