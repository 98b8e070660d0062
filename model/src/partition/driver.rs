//! The brokers' side: the model drives each broker's core
//! [`Replica`](skein_core::replica::Replica) through its calling contract, as the broker shell
//! (`broker/src/partition.rs`) and skein-sim replication do — `handle(now, &log, input)`, drain
//! `poll_output()`, carry out storage work on the model's log in order and report each
//! completion back (`LeaderAppended`, `FetchedAppended`, and `Synced` when a `Sync` action
//! completes an fsync), `check_invariants` after every input. Nothing here decides
//! replication; a panic in core or a refused storage step is a fault.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use skein_core::batch;
use skein_core::catalog::MetadataRecord;
use skein_core::replica::{
    FetchAnswer, FetchPosition, FetchReply, Input, Output, Replica, ReplicaError, StorageOp,
};
use skein_core::replication::IsrProposal;

use super::controller::incarnation;
use crate::raft::panic_text;

use super::{idx, Batch, PartitionModel, State, BROKERS, PRODUCE_TIMEOUT_MS};

/// What storage work may need that only the caller of an input has.
enum Data {
    /// Nothing.
    None,
    /// The record id of a produce request.
    Produced(u8),
    /// The leader's batches a fetch answer carries.
    Fetched(Vec<Batch>),
}

/// What an input led to for its caller.
#[derive(Default)]
struct Effects {
    /// Fetch answers, in order.
    fetched: Vec<Result<FetchAnswer, ReplicaError>>,
    /// ISR changes to propose to the controller.
    proposals: Vec<IsrProposal>,
}

impl State {
    /// Hands `input` to broker `b`'s replica and carries out every output in order, feeding
    /// the completions storage work reports back after the drain.
    fn drive(&mut self, model: &PartitionModel, b: i32, input: Input, mut data: Data) -> Effects {
        let now = self.now;
        let mut fx = Effects::default();
        let mut inputs = VecDeque::new();
        let mut next = Some(input);
        while let Some(input) = next.take().or_else(|| inputs.pop_front()) {
            let br = &mut self.brokers[idx(b)];
            let (r, log) = (&mut br.replica, &br.log);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
                r.handle(now, log, input);
                r.check_invariants();
            })) {
                self.fault = Some(format!("b{b} replica: {}", panic_text(p)));
                return fx;
            }
            // A follower's fsync, and any once no crash can come, completes with its request.
            let at_once = self.brokers[idx(b)].replica.leader().is_none()
                || self.crashes >= model.bounds.crashes_max;
            while let Some(o) = self.brokers[idx(b)].replica.poll_output() {
                match o {
                    Output::Storage(op) => match self.carry_out(b, op, &mut data, at_once) {
                        Ok(Some(done)) => inputs.push_back(done),
                        Ok(None) => {}
                        Err(e) => {
                            self.fault = Some(e);
                            return fx;
                        }
                    },
                    Output::ProposeIsr(p) => fx.proposals.push(p),
                    Output::FetchDone { result, .. } => fx.fetched.push(result),
                    // acks=1 answers and high-watermark wake-ups have no one to reach here.
                    Output::ProduceDone { .. } | Output::HwChanged(_) => {}
                    Output::DeleteRecordsDone { .. } => {
                        unreachable!("the model sends no DeleteRecords")
                    }
                }
            }
        }
        fx
    }

    /// Carries out one storage operation on broker `b`'s log: the completion to report, if any.
    /// An fsync completes at once (`at_once`) or when a `Sync` action completes it.
    fn carry_out(
        &mut self,
        b: i32,
        op: StorageOp,
        data: &mut Data,
        at_once: bool,
    ) -> Result<Option<Input>, String> {
        let br = &mut self.brokers[idx(b)];
        match op {
            StorageOp::SetLeaderEpoch(e) => {
                br.log.set_leader_epoch(e);
                Ok(None)
            }
            StorageOp::AdvanceLogStart(o) => {
                br.log.advance_log_start(o);
                Ok(None)
            }
            StorageOp::AppendProduced {
                token,
                leader_epoch,
            } => {
                let Data::Produced(id) = *data else {
                    return Err(format!("b{b} asked to append a produce it was not handed"));
                };
                let mut bytes = batch::build::simple(1, i64::from(id), None);
                let a = br
                    .log
                    .append(0, &mut bytes)
                    .map_err(|e| format!("b{b} append: {e}"))?;
                br.store.push(Batch {
                    epoch: leader_epoch,
                    id,
                    bytes,
                });
                Ok(Some(Input::LeaderAppended {
                    token,
                    base_offset: a.base_offset,
                    last_offset: a.last_offset,
                }))
            }
            StorageOp::AppendFetched => {
                let Data::Fetched(batches) = std::mem::replace(data, Data::None) else {
                    return Err(format!("b{b} asked to append a fetch answer twice"));
                };
                for x in batches {
                    br.log.append_replicated(0, &x.bytes).map_err(|e| {
                        format!("b{b} append_replicated at {}: {e}", br.store.len())
                    })?;
                    br.store.push(x);
                }
                Ok(Some(Input::FetchedAppended))
            }
            StorageOp::TruncateTo(cut) => {
                if cut < br.end() {
                    self.truncated = true;
                    br.keep(cut.max(0) as usize)?;
                }
                Ok(None)
            }
            StorageOp::ResetTo(start) => Err(format!(
                "b{b} told to restart its log at {start}: every log here starts at 0"
            )),
            StorageOp::Fsync { upto } => {
                br.fsync_upto = br.fsync_upto.max(upto);
                if !at_once {
                    return Ok(None);
                }
                let Some(target) = br.sync_target() else {
                    return Ok(None);
                };
                Ok(Some(br.synced_to(target)))
            }
        }
    }

    /// Leader `b` is handed an acks=1 produce of a new record.
    pub(super) fn append(&mut self, model: &PartitionModel, b: i32) {
        let id = self.next_id;
        self.next_id += 1;
        let input = Input::Produce {
            token: u64::from(id),
            acks: 1,
            timeout_ms: PRODUCE_TIMEOUT_MS,
        };
        self.drive(model, b, input, Data::Produced(id));
    }

    /// Broker `b`'s pending fsync completes.
    pub(super) fn sync(&mut self, model: &PartitionModel, b: i32) {
        let br = &mut self.brokers[idx(b)];
        let Some(target) = br.sync_target() else {
            return;
        };
        let done = br.synced_to(target);
        self.drive(model, b, done, Data::None);
    }

    /// Leader `b`'s tick; a proposal joins the in-flight set (sorted, distinct).
    pub(super) fn tick(&mut self, model: &PartitionModel, b: i32) {
        let fx = self.drive(model, b, Input::Tick, Data::None);
        for p in fx.proposals {
            if !self.inflight.contains(&p) {
                self.inflight.push(p);
            }
        }
        self.inflight.sort_by(|a, b| {
            (a.leader_epoch, a.partition_epoch, &a.isr).cmp(&(
                b.leader_epoch,
                b.partition_epoch,
                &b.isr,
            ))
        });
    }

    /// Broker `b` learns the published state; a new leadership is checked for completeness.
    pub(super) fn learn(&mut self, model: &PartitionModel, b: i32) {
        let state = self.published();
        let before = self.brokers[idx(b)].replica.leader_epoch();
        self.brokers[idx(b)].known = Some(state.clone());
        let fenced = self.catalog.fenced_replicas(&state);
        let input = Input::Metadata {
            state,
            min_insync_replicas: model.bounds.min_isr,
            fenced,
        };
        self.drive(model, b, input, Data::None);
        if let Some(epoch) = self.brokers[idx(b)].replica.leader_epoch() {
            if before != Some(epoch) {
                self.complete(b, epoch, "took over as");
            }
        }
    }

    /// The leader follower `f` would fetch from now, and where: only when its replica wants
    /// to fetch and that leader is alive and leads that very epoch.
    pub(super) fn fetch_target(&self, f: i32) -> Option<(i32, FetchPosition)> {
        let br = &self.brokers[idx(f)];
        if !br.alive {
            return None;
        }
        let pos = br.replica.fetch_position(&br.log)?;
        if !(1..=BROKERS).contains(&pos.leader) {
            return None;
        }
        let lb = &self.brokers[idx(pos.leader)];
        (lb.alive && lb.replica.leader_epoch() == Some(pos.leader_epoch))
            .then_some((pos.leader, pos))
    }

    /// Follower `f` fetches: its leader answers, then `f` applies the answer.
    pub(super) fn fetch(&mut self, model: &PartitionModel, f: i32) {
        let Some((leader, pos)) = self.fetch_target(f) else {
            return;
        };
        let ask = Input::FollowerFetch {
            token: 0,
            replica: f,
            fetch_offset: pos.fetch_offset,
            last_fetched_epoch: pos.last_fetched_epoch,
            current_leader_epoch: pos.leader_epoch,
        };
        let fx = self.drive(model, leader, ask, Data::None);
        if self.fault.is_some() {
            return;
        }
        let Some(answer) = fx.fetched.into_iter().next() else {
            self.fault = Some(format!("b{leader} left b{f}'s fetch unanswered"));
            return;
        };
        let (reply, data) = match answer {
            Ok(FetchAnswer::Records {
                from,
                upto,
                hw,
                log_start,
            }) => {
                let store = &self.brokers[idx(leader)].store;
                let Some(batches) = store.get(from.max(0) as usize..upto.max(0) as usize) else {
                    self.fault = Some(format!(
                        "b{leader} answered b{f} with {from}..{upto} of {} batches",
                        store.len()
                    ));
                    return;
                };
                (
                    FetchReply::Records { hw, log_start },
                    Data::Fetched(batches.to_vec()),
                )
            }
            Ok(FetchAnswer::Diverging {
                epoch, end_offset, ..
            }) => (FetchReply::Diverging { epoch, end_offset }, Data::None),
            // Every log here starts at 0.
            Err(ReplicaError::OffsetOutOfRange) => {
                (FetchReply::OutOfRange { log_start: 0 }, Data::None)
            }
            Err(e) => (FetchReply::Error(e), Data::None),
        };
        let input = Input::FetchResponse {
            leader_epoch: pos.leader_epoch,
            reply,
        };
        self.drive(model, f, input, data);
    }

    /// Broker `b`'s process dies: its log keeps exactly its fsynced batches, and it comes back
    /// (at `Restart`) with a fresh replica over them, knowing its last high watermark capped at
    /// what it kept. The controller fences it.
    pub(super) fn crash(&mut self, model: &PartitionModel, b: i32) {
        self.crashes += 1;
        let now = self.now;
        let br = &mut self.brokers[idx(b)];
        br.alive = false;
        br.known = None;
        if br.synced < br.store.len() {
            self.lost_unsynced = true;
        }
        let hw = br.replica.hw();
        if let Err(e) = br.keep(br.synced) {
            self.fault = Some(e);
            return;
        }
        br.fsync_upto = 0;
        let end = br.end();
        br.replica = Replica::new(model.replica_config(b), &br.log, hw.min(end), now);
        br.replica.set_canary(model.core_canary());
        let inc = incarnation(b, br.incarnation);
        self.control(
            model,
            MetadataRecord::BrokerFenced {
                id: b,
                incarnation: inc,
            },
        );
    }
}
