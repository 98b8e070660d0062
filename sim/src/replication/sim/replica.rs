//! The brokers' side of the replication driver: feeds each partition's core
//! [`skein_core::replica::Replica`] its inputs (metadata, produce, fetches, fetch responses,
//! fsync completions, ticks) and carries out what it asks on the simulated disk and network.
//! Nothing here decides replication: the role, the fetch and produce gates, the follower's
//! apply rules and the high watermark are the core's. The driver only checks what it sees
//! (one leader per epoch, leader completeness, the exposed high watermark never falling,
//! batches landing on batch boundaries).

use skein_core::batch;
use skein_core::catalog::PartitionState;
use skein_core::replica::{FetchAnswer, FetchReply, Input, Output, ReplicaError, StorageOp};

use super::Ev;
use super::{FetchBody, Msg, Node, Parked, ReplSim, Res, Stored};
use super::{BATCHES_PER_FETCH, FETCH_RETRY_MS, FETCH_WAIT_MS, REQUEST_TIMEOUT_MS};
use crate::checker::{violation, Violation};
use crate::records::{build_batch, decode, RecordId};

/// The Kafka name of a core error, as the sim's clients see it.
fn error_name(e: ReplicaError) -> &'static str {
    match e {
        ReplicaError::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
        ReplicaError::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
        ReplicaError::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
        ReplicaError::NotReplica => "NOT_REPLICA",
        ReplicaError::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
        ReplicaError::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        ReplicaError::RequestTimedOut => "REQUEST_TIMED_OUT",
        ReplicaError::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
        ReplicaError::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
        ReplicaError::PolicyViolation => "POLICY_VIOLATION",
    }
}

type Answers = Vec<(u64, Result<FetchAnswer, ReplicaError>)>;

impl ReplSim {
    /// Hands `input` to broker `b`'s replica of `p`, then carries out every output; returns
    /// the fetch answers.
    pub(super) fn drive(&mut self, b: i32, p: usize, input: Input) -> Result<Answers, Violation> {
        let now = self.now;
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        r.core.handle(now, &r.log, input);
        r.core.check_invariants();
        let mut answers = Vec::new();
        loop {
            let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
            let Some(out) = r.core.poll_output() else {
                break;
            };
            match out {
                Output::Storage(op) => self.carry_out(b, p, op)?,
                Output::ProposeIsr(prop) => {
                    self.send(Node::B(b), Node::Ctl, Msg::AlterIsr { p, prop });
                }
                Output::ProduceDone { token, result } => {
                    let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
                    r.producing.remove(&token);
                    if let Some(i) = r.unanswered.iter().position(|w| w.0 == token) {
                        r.unanswered.remove(i);
                    }
                    if let Ok(base) = result {
                        let hw = r.hw();
                        self.note(format!("b{b} p{p} answers req {token} at {base} (hw {hw})"));
                    }
                    let result = result.map_err(error_name);
                    self.send(
                        Node::B(b),
                        Node::Client,
                        Msg::ProduceResp { req: token, result },
                    );
                }
                Output::FetchDone { token, result } => answers.push((token, result)),
                Output::HwChanged(_) => {}
                Output::DeleteRecordsDone { .. } => {
                    unreachable!("the replication simulation sends no DeleteRecords")
                }
            }
        }
        self.observe_hw(b, p)?;
        Ok(answers)
    }

    /// The driver's own checks of the exposed high watermark, and what earlier epochs exposed.
    fn observe_hw(&mut self, b: i32, p: usize) -> Res {
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        let Some(l) = r.core.leader() else {
            return Ok(());
        };
        let (epoch, hw) = (l.leader_epoch(), r.core.hw());
        if r.lead_hw.0 == epoch && hw < r.lead_hw.1 {
            return Err(violation(
                "hw-monotonic",
                format!("b{b} p{p} epoch {epoch}: hw fell {} -> {hw}", r.lead_hw.1),
            ));
        }
        r.lead_hw = (epoch, hw);
        let e = self.exposed.entry((p, epoch)).or_insert(0);
        *e = (*e).max(hw);
        Ok(())
    }

    /// Carries out one storage request of the core on the simulated disk.
    fn carry_out(&mut self, b: i32, p: usize, op: StorageOp) -> Res {
        let now = self.now;
        let inc = self.brokers[&b].inc;
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        match op {
            StorageOp::SetLeaderEpoch(e) => r.log.set_leader_epoch(e),
            StorageOp::AdvanceLogStart(o) => {
                r.log.advance_log_start(o);
            }
            StorageOp::AppendProduced { token, .. } => {
                let (acks, ids) = r.producing.get(&token).cloned().unwrap_or((1, Vec::new()));
                let mut bytes = build_batch(&ids, 8, now as i64, None);
                let a = r.log.append(now, &mut bytes).map_err(|e| {
                    violation("node-invariant", format!("b{b} p{p} leader append: {e}"))
                })?;
                let h = batch::parse_header(&bytes).expect("stamped batch");
                let decoded = decode(&bytes).map_err(|e| violation("integrity", e))?;
                let got: Vec<RecordId> = decoded
                    .iter()
                    .filter_map(|(_, v)| RecordId::parse(v))
                    .collect();
                if got != ids || a.base_offset != h.base_offset {
                    return Err(violation(
                        "integrity",
                        format!("b{b} p{p} batch mangled on append"),
                    ));
                }
                r.store.push(Stored {
                    base: a.base_offset,
                    last: a.last_offset,
                    epoch: h.leader_epoch,
                    bytes,
                    ids,
                });
                if acks == -1 {
                    r.unanswered.push((token, h.leader_epoch, now));
                }
                r.core.handle(
                    now,
                    &r.log,
                    Input::LeaderAppended {
                        token,
                        base_offset: a.base_offset,
                        last_offset: a.last_offset,
                    },
                );
            }
            StorageOp::AppendFetched => {
                let batches = std::mem::take(&mut r.fetched);
                let got = !batches.is_empty();
                for s in batches {
                    if s.base != r.end() {
                        return Err(violation(
                            "replication",
                            format!("b{b} p{p} got batch at {} with log end {}", s.base, r.end()),
                        ));
                    }
                    if let Err(e) = r.log.append_replicated(now, &s.bytes) {
                        return Err(violation(
                            "replication",
                            format!("b{b} p{p} append_replicated at {}: {e}", s.base),
                        ));
                    }
                    r.store.push(s);
                }
                r.core.handle(now, &r.log, Input::FetchedAppended);
                if !got {
                    // Nothing new within the leader's long-poll wait: ask again at once.
                    let seq = r.fetch_seq;
                    self.at(0, Ev::FetchRetry { b, inc, p, seq });
                }
            }
            StorageOp::TruncateTo(cut) => {
                let keep = r.store.partition_point(|s| s.last < cut);
                if keep < r.store.len() && r.store[keep].base != cut {
                    return Err(violation(
                        "truncation",
                        format!(
                            "b{b} p{p} told to truncate at {cut}, inside its batch {}..={}",
                            r.store[keep].base, r.store[keep].last
                        ),
                    ));
                }
                let before = r.end();
                r.keep(keep, now);
                self.stats.truncations += 1;
                self.note(format!("b{b} p{p} truncates {before} -> {cut}"));
            }
            StorageOp::ResetTo(start) => {
                // Leaders' logs here always start at 0, so no follower is ever behind one.
                return Err(violation(
                    "replication",
                    format!("b{b} p{p} told to restart its log at {start}"),
                ));
            }
            StorageOp::Fsync { upto } => {
                let idx = r.store.partition_point(|s| s.last < upto);
                let sgen = r.sgen;
                let disk = self.rng.range(0, self.swarm.disk_max_ms);
                let ev = Ev::Sync {
                    b,
                    inc,
                    p,
                    sgen,
                    upto: idx,
                };
                self.at(disk, ev);
            }
        }
        Ok(())
    }

    pub(super) fn on_meta(
        &mut self,
        b: i32,
        version: u64,
        parts: Vec<PartitionState>,
        fenced: Vec<Vec<i32>>,
    ) -> Res {
        let br = self.brokers.get_mut(&b).expect("broker");
        if version < br.version || (version == br.version && !br.fresh) {
            return Ok(());
        }
        br.fresh = false;
        br.version = version;
        br.view = parts.clone();
        for (p, st) in parts.iter().enumerate() {
            let fenced = fenced.get(p).cloned().unwrap_or_default();
            self.apply_state(b, p, st, fenced)?;
        }
        Ok(())
    }

    fn apply_state(&mut self, b: i32, p: usize, st: &PartitionState, fenced: Vec<i32>) -> Res {
        let before = self.role_of(b, p);
        let min_insync_replicas = self.swarm.min_isr;
        self.drive(
            b,
            p,
            Input::Metadata {
                state: st.clone(),
                min_insync_replicas,
                fenced,
            },
        )?;
        let after = self.role_of(b, p);
        if after == before {
            return Ok(());
        }
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        r.fetch_seq += 1;
        r.replicating = None;
        let end = r.end();
        match after {
            (true, epoch) => self.took_leadership(b, p, epoch, end),
            (false, _) => {
                self.send_fetch(b, p);
                Ok(())
            }
        }
    }

    /// (leads, epoch) of `b`'s replica of `p`; (false, -1) when idle.
    fn role_of(&self, b: i32, p: usize) -> (bool, i32) {
        let c = &self.brokers[&b].parts[p].core;
        match (c.leader(), c.following()) {
            (Some(l), _) => (true, l.leader_epoch()),
            (None, Some((_, epoch))) => (false, epoch),
            (None, None) => (false, -1),
        }
    }

    /// Checks a new leadership: one leader per epoch, and it holds what earlier epochs exposed.
    fn took_leadership(&mut self, b: i32, p: usize, epoch: i32, end: i64) -> Res {
        self.stats.leaderships += 1;
        self.note(format!("b{b} p{p} leads epoch {epoch} at end {end}"));
        if let Some(other) = self.epoch_leader.insert((p, epoch), b) {
            if other != b {
                return Err(violation(
                    "one-leader-per-epoch",
                    format!("p{p} epoch {epoch}: b{other} and b{b} both led"),
                ));
            }
        }
        if self.catalog.unclean_elections() == 0 {
            let need = self
                .exposed
                .range((p, i32::MIN)..(p, epoch))
                .map(|(_, hw)| *hw)
                .max()
                .unwrap_or(0);
            if end < need {
                return Err(violation(
                    "leader-completeness",
                    format!(
                        "b{b} leads p{p} at epoch {epoch} with log end {end}, below the high \
                         watermark {need} an earlier leader exposed"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sends the fetch the core's follower wants now, if any.
    pub(super) fn send_fetch(&mut self, b: i32, p: usize) {
        let inc = self.brokers[&b].inc;
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        let Some(pos) = r.core.fetch_position(&r.log) else {
            return;
        };
        r.fetch_seq += 1;
        let seq = r.fetch_seq;
        let msg = Msg::Fetch {
            p,
            seq,
            offset: pos.fetch_offset,
            last_epoch: pos.last_fetched_epoch,
            epoch: pos.leader_epoch,
        };
        self.send(Node::B(b), Node::B(pos.leader), msg);
        self.at(FETCH_RETRY_MS, Ev::FetchRetry { b, inc, p, seq });
    }

    /// Follower `f`'s fetch `seq` reached leader `b`: answered at once if it brings records, a
    /// divergence or an error, else held (the long poll) until `b` appends or
    /// [`FETCH_WAIT_MS`] passes, as the broker's fetch handler does.
    pub(super) fn on_follower_fetch(
        &mut self,
        b: i32,
        p: usize,
        f: i32,
        seq: u64,
        fetch: Parked,
    ) -> Res {
        let body = self.serve_fetch(b, p, f, fetch.offset, fetch.last_epoch, fetch.epoch)?;
        if matches!(&body, FetchBody::Data { batches, .. } if batches.is_empty()) {
            self.parked.insert((b, p, f, seq), fetch);
            let inc = fetch.inc;
            self.at(FETCH_WAIT_MS, Ev::FetchExpire { b, inc, p, f, seq });
        } else {
            self.send(Node::B(b), Node::B(f), Msg::FetchResp { p, seq, body });
        }
        Ok(())
    }

    /// Leader `b` appended to `p`: serves the fetches it holds for `p` again (each records the
    /// follower's progress again, as the broker's woken fetch does); those that now bring
    /// records are answered.
    fn wake_fetches(&mut self, b: i32, p: usize) -> Res {
        let held: Vec<((i32, usize, i32, u64), Parked)> = self
            .parked
            .range((b, p, i32::MIN, 0)..=(b, p, i32::MAX, u64::MAX))
            .map(|(k, q)| (*k, *q))
            .collect();
        for (key, q) in held {
            let (_, _, f, seq) = key;
            let body = self.serve_fetch(b, p, f, q.offset, q.last_epoch, q.epoch)?;
            if !matches!(&body, FetchBody::Data { batches, .. } if batches.is_empty()) {
                self.parked.remove(&key);
                self.send(Node::B(b), Node::B(f), Msg::FetchResp { p, seq, body });
            }
        }
        Ok(())
    }

    /// The long-poll wait of a held fetch is over: it is served again and answered, whatever
    /// it brings.
    pub(super) fn expire_fetch(&mut self, b: i32, inc: u64, p: usize, f: i32, seq: u64) -> Res {
        let Some(q) = self.parked.remove(&(b, p, f, seq)) else {
            return Ok(());
        };
        if q.inc != inc || self.brokers[&b].inc != inc {
            return Ok(());
        }
        let body = self.serve_fetch(b, p, f, q.offset, q.last_epoch, q.epoch)?;
        self.send(Node::B(b), Node::B(f), Msg::FetchResp { p, seq, body });
        Ok(())
    }

    fn serve_fetch(
        &mut self,
        b: i32,
        p: usize,
        f: i32,
        offset: i64,
        last_epoch: i32,
        epoch: i32,
    ) -> Result<FetchBody, Violation> {
        let input = Input::FollowerFetch {
            token: 0,
            replica: f,
            fetch_offset: offset,
            last_fetched_epoch: last_epoch,
            current_leader_epoch: epoch,
        };
        let answer = self.drive(b, p, input)?.pop().map(|(_, a)| a);
        let r = &self.brokers[&b].parts[p];
        match answer.expect("a fetch is answered") {
            Err(e) => Ok(FetchBody::Err(e)),
            Ok(FetchAnswer::Diverging {
                epoch, end_offset, ..
            }) => Ok(FetchBody::Diverging { epoch, end_offset }),
            Ok(FetchAnswer::Records { from, upto, hw, .. }) => {
                let start = r.store.partition_point(|s| s.last < from);
                if start < r.store.len() && r.store[start].base != from {
                    return Err(violation(
                        "log-matching",
                        format!(
                            "b{b} p{p} accepted b{f}'s fetch at {from} (last epoch \
                             {last_epoch}), inside its batch {}..={}: the logs diverged \
                             undetected",
                            r.store[start].base, r.store[start].last
                        ),
                    ));
                }
                let batches = r.store[start..]
                    .iter()
                    .take_while(|s| s.last < upto)
                    .take(BATCHES_PER_FETCH)
                    .cloned()
                    .collect();
                Ok(FetchBody::Data { batches, hw })
            }
        }
    }

    /// A consumer's read: what the core lets it see.
    pub(super) fn serve_consume(
        &mut self,
        b: i32,
        p: usize,
        offset: i64,
    ) -> Result<Vec<(i64, RecordId)>, Violation> {
        let input = Input::ConsumerFetch {
            token: 0,
            fetch_offset: offset,
            current_leader_epoch: -1,
        };
        let answer = self.drive(b, p, input)?.pop().map(|(_, a)| a);
        let Some(Ok(FetchAnswer::Records { from, upto, .. })) = answer else {
            return Ok(Vec::new());
        };
        let r = &self.brokers[&b].parts[p];
        let mut out = Vec::new();
        for s in r.store.iter().filter(|s| s.base >= from && s.last < upto) {
            for (i, id) in s.ids.iter().enumerate() {
                out.push((s.base + i as i64, *id));
            }
            if out.len() > 50 {
                break;
            }
        }
        Ok(out)
    }

    pub(super) fn on_fetch_resp(&mut self, b: i32, p: usize, seq: u64, body: FetchBody) -> Res {
        let inc = self.brokers[&b].inc;
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        let Some((_, leader_epoch)) = r.core.following() else {
            return Ok(());
        };
        if r.fetch_seq != seq {
            return Ok(());
        }
        // One answer per fetch: a duplicate of this one must not be applied again.
        r.fetch_seq += 1;
        let seq = r.fetch_seq;
        let reply = match body {
            FetchBody::Err(ReplicaError::OffsetOutOfRange) => {
                FetchReply::OutOfRange { log_start: 0 }
            }
            FetchBody::Err(e) => FetchReply::Error(e),
            FetchBody::Diverging { epoch, end_offset } => {
                self.note(format!(
                    "b{b} p{p} told leader epoch {epoch} ends at {end_offset}"
                ));
                FetchReply::Diverging { epoch, end_offset }
            }
            FetchBody::Data { batches, hw } => {
                r.fetched = batches;
                // The simulated leaders never move their log start (no DeleteRecords here).
                FetchReply::Records { hw, log_start: 0 }
            }
        };
        let retry = matches!(reply, FetchReply::Error(_) | FetchReply::OutOfRange { .. });
        let diverged = matches!(reply, FetchReply::Diverging { .. });
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        r.replicating = matches!(reply, FetchReply::Records { .. })
            .then(|| r.core.following())
            .flatten();
        self.drive(
            b,
            p,
            Input::FetchResponse {
                leader_epoch,
                reply,
            },
        )?;
        if retry {
            self.at(FETCH_RETRY_MS / 3, Ev::FetchRetry { b, inc, p, seq });
        } else if diverged {
            self.send_fetch(b, p);
        }
        Ok(())
    }

    pub(super) fn on_produce(
        &mut self,
        b: i32,
        p: usize,
        req: u64,
        acks: i8,
        ids: Vec<RecordId>,
    ) -> Res {
        let r = &mut self.brokers.get_mut(&b).expect("broker").parts[p];
        r.producing.insert(req, (acks, ids));
        self.drive(
            b,
            p,
            Input::Produce {
                token: req,
                acks,
                timeout_ms: REQUEST_TIMEOUT_MS,
            },
        )?;
        self.wake_fetches(b, p)
    }

    pub(super) fn broker_tick(&mut self, b: i32) -> Res {
        for p in 0..self.swarm.partitions {
            self.drive(b, p, Input::Tick)?;
        }
        Ok(())
    }
}
