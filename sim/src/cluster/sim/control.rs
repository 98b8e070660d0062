//! The control plane on top of Raft: proposals and their forwarding to the leader, broker heartbeats and registration, the controller rounds, ISR catch-up and admin load.

use super::*;

impl Cluster {
    /// Proposes `data` on leader `id`; `op` is the client proposal it carries, if any.
    pub(super) fn propose_here(
        &mut self,
        id: NodeId,
        data: Vec<u8>,
        op: Option<usize>,
    ) -> Result<Result<(u64, u64), String>, crate::checker::Violation> {
        let answer = self.drive(id, Some(Input::Propose { data }))?;
        let result = match answer {
            None => Err("crashed".to_string()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok((index, term))) => {
                if let Some(op) = op {
                    let n = self.node_mut(id);
                    if n.up {
                        n.waiters.entry(index).or_default().push((term, op));
                    }
                }
                Ok((index, term))
            }
        };
        if let (Some(op), Err(why)) = (op, &result) {
            let unknown = if why == "crashed" {
                "the proposing node crashed"
            } else {
                "refused"
            };
            self.clients.settle(op, OpOutcome::Unknown(unknown));
        }
        Ok(result)
    }

    /// Client proposal `op` on node `p`: proposed here if `p` leads, else forwarded.
    pub(super) fn submit(&mut self, p: NodeId, op: usize) -> Verdict {
        let data = self.clients.ops[op].data.clone();
        let raft = self.node(p).raft.as_ref().expect("proposing node is up");
        if raft.role() == Role::Leader {
            // The answer is recorded on the op (waiting, or settled as refused).
            let _ = self.propose_here(p, data, Some(op))?;
            return Ok(());
        }
        match raft.leader_id() {
            Some(l) if l != p => {
                let req = self.next_req;
                self.next_req += 1;
                self.node_mut(p).forwarded.insert(req, (l, op));
                self.send(p, l, Msg::Forward { req, data });
            }
            _ => self.clients.settle(op, OpOutcome::Unknown("no leader")),
        }
        Ok(())
    }

    pub(super) fn on_forward(
        &mut self,
        at: NodeId,
        from: NodeId,
        req: u64,
        data: Vec<u8>,
    ) -> Verdict {
        let result = if self.node(at).leader() {
            match self.propose_here(at, data, None)? {
                Err(why) if why == "crashed" => return Ok(()),
                r => r,
            }
        } else {
            Err("not the leader".to_string())
        };
        if self.node(at).up {
            self.send(at, from, Msg::Forwarded { req, result });
        }
        Ok(())
    }

    pub(super) fn on_forwarded(
        &mut self,
        at: NodeId,
        req: u64,
        result: Result<(u64, u64), String>,
    ) -> Verdict {
        let Some((_, op)) = self.node_mut(at).forwarded.remove(&req) else {
            return Ok(());
        };
        let (index, term) = match result {
            Ok(it) => it,
            Err(_) => {
                self.clients.settle(op, OpOutcome::Unknown("refused"));
                return Ok(());
            }
        };
        let n = self.node_mut(at);
        if index > n.applied {
            n.waiters.entry(index).or_default().push((term, op));
            return Ok(());
        }
        match n.applied_terms.get(&index) {
            Some(&t) if t == term => {
                let data = self.meta.at(index).expect("applied here").data.clone();
                self.clients.ack(op, index, term, &data, None)?;
                self.note(format!(
                    "op {op} acknowledged at ({index}, {term}) on node {at}"
                ));
            }
            Some(_) => self.clients.settle(op, OpOutcome::Lost),
            None => self
                .clients
                .settle(op, OpOutcome::Unknown("applied before the answer")),
        }
        Ok(())
    }

    pub(super) fn broker_tick(&mut self, id: NodeId) {
        let n = self.node(id);
        let target = if n.voter {
            // The leader's own broker is heard by its controller directly.
            n.raft
                .as_ref()
                .and_then(|r| r.leader_id())
                .filter(|&l| l != id)
        } else {
            match n.believed_leader {
                Some(l) if self.now <= n.last_ack_ms + LEADER_FORGET_MS => Some(l),
                _ => Some(1 + self.rng.below(self.swarm.voters)),
            }
        };
        let Some(to) = target else {
            return;
        };
        let n = self.node(id);
        let msg = Msg::Heartbeat {
            broker: id,
            incarnation: n.incarnation.clone(),
            register: !n.voter && !n.registered,
        };
        self.send(id, to, msg);
    }

    pub(super) fn on_heartbeat(
        &mut self,
        at: NodeId,
        from: NodeId,
        broker: NodeId,
        incarnation: String,
        register: bool,
    ) -> Verdict {
        let n = self.node(at);
        let Some(raft) = n.raft.as_ref() else {
            return Ok(());
        };
        if raft.role() != Role::Leader {
            // Relay a broker's own heartbeat once to the leader this voter knows.
            if let Some(l) = raft.leader_id().filter(|&l| l != at && from == broker) {
                let msg = Msg::Heartbeat {
                    broker,
                    incarnation,
                    register,
                };
                self.send(at, l, msg);
            }
            return Ok(());
        }
        let now = self.now;
        let n = self.node_mut(at);
        n.controller.heartbeat(now, broker as i32, &incarnation);
        n.controller.check_invariants();
        let registered = n
            .catalog
            .broker(broker as i32)
            .is_some_and(|b| b.incarnation == incarnation);
        let recent = n
            .registering
            .get(&broker)
            .is_some_and(|(inc, t)| *inc == incarnation && now < t + REGISTER_RETRY_MS);
        if register && !registered && !recent {
            n.registering.insert(broker, (incarnation.clone(), now));
            let rec = MetadataRecord::BrokerRegistered {
                id: broker as i32,
                incarnation: incarnation.clone(),
                host: format!("n{broker}"),
                port: 9092,
                rack: None,
            };
            let data = serde_json::to_vec(&rec).expect("record encodes");
            // A lost registration is proposed again on a later heartbeat.
            let _ = self.propose_here(at, data, None)?;
        }
        // Only non-voting brokers need an answer: a voter knows the leader from its Raft.
        if self.node(at).up && !self.node(broker).voter {
            let msg = Msg::HeartbeatAck {
                incarnation,
                leader: at,
                registered,
            };
            self.send(at, broker, msg);
        }
        Ok(())
    }

    pub(super) fn on_heartbeat_ack(
        &mut self,
        at: NodeId,
        incarnation: &str,
        leader: NodeId,
        registered: bool,
    ) {
        let now = self.now;
        let n = self.node_mut(at);
        if n.incarnation != incarnation {
            return; // an answer to an earlier incarnation
        }
        n.believed_leader = Some(leader);
        n.last_ack_ms = now;
        n.registered = registered;
    }

    /// One controller round of a voter, through skein-core's `Controller::round` as the
    /// broker's `control()` runs it.
    pub(super) fn controller_tick(&mut self, id: NodeId) -> Verdict {
        let now = self.now;
        let cluster_id = format!("sim-{:x}", self.seed);
        let n = self.node_mut(id);
        let input = RoundInput {
            me: id as i32,
            incarnation: &n.incarnation,
            leading: n.leader(),
            stopping: false,
            local_cluster_id: &cluster_id,
        };
        let round = n.controller.round(now, &n.catalog, input);
        n.controller.check_invariants();
        if round.register_again && n.registered {
            // An earlier incarnation's registration committed after ours: register again.
            n.registered = false;
            n.registration = None;
        }
        for rec in round.proposals.into_iter().take(CONTROLLER_PROPOSALS_MAX) {
            if !self.node(id).leader() {
                break;
            }
            let data = serde_json::to_vec(&rec).expect("record encodes");
            self.note(format!(
                "controller {id} proposes {}",
                String::from_utf8_lossy(&data)
            ));
            // A lost proposal is made again at a later round.
            let _ = self.propose_here(id, data, None)?;
        }
        Ok(())
    }

    /// A voter's broker registers through its own node until acknowledged (broker.rs
    /// `register()`); a proposal unanswered for [`PROPOSAL_TIMEOUT_MS`] counts as failed.
    pub(super) fn register_tick(&mut self, id: NodeId) -> Verdict {
        let n = self.node(id);
        if n.registered || n.raft.is_none() {
            return Ok(());
        }
        if let Some((op, since)) = n.registration {
            match self.clients.ops[op].outcome {
                OpOutcome::Acked { .. } => {
                    self.node_mut(id).registered = true;
                    return Ok(());
                }
                OpOutcome::Pending if self.now < since + PROPOSAL_TIMEOUT_MS => return Ok(()),
                OpOutcome::Pending => self.clients.settle(op, OpOutcome::Unknown("timed out")),
                _ => {}
            }
        }
        let rec = MetadataRecord::BrokerRegistered {
            id: id as i32,
            incarnation: self.node(id).incarnation.clone(),
            host: format!("n{id}"),
            port: 9092,
            rack: None,
        };
        let data = serde_json::to_vec(&rec).expect("record encodes");
        let op = self.clients.begin(id, rec, data);
        self.node_mut(id).registration = Some((op, self.now));
        self.submit(id, op)
    }

    /// A replica caught up again, as a partition leader reports it: node `p`, leading a
    /// partition in its own (maybe stale) catalog, takes a live replica outside the ISR back
    /// in (which later makes preferred-leader elections possible).
    pub(super) fn isr_catch_up(&self, p: NodeId) -> Option<MetadataRecord> {
        let catalog = &self.node(p).catalog;
        catalog.topics().find_map(|t| {
            t.parts.iter().enumerate().find_map(|(i, st)| {
                let back = st.replicas.iter().find(|r| {
                    !st.isr.contains(r) && catalog.broker(**r).is_some_and(|b| !b.fenced)
                })?;
                (st.leader == p as i32).then(|| MetadataRecord::IsrChanged {
                    topic: t.name.clone(),
                    partition: i as i32,
                    leader_epoch: st.leader_epoch,
                    partition_epoch: st.partition_epoch,
                    isr: st.isr.iter().copied().chain([*back]).collect(),
                })
            })
        })
    }

    /// An admin proposal on a random running voter, planned against its own (maybe stale)
    /// catalog.
    pub(super) fn admin(&mut self) -> Verdict {
        let ups: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.raft.is_some() && !n.paused)
            .map(|n| n.id)
            .collect();
        if ups.is_empty() {
            return Ok(());
        }
        let p = self.rng.pick(&ups);
        let names: Vec<String> = self
            .node(p)
            .catalog
            .topics()
            .map(|t| t.name.clone())
            .collect();
        let kind = self.rng.below(10);
        let start = self.rng.below(64) as u32;
        let rec = match kind {
            0..=3 => {
                let name = self.rng.pick(&TOPIC_NAMES);
                let partitions = self.rng.range(1, 4) as i32;
                let rf = self.rng.range(1, 3) as i16;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                id[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                let how = Placement::Spread {
                    replication_factor: rf,
                    start,
                };
                self.node(p)
                    .catalog
                    .plan_create(name, partitions, &how, &[], id)
                    .ok()
            }
            4 | 5 if !names.is_empty() => {
                let name = names[self.rng.below(names.len() as u64) as usize].clone();
                self.node(p).catalog.plan_delete(&name).ok()
            }
            6 | 7 if !names.is_empty() => {
                let name = names[self.rng.below(names.len() as u64) as usize].clone();
                let have = self
                    .node(p)
                    .catalog
                    .topic(&name)
                    .map_or(1, |t| t.partitions);
                let total = have as i32 + self.rng.range(1, 3) as i32;
                let how = Placement::Spread {
                    replication_factor: 1,
                    start,
                };
                self.node(p)
                    .catalog
                    .plan_partitions(&name, total, &how)
                    .ok()
            }
            9 => self.isr_catch_up(p),
            _ => Some(MetadataRecord::ProducerIdsAllocated { broker: p as i32 }),
        };
        let Some(rec) = rec else {
            return Ok(());
        };
        let data = serde_json::to_vec(&rec).expect("record encodes");
        let op = self.clients.begin(p, rec, data);
        let text = format!(
            "op {op} on node {p}: {}",
            String::from_utf8_lossy(&self.clients.ops[op].data)
        );
        self.note(text);
        self.submit(p, op)
    }
}
