//! The group coordinator's shell: hosts one [`Shard`] for each `__consumer_offsets` partition
//! this broker leads, loads it by replaying the partition when the leadership starts, serves
//! the group APIs from it, appends the records it asks for and applies them once replicated.
//!
//! Invariants: a shard exists only while this broker leads its partition at the epoch it was
//! loaded for (a new leadership reloads; losing it drops the shard and answers its waiting
//! requests NOT_COORDINATOR); records are applied to a shard only after the high watermark
//! covers them and only at the epoch they were appended in; JoinGroup/SyncGroup answers that
//! the core delays are routed by request id to exactly one waiting request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
    list_groups_response::ListedGroup,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use skein_core::batch::{self, build};
use skein_core::consumer_group::Heartbeat as CgHeartbeat;
use skein_core::coordinator::{self, partition_for, Record, Shard};
use skein_core::fetch::Grant;
use skein_core::group::{GroupError, GroupState, Join, Reply, ReqId};
use skein_core::offsets::OffsetValue;
use skein_proto::context::RequestContext;
use skein_proto::errors::{consumer_group_error, coordinator_write_error, group_error};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::broker::{now_ms, Broker};
use crate::replica::Role;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// offset.metadata.max.bytes.
const MAX_METADATA: usize = 4096;
/// offsets.commit.timeout.ms: how long a commit waits for the ISR.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often group timers are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often expired offsets are looked for (offsets.retention.check.interval.ms).
const EXPIRE_EVERY_MS: u64 = 60_000;
/// Bytes of whole batches each read of the offsets topic takes while loading a shard (a
/// larger first batch is read whole).
const OFFSETS_LOAD_READ_BYTES: u64 = 1 << 20;

enum Slot {
    Loading { epoch: i32 },
    Ready { epoch: i32, shard: Box<Shard> },
}

type Waiter = oneshot::Sender<Result<Reply, E>>;

/// The coordinator state of one broker.
pub struct Coordinator {
    slots: Mutex<BTreeMap<i32, Slot>>,
    /// Groups with a metadata write in flight (a new generation's assignment being stored),
    /// and a counter bumped as each write ends.
    storing: Mutex<BTreeMap<String, usize>>,
    stored: watch::Sender<u64>,
    waiters: Mutex<BTreeMap<ReqId, (i32, Waiter)>>,
    next_req: AtomicU64,
    loads: mpsc::UnboundedSender<(i32, i32)>,
    loads_rx: Mutex<Option<mpsc::UnboundedReceiver<(i32, i32)>>>,
}

impl Default for Coordinator {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Coordinator {
            slots: Mutex::new(BTreeMap::new()),
            storing: Mutex::new(BTreeMap::new()),
            stored: watch::channel(0).0,
            waiters: Mutex::new(BTreeMap::new()),
            next_req: AtomicU64::new(1),
            loads: tx,
            loads_rx: Mutex::new(Some(rx)),
        }
    }
}

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

impl Coordinator {
    /// This broker's role for offsets partition `index` changed: `leading` is the leader epoch
    /// if it leads. A new leadership (re)loads the partition; losing it drops the shard.
    pub fn role_changed(&self, index: i32, leading: Option<i32>) {
        let mut slots = self.slots.lock().expect("slots lock");
        let current = slots.get(&index).map(|s| match s {
            Slot::Loading { epoch } | Slot::Ready { epoch, .. } => *epoch,
        });
        if current == leading {
            return;
        }
        match leading {
            Some(epoch) => {
                slots.insert(index, Slot::Loading { epoch });
                let _ = self.loads.send((index, epoch));
            }
            None => {
                slots.remove(&index);
            }
        }
        drop(slots);
        self.fail_waiters(index, E::NotCoordinator);
    }

    fn fail_waiters(&self, index: i32, e: E) {
        let mut w = self.waiters.lock().expect("waiters lock");
        let ids: Vec<ReqId> = w
            .iter()
            .filter(|(_, (i, _))| *i == index)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some((_, tx)) = w.remove(&id) {
                let _ = tx.send(Err(e));
            }
        }
    }

    fn register(&self, index: i32) -> (ReqId, oneshot::Receiver<Result<Reply, E>>) {
        let id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters lock")
            .insert(id, (index, tx));
        (id, rx)
    }

    fn deliver(&self, replies: Vec<Reply>) {
        let mut w = self.waiters.lock().expect("waiters lock");
        for r in replies {
            let id = match &r {
                Reply::Join { req, .. } | Reply::Sync { req, .. } => *req,
            };
            if let Some((_, tx)) = w.remove(&id) {
                let _ = tx.send(Ok(r));
            }
        }
    }

    /// Answers the requests of `replies` with the error `e` instead.
    fn fail(&self, replies: &[Reply], e: E) {
        let mut w = self.waiters.lock().expect("waiters lock");
        for r in replies {
            let id = match r {
                Reply::Join { req, .. } | Reply::Sync { req, .. } => *req,
            };
            if let Some((_, tx)) = w.remove(&id) {
                let _ = tx.send(Err(e));
            }
        }
    }

    /// Runs `f` on the shard of `index` if it is loaded; its leader epoch comes along.
    fn with_index<T>(&self, index: i32, f: impl FnOnce(&mut Shard, i32) -> T) -> Result<T, E> {
        let mut slots = self.slots.lock().expect("slots lock");
        match slots.get_mut(&index) {
            None => Err(E::NotCoordinator),
            Some(Slot::Loading { .. }) => Err(E::CoordinatorLoadInProgress),
            Some(Slot::Ready { epoch, shard }) => Ok(f(shard, *epoch)),
        }
    }

    /// Applies our own records once replicated, if the leadership they were written in lasts.
    fn apply(&self, index: i32, epoch: i32, base: i64, records: &[Record]) {
        let now = now_ms();
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(Slot::Ready { epoch: e, shard }) = slots.get_mut(&index) {
            if *e == epoch {
                for (i, (k, v)) in records.iter().enumerate() {
                    if let Err(err) = shard.replay(base + i as i64, k, v.as_deref(), now) {
                        warn!(partition = index, error = %err, "applying a coordinator record failed");
                    }
                }
            }
        }
    }
}

/// The offsets partition of a group, by the live partition count of the topic.
fn index_of(b: &Broker, group: &str) -> Result<i32, E> {
    match b.with_catalog(|c| c.topic(OFFSETS_TOPIC).map(|t| t.parts.len() as i32)) {
        Some(n) if n > 0 => Ok(partition_for(group, n)),
        _ => Err(E::CoordinatorNotAvailable),
    }
}

fn with_shard<T>(
    b: &Broker,
    group: &str,
    f: impl FnOnce(&mut Shard, i32) -> T,
) -> Result<(i32, T), E> {
    if group.is_empty() {
        return Err(E::InvalidGroupId);
    }
    let index = index_of(b, group)?;
    b.groups.with_index(index, f).map(|t| (index, t))
}

/// Creates `__consumer_offsets` if it does not exist yet; true once it exists.
pub async fn ensure_offsets_topic(b: &Broker) -> bool {
    if b.with_catalog(|c| c.topic(OFFSETS_TOPIC).is_some()) {
        return true;
    }
    // The cluster's size is its voters (a single node has none configured) or the brokers
    // that ever registered, whichever is larger: a cluster whose other brokers are still
    // starting gets COORDINATOR_NOT_AVAILABLE for a moment rather than an offsets topic with
    // too few replicas forever, and a single node needs no configuration.
    let size = b
        .with_catalog(|c| c.brokers().count())
        .max(b.settings.voters.len())
        .max(1);
    let rf = b
        .settings
        .offsets_topic_replication_factor
        .min(i16::try_from(size).unwrap_or(i16::MAX));
    let configs = [
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        ("segment.bytes".to_string(), (100 * 1024 * 1024).to_string()),
    ];
    let res = b
        .create_topic(
            OFFSETS_TOPIC,
            b.settings.offsets_topic_partitions,
            b.spread(rf),
            &configs,
            false,
        )
        .await;
    match res {
        Ok(()) => {
            info!(
                partitions = b.settings.offsets_topic_partitions,
                replication_factor = rf,
                "created {OFFSETS_TOPIC}"
            );
            true
        }
        Err(e) => {
            let exists = b.with_catalog(|c| c.topic(OFFSETS_TOPIC).is_some());
            if !exists {
                warn!(error = %e, "creating {OFFSETS_TOPIC} failed");
            }
            exists
        }
    }
}

/// The coordinator of `group`: (node, host, port) or why there is none.
pub async fn coordinator_of(b: &Broker, group: &str) -> Result<(i32, String, i32), E> {
    if !ensure_offsets_topic(b).await {
        return Err(E::CoordinatorNotAvailable);
    }
    let index = index_of(b, group)?;
    b.with_catalog(|c| {
        let leader = c
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.parts.get(index as usize))
            .map(|p| p.leader)
            .unwrap_or(-1);
        match c.broker(leader) {
            Some(info) if !info.fenced => Ok((leader, info.host.clone(), info.port)),
            _ => Err(E::CoordinatorNotAvailable),
        }
    })
}

/// Appends `records` to offsets partition `index` as its leader at `epoch`, waits until the
/// ISR has them, and applies them to the shard; the Kafka error otherwise.
async fn write(b: &Broker, index: i32, epoch: i32, records: Vec<Record>) -> Result<(), E> {
    if records.is_empty() {
        return Ok(());
    }
    let Some(p) = b.partition(OFFSETS_TOPIC, index) else {
        return Err(E::NotCoordinator);
    };
    let ts = now_ms() as i64;
    let recs: Vec<build::SimpleRecord> = records
        .iter()
        .map(|(k, v)| build::SimpleRecord {
            key: Some(k.clone()),
            value: v.clone(),
            headers: vec![],
            timestamp: ts,
        })
        .collect();
    let buf = build::batch(&recs, None);
    let (base, end) = {
        let Some((res, _)) = p.append_leading(epoch, now_ms(), &buf) else {
            return Err(coordinator_write_error(E::NotLeaderOrFollower));
        };
        let a = res.map_err(|e| {
            warn!(partition = index, error = %e, "appending coordinator records failed");
            coordinator_write_error(E::KafkaStorageError)
        })?;
        (a.base_offset, a.last_offset + 1)
    };
    b.appended.send_modify(|n| *n += 1);
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    if !b.settings.interval_flush() {
        p.wait_synced(end).await.map_err(|e| {
            warn!(partition = index, error = %e, "fsync of coordinator records failed");
            E::NotCoordinator
        })?;
    }
    crate::replica::wait_replicated(&p, end, epoch, deadline)
        .await
        .map_err(coordinator_write_error)?;
    b.groups.apply(index, epoch, base, &records);
    Ok(())
}

/// Writes group metadata records in the background (after timers and leaves).
fn write_later(b: &Arc<Broker>, index: i32, epoch: i32, records: Vec<Record>) {
    if records.is_empty() {
        return;
    }
    let b = b.clone();
    tokio::spawn(async move {
        if let Err(e) = write(&b, index, epoch, records).await {
            debug!(partition = index, error = ?e, "writing group metadata failed");
        }
    });
}

/// Loads offsets partition `index` for leader epoch `epoch`: replays it from its start.
async fn load(b: &Arc<Broker>, index: i32, epoch: i32) {
    let started = std::time::Instant::now();
    let Some(p) = b.partition(OFFSETS_TOPIC, index) else {
        return;
    };
    let mut shard = Shard::new(b.settings.group);
    shard.set_consumer_config(b.settings.consumer_group);
    let salt = skein_sys::uuid().as_u64_pair().0;
    shard.set_id_salt(salt | 1);
    let now = now_ms();
    let (mut next, end) = {
        let st = p.store.lock().expect("partition lock");
        (st.log().log_start_offset(), st.log().log_end_offset())
    };
    let (mut records, mut bad) = (0usize, 0usize);
    while next < end {
        let plan = p
            .store
            .lock()
            .expect("partition lock")
            .plan_fetch(next, Grant::single(OFFSETS_LOAD_READ_BYTES));
        let range = match plan {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                warn!(partition = index, error = ?e, "loading {OFFSETS_TOPIC} failed");
                return;
            }
        };
        let bytes: Bytes =
            match skein_sys::blocking(move || skein_storage::partition::read_range(&range)).await {
                Ok(Ok(b)) => b,
                _ => {
                    warn!(partition = index, "reading {OFFSETS_TOPIC} failed");
                    return;
                }
            };
        let mut pos = 0;
        let before = next;
        while pos < bytes.len() {
            let Ok(h) = batch::parse_header(&bytes[pos..]) else {
                break;
            };
            if pos + h.size > bytes.len() {
                break;
            }
            // A read may start inside a batch already loaded: skip what is behind `next`.
            if h.next_offset() > next {
                records += h.record_count.max(0) as usize;
                bad += coordinator::load_batch(&mut shard, &bytes[pos..pos + h.size], now);
            }
            next = next.max(h.next_offset());
            pos += h.size;
        }
        if next == before {
            break;
        }
    }
    if bad > 0 {
        warn!(
            partition = index,
            bad, "skipped records of {OFFSETS_TOPIC} that do not parse"
        );
    }
    let mut slots = b.groups.slots.lock().expect("slots lock");
    if matches!(slots.get(&index), Some(Slot::Loading { epoch: e }) if *e == epoch) {
        info!(
            partition = index,
            epoch,
            records,
            groups = shard.groups().count(),
            ms = started.elapsed().as_millis() as u64,
            "loaded {OFFSETS_TOPIC} partition"
        );
        slots.insert(
            index,
            Slot::Ready {
                epoch,
                shard: Box::new(shard),
            },
        );
    }
}

/// Runs the coordinator: loads partitions as leaderships start and fires group timers.
pub fn spawn(b: &Arc<Broker>) {
    let rx = b.groups.loads_rx.lock().expect("loads lock").take();
    let Some(mut rx) = rx else { return };
    let b2 = b.clone();
    let mut stop = b.shutting_down.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some((index, epoch)) => load(&b2, index, epoch).await,
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    });
    let b = b.clone();
    let mut stop = b.shutting_down.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expire = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let now = now_ms();
            let wall = now_ms() as i64;
            let expire = now.saturating_sub(last_expire) >= EXPIRE_EVERY_MS;
            if expire {
                last_expire = now;
            }
            let mut replies = Vec::new();
            let mut writes = Vec::new();
            let counts = topic_counts(&b);
            {
                let mut slots = b.groups.slots.lock().expect("slots lock");
                for (index, slot) in slots.iter_mut() {
                    if let Slot::Ready { epoch, shard } = slot {
                        replies.extend(shard.tick(now));
                        shard.tick_consumer(now, &counts);
                        let mut w = shard.metadata_writes(wall);
                        if expire {
                            w.extend(shard.expire(wall, b.settings.offsets_retention_ms));
                        }
                        writes.push((*index, *epoch, w));
                    }
                }
            }
            b.groups.deliver(replies);
            for (index, epoch, w) in writes {
                write_later(&b, index, epoch, w);
            }
        }
    });
}

/// Called from the broker's role changes for every partition.
pub fn note_role(b: &Broker, topic: &str, index: i32, role: &Role, epoch: i32) {
    if topic != OFFSETS_TOPIC {
        return;
    }
    let leading = matches!(role, Role::Leader(_)).then_some(epoch);
    b.groups.role_changed(index, leading);
}

// ---------------------------------------------------------------------------------------------
// APIs

/// JoinGroup: answered when the rebalance completes.
pub async fn join_group(
    b: &Arc<Broker>,
    req: JoinGroupRequest,
    ctx: &RequestContext,
) -> JoinGroupResponse {
    let version = ctx.api_version;
    let mut r = JoinGroupResponse::default();
    r.generation_id = -1;
    r.member_id = req.member_id.clone();
    let group = req.group_id.0.to_string();
    let session = req.session_timeout_ms;
    let rebalance = if version == 0 || req.rebalance_timeout_ms < 0 {
        session
    } else {
        req.rebalance_timeout_ms
    };
    let join = Join {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let mut rx = None;
    // Looked up before the shard lock: the catalog lock is taken before it elsewhere.
    let slot = index_of(b, &group).unwrap_or(-1);
    let res = with_shard(b, &group, |shard, epoch| {
        let (id, waiting) = b.groups.register(slot);
        rx = Some(waiting);
        if shard.is_active_consumer_group(&group) {
            // A KIP-848 group of that id is active: the classic protocol cannot join it.
            let replies = vec![Reply::Join {
                req: id,
                result: Err((
                    GroupError::InconsistentGroupProtocol,
                    join.member_id.clone(),
                )),
            }];
            return (id, epoch, replies, Vec::new());
        }
        let replies = shard.group_mut(&group).join(now_ms(), id, join);
        (id, epoch, replies, shard.metadata_writes(now_ms() as i64))
    });
    let (index, (id, epoch, replies, writes)) = match res {
        Ok(x) => x,
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    if writes.is_empty() {
        b.groups.deliver(replies);
    } else {
        // The group metadata this join changed (a static member's replacement, KIP-345) is
        // stored before anyone learns of it, as Kafka does: a coordinator failover before the
        // record is replicated would otherwise bring the replaced member id back after the new
        // process was told its own. In a task of its own: the answers are other members' too.
        let b2 = b.clone();
        tokio::spawn(async move {
            match write(&b2, index, epoch, writes).await {
                Ok(()) => b2.groups.deliver(replies),
                Err(e) => {
                    debug!(partition = index, error = ?e, "storing a join's group metadata failed");
                    b2.groups.fail(&replies, E::NotCoordinator);
                }
            }
        });
    }
    let wait = Duration::from_millis(rebalance.max(session).max(0) as u64 + 30_000);
    let answer = tokio::time::timeout(wait, rx.expect("registered")).await;
    b.groups.waiters.lock().expect("waiters lock").remove(&id);
    match answer {
        Ok(Ok(Ok(Reply::Join { result: Ok(j), .. }))) => {
            r.generation_id = j.generation;
            r.protocol_name = Some(s(j.protocol));
            if version >= 7 {
                r.protocol_type = Some(s(j.protocol_type));
            }
            r.leader = s(j.leader);
            r.member_id = s(j.member_id);
            r.members = j
                .members
                .into_iter()
                .map(|(id, inst, meta)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = s(id);
                    m.group_instance_id = inst.map(s);
                    m.metadata = Bytes::from(meta);
                    m
                })
                .collect();
        }
        Ok(Ok(Ok(Reply::Join {
            result: Err((e, member)),
            ..
        }))) => {
            r.error_code = group_error(e).code();
            r.member_id = s(member);
        }
        Ok(Ok(Ok(Reply::Sync { .. }))) => r.error_code = E::UnknownServerError.code(),
        Ok(Ok(Err(e))) => r.error_code = e.code(),
        Ok(Err(_)) => r.error_code = E::NotCoordinator.code(),
        Err(_) => r.error_code = E::RebalanceInProgress.code(),
    }
    r
}

/// SyncGroup: members get their assignment once the leader has sent it (and it is stored).
pub async fn sync_group(b: &Arc<Broker>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    let group = req.group_id.0.to_string();
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.as_ref().map(|i| i.as_str());
    let assignments: Vec<(String, Vec<u8>)> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    let mut rx = None;
    // Looked up before the shard lock: the catalog lock is taken before it elsewhere.
    let slot = index_of(b, &group).unwrap_or(-1);
    let res = with_shard(b, &group, |shard, epoch| {
        let Some(g) = shard.group(&group) else {
            return Err(E::UnknownMemberId);
        };
        let mismatch = |given: &Option<StrBytes>, ours: Option<&str>| {
            given
                .as_ref()
                .is_some_and(|x| ours.is_some_and(|o| o != x.as_str()))
        };
        if mismatch(&req.protocol_type, g.protocol_type())
            || mismatch(&req.protocol_name, g.protocol())
        {
            return Err(E::InconsistentGroupProtocol);
        }
        let (id, waiting) = b.groups.register(slot);
        rx = Some(waiting);
        let replies = shard.group_mut(&group).sync(
            now_ms(),
            id,
            &member,
            instance,
            req.generation_id,
            assignments,
        );
        let g = shard.group(&group).expect("exists");
        let names = (
            g.protocol_type().map(str::to_string),
            g.protocol().map(str::to_string),
        );
        let writes = shard.metadata_writes(now_ms() as i64);
        let mut storing = b.groups.storing.lock().expect("storing lock");
        // A member that syncs while its generation is being stored waits for the store, as
        // the leader does: nobody learns an assignment the log may not keep.
        let wait_store = writes.is_empty() && storing.contains_key(&group);
        if !writes.is_empty() {
            *storing.entry(group.clone()).or_default() += 1;
        }
        Ok((id, epoch, replies, writes, names, wait_store))
    });
    let (index, (id, epoch, mut replies, writes, (ptype, pname), wait_store)) = match res {
        Ok((i, Ok(x))) => (i, x),
        Ok((_, Err(e))) | Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    if wait_store {
        let mut rx = b.groups.stored.subscribe();
        let stored = async {
            while b
                .groups
                .storing
                .lock()
                .expect("storing lock")
                .contains_key(&group)
            {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(COMMIT_TIMEOUT * 2, stored)
            .await
            .is_err()
        {
            for rep in replies.iter_mut() {
                if let Reply::Sync { result, .. } = rep {
                    *result = Err(GroupError::RebalanceInProgress);
                }
            }
        }
    }
    if !writes.is_empty() {
        // The generation's assignment is stored before anyone learns it. The guard ends the
        // store's mark however this future ends (a client that goes away drops it mid-write).
        let _done = StoreGuard(&b.groups, &group);
        let res = write(b, index, epoch, writes).await;
        if let Err(e) = res {
            for rep in replies.iter_mut() {
                if let Reply::Sync { result, .. } = rep {
                    if result.is_ok() {
                        *result = Err(GroupError::RebalanceInProgress);
                    }
                }
            }
            debug!(group, error = ?e, "storing the group's assignment failed");
        }
    }
    b.groups.deliver(replies);
    let answer = tokio::time::timeout(Duration::from_secs(300), rx.expect("registered")).await;
    b.groups.waiters.lock().expect("waiters lock").remove(&id);
    match answer {
        Ok(Ok(Ok(Reply::Sync {
            result: Ok(assignment),
            ..
        }))) => {
            r.assignment = Bytes::from(assignment);
            if version >= 5 {
                r.protocol_type = ptype.map(s);
                r.protocol_name = pname.map(s);
            }
        }
        Ok(Ok(Ok(Reply::Sync { result: Err(e), .. }))) => r.error_code = group_error(e).code(),
        Ok(Ok(Ok(Reply::Join { .. }))) => r.error_code = E::UnknownServerError.code(),
        Ok(Ok(Err(e))) => r.error_code = e.code(),
        Ok(Err(_)) => r.error_code = E::NotCoordinator.code(),
        Err(_) => r.error_code = E::RebalanceInProgress.code(),
    }
    r
}

/// Ends one in-flight metadata write of a group when dropped.
struct StoreGuard<'a>(&'a Coordinator, &'a str);

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        {
            let mut storing = self.0.storing.lock().expect("storing lock");
            if let Some(n) = storing.get_mut(self.1) {
                *n -= 1;
                if *n == 0 {
                    storing.remove(self.1);
                }
            }
        }
        self.0.stored.send_modify(|n| *n += 1);
    }
}

/// Heartbeat.
pub fn heartbeat(b: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut r = HeartbeatResponse::default();
    let group = req.group_id.0.to_string();
    let res = with_shard(b, &group, |shard, _| {
        match shard.group_mut_if_exists(&group) {
            None => Err(GroupError::UnknownMemberId),
            Some(g) => g.heartbeat(
                now_ms(),
                req.member_id.as_str(),
                req.group_instance_id.as_ref().map(|i| i.as_str()),
                req.generation_id,
            ),
        }
    });
    r.error_code = match res {
        Ok((_, Ok(()))) => 0,
        Ok((_, Err(e))) => group_error(e).code(),
        Err(e) => e.code(),
    };
    r
}

/// LeaveGroup (one member before v3, a batch after).
pub fn leave_group(b: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let mut r = LeaveGroupResponse::default();
    let group = req.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let res = with_shard(b, &group, |shard, epoch| {
        let mut results = Vec::new();
        let mut replies = Vec::new();
        match shard.group_mut_if_exists(&group) {
            None => results = vec![Err(GroupError::UnknownMemberId); leaving.len()],
            Some(g) => {
                for (m, inst) in &leaving {
                    let (res, rep) = g.leave(now_ms(), m, inst.as_deref());
                    results.push(res);
                    replies.extend(rep);
                }
            }
        }
        (
            epoch,
            results,
            replies,
            shard.metadata_writes(now_ms() as i64),
        )
    });
    match res {
        Err(e) => r.error_code = e.code(),
        Ok((index, (epoch, results, replies, writes))) => {
            b.groups.deliver(replies);
            write_later(b, index, epoch, writes);
            if version >= 3 {
                r.members = leaving
                    .into_iter()
                    .zip(results)
                    .map(|((m, inst), res)| {
                        let mut mr = MemberResponse::default();
                        mr.member_id = s(m);
                        mr.group_instance_id = inst.map(s);
                        mr.error_code = res.err().map(|e| group_error(e).code()).unwrap_or(0);
                        mr
                    })
                    .collect();
            } else if let Some(Err(e)) = results.first() {
                r.error_code = group_error(*e).code();
            }
        }
    }
    r
}

/// OffsetCommit.
pub async fn offset_commit(b: &Arc<Broker>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut r = OffsetCommitResponse::default();
    let group = req.group_id.0.to_string();
    let commit_ms = now_ms() as i64;
    // Per partition: an error of its own, or a place in the commit.
    let mut valid: Vec<(String, i32, OffsetValue)> = Vec::new();
    let mut per: Vec<Vec<Option<E>>> = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let count = b.with_catalog(|c| c.topic(&name).map(|t| t.parts.len() as i32));
        per.push(
            t.partitions
                .iter()
                .map(|p| {
                    let meta = p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default();
                    if !count.is_some_and(|n| (0..n).contains(&p.partition_index)) {
                        Some(E::UnknownTopicOrPartition)
                    } else if meta.len() > MAX_METADATA {
                        Some(E::OffsetMetadataTooLarge)
                    } else {
                        valid.push((
                            name.clone(),
                            p.partition_index,
                            OffsetValue {
                                offset: p.committed_offset,
                                leader_epoch: p.committed_leader_epoch,
                                metadata: meta,
                                commit_ms,
                            },
                        ));
                        None
                    }
                })
                .collect(),
        );
    }
    let member = req.member_id.to_string();
    let res = with_shard(b, &group, |shard, epoch| {
        shard
            .commit(
                &group,
                &member,
                req.group_instance_id.as_ref().map(|i| i.as_str()),
                req.generation_id_or_member_epoch,
                &valid,
            )
            .map(|recs| (epoch, recs))
    });
    let outcome: Result<(), E> = match res {
        Err(e) => Err(e),
        Ok((_, Err(e))) => Err(group_error(e)),
        Ok((index, Ok((epoch, recs)))) => write(b, index, epoch, recs).await,
    };
    for (t, errs) in req.topics.iter().zip(per) {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        tr.topic_id = t.topic_id;
        tr.partitions = t
            .partitions
            .iter()
            .zip(errs)
            .map(|(p, own)| {
                let mut pr = OffsetCommitResponsePartition::default();
                pr.partition_index = p.partition_index;
                pr.error_code = match (own, outcome) {
                    (Some(e), _) | (None, Err(e)) => e.code(),
                    (None, Ok(())) => 0,
                };
                pr
            })
            .collect();
        r.topics.push(tr);
    }
    r
}

/// One group's committed offsets for OffsetFetch: (topic, [(partition, offset, epoch, meta)]).
type Fetched = Vec<(String, Vec<(i32, i64, i32, String)>)>;

fn fetch_group(
    b: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, E> {
    with_shard(b, group, |shard, _| match topics {
        None => {
            let mut out: Fetched = Vec::new();
            for ((t, p), c) in shard.offsets(group) {
                if out.last().is_none_or(|(lt, _)| lt != t) {
                    out.push((t.clone(), Vec::new()));
                }
                out.last_mut().expect("pushed").1.push((
                    *p,
                    c.value.offset,
                    c.value.leader_epoch,
                    c.value.metadata.clone(),
                ));
            }
            out
        }
        Some(ts) => ts
            .into_iter()
            .map(|(t, parts)| {
                let rows = parts
                    .into_iter()
                    .map(|p| match shard.offset(group, &t, p) {
                        Some(c) => (
                            p,
                            c.value.offset,
                            c.value.leader_epoch,
                            c.value.metadata.clone(),
                        ),
                        None => (p, -1, -1, String::new()),
                    })
                    .collect();
                (t, rows)
            })
            .collect(),
    })
    .map(|(_, f)| f)
}

/// OffsetFetch topics in either layout (v8+ batched, or older), every partition with `err`.
macro_rules! fetched_topics {
    ($rows:expr, $topic:ty, $part:ty, $err:expr) => {
        $rows
            .into_iter()
            .map(|(t, rows)| {
                let mut tr = <$topic>::default();
                tr.name = TopicName(s(t));
                tr.partitions = rows
                    .into_iter()
                    .map(|(p, o, e, m)| {
                        let mut pr = <$part>::default();
                        pr.partition_index = p;
                        pr.committed_offset = o;
                        pr.committed_leader_epoch = e;
                        pr.metadata = Some(s(m));
                        pr.error_code = $err;
                        pr
                    })
                    .collect();
                tr
            })
            .collect()
    };
}

/// OffsetFetch (one group before v8, a batch after).
pub fn offset_fetch(b: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut r = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            let topics: Option<Vec<(String, Vec<i32>)>> = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            match fetch_group(b, g.group_id.as_str(), topics) {
                Err(e) => gr.error_code = e.code(),
                Ok(f) => {
                    gr.topics = fetched_topics!(
                        f,
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions,
                        0
                    )
                }
            }
            r.groups.push(gr);
        }
        return r;
    }
    let topics: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let wanted = topics.clone();
    match fetch_group(b, req.group_id.as_str(), topics) {
        Err(e) => {
            if version >= 2 {
                r.error_code = e.code();
            }
            // Before v2 the error rides on every partition asked for.
            let rows: Fetched = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, parts)| {
                    (
                        t,
                        parts
                            .into_iter()
                            .map(|p| (p, -1, -1, String::new()))
                            .collect(),
                    )
                })
                .collect();
            r.topics = fetched_topics!(
                rows,
                OffsetFetchResponseTopic,
                OffsetFetchResponsePartition,
                e.code()
            );
        }
        Ok(f) => {
            r.topics = fetched_topics!(f, OffsetFetchResponseTopic, OffsetFetchResponsePartition, 0)
        }
    }
    r
}

/// ListGroups: the groups this broker coordinates.
pub fn list_groups(b: &Broker, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut r = ListGroupsResponse::default();
    let slots = b.groups.slots.lock().expect("slots lock");
    if slots.values().any(|s| matches!(s, Slot::Loading { .. })) {
        r.error_code = E::CoordinatorLoadInProgress.code();
    }
    let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
    let wanted = |kind: &str, state: &str| {
        (req.types_filter.is_empty()
            || req
                .types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(kind)))
            && (states.is_empty() || states.contains(&state.to_lowercase()))
    };
    for slot in slots.values() {
        let Slot::Ready { shard, .. } = slot else {
            continue;
        };
        // (id, protocol type, state, group type) of classic and KIP-848 groups alike.
        let classic = shard.groups().map(|g| {
            let ptype = g.protocol_type().unwrap_or_default();
            (g.id(), ptype, g.state().name(), "classic")
        });
        let consumer = shard
            .consumer_groups()
            .map(|g| (g.id(), "consumer", g.state_name(), "consumer"));
        for (id, ptype, state, kind) in classic.chain(consumer) {
            if !wanted(kind, state) {
                continue;
            }
            let mut lg = ListedGroup::default();
            lg.group_id = GroupId(s(id));
            lg.protocol_type = s(ptype);
            if version >= 4 {
                lg.group_state = s(state);
            }
            if version >= 5 {
                lg.group_type = s(kind);
            }
            r.groups.push(lg);
        }
    }
    r
}

/// One member as DescribeGroups reports it.
fn described_member(
    id: &str,
    instance_id: &Option<String>,
    client_id: &str,
    client_host: &str,
    metadata: Vec<u8>,
    assignment: Vec<u8>,
) -> DescribedGroupMember {
    let mut dm = DescribedGroupMember::default();
    dm.member_id = s(id);
    dm.group_instance_id = instance_id.clone().map(s);
    dm.client_id = s(client_id);
    dm.client_host = s(client_host);
    dm.member_metadata = Bytes::from(metadata);
    dm.member_assignment = Bytes::from(assignment);
    dm
}

/// DescribeGroups.
pub fn describe_groups(
    b: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut r = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.authorized_operations = i32::MIN;
        let res = with_shard(b, id.as_str(), |shard, _| {
            if let Some(cg) = shard
                .consumer_group(id.as_str())
                .filter(|cg| cg.members().next().is_some())
            {
                // A KIP-848 group, described the classic way (assignments as
                // ConsumerProtocolAssignment bytes) for tools that only know DescribeGroups.
                d.group_state = s(cg.state_name());
                d.protocol_type = s("consumer");
                d.protocol_data = s("uniform");
                d.members = cg
                    .members()
                    .map(|m| {
                        let assigned =
                            consumer_protocol_assignment(m.assigned.difference(&m.revoking));
                        described_member(
                            &m.id,
                            &m.instance_id,
                            &m.client_id,
                            &m.client_host,
                            Vec::new(),
                            assigned,
                        )
                    })
                    .collect();
                return true;
            }
            let Some(g) = shard.group(id.as_str()) else {
                return false;
            };
            d.group_state = s(g.state().name());
            d.protocol_type = s(g.protocol_type().unwrap_or_default());
            let protocol = g.protocol().unwrap_or_default().to_string();
            d.protocol_data = s(
                if g.state() == GroupState::Stable || g.state() == GroupState::CompletingRebalance {
                    protocol.clone()
                } else {
                    String::new()
                },
            );
            d.members = g
                .members()
                .map(|m| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default();
                    let assignment = if g.state() == GroupState::Stable {
                        m.assignment.clone()
                    } else {
                        Vec::new()
                    };
                    described_member(
                        &m.id,
                        &m.instance_id,
                        &m.client_id,
                        &m.client_host,
                        metadata,
                        assignment,
                    )
                })
                .collect();
            true
        });
        match res {
            Err(e) => d.error_code = e.code(),
            Ok((_, true)) => {}
            Ok((_, false)) => {
                d.group_state = s("Dead");
                if version >= 6 {
                    d.error_code = E::GroupIdNotFound.code();
                    d.error_message = Some(s(format!("group '{}' not found", id.as_str())));
                }
            }
        }
        r.groups.push(d);
    }
    r
}

/// ConsumerProtocolAssignment v0 bytes of `tps` (by topic, no user data).
fn consumer_protocol_assignment<'a>(tps: impl Iterator<Item = &'a (String, i32)>) -> Vec<u8> {
    let mut by: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by.entry(t.as_str()).or_default().push(*p);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(by.len() as i32).to_be_bytes());
    for (t, ps) in by {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// DeleteGroups: only groups without members; their offsets go too.
pub async fn delete_groups(b: &Arc<Broker>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut d = DeletableGroupResult::default();
        d.group_id = id.clone();
        let res = with_shard(b, id.as_str(), |shard, epoch| {
            shard.delete_group(id.as_str()).map(|recs| (epoch, recs))
        });
        d.error_code = match res {
            Err(e) => e.code(),
            Ok((_, Err(e))) => group_error(e).code(),
            Ok((index, Ok((epoch, recs)))) => match write(b, index, epoch, recs).await {
                Ok(()) => 0,
                Err(e) => e.code(),
            },
        };
        r.results.push(d);
    }
    r
}

/// OffsetDelete: removes committed offsets of partitions an active group does not consume.
pub async fn offset_delete(b: &Arc<Broker>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut r = OffsetDeleteResponse::default();
    let group = req.group_id.0.to_string();
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let res = with_shard(b, &group, |shard, epoch| {
        shard.delete_offsets(&group, &parts).map(|x| (epoch, x))
    });
    let per = match res {
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
        Ok((_, Err(e))) => {
            r.error_code = group_error(e).code();
            return r;
        }
        Ok((index, Ok((epoch, per)))) => {
            let recs: Vec<Record> = per.iter().filter_map(|(_, rec)| rec.clone()).collect();
            if let Err(e) = write(b, index, epoch, recs).await {
                r.error_code = e.code();
                return r;
            }
            per
        }
    };
    let mut i = 0;
    for t in &req.topics {
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            if let Err(e) = per[i].0 {
                pr.error_code = group_error(e).code();
            }
            i += 1;
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// KIP-848

/// Partition counts of every topic (the server-side assignor's view of the cluster).
fn topic_counts(b: &Broker) -> BTreeMap<String, i32> {
    b.with_catalog(|c| {
        c.topics()
            .map(|t| (t.name.clone(), t.parts.len() as i32))
            .collect()
    })
}

fn topic_ids(b: &Broker) -> BTreeMap<String, uuid::Uuid> {
    b.with_catalog(|c| {
        c.topics()
            .map(|t| (t.name.clone(), uuid::Uuid::from_bytes(t.id)))
            .collect()
    })
}

/// Topic partitions grouped by topic id, for heartbeat and describe answers.
fn by_topic_id(
    tps: impl IntoIterator<Item = (String, i32)>,
    ids: &BTreeMap<String, uuid::Uuid>,
) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        out.entry(t).or_default().push(p);
    }
    out.into_iter()
        .filter_map(|(t, ps)| ids.get(&t).map(|id| (*id, t, ps)))
        .collect()
}

/// ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile, leave.
pub fn consumer_group_heartbeat(
    b: &Broker,
    req: ConsumerGroupHeartbeatRequest,
    ctx: &RequestContext,
) -> ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.member_epoch = -1;
    r.heartbeat_interval_ms = b.settings.consumer_group.heartbeat_interval_ms;
    let group = req.group_id.0.to_string();
    if req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|x| !x.is_empty())
    {
        r.error_code = E::InvalidRequest.code();
        r.error_message = Some(s(
            "regular-expression subscriptions are not supported by this broker; subscribe by topic names",
        ));
        return r;
    }
    if req.member_epoch == 0 && req.subscribed_topic_names.is_none() {
        r.error_code = E::InvalidRequest.code();
        r.error_message = Some(s("a joining member must give its subscribed topics"));
        return r;
    }
    if req.member_epoch == 0 && req.rebalance_timeout_ms < 0 {
        r.error_code = E::InvalidRequest.code();
        r.error_message = Some(s("a joining member must give its rebalance timeout"));
        return r;
    }
    let ids = topic_ids(b);
    let names: BTreeMap<uuid::Uuid, String> = ids.iter().map(|(n, i)| (*i, n.clone())).collect();
    let hb = CgHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|x| x.to_string()),
        rack_id: req.rack_id.as_ref().map(|x| x.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .filter_map(|tp| names.get(&tp.topic_id).map(|n| (n, &tp.partitions)))
                .flat_map(|(n, ps)| ps.iter().map(move |p| (n.clone(), *p)))
                .collect()
        }),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host(),
    };
    let counts = topic_counts(b);
    let res = with_shard(b, &group, |shard, _| {
        shard
            .consumer_group_mut(&group)
            .map_err(group_error)
            .and_then(|g| {
                g.heartbeat(now_ms(), hb, &counts)
                    .map_err(consumer_group_error)
            })
    });
    match res {
        Err(e) | Ok((_, Err(e))) => {
            r.error_code = e.code();
            if e == E::GroupIdNotFound {
                r.error_message = Some(s(format!(
                    "group '{group}' is a classic group with members"
                )));
            }
        }
        Ok((_, Ok(beat))) => {
            r.member_id = Some(s(beat.member_id));
            r.member_epoch = beat.member_epoch;
            if let Some(assigned) = beat.assignment.filter(|_| beat.member_epoch >= 0) {
                let mut a = Assignment::default();
                a.topic_partitions = by_topic_id(assigned, &ids)
                    .into_iter()
                    .map(|(id, _, ps)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = ps;
                        tp
                    })
                    .collect();
                r.assignment = Some(a);
            }
        }
    }
    r
}

/// ConsumerGroupDescribe (KIP-848 groups).
pub fn consumer_group_describe(
    b: &Broker,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup as Described, Member, TopicPartitions,
    };
    let ids = topic_ids(b);
    let assignment = |tps: Vec<(String, i32)>| {
        let mut a = Assignment::default();
        a.topic_partitions = by_topic_id(tps, &ids)
            .into_iter()
            .map(|(id, name, ps)| {
                let mut tp = TopicPartitions::default();
                tp.topic_id = id;
                tp.topic_name = TopicName(s(name));
                tp.partitions = ps;
                tp
            })
            .collect();
        a
    };
    let mut r = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids {
        let mut d = Described::default();
        d.group_id = id.clone();
        d.authorized_operations = i32::MIN;
        let res = with_shard(b, id.as_str(), |shard, _| {
            let Some(g) = shard.consumer_group(id.as_str()) else {
                return Err(if shard.group(id.as_str()).is_some() {
                    (
                        E::GroupIdNotFound,
                        format!("group '{}' is not a consumer group", id.as_str()),
                    )
                } else {
                    (
                        E::GroupIdNotFound,
                        format!("group '{}' not found", id.as_str()),
                    )
                });
            };
            d.group_state = s(g.state_name());
            d.group_epoch = g.group_epoch();
            d.assignment_epoch = g.assignment_epoch();
            d.assignor_name = s("uniform");
            d.members = g
                .members()
                .map(|m| {
                    let mut dm = Member::default();
                    dm.member_id = s(m.id.clone());
                    dm.instance_id = m.instance_id.clone().map(s);
                    dm.rack_id = m.rack_id.clone().map(s);
                    dm.member_epoch = m.epoch;
                    dm.client_id = s(m.client_id.clone());
                    dm.client_host = s(m.client_host.clone());
                    dm.subscribed_topic_names = m
                        .subscribed
                        .iter()
                        .map(|t| TopicName(s(t.clone())))
                        .collect();
                    dm.assignment = assignment(m.assigned.iter().cloned().collect());
                    dm.target_assignment = assignment(g.target_of(&m.id).cloned().collect());
                    dm.member_type = 1;
                    dm
                })
                .collect();
            Ok(())
        });
        match res {
            Err(e) => d.error_code = e.code(),
            Ok((_, Err((e, msg)))) => {
                d.error_code = e.code();
                d.error_message = Some(s(msg));
            }
            Ok((_, Ok(()))) => {}
        }
        r.groups.push(d);
    }
    r
}
