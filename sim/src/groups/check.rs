//! The consumer-group checkers that judge after every step and at the end (the fencing
//! checker, judged at each answer, is in [`super::super::fencing`]; the runtime's invariants are
//! checked after each of its inputs, in [`super::coord`]):
//! `committed-offset-monotonic`, `committed-offset-above-hw` and `group-liveness`. A child
//! module of the driver, so it reads the driver's state without widening it.

use std::collections::{BTreeMap, BTreeSet};

use skein_core::group::GroupState;

use super::{group_name, GroupsSim, Phase, Res};
use crate::checker::violation;

impl GroupsSim {
    /// After every step: committed offsets never fall (except at an
    /// admin reset) nor vanish, and never pass the high watermark.
    pub(super) fn check_step(&mut self) -> Res {
        if let Some(v) = self.found.take() {
            return Err(v);
        }
        let Some(shard) = self.coord.committed_shard() else {
            return Ok(());
        };
        for g in 0..self.clients.len() {
            let gid = group_name(g);
            let mut seen = BTreeSet::new();
            for ((_, p), c) in shard.offsets(&gid) {
                let off = c.value.offset;
                seen.insert(*p);
                if off > self.hw[*p as usize] {
                    return Err(violation(
                        "committed-offset-above-hw",
                        format!(
                            "{gid} p{p}: committed {off} above the high watermark {}",
                            self.hw[*p as usize]
                        ),
                    ));
                }
                if let Some(last) = self.committed.get(&(g, *p)) {
                    if off < *last {
                        return Err(violation(
                            "committed-offset-monotonic",
                            format!("{gid} p{p}: committed offset moved back from {last} to {off}"),
                        ));
                    }
                }
                self.committed.insert((g, *p), off);
            }
            for ((gg, p), last) in &self.committed {
                if *gg == g && !seen.contains(p) {
                    return Err(violation(
                        "committed-offset-monotonic",
                        format!("{gid} p{p}: committed offset {last} vanished"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// After the quiet period: every group is Stable with exactly the live consumers, all in
    /// its generation, and every partition has exactly one owner.
    pub(super) fn check_end(&mut self) -> Res {
        let Some(shard) = self.coord.shard() else {
            return Err(violation(
                "group-liveness",
                "the coordinator never came back".into(),
            ));
        };
        for (g, cs) in self.clients.iter().enumerate() {
            let gid = group_name(g);
            let Some(group) = shard.group(&gid) else {
                return Err(violation("group-liveness", format!("{gid} unknown")));
            };
            if group.state() != GroupState::Stable {
                return Err(violation(
                    "group-liveness",
                    format!("{gid} is {} at the end", group.state().name()),
                ));
            }
            let members: BTreeSet<&str> = group.members().map(|m| m.id.as_str()).collect();
            let mut owned: BTreeMap<i32, String> = BTreeMap::new();
            for (i, c) in cs.iter().enumerate() {
                if c.zombie {
                    if c.phase != Phase::Down {
                        return Err(violation(
                            "static-fencing",
                            format!(
                                "{gid}: duplicate c{g}.{i} of {:?} still runs at the end ({:?} as \
                                 {} in generation {})",
                                c.instance, c.phase, c.member, c.generation
                            ),
                        ));
                    }
                    continue;
                }
                if c.phase != Phase::Stable
                    || c.generation != group.generation()
                    || !members.contains(c.member.as_str())
                {
                    return Err(violation(
                        "group-liveness",
                        format!(
                            "{gid} generation {}: c{g}.{i} is {:?} as {} in generation {}",
                            group.generation(),
                            c.phase,
                            c.member,
                            c.generation
                        ),
                    ));
                }
                for p in &c.assignment {
                    if let Some(o) = owned.insert(*p, c.member.clone()) {
                        return Err(violation(
                            "group-liveness",
                            format!("{gid}: p{p} owned by {o} and {}", c.member),
                        ));
                    }
                }
            }
            let consumers = cs.iter().filter(|c| !c.zombie).count();
            if members.len() != consumers {
                return Err(violation(
                    "group-liveness",
                    format!(
                        "{gid} has {} members for {consumers} consumers",
                        members.len()
                    ),
                ));
            }
            if owned.len() != self.swarm.partitions {
                return Err(violation(
                    "group-liveness",
                    format!("{gid}: only partitions {:?} have an owner", owned.keys()),
                ));
            }
        }
        Ok(())
    }
}
