//! `static-fencing`: once a process took a static member's group.instance.id over (its
//! JoinGroup without a member id was answered with success), no other process of that instance
//! id is answered with success again (Heartbeat, SyncGroup, OffsetCommit, a JoinGroup with its
//! old member id) until one takes the id back the same way; and a request naming an instance id
//! the coordinator holds under another member id is answered FENCED_INSTANCE_ID (KIP-345), not
//! UNKNOWN_MEMBER_ID, which would send the old process to take the id back and the two to take
//! turns holding the same partitions.
//!
//! Judged at the coordinator, when it answers; processes have ids of their own, so a restarted
//! process and a duplicate still running under the same instance id are told apart.
//!
//! A coordinator failover reloads the groups as stored, and a replacement in the middle of a
//! rebalance is stored only with the generation that follows (in Kafka too): the reloaded
//! group may hold an instance id under the member id an older process was given. The newest
//! process of an instance id is then the one given the member id the coordinator holds it
//! under (until that process learns it is unknown and takes the id over again).
//!
//! Invariant: `newest` only changes at a successful JoinGroup without a member id, or at a
//! coordinator load.

use std::collections::BTreeMap;

use skein_core::group::GroupError;

use crate::checker::{violation, Violation};

/// One consumer process: the (group index, member slot) it runs in, for messages, and its
/// process id, unique in the run (a duplicate keeps its id when it moves to a slot of its own).
pub type Proc = ((usize, usize), u64);

/// The checker's state: the newest process of every instance id.
#[derive(Debug, Clone, Default)]
pub struct StaticFencing {
    newest: BTreeMap<String, Proc>,
    /// The process each static member id was given to by a JoinGroup answer.
    told: BTreeMap<String, Proc>,
}

impl StaticFencing {
    /// A successful JoinGroup answer to `p` of `instance` giving it `member`; `start` if it
    /// asked without a member id (a takeover, or the first join).
    pub fn joined(
        &mut self,
        instance: &str,
        member: &str,
        p: Proc,
        start: bool,
    ) -> Result<(), Violation> {
        self.told.insert(member.to_string(), p);
        if start {
            self.newest.insert(instance.to_string(), p);
            return Ok(());
        }
        self.answered(instance, p, "JoinGroup", true)
    }

    /// The coordinator loaded its groups: each static member's instance id belongs to the
    /// process its member id was given to.
    pub fn loaded<'a>(&mut self, holders: impl Iterator<Item = (&'a str, &'a str)>) {
        for (instance, member) in holders {
            if let Some(p) = self.told.get(member) {
                self.newest.insert(instance.to_string(), *p);
            }
        }
    }

    /// An answer to `p`'s request `what` naming `instance`: success only for the newest process.
    pub fn answered(&self, instance: &str, p: Proc, what: &str, ok: bool) -> Result<(), Violation> {
        match self.newest.get(instance) {
            Some(n) if ok && n.1 != p.1 => Err(violation(
                "static-fencing",
                format!(
                    "{what} of c{}.{} (process {}) answered with success after c{}.{} (process \
                     {}) took {instance} over",
                    p.0 .0, p.0 .1, p.1, n.0 .0, n.0 .1, n.1
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The answer to a request that named `instance` while the coordinator held it under
    /// another member id than the one named: it must be FENCED_INSTANCE_ID.
    pub fn must_be_fenced(
        instance: &str,
        what: &str,
        got: Result<(), GroupError>,
    ) -> Result<(), Violation> {
        if got == Err(GroupError::FencedInstanceId) {
            return Ok(());
        }
        Err(violation(
            "static-fencing",
            format!("{what} naming {instance} from a replaced member id was answered {got:?}"),
        ))
    }
}
