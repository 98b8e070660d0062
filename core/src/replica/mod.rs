//! One partition's replica on one broker, sans-I/O: its role (leader, follower or idle, from
//! committed metadata), the follower's rules for applying what it fetched, the leader's gates
//! (produce, acks, follower and consumer fetches, ISR changes) and the high watermark.
//!
//! The replica does no I/O and reads no clock. It reads the partition's [`PartitionLog`] (the
//! driver passes it to every call, read-only) and asks for storage work through
//! [`Output::Storage`]; the driver owns the log and the files and carries that work out.
//!
//! ## The high-watermark rule
//!
//! The high watermark is the smallest end, over the maximal ISR, of what each member has made
//! as durable as the flush policy promises ([`FlushPolicy`]):
//! - followers count what they reported in a fetch, and with [`FlushPolicy::FsyncBeforeAck`] a
//!   follower fetches again only once its appended data is fsynced, so what it reports is on
//!   its disk;
//! - the leader counts its fsynced end under [`FlushPolicy::FsyncBeforeAck`] (the default) and
//!   its written end under [`FlushPolicy::Interval`] (`--flush-ms`, Kafka's own default), where
//!   the operator chose not to wait for the disk.
//!
//! So with the default policy a committed record (and an acks=all acknowledgement) is on the
//! disks of every member of the maximal ISR, the leader included, and a crash that loses
//! unsynced writes never loses it. A new leader asks for an fsync of its whole log when it
//! takes over, so its high watermark moves once that completes.
//!
//! ## How a driver (the broker shell, the simulator) drives it
//!
//! 1. Create one [`Replica`] per partition replica held, from its recovered log (all durable).
//! 2. Feed every event as `handle(now, &log, input)`: committed metadata
//!    ([`Input::Metadata`], for every partition state applied), produce requests, follower and
//!    consumer fetches, fetch responses (a follower), storage completions, and
//!    [`Input::Tick`] at [`Replica::poll_timeout`] (or on a fixed beat).
//! 3. After every input drain [`Replica::poll_output`] and carry out each output in order:
//!    storage work before the next input (it changes the log the next call reads), answers
//!    to clients and followers, ISR proposals to the controller. Report completions back:
//!    [`Input::LeaderAppended`] after [`StorageOp::AppendProduced`],
//!    [`Input::FetchedAppended`] after [`StorageOp::AppendFetched`], [`Input::Synced`] after
//!    [`StorageOp::Fsync`] (a driver may coalesce fsyncs; it reports the durable end).
//! 4. A follower sends a fetch when [`Replica::fetch_position`] says so, at the driver's pace
//!    (batching partitions per leader, backing off after an empty answer).
//! 5. Call [`Replica::check_invariants`] after every input in simulations and tests.
//!
//! A failed leader append ([`StorageOp::AppendProduced`]) is answered by the driver with the
//! storage error, and reported as [`Input::LeaderAppendFailed`] so the replica forgets it.
//!
//! Invariants (checked by [`Replica::check_invariants`]): within one leadership the exposed
//! high watermark never falls; the ISR is a subset of the replicas; a high watermark this
//! leadership advanced is at most the leader's counted end; no consumer is shown data at or
//! above the high watermark; the durable end never exceeds the log end.

mod follower;
mod hw;
mod leader;
mod role;

use std::collections::VecDeque;

use crate::catalog::PartitionState;
use crate::log::PartitionLog;
use crate::replication::{IsrProposal, Leader, ReplicationConfig};

/// How far the leader's own log counts towards the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// The broker fsyncs before it acknowledges: the leader counts its fsynced end, and a
    /// follower fsyncs what it appended before it fetches (reports) again.
    #[default]
    FsyncBeforeAck,
    /// Interval flushing: the leader counts its written end, followers fetch without fsync.
    Interval,
}

/// Settings of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This broker's id.
    pub me: i32,
    /// The leader's replication settings (min.insync.replicas comes with metadata).
    pub replication: ReplicationConfig,
    /// The flush policy, which decides the high-watermark rule.
    pub flush: FlushPolicy,
}

/// Why the replica refused or failed a request (the shell maps each to a Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// This broker neither leads nor follows the partition as asked.
    #[error("this broker does not lead the partition")]
    NotLeaderOrFollower,
    /// The request names an older leader epoch than ours.
    #[error("the request's leader epoch is older than this leader's")]
    FencedLeaderEpoch,
    /// The request names a newer leader epoch than ours.
    #[error("the request's leader epoch is newer than this broker knows")]
    UnknownLeaderEpoch,
    /// The fetcher is not a replica of the partition.
    #[error("the fetching broker is not a replica of the partition")]
    NotReplica,
    /// acks=all with fewer in-sync replicas than min.insync.replicas.
    #[error("fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas,
    /// The ISR was below min.insync.replicas when the high watermark passed the write.
    #[error("the ISR shrank below min.insync.replicas after the write was appended")]
    NotEnoughReplicasAfterAppend,
    /// The write was not replicated to the ISR within the request timeout.
    #[error("the write was not replicated to the ISR within the request timeout")]
    RequestTimedOut,
    /// The fetch offset is outside the log.
    #[error("the fetch offset is outside the log")]
    OffsetOutOfRange,
    /// acks is not -1, 0 or 1.
    #[error("acks must be -1, 0 or 1")]
    InvalidRequiredAcks,
    /// The topic's cleanup policy forbids the request (DeleteRecords on a compact-only topic).
    #[error("records of a compact-only topic cannot be deleted")]
    PolicyViolation,
}

/// What a leader's fetch answer (a follower's response) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReply {
    /// Batches from the fetch offset (possibly none) and the leader's high watermark.
    Records {
        /// The leader's high watermark.
        hw: i64,
        /// The leader's log start offset (a follower's follows it, up to its high watermark).
        log_start: i64,
    },
    /// The follower's log diverges: the leader's `epoch` ends at `end_offset`.
    Diverging {
        /// The largest leader epoch at or below the follower's last fetched one.
        epoch: i32,
        /// Where it ends on the leader.
        end_offset: i64,
    },
    /// The fetch offset was outside the leader's log, which starts at `log_start`.
    OutOfRange {
        /// The leader's log start offset.
        log_start: i64,
    },
    /// Any other error.
    Error(ReplicaError),
}

/// An event for the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Committed metadata: the partition's state and its topic's min.insync.replicas.
    Metadata {
        /// The partition state.
        state: PartitionState,
        /// min.insync.replicas of the topic.
        min_insync_replicas: usize,
        /// Replicas of the partition the catalog calls fenced (a controlled shutdown fences
        /// too): the controller refuses them as ISR additions, so the leader never proposes
        /// them.
        fenced: Vec<i32>,
    },
    /// A produce request for this partition (acks -1, 0 or 1), `token` chosen by the driver.
    Produce {
        /// Names the request in the answer.
        token: u64,
        /// The acks setting.
        acks: i8,
        /// How long an acks=all write may wait for the ISR.
        timeout_ms: u64,
    },
    /// The driver appended a produced batch as asked.
    LeaderAppended {
        /// The produce request.
        token: u64,
        /// First offset written.
        base_offset: i64,
        /// Last offset written.
        last_offset: i64,
    },
    /// The driver could not append a produced batch (refused or an I/O error); it answers the
    /// request with that error itself.
    LeaderAppendFailed {
        /// The produce request.
        token: u64,
    },
    /// The driver appended a fetch response's batches as asked (some, all or none).
    FetchedAppended,
    /// Everything below `durable_end` is fsynced.
    Synced {
        /// The durable end.
        durable_end: i64,
    },
    /// A follower's fetch arrived at this (leading) broker.
    FollowerFetch {
        /// Names the fetch in the answer.
        token: u64,
        /// The fetching broker.
        replica: i32,
        /// Its log end.
        fetch_offset: i64,
        /// The epoch of its last batch (-1: none).
        last_fetched_epoch: i32,
        /// The leader epoch it follows (-1: not said).
        current_leader_epoch: i32,
    },
    /// A consumer's fetch arrived.
    ConsumerFetch {
        /// Names the fetch in the answer.
        token: u64,
        /// Where it reads.
        fetch_offset: i64,
        /// The leader epoch it knows (-1: not said).
        current_leader_epoch: i32,
    },
    /// A follower's fetch was answered by the leader of `leader_epoch`.
    FetchResponse {
        /// The leader epoch the fetch was sent for.
        leader_epoch: i32,
        /// The answer.
        reply: FetchReply,
    },
    /// The controller refused this ISR proposal (the committed record did not apply): if it
    /// DeleteRecords (leader only): move the log start to `offset` (-1: the high watermark).
    DeleteRecords {
        /// Names the request in the answer.
        token: u64,
        /// The new log start.
        offset: i64,
    },
    /// is this leader's pending one, the leader plans again at its next tick.
    IsrRejected(IsrProposal),
    /// Time passed: ISR changes, acks=all timeouts.
    Tick,
}

impl Input {
    /// The report of a leader append of produce request `token`: the offsets it was given
    /// (`Some((base, last))`), or that it failed.
    pub fn leader_append_outcome(token: u64, offsets: Option<(i64, i64)>) -> Input {
        match offsets {
            Some((base_offset, last_offset)) => Input::LeaderAppended {
                token,
                base_offset,
                last_offset,
            },
            None => Input::LeaderAppendFailed { token },
        }
    }
}

/// Storage work for the driver, carried out in order before the next input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOp {
    /// Append the produce request's batch as leader (at `leader_epoch`); report
    /// [`Input::LeaderAppended`] (or answer the storage error).
    AppendProduced {
        /// The produce request.
        token: u64,
        /// The leader epoch to stamp.
        leader_epoch: i32,
    },
    /// Append the fetch response's batches; report [`Input::FetchedAppended`].
    AppendFetched,
    /// Drop every record at or above this offset.
    TruncateTo(i64),
    /// Empty the log and restart it at this offset (the leader's log starts past ours).
    ResetTo(i64),
    /// Make everything below this offset durable; report [`Input::Synced`].
    Fsync {
        /// The end to make durable.
        upto: i64,
    },
    /// Record a new leader epoch starting at the log end.
    SetLeaderEpoch(i32),
    /// Move the log start up to this offset (DeleteRecords, or the leader's log start) and
    /// delete the segments wholly below it.
    AdvanceLogStart(i64),
}

/// What a fetch may be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Read from `from`; consumers only below `upto` (followers: `upto` is the log end).
    Records {
        /// The fetch offset.
        from: i64,
        /// Nothing at or above this offset is sent.
        upto: i64,
        /// The high watermark to report.
        hw: i64,
        /// The log start offset to report.
        log_start: i64,
    },
    /// The follower's log diverges (answer at once, whatever min_bytes says).
    Diverging {
        /// The largest epoch here at or below the follower's.
        epoch: i32,
        /// Where that epoch ends here.
        end_offset: i64,
        /// The high watermark to report.
        hw: i64,
    },
}

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Storage work.
    Storage(StorageOp),
    /// Propose this ISR change to the controller.
    ProposeIsr(IsrProposal),
    /// Answer a produce request: the base offset, or why not.
    ProduceDone {
        /// The request.
        token: u64,
        /// Its result.
        result: Result<i64, ReplicaError>,
    },
    /// Answer a fetch.
    FetchDone {
        /// The fetch.
        token: u64,
        /// Its answer.
        result: Result<FetchAnswer, ReplicaError>,
    },
    /// The high watermark known here changed (wake long-polling fetches).
    HwChanged(i64),
    /// Answer a DeleteRecords request: the new low watermark (log start), or why not.
    DeleteRecordsDone {
        /// The request.
        token: u64,
        /// Its result.
        result: Result<i64, ReplicaError>,
    },
}

/// Where a follower fetches next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// The leader to fetch from.
    pub leader: i32,
    /// The leader epoch followed.
    pub leader_epoch: i32,
    /// The fetch offset (the log end).
    pub fetch_offset: i64,
    /// The epoch of the last batch held (-1: none, or not checked).
    pub last_fetched_epoch: i32,
    /// The log start offset.
    pub log_start: i64,
}

/// An acks=all write waiting for the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    token: u64,
    base: i64,
    end: i64,
    deadline_ms: u64,
}

/// A produce request between its gate and its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Appending {
    token: u64,
    acks: i8,
    timeout_ms: u64,
}

/// The role.
#[derive(Debug, Clone)]
enum Role {
    Idle,
    Leader(Box<Leader>),
    Follower { leader: i32, epoch: i32 },
}

/// One partition replica on this broker.
#[derive(Debug, Clone)]
pub struct Replica {
    config: ReplicaConfig,
    role: Role,
    /// The high watermark a follower (or idle replica) last learned.
    follower_hw: i64,
    /// What of the log is known fsynced.
    durable_end: i64,
    /// The log end as of the last input.
    log_end: i64,
    /// Largest high watermark exposed during this leadership (-1: not leading).
    lead_hw: i64,
    /// High watermark when this leadership began.
    taken_hw: i64,
    /// Largest `upto` shown to a consumer in this leadership.
    shown: i64,
    /// A fetch response whose batches the driver is appending: the leader's high watermark.
    fetched_hw: Option<i64>,
    /// The leader's log start the fetch answer being applied carried.
    fetched_start: i64,
    /// The log start offset as of the last input.
    log_start: i64,
    appending: Vec<Appending>,
    waiting: Vec<Waiting>,
    now_ms: u64,
    skip_check: bool,
    out: VecDeque<Output>,
    #[cfg(feature = "canary")]
    canary: Option<crate::canary::Canary>,
}

impl Replica {
    /// A replica over a log opened after a start (everything in it durable), idle until
    /// metadata arrives, knowing high watermark `hw`.
    pub fn new(config: ReplicaConfig, log: &PartitionLog, hw: i64, now_ms: u64) -> Replica {
        let end = log.log_end_offset();
        Replica {
            config,
            role: Role::Idle,
            follower_hw: hw.clamp(0, end.max(0)),
            durable_end: end,
            log_end: end,
            lead_hw: -1,
            taken_hw: 0,
            shown: -1,
            fetched_hw: None,
            fetched_start: 0,
            log_start: 0,
            appending: Vec::new(),
            waiting: Vec::new(),
            now_ms,
            skip_check: false,
            out: VecDeque::new(),
            #[cfg(feature = "canary")]
            canary: None,
        }
    }

    /// Turns on a planted bug (simulator only).
    #[cfg(feature = "canary")]
    pub fn set_canary(&mut self, canary: Option<crate::canary::Canary>) {
        self.canary = canary;
        if let Role::Leader(l) = &mut self.role {
            l.set_canary(canary);
        }
    }

    #[cfg(feature = "canary")]
    fn canary_on(&self, c: crate::canary::Canary) -> bool {
        self.canary == Some(c)
    }

    /// Handles one input; `log` is the partition's log as the driver holds it now.
    pub fn handle(&mut self, now_ms: u64, log: &PartitionLog, input: Input) {
        assert!(now_ms >= self.now_ms, "time went backwards");
        self.now_ms = now_ms;
        self.log_end = log.log_end_offset();
        self.log_start = log.log_start_offset();
        match input {
            Input::Metadata {
                state,
                min_insync_replicas,
                fenced,
            } => self.on_metadata(&state, min_insync_replicas, &fenced),
            Input::Produce {
                token,
                acks,
                timeout_ms,
            } => self.on_produce(token, acks, timeout_ms),
            Input::LeaderAppended {
                token,
                base_offset,
                last_offset,
            } => self.on_leader_appended(token, base_offset, last_offset),
            Input::LeaderAppendFailed { token } => self.appending.retain(|a| a.token != token),
            Input::FetchedAppended => self.on_fetched_appended(),
            Input::Synced { durable_end } => self.on_synced(durable_end),
            Input::FollowerFetch {
                token,
                replica,
                fetch_offset,
                last_fetched_epoch,
                current_leader_epoch,
            } => self.on_follower_fetch(
                log,
                token,
                replica,
                (fetch_offset, last_fetched_epoch),
                current_leader_epoch,
            ),
            Input::ConsumerFetch {
                token,
                fetch_offset,
                current_leader_epoch,
            } => self.on_consumer_fetch(log, token, fetch_offset, current_leader_epoch),
            Input::FetchResponse {
                leader_epoch,
                reply,
            } => self.on_fetch_response(log, leader_epoch, reply),
            Input::IsrRejected(p) => self.on_isr_rejected(&p),
            Input::DeleteRecords { token, offset } => self.on_delete_records(log, token, offset),
            Input::Tick => self.on_tick(),
        }
        self.progress();
    }

    /// The next thing to do, if any; drain after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to [`Input::Tick`] next: the earliest acks=all deadline, ISR retry or lag expiry.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.waiting.iter().map(|w| w.deadline_ms).min();
        if let Role::Leader(l) = &self.role {
            // While a proposal is pending, nothing changes before it may be retried.
            let next_isr_change = l.retry_at().or_else(|| {
                let lag = l.config().lag_time_max_ms;
                l.followers()
                    .iter()
                    .filter(|(r, _)| l.isr().contains(r))
                    .map(|(_, f)| f.caught_up_ms + lag + 1)
                    .min()
            });
            t = [t, next_isr_change].into_iter().flatten().min();
        }
        t
    }

    /// The high watermark known here (as exposed to consumers and followers).
    pub fn hw(&self) -> i64 {
        match &self.role {
            Role::Leader(l) => self.exposed(l),
            _ => self.follower_hw,
        }
    }

    /// Whether offsets below `end`, written while leading at `epoch`, are committed: `None`
    /// while still waiting; an error once the leadership is gone or the high watermark passed
    /// `end` with the ISR below min.insync.replicas (the acks=all rule, for writes that wait
    /// without a produce request, such as a coordinator's).
    pub fn commit_status(&self, epoch: i32, end: i64) -> Option<Result<(), ReplicaError>> {
        let Role::Leader(l) = &self.role else {
            return Some(Err(ReplicaError::NotLeaderOrFollower));
        };
        if l.leader_epoch() != epoch {
            return Some(Err(ReplicaError::NotLeaderOrFollower));
        }
        if self.exposed(l) < end {
            return None;
        }
        if l.isr().len() < l.config().min_insync_replicas {
            return Some(Err(ReplicaError::NotEnoughReplicasAfterAppend));
        }
        Some(Ok(()))
    }

    /// The leader epoch, when this broker leads.
    pub fn leader_epoch(&self) -> Option<i32> {
        self.leader().map(|l| l.leader_epoch())
    }

    /// The leader state, when this broker leads.
    pub fn leader(&self) -> Option<&Leader> {
        match &self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// The leader and epoch followed, when this broker follows.
    pub fn following(&self) -> Option<(i32, i32)> {
        match self.role {
            Role::Follower { leader, epoch } => Some((leader, epoch)),
            _ => None,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> ReplicaConfig {
        self.config
    }

    /// The planted bug in force (simulator only).
    #[cfg(feature = "canary")]
    pub fn canary(&self) -> Option<crate::canary::Canary> {
        self.canary
    }

    /// What of the log is known fsynced.
    pub fn durable_end(&self) -> i64 {
        self.durable_end
    }

    /// The flush policy in force.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.config.flush
    }

    /// Asserts the module's invariants.
    pub fn check_invariants(&self) {
        assert!(
            self.durable_end <= self.log_end,
            "durable end {} past the log end {}",
            self.durable_end,
            self.log_end
        );
        if let Role::Leader(l) = &self.role {
            let hw = self.exposed(l);
            assert!(hw >= self.lead_hw, "hw fell {} -> {hw}", self.lead_hw);
            for r in l.isr() {
                assert!(l.replicas().contains(r), "ISR member {r} not a replica");
            }
            if l.hw() > self.taken_hw {
                assert!(
                    l.hw() <= self.counted_end(),
                    "hw {} past the leader's counted end {}",
                    l.hw(),
                    self.counted_end()
                );
            }
            assert!(
                self.shown <= hw,
                "a consumer was shown data up to {} above the high watermark {hw}",
                self.shown
            );
        }
    }

    /// What of the leader's own log counts towards the high watermark.
    fn counted_end(&self) -> i64 {
        #[cfg(feature = "canary")]
        if self.canary_on(crate::canary::Canary::AckBeforeFsync) {
            return self.log_end;
        }
        match self.config.flush {
            FlushPolicy::FsyncBeforeAck => self.durable_end.min(self.log_end),
            FlushPolicy::Interval => self.log_end,
        }
    }

    /// The high watermark this leader exposes.
    fn exposed(&self, l: &Leader) -> i64 {
        #[cfg(feature = "canary")]
        if self.canary_on(crate::canary::Canary::HwFromLeaderOnly) {
            return self.log_end;
        }
        l.hw()
    }

    fn emit(&mut self, o: Output) {
        self.out.push_back(o);
    }
}
