//! Partition replication in the shell: each partition's role (leader with its
//! [`Leader`] state, follower of a given leader and epoch, or neither), the fetcher tasks that
//! copy leaders' logs (one per source broker, all its partitions in one Fetch), the ISR ticker,
//! and the acks=all wait on the high watermark.
//!
//! Invariants: a partition's role changes only from committed metadata (`Broker::reconcile`);
//! a follower appends only batches fetched from the leader of its current epoch, truncates
//! before appending when the leader says its log diverges, and fsyncs what it appended before
//! it fetches again (unless the interval flush policy is on), so the offset it reports is
//! durable; consumers never read at or above the high watermark; a leader counts only its
//! fsynced end towards the high watermark (its written end under the interval flush policy),
//! the rule `skein_core::replica` states (`Partition::counted_end`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;
use skein_core::catalog::MetadataRecord;
use skein_core::log::committed_len;
use skein_core::replication::{follower_hw, truncation_offset, Leader, ReplicationConfig};
use tracing::{debug, info, warn};

use crate::broker::{now_ms, Broker, Partition};
use skein_client::Client;

use crate::limits::{
    REPLICA_CONNECT_BACKOFF, REPLICA_CONNECT_TIMEOUT, REPLICA_FETCH_PARTITION_BYTES,
    REPLICA_FETCH_RESPONSE_BYTES, REPLICA_FETCH_VERSION, REPLICA_FETCH_WAIT_MS,
    REPLICA_IDLE_BACKOFF, REPLICA_REQUEST_SLACK_MS, REPLICA_RETRY_BACKOFF,
};

/// A partition's replication role on this broker.
#[derive(Debug)]
pub enum Role {
    /// This broker leads the partition.
    Leader(Box<Leader>),
    /// This broker copies `leader`'s log at `epoch`.
    Follower {
        /// The leader's broker id.
        leader: i32,
        /// The leader epoch.
        epoch: i32,
    },
    /// No leader is known (or this broker holds no replica yet).
    Idle,
}

/// A partition's role and high watermark.
#[derive(Debug)]
pub struct Repl {
    /// The role.
    pub role: Role,
    /// The high watermark as a follower last learned it (the leader keeps its own).
    pub follower_hw: i64,
}

impl Repl {
    /// A fresh partition: no role yet.
    pub fn new() -> Self {
        Repl {
            role: Role::Idle,
            follower_hw: 0,
        }
    }

    /// The high watermark known here.
    pub fn hw(&self) -> i64 {
        match &self.role {
            Role::Leader(l) => l.hw(),
            _ => self.follower_hw,
        }
    }

    /// The leader state, when this broker leads at `epoch`.
    pub fn leading(&mut self, epoch: i32) -> Option<&mut Leader> {
        match &mut self.role {
            Role::Leader(l) if l.leader_epoch() == epoch => Some(l),
            _ => None,
        }
    }
}

impl Default for Repl {
    fn default() -> Self {
        Self::new()
    }
}

/// Replication settings for a partition of a topic with `min_insync` min.insync.replicas.
pub fn replication_config(b: &Broker, min_insync: u32) -> ReplicationConfig {
    ReplicationConfig {
        lag_time_max_ms: b.settings.replica_lag_time_max_ms,
        min_insync_replicas: min_insync as usize,
        isr_retry_ms: b.settings.replica_lag_time_max_ms.clamp(1000, 5000),
    }
}

/// Why an acks=all write was not acknowledged.
pub fn wait_error_message(e: E) -> &'static str {
    match e {
        E::NotEnoughReplicasAfterAppend => {
            "the ISR shrank below min.insync.replicas after the write was appended"
        }
        E::RequestTimedOut => "the write was not replicated to the ISR within the request timeout",
        _ => "this broker stopped leading the partition before the write was replicated",
    }
}

/// Waits until the high watermark covers `end` while this broker still leads at `epoch`.
pub async fn wait_replicated(
    p: &Partition,
    end: i64,
    epoch: i32,
    deadline: tokio::time::Instant,
) -> Result<(), E> {
    let mut rx = p.repl_changed.subscribe();
    loop {
        rx.borrow_and_update();
        {
            let mut r = p.repl.lock().expect("repl lock");
            match r.leading(epoch) {
                None => return Err(E::NotLeaderOrFollower),
                Some(l) if l.hw() >= end => return Ok(()),
                Some(l) if l.isr().len() < l.config().min_insync_replicas => {
                    return Err(E::NotEnoughReplicasAfterAppend)
                }
                Some(_) => {}
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Err(E::NotLeaderOrFollower) },
            _ = tokio::time::sleep_until(deadline) => return Err(E::RequestTimedOut),
        }
    }
}

/// Cuts fetched bytes before the first batch at or above `hw` (consumers read committed
/// records only).
pub fn cut_at_hw(bytes: Bytes, hw: i64) -> Bytes {
    let len = committed_len(&bytes, hw);
    bytes.slice(..len)
}

/// Proposes the ISR changes leaders want now (every tick).
pub async fn tick_isr(b: &Arc<Broker>) {
    let now = b.mono_ms();
    let mut proposals = Vec::new();
    for p in b.all_partitions() {
        let mut r = p.repl.lock().expect("repl lock");
        if let Role::Leader(l) = &mut r.role {
            let before = l.isr().to_vec();
            if let Some(prop) = l.tick(now) {
                info!(topic = %p.topic, partition = p.index, from = ?before, to = ?prop.isr,
                    "proposing an ISR change");
                proposals.push(MetadataRecord::IsrChanged {
                    topic: p.topic.clone(),
                    partition: p.index,
                    leader_epoch: prop.leader_epoch,
                    partition_epoch: prop.partition_epoch,
                    isr: prop.isr,
                });
            }
        }
    }
    for rec in proposals {
        let b = b.clone();
        tokio::spawn(async move {
            if let Err(e) = b.propose(&rec).await {
                debug!(error = %e, "ISR change not committed; the leader proposes it again");
            }
        });
    }
}

/// Partitions following `leader` now, with the epoch they follow.
fn following(b: &Broker, leader: i32) -> Vec<(Arc<Partition>, i32)> {
    b.all_partitions()
        .into_iter()
        .filter_map(|p| {
            let r = p.repl.lock().expect("repl lock");
            match r.role {
                Role::Follower { leader: l, epoch } if l == leader => Some((p.clone(), epoch)),
                _ => None,
            }
        })
        .collect()
}

/// Copies every partition this broker follows on `leader`, until none is left or the broker
/// shuts down.
pub async fn run_fetcher(b: Arc<Broker>, leader: i32) {
    let me = b.settings.node_id;
    let mut client: Option<Client> = None;
    let stop = b.shutting_down.subscribe();
    info!(leader, "replica fetcher started");
    let mut round = 0usize;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut parts = following(&b, leader);
        if parts.is_empty() {
            if b.release_fetcher(leader, || following(&b, leader).is_empty()) {
                info!(leader, "replica fetcher stopped: nothing left to follow");
                return;
            }
            continue;
        }
        // The leader fills a response in request order (KIP-74), so each partition leads the
        // request in turn: busy partitions listed first cannot take every response's budget,
        // and a batch over the partition limit is fetched once it comes first.
        let n = parts.len();
        parts.rotate_left(round % n);
        round = round.wrapping_add(1);
        let addr = b.with_catalog(|c| {
            c.broker(leader)
                .filter(|x| !x.fenced)
                .map(|x| format!("{}:{}", x.host, x.port))
        });
        let Some(addr) = addr else {
            tokio::time::sleep(REPLICA_RETRY_BACKOFF).await;
            continue;
        };
        if client.as_ref().is_none_or(|c| c.addr() != addr) {
            // Connecting (and ApiVersions) is bounded, so a leader that went silent cannot hold
            // the fetcher past the next metadata change.
            match Client::connect_with(&addr, "skein-replica-fetcher", REPLICA_CONNECT_TIMEOUT)
                .await
            {
                Ok(mut c) => {
                    c.set_request_timeout(Duration::from_millis(
                        REPLICA_FETCH_WAIT_MS as u64 + REPLICA_REQUEST_SLACK_MS,
                    ));
                    client = Some(c);
                }
                Err(e) => {
                    debug!(leader, error = %e, "cannot reach the leader to fetch");
                    tokio::time::sleep(REPLICA_CONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let req = build_fetch(me, &parts);
        let c = client.as_mut().expect("connected above");
        let resp = match c.send(req, REPLICA_FETCH_VERSION).await {
            Ok(r) => r,
            Err(e) => {
                debug!(leader, error = %e, "replica fetch failed");
                client = None;
                tokio::time::sleep(REPLICA_RETRY_BACKOFF).await;
                continue;
            }
        };
        let mut progressed = false;
        let mut to_sync = Vec::new();
        for t in resp.responses {
            for pd in t.partitions {
                let Some((p, epoch)) = parts
                    .iter()
                    .find(|(p, _)| p.topic == t.topic.0.as_str() && p.index == pd.partition_index)
                else {
                    continue;
                };
                match apply_fetched(p, *epoch, &pd) {
                    Ok(Some(end)) => {
                        progressed = true;
                        to_sync.push((p.clone(), end));
                    }
                    Ok(None) => progressed |= pd.error_code == 0,
                    Err(e) => {
                        warn!(topic = %p.topic, partition = p.index, error = %e,
                            "applying fetched data failed");
                        // Batches before the failing one may have been appended: they are
                        // synced like any others before the next fetch reports the log end.
                        let end = p
                            .store
                            .lock()
                            .expect("partition lock")
                            .log()
                            .log_end_offset();
                        to_sync.push((p.clone(), end));
                    }
                }
            }
        }
        if !b.settings.interval_flush() {
            // Group commit: the partitions appended to sync together, before the next fetch
            // reports their new ends to the leader.
            let syncs = to_sync
                .iter()
                .map(|(p, end)| async move { (p, p.wait_synced(*end).await) });
            for (p, res) in futures::future::join_all(syncs).await {
                if let Err(e) = res {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "follower fsync failed");
                }
            }
        }
        if !progressed {
            tokio::time::sleep(REPLICA_IDLE_BACKOFF).await;
        }
    }
}

fn build_fetch(me: i32, parts: &[(Arc<Partition>, i32)]) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(me);
    req.max_wait_ms = REPLICA_FETCH_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = REPLICA_FETCH_RESPONSE_BYTES;
    req.session_epoch = -1;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (p, epoch) in parts {
        let (end, last_epoch, start) = {
            let st = p.store.lock().expect("partition lock");
            let log = st.log();
            (
                log.log_end_offset(),
                log.last_epoch(),
                log.log_start_offset(),
            )
        };
        let mut fp = FetchPartition::default();
        fp.partition = p.index;
        fp.current_leader_epoch = *epoch;
        fp.fetch_offset = end;
        fp.last_fetched_epoch = last_epoch;
        fp.log_start_offset = start;
        fp.partition_max_bytes = REPLICA_FETCH_PARTITION_BYTES;
        match topics.iter_mut().find(|t| t.topic.0.as_str() == p.topic) {
            Some(t) => t.partitions.push(fp),
            None => {
                let mut t = FetchTopic::default();
                t.topic = TopicName(StrBytes::from_string(p.topic.clone()));
                t.partitions.push(fp);
                topics.push(t);
            }
        }
    }
    req.topics = topics;
    req
}

/// Applies one partition's answer: truncation on divergence, a reset when the leader's log
/// starts past ours, appended batches and the high watermark. Returns the new log end when
/// something was appended.
fn apply_fetched(
    p: &Partition,
    epoch: i32,
    pd: &kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<Option<i64>, skein_storage::partition::StorageError> {
    let now = now_ms();
    let mut st = p.store.lock().expect("partition lock");
    {
        // The role may have changed while the fetch was out.
        let r = p.repl.lock().expect("repl lock");
        if !matches!(r.role, Role::Follower { epoch: e, .. } if e == epoch) {
            return Ok(None);
        }
    }
    let code = pd.error_code;
    if code == E::OffsetOutOfRange.code() {
        let log = st.log();
        if log.log_end_offset() < pd.log_start_offset {
            warn!(topic = %p.topic, partition = p.index, from = log.log_end_offset(),
                to = pd.log_start_offset, "behind the leader's log start; restarting the log there");
            st.reset_to(pd.log_start_offset, now)?;
            p.reset_synced(st.log().log_end_offset());
        }
        return Ok(None);
    }
    if code != 0 {
        debug!(topic = %p.topic, partition = p.index, code, "replica fetch partition error");
        return Ok(None);
    }
    let d = &pd.diverging_epoch;
    if d.epoch >= 0 || d.end_offset >= 0 {
        let cut = truncation_offset(st.log(), d.epoch, d.end_offset);
        info!(topic = %p.topic, partition = p.index, from = st.log().log_end_offset(), to = cut,
            leader_epoch = d.epoch, "log diverged from the leader's; truncating");
        st.truncate_to(cut, now)?;
        p.reset_synced(st.log().log_end_offset());
        return Ok(None);
    }
    let appended = match &pd.records {
        // Batches already held (a repeated answer) are skipped; the rest go in one write per
        // run that lands in one segment.
        Some(records) => st.append_replicated_all(now, records)?,
        None => false,
    };
    let end = st.log().log_end_offset();
    let changed = {
        let mut r = p.repl.lock().expect("repl lock");
        let hw = follower_hw(pd.high_watermark, end).max(0);
        let changed = hw != r.follower_hw;
        r.follower_hw = hw;
        changed
    };
    drop(st);
    if changed {
        p.repl_changed.send_modify(|n| *n += 1);
    }
    Ok(appended.then_some(end))
}
