//! A voter's process: start and crashes, driving its `Raft` and carrying out its outputs on the real `RaftStore`, applying committed entries to its catalog, snapshots, and the checks after every drive.

use super::*;

impl Cluster {
    pub(super) fn config(&self, id: NodeId, life: u64) -> RaftConfig {
        let seed = self.seed ^ life.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut c = RaftConfig::new(id, 1..=self.swarm.voters, seed);
        c.election_timeout_min_ms = ELECTION_MIN_MS;
        c.election_timeout_max_ms = self.swarm.election_max_ms;
        c.heartbeat_interval_ms = RAFT_HEARTBEAT_MS;
        c.entries_per_message_max = self.swarm.entries_per_message_max;
        c.inflight_entries_max = self.swarm.inflight_entries_max;
        c.uncommitted_entries_max = UNCOMMITTED_MAX;
        c
    }

    /// Starts (or restarts) node `id` as a new incarnation.
    pub(super) fn start(&mut self, id: NodeId) -> Verdict {
        let life = self.node(id).life + 1;
        let config = self.node(id).voter.then(|| self.config(id, life));
        let canary = self.canary;
        let now = self.now;
        let n = self.node_mut(id);
        n.life = life;
        n.up = true;
        n.incarnation = format!("{id}.{life}");
        n.registered = false;
        n.registration = None;
        n.believed_leader = None;
        n.paused = false;
        n.pause_epoch += 1;
        n.deferred.clear();
        if let Some(config) = config {
            let durable = n.store.open().map_err(|e| {
                violation(
                    "raft-store",
                    format!("node {id} cannot recover its Raft state: {e}"),
                )
            })?;
            let mut raft = Raft::new(config, durable);
            raft.set_canary(canary.map(ClusterCanary::core));
            n.seen_commit = raft.commit_index();
            n.raft = Some(raft);
            n.catalog = Catalog::new(LogConfig::default());
            n.applied = 0;
            n.controller =
                Controller::new(SESSION_TIMEOUT_MS).with_rebalance_every(REBALANCE_EVERY_MS);
            n.controller.set_canary(canary.map(ClusterCanary::core));
            n.hard_state_unsynced = false;
            n.last_sync_done_ms = now;
            self.drive(id, None)?;
            if !self.node(id).up {
                return Ok(()); // crashed at the fsync of a hard state raised at recovery
            }
            self.drive(id, Some(Input::Tick))?;
            let at = self.now + 1 + self.rng.below(CONTROLLER_POLL_MS);
            self.schedule(at, Event::ControllerTick { node: id, life });
            self.schedule(self.now, Event::RegisterTick { node: id, life });
        } else {
            let voters = (1..=self.swarm.voters).collect();
            let n = self.node_mut(id);
            n.observer = Some(Observer::new(
                ObserverConfig {
                    node_id: id,
                    voters,
                    ask_every_ms: OBSERVE_EVERY_MS,
                    give_up_after_ms: OBSERVE_GIVE_UP_MS,
                },
                now,
            ));
            n.catalog = Catalog::new(LogConfig::default());
            n.applied = 0;
            self.schedule(now, Event::ObserveTick { node: id, life });
        }
        self.note(format!("node {id} starts, incarnation {id}.{life}"));
        let at = self.now + 1 + self.rng.below(BROKER_HEARTBEAT_MS);
        self.schedule(at, Event::BrokerTick { node: id, life });
        Ok(())
    }

    /// Kills node `id`'s process between steps: a voter's store must hold its Raft state (see
    /// [`Self::check_store`]) and loses its unsynced writes (or part of them).
    pub(super) fn crash(&mut self, id: NodeId, why: &str) {
        self.check_store(id);
        self.crash_mid_step(id, why);
    }

    /// If voter `id`'s disk died in the middle of a storage operation, its process crashes now
    /// (and restarts later); says whether it did.
    pub(super) fn crash_if_disk_died(&mut self, id: NodeId) -> bool {
        if !self.node(id).up || !self.node(id).store.dead() {
            return false;
        }
        self.crash_mid_step(id, "its disk died mid-operation");
        let down = self.rng_more.below(self.swarm.downtime_max_ms + 1);
        self.schedule(self.now + down, Event::Restart { node: id });
        true
    }

    /// [`Self::crash`] in the middle of a step, before its later outputs were carried out.
    pub(super) fn crash_mid_step(&mut self, id: NodeId, why: &str) {
        if !self.node(id).up {
            return;
        }
        let partial = self.chance_pm(self.swarm.partial_loss_pm);
        let loss = if partial {
            let torn_write_ppm = (self.swarm.torn_write_pm * 1000) as u32;
            CrashLoss::Partial { torn_write_ppm }
        } else {
            CrashLoss::All
        };
        let n = &mut self.nodes[(id - 1) as usize];
        n.up = false;
        n.paused = false;
        n.deferred.clear();
        n.registration = None;
        n.observer = None;
        let lost = if n.voter {
            n.raft = None;
            n.store.crash(&mut self.rng_more, loss).writes_lost
        } else {
            0
        };
        n.catalog = Catalog::new(LogConfig::default());
        n.applied = 0;
        n.controller = Controller::new(SESSION_TIMEOUT_MS).with_rebalance_every(REBALANCE_EVERY_MS);
        n.applied_terms.clear();
        n.registering.clear();
        let waiting: Vec<usize> = n
            .waiters
            .values()
            .flatten()
            .map(|w| w.1)
            .chain(n.forwarded.values().map(|f| f.1))
            .collect();
        n.waiters.clear();
        n.forwarded.clear();
        for op in waiting {
            self.clients
                .settle(op, OpOutcome::Unknown("the proposing node crashed"));
        }
        if self.node(id).voter {
            self.stats.crashes += 1;
        }
        self.note(format!(
            "node {id} crashes ({why}), {lost} unsynced writes lost{}",
            if partial { " (partial loss)" } else { "" }
        ));
    }

    /// Hands `input` (if any) to voter `id`, then carries out every output. Returns the answer
    /// to a proposal; `None` also when the node crashed at a crash point on the way.
    pub(super) fn drive(
        &mut self,
        id: NodeId,
        input: Option<Input>,
    ) -> Result<Option<Answer>, crate::checker::Violation> {
        let now = self.now;
        {
            let raft = self.node_mut(id).raft.as_mut().expect("voter is up");
            if let Some(i) = input {
                raft.handle(now, i);
            }
            raft.check_invariants();
        }
        let mut answer = None;
        loop {
            let Some(raft) = self.node_mut(id).raft.as_mut() else {
                return Ok(None); // crashed at a crash point
            };
            let Some(out) = raft.poll_output() else {
                break;
            };
            match out {
                Output::Proposed { index, term } if answer.is_none() => {
                    answer = Some(Ok((index, term)))
                }
                Output::Refused(e) if answer.is_none() => answer = Some(Err(e)),
                o => {
                    self.carry_out(id, o)?;
                    self.crash_if_disk_died(id);
                }
            }
        }
        self.after_drive(id)?;
        Ok(answer)
    }

    pub(super) fn carry_out(&mut self, id: NodeId, o: Output) -> Verdict {
        match o {
            Output::PersistHardState(_) => {
                let n = self.node_mut(id);
                n.store.apply(&o);
                n.hard_state_unsynced = true;
            }
            Output::AppendEntries(ref entries) => {
                let first = entries[0].index;
                let raft = self.node(id).raft.as_ref().expect("voter is up");
                let prev_term = raft.term_at(first - 1).unwrap_or_else(|| {
                    panic!("harness: node {id} appends at {first} after no entry")
                });
                self.raft_check.on_append(id, prev_term, entries)?;
                self.node_mut(id).store.apply(&o);
            }
            Output::TruncateFrom { .. } | Output::PersistSnapshot(_) => {
                self.node_mut(id).store.apply(&o)
            }
            Output::Sync { seq } => {
                let at = self.now + self.rng.below(self.swarm.disk_delay_max_ms + 1);
                let n = self.node_mut(id);
                let at = at.max(n.last_sync_done_ms);
                n.last_sync_done_ms = at;
                let life = n.life;
                let likely = std::mem::take(&mut n.hard_state_unsynced) || n.leader();
                self.schedule(
                    at,
                    Event::Persisted {
                        node: id,
                        life,
                        seq,
                    },
                );
                let pm = self.swarm.crash_on_sync_pm * if likely { 5 } else { 1 };
                if self.faults && self.chance_pm(pm) && self.go("crash at an fsync") {
                    // Crash before the write is durable; this step's later outputs are lost.
                    self.crash_mid_step(id, "at an fsync");
                    let down = self.rng.below(self.swarm.delay_max_ms + 1);
                    self.schedule(self.now + down, Event::Restart { node: id });
                }
            }
            Output::Send { to, message } => {
                if let Message::VoteResponse {
                    term,
                    granted: true,
                } = message
                {
                    self.raft_check.on_grant(id, term, to)?;
                }
                self.send(id, to, Msg::Raft(message));
            }
            Output::Apply(entry) => self.apply_entry(id, entry)?,
            Output::ApplySnapshot(s) => self.restore(id, s)?,
            Output::RoleChanged { role, term, leader } => {
                // The controller learns of leadership at its next poll, as in broker.rs.
                if role == Role::Leader {
                    self.node_mut(id).registering.clear();
                }
                self.stats.max_term = self.stats.max_term.max(term);
                if matches!(role, Role::Leader | Role::Follower) {
                    self.note(format!(
                        "node {id} is {role:?} of term {term} (leader {leader:?})"
                    ));
                }
            }
            // Answers outside a proposal cannot happen (the contract); nothing to do.
            Output::Proposed { .. } | Output::Refused(_) => {}
        }
        Ok(())
    }

    pub(super) fn apply_entry(&mut self, id: NodeId, entry: Entry) -> Verdict {
        let Entry {
            index,
            term,
            kind,
            data,
        } = entry;
        let expect = self.node(id).applied + 1;
        if index != expect {
            return Err(violation(
                "state-machine-safety",
                format!("node {id} applied index {index}, expected {expect}"),
            ));
        }
        self.meta.on_apply(id, index, term, kind, &data)?;
        let now = self.now;
        let every = self.swarm.snapshot_every;
        let n = &mut self.nodes[(id - 1) as usize];
        n.applied = index;
        let mut block = None;
        if kind == EntryKind::Normal {
            let rec = decode(&data).expect("the checker decoded it");
            n.catalog.apply(&rec);
            n.catalog.check_invariants();
            if let MetadataRecord::ProducerIdsAllocated { broker } = rec {
                block = n.catalog.producer_block(broker);
            }
        }
        n.applied_terms.insert(index, term);
        if n.applied_terms.len() > APPLIED_TERMS_MAX {
            n.applied_terms.pop_first();
        }
        let waiting = n.waiters.remove(&index).unwrap_or_default();
        // Snapshot as the real driver does: every `every` entries, at the commit point.
        let raft = n.raft.as_mut().expect("applying node is up");
        let compact = index >= raft.snapshot().index + every && index == raft.commit_index();
        if compact {
            let snap = serde_json::to_vec(&n.catalog.snapshot()).expect("catalog encodes");
            raft.handle(now, Input::Compact { index, data: snap });
            raft.check_invariants();
            self.stats.compactions += 1;
        }
        for (t, op) in waiting {
            if t == term {
                let block = block.filter(|_| {
                    matches!(
                        self.clients.ops[op].record,
                        MetadataRecord::ProducerIdsAllocated { .. }
                    )
                });
                self.clients.ack(op, index, term, &data, block)?;
                self.note(format!(
                    "op {op} acknowledged at ({index}, {term}) on node {id}"
                ));
            } else {
                self.clients.settle(op, OpOutcome::Lost);
            }
        }
        Ok(())
    }

    pub(super) fn restore(&mut self, id: NodeId, s: Snapshot) -> Verdict {
        let snap: CatalogSnapshot = serde_json::from_slice(&s.data).map_err(|e| {
            violation(
                "snapshot",
                format!("node {id}: snapshot at {} does not decode: {e}", s.index),
            )
        })?;
        let catalog = Catalog::from_snapshot(LogConfig::default(), &snap);
        catalog.check_invariants();
        self.meta.on_restore(id, s.index, s.term, &catalog)?;
        let n = self.node_mut(id);
        if s.index <= n.applied {
            return Err(violation(
                "state-machine-safety",
                format!(
                    "node {id} restored a snapshot at {} after applying {}",
                    s.index, n.applied
                ),
            ));
        }
        n.catalog = catalog;
        n.applied = s.index;
        n.applied_terms.clear();
        let later = n.waiters.split_off(&(s.index + 1));
        let covered = std::mem::replace(&mut n.waiters, later);
        for op in covered.into_values().flatten().map(|w| w.1) {
            self.clients
                .settle(op, OpOutcome::Unknown("replaced by a snapshot"));
        }
        self.stats.restores += 1;
        self.note(format!(
            "node {id} restores snapshot ({}, {})",
            s.term, s.index
        ));
        Ok(())
    }

    /// Panics unless voter `id`'s Raft store holds exactly its running Raft's state (see
    /// [`VoterStore::check_holds`]); a node that is down or no voter passes.
    pub(super) fn check_store(&self, id: NodeId) {
        let n = self.node(id);
        if let Some(raft) = n.raft.as_ref() {
            if let Err(e) = n.store.check_holds(raft) {
                panic!("harness: node {id}'s raft store does not hold its Raft state: {e}");
            }
        }
    }

    /// After a node's step: its store ends where its log does; election safety; commits.
    pub(super) fn after_drive(&mut self, id: NodeId) -> Verdict {
        let n = &self.nodes[(id - 1) as usize];
        let Some(raft) = n.raft.as_ref() else {
            return Ok(());
        };
        assert_eq!(
            n.store.last(),
            Some((raft.last_term(), raft.last_index())),
            "harness: node {id}'s raft store does not end where its log does"
        );
        if raft.role() == Role::Leader && self.raft_check.leaders.get(&raft.term()) != Some(&id) {
            self.raft_check.on_leader(raft)?;
            self.stats.leaders += 1;
        }
        let (from, to) = (n.seen_commit, raft.commit_index());
        for i in from + 1..=to {
            if let Some(t) = raft.term_at(i) {
                let leaders = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.raft.as_ref())
                    .filter(|r| r.role() == Role::Leader);
                self.raft_check.on_commit(raft, i, t, leaders)?;
            }
        }
        let leader = raft.leader_id();
        let n = self.node_mut(id);
        n.seen_commit = to.max(from);
        // Forwarded proposals whose leader is gone fail (net/src/quorum.rs expire_waiters).
        let stale: Vec<u64> = n
            .forwarded
            .iter()
            .filter(|(_, (to, _))| Some(*to) != leader)
            .map(|(req, _)| *req)
            .collect();
        for req in stale {
            let (_, op) = self.node_mut(id).forwarded.remove(&req).expect("listed");
            self.clients
                .settle(op, OpOutcome::Unknown("the leader changed"));
        }
        Ok(())
    }
}
