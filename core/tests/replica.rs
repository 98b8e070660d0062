//! The replica state machine (`skein_core::replica`) through its calling contract: a small
//! driver carries out its storage work on a real `PartitionLog`, and every case checks the
//! outputs; a proptest feeds random input sequences and checks the invariants after each.

use proptest::prelude::*;
use skein_core::batch::build::simple;
use skein_core::catalog::PartitionState;
use skein_core::config::LogConfig;
use skein_core::log::PartitionLog;
use skein_core::replica::{
    FetchAnswer, FetchReply, FlushPolicy, Input, Output, Replica, ReplicaConfig, ReplicaError,
    StorageOp,
};
use skein_core::replication::ReplicationConfig;

/// One replica plus the storage it drives: batches kept as bytes so truncation can rebuild.
struct Node {
    r: Replica,
    log: PartitionLog,
    batches: Vec<Vec<u8>>,
    now: u64,
    /// Fsyncs asked for and not yet completed.
    fsyncs: Vec<i64>,
    /// Batches a fetch response carries, appended on `AppendFetched`.
    incoming: Vec<Vec<u8>>,
    /// Outputs other than storage work, in order.
    seen: Vec<Output>,
}

fn config(me: i32, flush: FlushPolicy) -> ReplicaConfig {
    ReplicaConfig {
        me,
        replication: ReplicationConfig {
            lag_time_max_ms: 1_000,
            min_insync_replicas: 1,
            isr_retry_ms: 500,
        },
        flush,
    }
}

fn state(replicas: &[i32], isr: &[i32], leader: i32, epoch: i32, pe: i32) -> PartitionState {
    PartitionState {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        elr: vec![],
        leader,
        leader_epoch: epoch,
        partition_epoch: pe,
    }
}

impl Node {
    fn new(me: i32, flush: FlushPolicy) -> Node {
        let log = PartitionLog::new(LogConfig::default(), 0);
        let r = Replica::new(config(me, flush), &log, 0, 0);
        Node {
            r,
            log,
            batches: Vec::new(),
            now: 0,
            fsyncs: Vec::new(),
            incoming: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Feeds one input, carries out the storage work, returns the other outputs.
    fn feed(&mut self, input: Input) -> Vec<Output> {
        self.r.handle(self.now, &self.log, input);
        self.r.check_invariants();
        let mut out = Vec::new();
        while let Some(o) = self.r.poll_output() {
            match o {
                Output::Storage(op) => self.storage(op),
                o => out.push(o),
            }
        }
        self.seen.extend(out.iter().cloned());
        out
    }

    fn storage(&mut self, op: StorageOp) {
        match op {
            StorageOp::SetLeaderEpoch(e) => self.log.set_leader_epoch(e),
            StorageOp::AdvanceLogStart(o) => {
                self.log.advance_log_start(o);
            }
            StorageOp::AppendProduced { token, .. } => {
                let mut b = simple(2, 0, None);
                let a = self.log.append(self.now, &mut b).expect("append");
                self.batches.push(b);
                self.r.handle(
                    self.now,
                    &self.log,
                    Input::LeaderAppended {
                        token,
                        base_offset: a.base_offset,
                        last_offset: a.last_offset,
                    },
                );
            }
            StorageOp::AppendFetched => {
                for b in std::mem::take(&mut self.incoming) {
                    self.log
                        .append_replicated(self.now, &b)
                        .expect("replicated");
                    self.batches.push(b);
                }
                self.r.handle(self.now, &self.log, Input::FetchedAppended);
            }
            StorageOp::TruncateTo(cut) => self.keep_below(cut),
            StorageOp::ResetTo(_) => panic!("logs here start at 0"),
            StorageOp::Fsync { upto } => self.fsyncs.push(upto),
        }
        self.r.check_invariants();
    }

    fn keep_below(&mut self, cut: i64) {
        let epochs: Vec<(i32, i64)> = self.log.epochs().to_vec();
        let mut log = PartitionLog::new(LogConfig::default(), self.now);
        let mut kept = Vec::new();
        for b in std::mem::take(&mut self.batches) {
            if log.log_end_offset() >= cut {
                break;
            }
            log.append_replicated(self.now, &b).expect("replay");
            kept.push(b);
        }
        assert_eq!(log.log_end_offset(), cut, "cut on a batch boundary");
        let end = log.log_end_offset();
        let epochs: Vec<(i32, i64)> = epochs.into_iter().filter(|(_, s)| *s < end).collect();
        log.restore_epochs(&epochs);
        self.log = log;
        self.batches = kept;
    }

    /// Completes every fsync asked for.
    fn sync_all(&mut self) -> Vec<Output> {
        let upto = self.fsyncs.drain(..).max();
        match upto {
            Some(durable_end) => self.feed(Input::Synced { durable_end }),
            None => Vec::new(),
        }
    }

    fn produce(&mut self, token: u64, acks: i8) -> Vec<Output> {
        self.feed(Input::Produce {
            token,
            acks,
            timeout_ms: 1_000,
        })
    }

    fn meta(&mut self, st: PartitionState, min: usize) -> Vec<Output> {
        self.meta_fenced(st, min, Vec::new())
    }

    fn meta_fenced(&mut self, st: PartitionState, min: usize, fenced: Vec<i32>) -> Vec<Output> {
        self.feed(Input::Metadata {
            state: st,
            min_insync_replicas: min,
            fenced,
        })
    }
}

fn done(out: &[Output], token: u64) -> Option<Result<i64, ReplicaError>> {
    out.iter().find_map(|o| match o {
        Output::ProduceDone { token: t, result } if *t == token => Some(*result),
        _ => None,
    })
}

fn fetched(out: &[Output]) -> Result<FetchAnswer, ReplicaError> {
    out.iter()
        .find_map(|o| match o {
            Output::FetchDone { result, .. } => Some(*result),
            _ => None,
        })
        .expect("a fetch answer")
}

#[test]
fn fsync_policy_counts_the_leaders_fsynced_end() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1], &[1], 1, 0, 0), 1);
    let out = n.produce(7, -1);
    assert_eq!(done(&out, 7), None, "held until the fsync");
    assert_eq!(n.r.hw(), 0, "the written end does not count");
    assert_eq!(n.fsyncs, vec![2]);
    let out = n.sync_all();
    assert_eq!(done(&out, 7), Some(Ok(0)));
    assert_eq!(n.r.hw(), 2);
    assert!(out.contains(&Output::HwChanged(2)));
}

fn deleted(out: &[Output], token: u64) -> Option<Result<i64, ReplicaError>> {
    out.iter().find_map(|o| match o {
        Output::DeleteRecordsDone { token: t, result } if *t == token => Some(*result),
        _ => None,
    })
}

#[test]
fn delete_records_moves_the_log_start_up_to_the_high_watermark() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1], &[1], 1, 0, 0), 1);
    for t in 0..3 {
        n.produce(t, 1);
    }
    n.sync_all();
    assert_eq!(n.r.hw(), 6);
    n.produce(9, 1); // written, not yet fsynced: above the high watermark
    let del = |n: &mut Node, token, offset| {
        let out = n.feed(Input::DeleteRecords { token, offset });
        deleted(&out, token).expect("answered at once")
    };
    assert_eq!(del(&mut n, 1, 7), Err(ReplicaError::OffsetOutOfRange));
    assert_eq!(del(&mut n, 2, -2), Err(ReplicaError::OffsetOutOfRange));
    assert_eq!(del(&mut n, 3, 3), Ok(3));
    assert_eq!(n.log.log_start_offset(), 3);
    // Never back; -1 is the high watermark.
    assert_eq!(del(&mut n, 4, 1), Ok(3));
    assert_eq!(del(&mut n, 5, -1), Ok(6));
    assert_eq!(n.log.log_start_offset(), 6);
    // A consumer below the new start is out of range.
    n.feed(Input::ConsumerFetch {
        token: 6,
        fetch_offset: 2,
        current_leader_epoch: -1,
    });
    assert_eq!(fetched(&n.seen), Err(ReplicaError::OffsetOutOfRange));
    // Only a leader deletes records.
    let mut f = Node::new(2, FlushPolicy::FsyncBeforeAck);
    f.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    assert_eq!(del(&mut f, 7, 0), Err(ReplicaError::NotLeaderOrFollower));
    // A compact-only topic's records are not deleted.
    let mut c = Node::new(1, FlushPolicy::FsyncBeforeAck);
    c.log.set_config(LogConfig {
        cleanup_policy: skein_core::config::CleanupPolicy::parse("compact").unwrap(),
        ..LogConfig::default()
    });
    c.meta(state(&[1], &[1], 1, 0, 0), 1);
    assert_eq!(del(&mut c, 8, 0), Err(ReplicaError::PolicyViolation));
}

#[test]
fn a_follower_follows_the_leaders_log_start_up_to_its_high_watermark() {
    let mut n = Node::new(2, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    let mut b = simple(4, 0, None);
    skein_core::batch::assign_offset(&mut b, 0, 0);
    n.incoming.push(b);
    n.feed(Input::FetchResponse {
        leader_epoch: 0,
        reply: FetchReply::Records {
            hw: 2,
            log_start: 3,
        },
    });
    assert_eq!(n.r.hw(), 2);
    assert_eq!(
        n.log.log_start_offset(),
        2,
        "not past what it knows is committed"
    );
    n.sync_all();
    n.feed(Input::FetchResponse {
        leader_epoch: 0,
        reply: FetchReply::Records {
            hw: 4,
            log_start: 3,
        },
    });
    assert_eq!(n.log.log_start_offset(), 3);
}

#[test]
fn interval_policy_counts_the_leaders_written_end() {
    let mut n = Node::new(1, FlushPolicy::Interval);
    n.meta(state(&[1], &[1], 1, 0, 0), 1);
    let out = n.produce(7, -1);
    assert_eq!(done(&out, 7), Some(Ok(0)));
    assert_eq!(n.r.hw(), 2);
    assert!(n.fsyncs.is_empty(), "interval flushing asks for no fsync");
}

#[test]
fn acks_one_is_answered_after_the_append() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    let out = n.produce(1, 1);
    assert_eq!(done(&out, 1), Some(Ok(0)));
    assert_eq!(n.r.hw(), 0, "follower 2 holds nothing yet");
}

#[test]
fn produce_gates() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    let out = n.produce(1, -1);
    assert_eq!(done(&out, 1), Some(Err(ReplicaError::NotLeaderOrFollower)));
    n.meta(state(&[1, 2], &[1], 1, 0, 0), 2);
    let out = n.produce(2, -1);
    assert_eq!(done(&out, 2), Some(Err(ReplicaError::NotEnoughReplicas)));
    let out = n.produce(3, 1);
    assert_eq!(done(&out, 3), Some(Ok(0)), "acks=1 needs no ISR");
    let out = n.produce(4, 5);
    assert_eq!(done(&out, 4), Some(Err(ReplicaError::InvalidRequiredAcks)));
}

#[test]
fn acks_all_waits_for_the_followers_and_times_out() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 2);
    n.produce(1, -1);
    n.sync_all();
    assert_eq!(n.r.hw(), 0);
    let fetch = |offset| Input::FollowerFetch {
        token: 9,
        replica: 2,
        fetch_offset: offset,
        last_fetched_epoch: if offset == 0 { -1 } else { 0 },
        current_leader_epoch: 0,
    };
    let out = n.feed(fetch(0));
    assert!(matches!(
        fetched(&out),
        Ok(FetchAnswer::Records {
            from: 0,
            upto: 2,
            hw: 0,
            ..
        })
    ));
    let out = n.feed(fetch(2));
    assert_eq!(done(&out, 1), Some(Ok(0)), "the follower reported offset 2");
    assert_eq!(n.r.hw(), 2);
    n.produce(2, -1);
    n.sync_all();
    let deadline = n.r.poll_timeout().expect("a deadline");
    n.now = deadline;
    let out = n.feed(Input::Tick);
    assert_eq!(done(&out, 2), Some(Err(ReplicaError::RequestTimedOut)));
}

/// A follower's fetch that reports its end before the leader's own fsync finishes is remembered:
/// the leader's fsync alone then releases the write (it used to wait for the follower's next
/// fetch, which came only with the next append: W7's p99 was the gap between two messages).
#[test]
fn a_follower_fetch_ahead_of_the_leaders_fsync_counts_once_the_fsync_lands() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 2);
    n.produce(1, -1);
    let fetch = |offset| Input::FollowerFetch {
        token: 9,
        replica: 2,
        fetch_offset: offset,
        last_fetched_epoch: if offset == 0 { -1 } else { 0 },
        current_leader_epoch: 0,
    };
    n.feed(fetch(0));
    let out = n.feed(fetch(2));
    assert_eq!(done(&out, 1), None, "the leader has not fsynced yet");
    assert_eq!(n.r.hw(), 0);
    let out = n.sync_all();
    assert_eq!(
        done(&out, 1),
        Some(Ok(0)),
        "the follower already holds offset 2"
    );
    assert_eq!(n.r.hw(), 2);
}

#[test]
fn losing_leadership_fails_waiting_writes() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    n.produce(1, -1);
    let out = n.meta(state(&[1, 2], &[2], 2, 1, 1), 1);
    assert_eq!(done(&out, 1), Some(Err(ReplicaError::NotLeaderOrFollower)));
    assert_eq!(n.r.following(), Some((2, 1)));
}

#[test]
fn follower_fetch_errors_and_divergence() {
    let mut n = Node::new(1, FlushPolicy::Interval);
    n.meta(state(&[1, 2], &[1, 2], 1, 3, 0), 1);
    n.produce(1, 1);
    let mut ask = |replica, offset, last, epoch| {
        let out = n.feed(Input::FollowerFetch {
            token: 0,
            replica,
            fetch_offset: offset,
            last_fetched_epoch: last,
            current_leader_epoch: epoch,
        });
        fetched(&out)
    };
    assert_eq!(ask(2, 0, -1, 2), Err(ReplicaError::FencedLeaderEpoch));
    assert_eq!(ask(2, 0, -1, 4), Err(ReplicaError::UnknownLeaderEpoch));
    assert_eq!(ask(5, 0, -1, 3), Err(ReplicaError::NotReplica));
    assert_eq!(ask(2, 9, -1, 3), Err(ReplicaError::OffsetOutOfRange));
    assert!(matches!(
        ask(2, 5, 1, 3),
        Ok(FetchAnswer::Diverging { epoch: -1, .. })
    ));
}

#[test]
fn consumers_read_below_the_high_watermark_only() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1], &[1], 1, 0, 0), 1);
    n.produce(1, 1);
    let read = |n: &mut Node| {
        fetched(&n.feed(Input::ConsumerFetch {
            token: 0,
            fetch_offset: 0,
            current_leader_epoch: -1,
        }))
    };
    assert!(matches!(
        read(&mut n),
        Ok(FetchAnswer::Records { upto: 0, .. })
    ));
    n.sync_all();
    assert!(matches!(
        read(&mut n),
        Ok(FetchAnswer::Records { upto: 2, hw: 2, .. })
    ));
}

#[test]
fn a_follower_fsyncs_before_it_fetches_again_and_truncates_on_divergence() {
    let mut n = Node::new(2, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    let pos = n.r.fetch_position(&n.log).expect("fetch at once");
    assert_eq!((pos.leader, pos.leader_epoch, pos.fetch_offset), (1, 0, 0));
    let mut b = simple(3, 0, None);
    skein_core::batch::assign_offset(&mut b, 0, 0);
    n.incoming.push(b);
    let reply = FetchReply::Records {
        hw: 2,
        log_start: 0,
    };
    n.feed(Input::FetchResponse {
        leader_epoch: 0,
        reply,
    });
    assert_eq!(n.log.log_end_offset(), 3);
    assert_eq!(n.r.hw(), 2);
    assert!(n.r.fetch_position(&n.log).is_none(), "not before the fsync");
    n.sync_all();
    assert_eq!(n.r.fetch_position(&n.log).expect("synced").fetch_offset, 3);
    // An answer for another epoch is ignored.
    n.feed(Input::FetchResponse {
        leader_epoch: 5,
        reply: FetchReply::Diverging {
            epoch: 0,
            end_offset: 0,
        },
    });
    assert_eq!(n.log.log_end_offset(), 3);
    // The new leader has no epoch in common: nothing can be shown to match.
    n.meta(state(&[1, 2], &[1, 2], 1, 1, 1), 1);
    n.feed(Input::FetchResponse {
        leader_epoch: 1,
        reply: FetchReply::Diverging {
            epoch: -1,
            end_offset: -1,
        },
    });
    assert_eq!(n.log.log_end_offset(), 0);
    assert_eq!(n.r.hw(), 0);
}

#[test]
fn a_new_leadership_records_its_epoch_and_flushes() {
    let mut n = Node::new(2, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    let mut b = simple(3, 0, None);
    skein_core::batch::assign_offset(&mut b, 0, 0);
    n.incoming.push(b);
    n.feed(Input::FetchResponse {
        leader_epoch: 0,
        reply: FetchReply::Records {
            hw: 0,
            log_start: 0,
        },
    });
    n.fsyncs.clear(); // that fsync is lost: the leadership must ask again
    n.meta(state(&[1, 2], &[2], 2, 1, 1), 1);
    assert_eq!(n.log.leader_epoch(), 1);
    assert_eq!(n.fsyncs, vec![3]);
    assert_eq!(n.r.hw(), 0, "the unsynced tail does not count");
    n.sync_all();
    assert_eq!(n.r.hw(), 3);
}

#[test]
fn a_lagging_follower_is_proposed_out_at_its_deadline() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    let at = n.r.poll_timeout().expect("lag expiry");
    assert_eq!(at, 1_001);
    n.now = at;
    let out = n.feed(Input::Tick);
    let prop = out.iter().find_map(|o| match o {
        Output::ProposeIsr(p) => Some(p.clone()),
        _ => None,
    });
    let prop = prop.expect("a shrink");
    assert_eq!(prop.isr, vec![1]);
    n.feed(Input::IsrRejected(prop));
    n.now += 1;
    let out = n.feed(Input::Tick);
    assert!(
        out.iter().any(|o| matches!(o, Output::ProposeIsr(_))),
        "proposed again"
    );
}

/// A follower that died caught up and was fenced (the controller takes it out of the ISR at
/// the same leader epoch) is not proposed back from its old fetches, and writes commit on the
/// ISR left (the coordinator of a `__consumer_offsets` partition waits on this after a kill -9).
#[test]
fn a_fenced_follower_is_not_proposed_back_into_the_isr() {
    let mut n = Node::new(1, FlushPolicy::Interval);
    n.meta(state(&[1, 2, 3], &[1, 2, 3], 1, 0, 0), 2);
    n.produce(1, 1);
    let fetch = |replica, offset| Input::FollowerFetch {
        token: 9,
        replica,
        fetch_offset: offset,
        last_fetched_epoch: 0,
        current_leader_epoch: 0,
    };
    n.now = 100;
    n.feed(fetch(2, 2));
    n.feed(fetch(3, 2));
    assert_eq!(n.r.hw(), 2);
    // 3 is killed; 500 ms later (within the lag of 1 s) the controller fences it.
    n.now = 600;
    n.meta(state(&[1, 2, 3], &[1, 2], 1, 0, 1), 2);
    n.now = 700;
    let out = n.feed(Input::Tick);
    assert!(
        !out.iter().any(|o| matches!(o, Output::ProposeIsr(_))),
        "3 proposed back into the ISR: {out:?}"
    );
    // A coordinator's write on the ISR left commits.
    n.produce(2, 1);
    assert_eq!(n.r.commit_status(0, 4), None);
    n.feed(fetch(2, 4));
    assert_eq!(n.r.commit_status(0, 4), Some(Ok(())));
}

proptest! {
    /// Random metadata, produces, follower fetches, consumer fetches, fetch responses, fsync
    /// completions and ticks, under both flush policies: the invariants hold after every input,
    /// every produce is answered at most once, and no acks=all write is acknowledged above the
    /// leader's counted end.
    #[test]
    fn random_inputs_keep_the_invariants(
        ops in proptest::collection::vec((0u8..9, 0u8..4, 0i64..8), 1..150),
        interval in any::<bool>(),
    ) {
        let flush = if interval { FlushPolicy::Interval } else { FlushPolicy::FsyncBeforeAck };
        let mut n = Node::new(1, flush);
        let mut epoch = 0;
        let mut pe = 0;
        let mut token = 0u64;
        for (op, who, k) in ops {
            n.now += 30;
            match op {
                0 => {
                    pe += 1;
                    let leader = [1, 2, -1, 1][usize::from(who)];
                    if leader != 1 || k % 2 == 0 {
                        epoch += 1;
                    }
                    let isr: Vec<i32> = [1, 2, 3].into_iter().filter(|r| k & (1 << (r - 1)) != 0 || *r == leader).collect();
                    n.meta(state(&[1, 2, 3], &isr, leader, epoch, pe), 1 + usize::from(who % 3));
                }
                1 | 2 => { token += 1; n.produce(token, [-1, 1, -1, 0][usize::from(who)]); }
                3 => {
                    let end = n.log.log_end_offset();
                    n.feed(Input::FollowerFetch {
                        token: 0,
                        replica: 2 + i32::from(who % 2),
                        fetch_offset: k.min(end),
                        last_fetched_epoch: if k == 0 { -1 } else { n.log.last_epoch() },
                        current_leader_epoch: epoch,
                    });
                }
                4 => { n.feed(Input::ConsumerFetch { token: 0, fetch_offset: k, current_leader_epoch: -1 }); }
                5 => { n.sync_all(); }
                6 => {
                    if let Some(pos) = n.r.fetch_position(&n.log) {
                        let reply = match who {
                            0 => FetchReply::Records { hw: k, log_start: 0 },
                            1 => FetchReply::Diverging { epoch: -1, end_offset: -1 },
                            2 => FetchReply::OutOfRange { log_start: 0 },
                            _ => FetchReply::Error(ReplicaError::NotLeaderOrFollower),
                        };
                        n.feed(Input::FetchResponse { leader_epoch: pos.leader_epoch, reply });
                    }
                }
                7 => { n.now += 400; n.feed(Input::Tick); }
                _ => {
                    let p = n.seen.iter().rev().find_map(|o| match o {
                        Output::ProposeIsr(p) => Some(p.clone()),
                        _ => None,
                    });
                    if let Some(p) = p { n.feed(Input::IsrRejected(p)); }
                }
            }
            if let Some(l) = n.r.leader() {
                prop_assert!(l.isr().iter().all(|r| l.replicas().contains(r)));
            }
        }
        let mut answered = std::collections::BTreeSet::new();
        for o in &n.seen {
            if let Output::ProduceDone { token, .. } = o {
                prop_assert!(answered.insert(*token), "produce {} answered twice", token);
            }
        }
    }
}

#[test]
fn a_failed_leader_append_is_forgotten() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    // The driver's append fails: nothing is left waiting, so losing the leadership later
    // answers nothing for it.
    n.r.handle(
        n.now,
        &n.log,
        Input::Produce {
            token: 5,
            acks: -1,
            timeout_ms: 1_000,
        },
    );
    assert!(matches!(
        n.r.poll_output(),
        Some(Output::Storage(StorageOp::AppendProduced { token: 5, .. }))
    ));
    let out = n.feed(Input::LeaderAppendFailed { token: 5 });
    assert!(out.is_empty());
    let out = n.meta(state(&[1, 2], &[2], 2, 1, 1), 1);
    assert_eq!(done(&out, 5), None, "no answer for a forgotten write");
}

#[test]
fn commit_status_follows_the_acks_all_rule() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    assert_eq!(
        n.r.commit_status(0, 2),
        Some(Err(ReplicaError::NotLeaderOrFollower))
    );
    n.meta(state(&[1], &[1], 1, 0, 0), 1);
    n.produce(1, 1);
    assert_eq!(n.r.commit_status(0, 2), None, "not fsynced yet");
    n.sync_all();
    assert_eq!(n.r.commit_status(0, 2), Some(Ok(())));
    assert_eq!(
        n.r.commit_status(1, 2),
        Some(Err(ReplicaError::NotLeaderOrFollower)),
        "another epoch"
    );
    n.meta(state(&[1], &[1], 1, 0, 0), 2);
    assert_eq!(
        n.r.commit_status(0, 2),
        Some(Err(ReplicaError::NotEnoughReplicasAfterAppend))
    );
}

#[test]
fn a_leader_turned_follower_fsyncs_its_tail_before_it_fetches() {
    let mut n = Node::new(1, FlushPolicy::FsyncBeforeAck);
    n.meta(state(&[1, 2], &[1, 2], 1, 0, 0), 1);
    n.produce(1, 1);
    n.fsyncs.clear();
    n.meta(state(&[1, 2], &[2], 2, 1, 1), 1);
    assert_eq!(n.fsyncs, vec![2], "the unsynced tail is fsynced");
    assert!(n.r.fetch_position(&n.log).is_none(), "not before the fsync");
    n.sync_all();
    let pos = n.r.fetch_position(&n.log).expect("fetches once synced");
    assert_eq!((pos.leader, pos.fetch_offset), (2, 2));
}

/// A controller for the ISR tests: a real `Catalog` with brokers 1-3 and topic "t" of one
/// partition on replicas [1, 2, 3] (min.insync.replicas `min`).
fn controller(min: usize) -> skein_core::catalog::Catalog {
    use skein_core::catalog::{Catalog, MetadataRecord};
    let mut c = Catalog::new(LogConfig::default());
    for id in 1..=3 {
        c.apply(&MetadataRecord::BrokerRegistered {
            id,
            incarnation: format!("{id}-0"),
            host: "h".into(),
            port: 9092,
            rack: None,
        });
    }
    c.apply(&MetadataRecord::TopicCreated {
        name: "t".into(),
        id: "0".repeat(32),
        partitions: 1,
        configs: [("min.insync.replicas".to_string(), min.to_string())].into(),
        assignments: vec![vec![1, 2, 3]],
    });
    c
}

/// Carries the leader's outputs to the controller: each ISR proposal is applied to the
/// catalog (which may refuse it), a refusal is reported back, and the committed state is fed
/// back as metadata.
fn to_controller(n: &mut Node, c: &mut skein_core::catalog::Catalog, out: Vec<Output>, min: usize) {
    use skein_core::catalog::MetadataRecord;
    for o in out {
        let Output::ProposeIsr(p) = o else { continue };
        let refused = c
            .check_isr_change("t", 0, p.leader_epoch, p.partition_epoch, &p.isr)
            .is_some();
        c.apply(&MetadataRecord::IsrChanged {
            topic: "t".into(),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: p.isr.clone(),
        });
        let st = c.partition("t", 0).expect("partition").clone();
        let fenced = c.fenced_replicas(&st);
        n.meta_fenced(st, min, fenced);
        if refused {
            n.feed(Input::IsrRejected(p));
        }
    }
}

/// Writes (acks=1) and ticks from `n.now` to `until`, 2 following at the log end, every
/// output carried to the controller; returns every ISR proposal made.
fn write_and_tick(
    n: &mut Node,
    c: &mut skein_core::catalog::Catalog,
    until: u64,
    min: usize,
) -> Vec<skein_core::replication::IsrProposal> {
    let mut proposed = Vec::new();
    while n.now < until {
        n.now += 50;
        n.produce(n.now, 1);
        let end = n.log.log_end_offset();
        n.feed(isr_fetch(2, end));
        let out = n.feed(Input::Tick);
        for o in &out {
            if let Output::ProposeIsr(p) = o {
                proposed.push(p.clone());
            }
        }
        to_controller(n, c, out, min);
    }
    let end = n.log.log_end_offset();
    n.feed(isr_fetch(2, end));
    proposed
}

fn isr_fetch(replica: i32, offset: i64) -> Input {
    Input::FollowerFetch {
        token: 9,
        replica,
        fetch_offset: offset,
        last_fetched_epoch: 0,
        current_leader_epoch: 0,
    }
}

/// Found in review (the notes' "refused ISR addition"): the leader proposes a caught-up
/// follower back into the ISR, the controller fences that follower before the proposal
/// applies and so refuses it, and the follower goes silent. The refused addition counted
/// towards the high watermark until the partition epoch moved, which nothing did: the high
/// watermark stayed at the follower's last end for good (2 while the log grew to 190). Now the
/// leader, told of the refusal and of the fence, proposes the committed ISR again and the
/// partition epoch moves.
#[test]
fn a_refused_isr_addition_does_not_freeze_the_high_watermark() {
    use skein_core::catalog::MetadataRecord;
    let min = 1;
    let mut c = controller(min);
    let mut n = Node::new(1, FlushPolicy::Interval);
    n.meta(c.partition("t", 0).expect("partition").clone(), min);
    n.produce(1, 1);
    n.now = 100;
    n.feed(isr_fetch(2, 2));
    // 3 lags past replica.lag.time.max.ms and is proposed out.
    write_and_tick(&mut n, &mut c, 1_200, min);
    assert_eq!(c.partition("t", 0).expect("partition").isr, vec![1, 2]);
    // It catches up; the leader proposes it back.
    let end = n.log.log_end_offset();
    n.feed(isr_fetch(3, end));
    n.now += 10;
    let out = n.feed(Input::Tick);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::ProposeIsr(p) if p.isr.contains(&3))),
        "3 is proposed back: {out:?}"
    );
    // Before that proposal applies, the controller fences 3 (3 is out of the ISR, so no
    // partition changes); the leader is told, then the proposal is refused.
    c.apply(&MetadataRecord::BrokerFenced {
        id: 3,
        incarnation: "3-0".into(),
    });
    let st = c.partition("t", 0).expect("partition").clone();
    n.meta_fenced(st, min, vec![3]);
    to_controller(&mut n, &mut c, out, min);
    assert_eq!(c.partition("t", 0).expect("partition").isr, vec![1, 2]);
    // 3 goes silent; the leader keeps writing, 2 keeps up.
    let proposed = write_and_tick(&mut n, &mut c, 5_000, min);
    assert!(proposed.iter().all(|p| !p.isr.contains(&3)), "{proposed:?}");
    assert_eq!(
        n.r.hw(),
        n.log.log_end_offset(),
        "the high watermark is held back by a refused addition of a silent replica"
    );
    let l = n.r.leader().expect("leads");
    assert_eq!(l.maximal_isr(), l.isr(), "the maximal ISR settled");
}

/// KIP-841: a replica the metadata calls fenced (a broker cut off from the controller that
/// still reaches the leader, or one in controlled shutdown) is not proposed into the ISR
/// however caught up it is, and proposes nothing the controller would refuse.
#[test]
fn a_fenced_replica_that_still_fetches_is_not_proposed() {
    use skein_core::catalog::MetadataRecord;
    let min = 1;
    let mut c = controller(min);
    let mut n = Node::new(1, FlushPolicy::Interval);
    n.meta(c.partition("t", 0).expect("partition").clone(), min);
    n.produce(1, 1);
    n.now = 100;
    n.feed(isr_fetch(2, 2));
    n.feed(isr_fetch(3, 2));
    c.apply(&MetadataRecord::BrokerFenced {
        id: 3,
        incarnation: "3-0".into(),
    });
    n.now = 200;
    let st = c.partition("t", 0).expect("partition").clone();
    n.meta_fenced(st, min, vec![3]);
    assert_eq!(n.r.leader().expect("leads").isr(), &[1, 2]);
    let mut proposed = Vec::new();
    while n.now < 3_000 {
        n.now += 50;
        n.produce(n.now, 1);
        let end = n.log.log_end_offset();
        n.feed(isr_fetch(2, end));
        n.feed(isr_fetch(3, end));
        let out = n.feed(Input::Tick);
        proposed.extend(
            out.iter()
                .filter(|o| matches!(o, Output::ProposeIsr(_)))
                .cloned(),
        );
        to_controller(&mut n, &mut c, out, min);
    }
    assert!(proposed.is_empty(), "{proposed:?}");
    assert_eq!(n.r.hw(), n.log.log_end_offset());
    // Unfenced, it joins.
    c.apply(&MetadataRecord::BrokerUnfenced {
        id: 3,
        incarnation: "3-0".into(),
    });
    let st = c.partition("t", 0).expect("partition").clone();
    n.meta_fenced(st, min, vec![]);
    let end = n.log.log_end_offset();
    n.feed(isr_fetch(3, end));
    n.now += 50;
    let out = n.feed(Input::Tick);
    to_controller(&mut n, &mut c, out, min);
    assert_eq!(c.partition("t", 0).expect("partition").isr, vec![1, 2, 3]);
}
