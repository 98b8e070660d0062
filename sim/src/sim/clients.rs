//! The simulated clients: producers (idempotent or not, with retries and resends), fetchers and the admin client, their ticks, replies, timeouts and lost connections.

use super::*;

impl Sim {
    pub(super) fn client_receive(&mut self, client: usize, msg: Msg) -> Verdict {
        match msg {
            Msg::ProduceReply { req, result } => self.produce_reply(client, req, result),
            Msg::FetchReply {
                req,
                key,
                offset,
                result,
            } => self.fetch_reply(client, req, key, offset, result),
            Msg::AdminReply { req, result } => self.admin_reply(client, req, result),
            _ => unreachable!("a request sent to a client"),
        }
    }

    pub(super) fn pending_idempotent(&self) -> Vec<(usize, u32, usize)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(c, cl)| match cl {
                Client::Producer(p) if p.shape.idempotent => {
                    p.inflight.first().map(|f| (c, f.serial, f.key.1 as usize))
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn new_req(&mut self) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    pub(super) fn tick(&mut self, c: usize) -> Verdict {
        if !self.safety() {
            return Ok(());
        }
        self.refresh_view();
        match &self.clients[c] {
            Client::Producer(_) => self.producer_tick(c),
            Client::Fetcher(_) => self.fetcher_tick(c),
            Client::Admin(_) => self.admin_tick(c),
        }
        Ok(())
    }

    pub(super) fn arm_tick(&mut self, c: usize) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        if !p.tick_armed {
            p.tick_armed = true;
            let d = self.rng.work.range(1, 30);
            self.at(d, Event::Tick(c));
        }
    }

    pub(super) fn producer_tick(&mut self, c: usize) {
        let t0 = TOPICS[0];
        let choices: Vec<(usize, u32)> = self
            .view
            .iter()
            .map(|(name, n)| (topic_index(name), *n))
            .collect();
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        p.tick_armed = false;
        if p.inflight.len() >= p.shape.in_flight as usize {
            return;
        }
        // Idempotent producers write only to t0 (never deleted); the others to any topic.
        let (topic, parts) = if p.shape.idempotent || choices.len() <= 1 {
            (0, self.view.get(t0).copied().unwrap_or(1))
        } else {
            choices[self.rng.work.below(choices.len() as u64) as usize]
        };
        let part = self.rng.work.below(u64::from(parts)) as u32;
        let n = self.rng.work.range(1, BATCH_RECORDS_MAX) as u32;
        let filler = self.rng.work.range(0, FILLER_MAX) as usize;
        let serial = p.next_serial;
        p.next_serial += 1;
        let key = (TOPICS[topic].to_string(), part);
        let ids: Vec<RecordId> = (0..n)
            .map(|index| RecordId {
                client: c as u32,
                serial,
                index,
            })
            .collect();
        let identity = p.shape.idempotent.then(|| {
            let seq = p.seqs.entry(key.clone()).or_insert(0);
            let base_sequence = *seq;
            *seq += n as i32;
            ProducerIdentity {
                id: PRODUCER_ID_BASE + c as i64,
                epoch: 0,
                base_sequence,
            }
        });
        let ts = self.now as i64;
        let compaction = &self.swarm.compaction;
        let mut bytes = if compaction.topics[topic].is_some() {
            // Keyed records from a small key space, some tombstones (never a null key: the
            // leader refuses those on a compacted topic).
            let specs: Vec<records::KeyedSpec> = ids
                .iter()
                .map(|_| records::KeyedSpec {
                    key: self.rng.keys.below(u64::from(compaction.keys)) as u32,
                    tombstone: self.rng.keys.chance(compaction.tombstone_ppm),
                })
                .collect();
            self.history.sent_keyed(&key, &ids, &specs);
            records::build_keyed_batch(&ids, &specs, filler, ts, identity)
        } else {
            records::build_batch(&ids, filler, ts, identity)
        };
        let wrong = match p.stamps {
            Stamps::Right => None,
            Stamps::Unset => Some(-1),
            // Too old (down to 0) or too new (up to 10 s ahead).
            Stamps::Wrong => Some(match self.rng.stamps.below(2) {
                0 => self.rng.stamps.below(ts.max(0) as u64 + 1) as i64 - 1,
                _ => ts + 1 + self.rng.stamps.below(10_000) as i64,
            }),
        };
        if let Some(max) = wrong {
            bytes = build::with_max_timestamp(bytes, max);
        }
        self.history.stamp(c as u32, serial, ts);
        p.inflight.push(InFlight {
            serial,
            key,
            ids,
            bytes,
            req: None,
        });
        let room = p.inflight.len() < p.shape.in_flight as usize;
        self.resend(c);
        if room {
            self.arm_tick(c);
        }
    }

    pub(super) fn fetcher_tick(&mut self, c: usize) {
        let choices: Vec<(String, u32)> = self.view.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let Client::Fetcher(f) = &mut self.clients[c] else {
            unreachable!()
        };
        if f.waiting.is_some() || choices.is_empty() {
            return;
        }
        let (name, parts) = &choices[self.rng.work.below(choices.len() as u64) as usize];
        let part = self.rng.work.below(u64::from(*parts)) as u32;
        let key = (name.clone(), part);
        let (_, cursor, known_end) = f.cursors.get(&key).copied().unwrap_or((0, 0, 0));
        let offset = match self.rng.work.below(20) {
            0 => 0,
            1..=3 => self.rng.work.range(0, known_end.max(0) as u64) as i64,
            _ => cursor,
        };
        let max_bytes = self.rng.work.pick(&[1u64, 500, 4096, 65536]);
        let req = self.next_req;
        self.next_req += 1;
        f.waiting = Some((req, self.now));
        self.request(
            c,
            Msg::Fetch {
                req,
                key,
                offset,
                max_bytes,
            },
        );
        self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
    }

    pub(super) fn admin_tick(&mut self, c: usize) {
        let r = &mut self.rng.admin;
        let name = TOPICS[r.range(1, TOPICS.len() as u64 - 1) as usize].to_string();
        let op = match r.below(3) {
            0 => {
                let partitions = r.range(1, 3) as u32;
                let id = self.topic_id_bytes();
                let configs = self.topic_configs(topic_index(&name));
                AdminOp::Create {
                    name,
                    partitions,
                    id,
                    configs,
                }
            }
            1 => AdminOp::Delete { name },
            _ => {
                let name = TOPICS[r.below(TOPICS.len() as u64) as usize].to_string();
                let total = self.view.get(&name).copied().unwrap_or(1) + r.range(1, 2) as u32;
                AdminOp::AddPartitions {
                    name,
                    total: total.min(PARTITIONS_MAX),
                }
            }
        };
        if !self.decide("admin") {
            let d = Self::mean_delay(&mut self.rng.admin, self.swarm.admin_mean_ms);
            self.at(d, Event::Tick(c));
            return;
        }
        if let AdminOp::Delete { name } = &op {
            topics::delete_sent(&mut self.history, name);
        }
        let req = self.new_req();
        self.log(format!("admin send c{c} req{req} {op:?}"));
        let Client::Admin(a) = &mut self.clients[c] else {
            unreachable!()
        };
        a.waiting = Some((req, op.clone()));
        self.request(c, Msg::Admin { req, op });
        self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
    }

    pub(super) fn admin_reply(&mut self, c: usize, req: u64, result: AdminResult) -> Verdict {
        let Client::Admin(a) = &mut self.clients[c] else {
            unreachable!("admin reply to another client")
        };
        let Some((_, op)) = a.waiting.take_if(|(r, _)| *r == req) else {
            return Ok(());
        };
        self.log(format!("admin reply c{c} req{req} {result}"));
        if let AdminResult::Ok(tid) = result {
            match &op {
                AdminOp::Create {
                    name, partitions, ..
                } => topics::created(&mut self.history, tid, name, *partitions),
                AdminOp::Delete { .. } => topics::deleted(&mut self.history, tid, self.now),
                AdminOp::AddPartitions { total, .. } => {
                    topics::grown(&mut self.history, tid, *total)
                }
            }
        }
        self.admin_next(c);
        Ok(())
    }

    pub(super) fn admin_next(&mut self, c: usize) {
        if self.safety() {
            let d = Self::mean_delay(&mut self.rng.admin, self.swarm.admin_mean_ms);
            self.at(d, Event::Tick(c));
        }
    }

    /// Sends every batch of producer `c` waiting to be (re)sent, in serial order.
    pub(super) fn resend(&mut self, c: usize) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        p.resend_armed = false;
        let acks = p.shape.acks;
        let waiting: Vec<usize> = (0..p.inflight.len())
            .filter(|i| p.inflight[*i].req.is_none())
            .collect();
        for i in waiting {
            let req = self.new_req();
            let Client::Producer(p) = &mut self.clients[c] else {
                unreachable!()
            };
            let f = &mut p.inflight[i];
            f.req = Some(req);
            let (key, bytes, serial, ids) =
                (f.key.clone(), f.bytes.clone(), f.serial, f.ids.clone());
            self.requests.insert(
                req,
                ProduceReq {
                    key: key.clone(),
                    serial,
                    ids,
                    acks,
                    sent: self.now,
                },
            );
            if self.history.compacted(&key.0).is_some() {
                self.history.attempt(c as u32, serial);
            }
            self.log(format!(
                "send c{c} req{req} batch{serial} {}-{} acks={acks}",
                key.0, key.1
            ));
            self.request(
                c,
                Msg::Produce {
                    req,
                    key,
                    bytes,
                    acks,
                },
            );
            if acks != 0 {
                self.at(self.swarm.timeout_ms, Event::Timeout { client: c, req });
            }
        }
        if acks == 0 {
            // Fire and forget: the producer moves on at once.
            if let Client::Producer(p) = &mut self.clients[c] {
                p.inflight.clear();
            }
            self.arm_tick(c);
        }
    }

    pub(super) fn arm_resend(&mut self, c: usize, delay_ms: u64) {
        let Client::Producer(p) = &mut self.clients[c] else {
            unreachable!()
        };
        if !p.resend_armed {
            p.resend_armed = true;
            self.at(delay_ms, Event::Resend(c));
        }
    }

    pub(super) fn produce_reply(
        &mut self,
        client: usize,
        req: u64,
        result: ProduceResult,
    ) -> Verdict {
        let Some(info) = self.requests.remove(&req) else {
            self.log(format!("produce reply c{client} req{req} again: ignored"));
            return Ok(());
        };
        self.log(format!(
            "produce reply c{client} req{req} batch{} {result}",
            info.serial
        ));
        let Client::Producer(p) = &mut self.clients[client] else {
            unreachable!("produce reply to another client")
        };
        let idempotent = p.shape.idempotent;
        let current = p.inflight.iter().position(|f| f.serial == info.serial);
        let latest = current.filter(|i| p.inflight[*i].req == Some(req));
        match result {
            ProduceResult::Ok {
                base_offset,
                last_offset,
                topic_id,
            } => {
                self.history.on_ack(
                    (&info.key.0, (topic_id, info.key.1)),
                    &info.ids,
                    base_offset,
                    last_offset,
                    info.acks,
                    info.sent,
                )?;
                if let Some(i) = current {
                    if idempotent {
                        self.note_acked(client, i, (base_offset, last_offset));
                    }
                    self.finish_batch(client, i);
                }
            }
            ProduceResult::Err(code, _) => {
                if let Some(i) = latest {
                    if idempotent {
                        // As a Kafka idempotent producer: a failed batch is retried, and every
                        // batch after it with it, in order, on a fresh connection.
                        self.reset_connection(client);
                        self.conn_lost(client, RETRY_BACKOFF_MS);
                    } else if code == UNKNOWN_TOPIC || !self.swarm.retries {
                        self.log(format!("c{client} gives up its batch ({code})"));
                        self.finish_batch(client, i);
                    } else {
                        debug_assert!(code == STORAGE_ERROR || !code.is_empty());
                        if let Client::Producer(p) = &mut self.clients[client] {
                            p.inflight[i].req = None;
                        }
                        self.arm_resend(client, RETRY_BACKOFF_MS);
                    }
                }
            }
        }
        self.check_quiet()
    }

    pub(super) fn finish_batch(&mut self, c: usize, i: usize) {
        if let Client::Producer(p) = &mut self.clients[c] {
            p.inflight.remove(i);
        }
        self.arm_tick(c);
    }

    /// The client closes its connection and opens a new one (Kafka does on a request timeout).
    pub(super) fn reset_connection(&mut self, c: usize) {
        self.conn_seen[c] = self.net.reset(c, NODE);
    }

    /// Client `c`'s connection is gone: whatever it had in flight on it failed.
    pub(super) fn conn_lost(&mut self, c: usize, delay_ms: u64) {
        let retries = self.swarm.retries;
        let mut give_up = false;
        match &mut self.clients[c] {
            Client::Producer(p) => {
                if p.inflight.is_empty() {
                    return;
                }
                for f in &mut p.inflight {
                    f.req = None;
                }
                if !p.shape.idempotent && !retries {
                    give_up = true;
                }
            }
            Client::Fetcher(f) => {
                if f.waiting.take().is_some() {
                    let d = self.rng.work.range(delay_ms, 100);
                    self.at(d, Event::Tick(c));
                }
                return;
            }
            Client::Admin(a) => {
                // Not retried: CreateTopics and DeleteTopics are not idempotent; the outcome
                // stays unknown to the checker.
                if a.waiting.take().is_some() {
                    self.admin_next(c);
                }
                return;
            }
        }
        if give_up {
            self.log(format!("c{c} gives up its batch"));
            self.finish_batch(c, 0);
        } else if delay_ms == 0 {
            self.resend(c);
        } else {
            self.arm_resend(c, delay_ms);
        }
    }

    pub(super) fn fetch_reply(
        &mut self,
        client: usize,
        req: u64,
        key: PartKey,
        offset: i64,
        result: FetchResult,
    ) -> Verdict {
        let Client::Fetcher(f) = &mut self.clients[client] else {
            unreachable!("fetch reply to a producer")
        };
        let Some((_, sent)) = f.waiting.take_if(|(r, _)| *r == req) else {
            self.log(format!("fetch reply c{client} req{req} again: ignored"));
            return Ok(());
        };
        self.log(format!(
            "fetch reply c{client} req{req} {}-{} at {offset}",
            key.0, key.1
        ));
        self.history
            .on_fetch(&key, offset, &result, (sent, self.now))?;
        let Client::Fetcher(f) = &mut self.clients[client] else {
            unreachable!()
        };
        match &result {
            FetchResult::Ok {
                bytes,
                high_watermark,
                topic_id,
                ..
            } => {
                let mut next = offset;
                for item in skein_core::batch::iter_headers(bytes) {
                    next = item.expect("integrity checked").1.next_offset();
                }
                f.cursors.insert(key, (*topic_id, next, *high_watermark));
            }
            FetchResult::OutOfRange {
                log_start,
                high_watermark,
                topic_id,
            } => {
                let next = if offset < *log_start {
                    *log_start
                } else {
                    *high_watermark
                };
                f.cursors.insert(key, (*topic_id, next, *high_watermark));
            }
            FetchResult::UnknownTopic => {
                f.cursors.remove(&key);
            }
        }
        let d = self.rng.work.range(5, 100);
        self.at(d, Event::Tick(client));
        Ok(())
    }

    pub(super) fn timeout(&mut self, c: usize, req: u64) -> Verdict {
        let pending = match &self.clients[c] {
            Client::Producer(p) => p.inflight.iter().any(|f| f.req == Some(req)),
            Client::Fetcher(f) => f.waiting.is_some_and(|(r, _)| r == req),
            Client::Admin(a) => a.waiting.as_ref().is_some_and(|(r, _)| *r == req),
        };
        if pending {
            self.log(format!("timeout c{c} req{req}: reconnect"));
            self.reset_connection(c);
            self.conn_lost(c, 0);
        }
        Ok(())
    }
}
