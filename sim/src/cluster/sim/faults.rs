//! Faults the schedule injects: network partitions, process pauses and resumes, random actions, and which node dies for good in the quiet phase.

use super::*;

impl Cluster {
    /// A network partition (or a heal) that heals by itself later.
    pub(super) fn partition(&mut self) {
        self.net.heal();
        self.partition_epoch += 1;
        let all = self.ids();
        let what = match self.rng.below(5) {
            0 => "heal".to_string(),
            1 => {
                let x = self.rng.pick(&all);
                self.net.isolate(&[x], &all);
                format!("isolate {x}")
            }
            2 => {
                // The leader with a minority: it keeps replicating to a few followers without
                // committing (the road to Figure 8).
                let mut side: Vec<NodeId> = self.leader().into_iter().collect();
                let extra = self.rng.below(self.swarm.voters.div_ceil(2));
                for _ in 0..extra {
                    let v = 1 + self.rng.below(self.swarm.voters);
                    if !side.contains(&v) {
                        side.push(v);
                    }
                }
                self.net.isolate(&side, &all);
                format!("isolate {side:?}")
            }
            3 => {
                let side: Vec<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(500_000))
                    .collect();
                self.net.isolate(&side, &all);
                format!("split {side:?}")
            }
            _ => {
                let (a, b) = (self.rng.pick(&all), self.rng.pick(&all));
                self.net.block(a, b);
                format!("block {a}->{b}")
            }
        };
        let heal_at = self.now + self.rng.range(1, self.swarm.partition_max_ms);
        let epoch = self.partition_epoch;
        self.schedule(heal_at, Event::Heal { epoch });
        self.note(format!("partition: {what} until {heal_at}"));
    }

    /// A process pauses for a while (as under SIGSTOP, or a long GC pause) and resumes as the
    /// same incarnation; a non-voting broker may instead die and come back as a new one.
    pub(super) fn pause(&mut self) {
        let id = 1 + self.rng.below(self.nodes.len() as u64);
        let down = self.rng.range(50, self.swarm.pause_max_ms);
        let n = self.node(id);
        if !n.up || n.paused {
            return;
        }
        if !n.voter && self.rng.chance(500_000) {
            self.crash(id, "broker dies");
            self.schedule(self.now + down, Event::Restart { node: id });
            return;
        }
        let n = self.node_mut(id);
        n.paused = true;
        n.pause_epoch += 1;
        let epoch = n.pause_epoch;
        self.schedule(self.now + down, Event::Resume { node: id, epoch });
        self.note(format!("node {id} pauses for {down} ms"));
    }

    pub(super) fn resume(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        n.paused = false;
        n.pause_epoch += 1;
        let deferred = std::mem::take(&mut n.deferred);
        for e in deferred {
            self.schedule(self.now, e);
        }
        self.note(format!("node {id} resumes"));
    }

    pub(super) fn action(&mut self) -> Verdict {
        if self.chance_pm(self.swarm.crash_pm) {
            // Leaders are the interesting victims: half the crashes hit the current one.
            let victim = match self.leader() {
                Some(l) if self.rng.chance(500_000) => l,
                _ => 1 + self.rng.below(self.swarm.voters),
            };
            if self.node(victim).up && self.go("crash") {
                let pm = self.swarm.mid_op_crash_pm;
                if pm > 0 && self.rng_more.below(1000) < pm {
                    let n = self.rng_more.below(16) as u32;
                    self.node_mut(victim).store.die_after(n);
                    self.note(format!(
                        "node {victim}'s disk dies at its mutation #{n} from now"
                    ));
                } else {
                    self.crash(victim, "crash");
                    let down = self.rng.below(self.swarm.downtime_max_ms + 1);
                    self.schedule(self.now + down, Event::Restart { node: victim });
                }
            }
        } else if self.chance_pm(self.swarm.partition_pm) {
            if self.go("partition") {
                self.partition();
            }
        } else if self.chance_pm(self.swarm.pause_pm) {
            if self.go("pause") {
                self.pause();
            }
        } else if self.chance_pm(self.swarm.admin_pm) && self.go("admin") {
            self.admin()?;
        }
        Ok(())
    }

    /// Picks what stays dead through the quiet period: nothing, a non-voting broker, or a voter
    /// (a majority stays).
    pub(super) fn choose_dead(&mut self) -> Verdict {
        let observers: Vec<NodeId> = (self.swarm.voters + 1..=self.nodes.len() as u64).collect();
        let victim = match self.rng.below(3) {
            1 if !observers.is_empty() => Some(self.rng.pick(&observers)),
            2 => Some(1 + self.rng.below(self.swarm.voters)),
            _ => None,
        };
        if let Some(id) = victim.filter(|_| self.go("dies for good")) {
            self.crash(id, "dies for good");
            self.node_mut(id).stay_dead = true;
        }
        Ok(())
    }
}
