//! The event dispatch: what each scheduled event does to the node, the network and the clients, and the node's outputs turned into deliveries.

use super::*;

impl Sim {
    pub(super) fn handle(&mut self, ev: Event) -> Verdict {
        match ev {
            Event::Tick(c) => self.tick(c),
            Event::Deliver { client, epoch, msg } => {
                if self.net.epoch(client, NODE) != epoch {
                    // Lost with its connection (the reset is in the trace already).
                    return Ok(());
                }
                if msg.dir() == Dir::Response {
                    return self.client_receive(client, msg);
                }
                if !self.node.is_up() {
                    // Connection refused: the client notices at once.
                    self.net.reset(client, NODE);
                    let d = self.rng.net.range(0, self.swarm.latency_max_ms);
                    self.at(d, Event::ConnLost { client, epoch });
                    return Ok(());
                }
                self.node_receive(client, epoch, msg);
                Ok(())
            }
            Event::ConnLost { client, epoch } => {
                // Only the refusal's own ConnLost ends it, and it always counts: every request
                // made while refused was dropped and must be resent, in order, before anything
                // newer (an older, stale ConnLost ending the refusal let a later batch overtake
                // them: seed 100186).
                let refusal_over = self.refused[client] == Some(epoch);
                if refusal_over {
                    self.refused[client] = None;
                }
                if self.conn_seen[client] <= epoch || refusal_over {
                    self.conn_seen[client] = self.net.epoch(client, NODE);
                    self.log(format!("c{client} reconnects"));
                    self.conn_lost(client, RETRY_BACKOFF_MS);
                }
                Ok(())
            }
            Event::Timeout { client, req } => self.timeout(client, req),
            Event::Resend(c) => {
                self.resend(c);
                Ok(())
            }
            Event::SyncStart { key, tid, inc } => {
                if !self.node.is_up() || self.node.incarnation != inc || !self.node.holds(&key, tid)
                {
                    return Ok(());
                }
                let (target, file) = self.node.sync_start(&key);
                let ok = !(self.safety()
                    && self.rng.faults.chance(self.swarm.fsync_eio_ppm)
                    && self.decide("eio"));
                let d = self.rng.faults.range(1, self.swarm.fsync_latency_max_ms);
                self.log(format!(
                    "fsync start {}-{} target={target} {}",
                    key.0,
                    key.1,
                    file.name()
                ));
                self.at(
                    d,
                    Event::SyncDone {
                        key,
                        tid,
                        target,
                        file,
                        ok,
                        inc,
                    },
                );
                Ok(())
            }
            Event::SyncDone {
                key,
                tid,
                target,
                file,
                ok,
                inc,
            } => {
                if !self.node.is_up() || self.node.incarnation != inc || !self.node.holds(&key, tid)
                {
                    return Ok(());
                }
                self.log(format!(
                    "fsync {} {}-{} target={target}",
                    if ok { "done" } else { "EIO" },
                    key.0,
                    key.1
                ));
                let outs = self.node.sync_done(self.now, &key, target, &file, ok);
                self.node_outs(outs);
                Ok(())
            }
            Event::Crash => {
                if !self.safety() || !self.node.is_up() {
                    return Ok(());
                }
                let clean = self.rng.stops.chance(self.swarm.clean_stop_ppm);
                if !self.decide("stop") {
                    self.schedule_crash();
                } else if clean && !self.paused {
                    self.clean_stop();
                } else if self.rng.faults.chance(self.swarm.mid_op_crash_ppm) && !self.paused {
                    let n = self.rng.faults.range(0, 6) as u32;
                    self.node.disk_mut().die_after(n);
                    self.log(format!(
                        "crash armed: disk dies at the {n}th next storage op"
                    ));
                } else {
                    self.crash_now();
                }
                Ok(())
            }
            Event::Restart => {
                if self.node.is_up() {
                    return Ok(());
                }
                self.restart()
            }
            Event::Retention => {
                if self.node.is_up() {
                    let n = self.node.retention(self.now);
                    // The log starts right after the pass, as ListOffsets would answer them.
                    let parts: Vec<_> = self
                        .node
                        .partitions()
                        .into_iter()
                        .map(|(k, t, s, e)| ((t, k.1), s, e))
                        .collect();
                    let (bytes, ms) = (self.swarm.retention_bytes, self.swarm.retention_ms);
                    self.history
                        .on_retention(self.now, ms, bytes >= 0, &parts)?;
                    let offs: Vec<String> = self
                        .node
                        .partitions()
                        .iter()
                        .map(|(k, _, s, e)| format!("{}-{}={s}..{e}", k.0, k.1))
                        .collect();
                    self.log(format!("retention deleted={n} {}", offs.join(" ")));
                }
                if self.safety() {
                    self.at(self.swarm.retention_pass_ms, Event::Retention);
                }
                Ok(())
            }
            Event::Clean => self.clean_pass(),
            Event::CleanPiece { commit, inc } => self.clean_piece(commit, inc),
            Event::Partition => {
                self.partition();
                Ok(())
            }
            Event::Heal(cut) => {
                for (c, dir) in &cut {
                    self.net.link(*c, NODE).down[*dir as usize] = false;
                }
                self.log(format!("heal {cut:?}"));
                Ok(())
            }
            Event::Pause => {
                if self.safety() && self.node.is_up() && !self.paused && self.decide("pause") {
                    self.paused = true;
                    let d = self.rng.pauses.range(1, self.swarm.pause_max_ms);
                    self.log(format!("pause for {d}ms"));
                    self.at(d, Event::Resume);
                } else {
                    self.schedule_pause();
                }
                Ok(())
            }
            Event::Resume => {
                self.schedule_pause();
                self.resume()
            }
            Event::DiskFull => {
                if self.safety() && self.decide("enospc") {
                    self.node.disk_mut().set_full(true);
                    let d = self.rng.disk.range(1, self.swarm.enospc_max_ms);
                    self.log(format!("disk full for {d}ms"));
                    self.at(d, Event::DiskFree);
                } else {
                    self.schedule_disk_full();
                }
                Ok(())
            }
            Event::DiskFree => {
                if self.node.disk().is_full() {
                    self.node.disk_mut().set_full(false);
                    self.log("disk has room again".into());
                }
                self.schedule_disk_full();
                Ok(())
            }
            Event::Liveness => {
                self.phase = Phase::Liveness;
                self.liveness_at = self.now;
                self.node.disk_mut().disarm();
                self.node.disk_mut().set_full(false);
                self.net.heal_all();
                self.resume()?;
                self.log("liveness: faults off".into());
                if !self.node.is_up() {
                    self.restart()?;
                }
                self.at(checker::liveness::ACK_BOUND_MS, Event::Deadline);
                self.check_quiet()
            }
            Event::Deadline => {
                let pending = self.pending_idempotent();
                checker::liveness::check(&pending, self.now - self.liveness_at)?;
                self.audit()
            }
        }
    }

    /// A request reaches the running node.
    pub(super) fn node_receive(&mut self, client: usize, epoch: u32, msg: Msg) {
        match msg {
            Msg::Produce {
                req,
                key,
                bytes,
                acks,
            } => {
                if acks != 0 {
                    self.req_conn.insert(req, epoch);
                }
                // The produce request's timeout is the client's request timeout, as a Kafka
                // producer sends it.
                let timeout = self.swarm.timeout_ms;
                let outs = self
                    .node
                    .produce(self.now, &key, (client, req), &bytes, acks, timeout);
                let offs = self
                    .node
                    .offsets(&key)
                    .map_or("-".to_string(), |(s, e)| format!("{s}..{e}"));
                self.log(format!(
                    "produce c{client} req{req} {}-{} acks={acks} len={} log={offs}",
                    key.0,
                    key.1,
                    bytes.len()
                ));
                self.node_outs(outs);
            }
            Msg::Fetch {
                req,
                key,
                offset,
                max_bytes,
            } => {
                self.req_conn.insert(req, epoch);
                let (result, outs) = self.node.fetch(self.now, &key, offset, max_bytes);
                self.node_outs(outs);
                let what = match &result {
                    FetchResult::Ok {
                        bytes,
                        high_watermark,
                        ..
                    } => format!("{} bytes hw={high_watermark}", bytes.len()),
                    FetchResult::OutOfRange {
                        log_start,
                        high_watermark,
                        ..
                    } => format!("out of range {log_start}..{high_watermark}"),
                    FetchResult::UnknownTopic => UNKNOWN_TOPIC.to_string(),
                };
                self.log(format!(
                    "fetch c{client} req{req} {}-{} at {offset}: {what}",
                    key.0, key.1
                ));
                self.respond(
                    client,
                    req,
                    Msg::FetchReply {
                        req,
                        key,
                        offset,
                        result,
                    },
                );
            }
            Msg::Admin { req, op } => {
                self.req_conn.insert(req, epoch);
                let result = self.node.admin(self.now, &op);
                self.log(format!("admin c{client} req{req} {op:?}: {result}"));
                self.refresh_view();
                self.respond(client, req, Msg::AdminReply { req, result });
            }
            _ => unreachable!("a response sent to the node"),
        }
    }

    pub(super) fn node_outs(&mut self, outs: Vec<NodeOut>) {
        for o in outs {
            match o {
                NodeOut::Reply {
                    client,
                    req,
                    result,
                } => self.respond(client, req, Msg::ProduceReply { req, result }),
                NodeOut::NeedSync(key, tid) => {
                    let inc = self.node.incarnation;
                    self.at(
                        self.swarm.group_commit_ms,
                        Event::SyncStart { key, tid, inc },
                    );
                }
            }
        }
    }
}
