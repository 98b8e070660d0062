//! Partition replication in the shell: the fetcher tasks that copy leaders' logs (one per
//! source broker, all its partitions in one Fetch) and the ISR ticker. What a follower fetches
//! and how it applies the answer, and which ISR changes a leader proposes, are decided by each
//! partition's core replica (`crate::partition`); this module carries the fetches and the
//! proposals over the network.
//!
//! Invariants: a partition is fetched only when its replica gives a fetch position (it follows
//! that leader and, under fsync-before-ack, what it would report is durable); a fetcher fsyncs
//! what the replica asks before it fetches again; it stops once no partition follows its leader.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as E;
use skein_core::catalog::MetadataRecord;
use skein_core::replica::{FetchPosition, FetchReply, Input};
use skein_core::replication::ReplicationConfig;
use tracing::{debug, info, warn};

use std::future::Future;

use crate::partition::{Data, Partition};
use skein_client::Client;
use tokio::sync::watch;

use crate::limits::{
    REPLICA_CONNECT_BACKOFF, REPLICA_CONNECT_TIMEOUT, REPLICA_FETCH_PARTITION_BYTES,
    REPLICA_FETCH_RESPONSE_BYTES, REPLICA_FETCH_VERSION, REPLICA_FETCH_WAIT_MS,
    REPLICA_IDLE_BACKOFF, REPLICA_REQUEST_SLACK_MS, REPLICA_RETRY_BACKOFF,
};

/// What the replica fetchers and the ISR ticker need of the broker that runs them.
pub trait ReplicaHost: Send + Sync + 'static {
    /// This broker's id.
    fn node_id(&self) -> i32;
    /// Every open partition.
    fn partitions(&self) -> Vec<Arc<Partition>>;
    /// `host:port` of a broker that is registered and not fenced.
    fn broker_address(&self, id: i32) -> Option<String>;
    /// Turns true when the broker shuts down.
    fn stopping(&self) -> watch::Receiver<bool>;
    /// A fetcher for `leader` found nothing to follow: it stops (true) unless `still_empty`
    /// says otherwise under the lock that starting a fetcher takes.
    fn release_fetcher(&self, leader: i32, still_empty: impl FnOnce() -> bool) -> bool;
    /// Proposes a metadata record to the quorum: whether it committed.
    fn propose_record(
        &self,
        rec: MetadataRecord,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Replication settings for a partition of a topic with `min_insync` min.insync.replicas,
/// on a broker whose replica.lag.time.max.ms is `lag_ms`.
pub fn replication_config(lag_ms: u64, min_insync: u32) -> ReplicationConfig {
    ReplicationConfig {
        lag_time_max_ms: lag_ms,
        min_insync_replicas: min_insync as usize,
        isr_retry_ms: lag_ms.clamp(1000, 5000),
    }
}

/// Ticks every partition's replica (ISR changes, acks=all timeouts) and proposes the ISR
/// changes leaders want now.
pub async fn tick_isr<H: ReplicaHost>(b: &Arc<H>) {
    let mut proposals = Vec::new();
    for p in b.partitions() {
        let fx = p.drive(Input::Tick, Data::None);
        for prop in fx.proposals {
            info!(topic = %p.topic, partition = p.index, to = ?prop.isr, "proposing an ISR change");
            proposals.push(MetadataRecord::IsrChanged {
                topic: p.topic.clone(),
                partition: p.index,
                leader_epoch: prop.leader_epoch,
                partition_epoch: prop.partition_epoch,
                isr: prop.isr,
            });
        }
    }
    for rec in proposals {
        let b = b.clone();
        tokio::spawn(async move {
            if let Err(e) = b.propose_record(rec).await {
                debug!(error = %e, "ISR change not committed; the leader proposes it again");
            }
        });
    }
}

/// Partitions following `leader` now that may fetch (their reported end is as durable as the
/// flush policy promises), with where they fetch from.
fn following(b: &impl ReplicaHost, leader: i32) -> Vec<(Arc<Partition>, FetchPosition)> {
    b.partitions()
        .into_iter()
        .filter_map(|p| {
            let st = p.store.lock().expect("partition lock");
            let pos = p.replica().fetch_position(st.log())?;
            drop(st);
            (pos.leader == leader).then_some((p, pos))
        })
        .collect()
}

/// Whether any partition still follows `leader` (fetching now or once synced).
fn follows(b: &impl ReplicaHost, leader: i32) -> bool {
    b.partitions()
        .iter()
        .any(|p| p.replica().following().is_some_and(|(l, _)| l == leader))
}

/// Copies every partition this broker follows on `leader`, until none is left or the broker
/// shuts down.
pub async fn run_fetcher<H: ReplicaHost>(b: Arc<H>, leader: i32) {
    let me = b.node_id();
    let mut client: Option<Client> = None;
    let stop = b.stopping();
    info!(leader, "replica fetcher started");
    let mut round = 0usize;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut parts = following(b.as_ref(), leader);
        if parts.is_empty() {
            if b.release_fetcher(leader, || !follows(b.as_ref(), leader)) {
                info!(leader, "replica fetcher stopped: nothing left to follow");
                return;
            }
            // Partitions that follow but wait for an fsync before they report their end.
            tokio::time::sleep(REPLICA_IDLE_BACKOFF).await;
            continue;
        }
        // The leader fills a response in request order (KIP-74), so each partition leads the
        // request in turn: busy partitions listed first cannot take every response's budget,
        // and a batch over the partition limit is fetched once it comes first.
        let n = parts.len();
        parts.rotate_left(round % n);
        round = round.wrapping_add(1);
        let addr = b.broker_address(leader);
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
        // Whether data or a truncation came back; if not, and the leader answered with
        // partition errors (at once, without its long-poll wait) or nothing, fetching again at
        // once would spin.
        let (mut brought, mut errored, mut answered) = (false, false, false);
        let mut to_sync = Vec::new();
        for t in resp.responses {
            for pd in t.partitions {
                let Some((p, pos)) = parts
                    .iter()
                    .find(|(p, _)| p.topic == t.topic.0.as_str() && p.index == pd.partition_index)
                else {
                    continue;
                };
                let d = &pd.diverging_epoch;
                answered = true;
                errored |= pd.error_code != 0;
                brought |= pd.error_code == 0
                    && (pd.records.as_ref().is_some_and(|r| !r.is_empty())
                        || d.epoch >= 0
                        || d.end_offset >= 0);
                let input = Input::FetchResponse {
                    leader_epoch: pos.leader_epoch,
                    reply: fetch_reply(&pd),
                };
                let empty = Bytes::new();
                let records = pd.records.as_ref().unwrap_or(&empty);
                let fx = p.drive(input, Data::Fetched(records));
                if let Some(e) = &fx.storage_error {
                    warn!(topic = %p.topic, partition = p.index, error = %e,
                        "applying fetched data failed");
                }
                if let Some(upto) = fx.fsync {
                    to_sync.push((p.clone(), upto));
                }
            }
        }
        // Group commit: the fsyncs the replicas asked for (under fsync-before-ack) run
        // together, before the next fetch reports their new ends to the leader.
        let syncs = to_sync
            .iter()
            .map(|(p, end)| async move { (p, p.wait_synced(*end).await) });
        for (p, res) in futures::future::join_all(syncs).await {
            if let Err(e) = res {
                warn!(topic = %p.topic, partition = p.index, error = %e, "follower fsync failed");
            }
        }
        if !brought && (errored || !answered) {
            tokio::time::sleep(REPLICA_IDLE_BACKOFF).await;
        }
    }
}

fn build_fetch(me: i32, parts: &[(Arc<Partition>, FetchPosition)]) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(me);
    req.max_wait_ms = REPLICA_FETCH_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = REPLICA_FETCH_RESPONSE_BYTES;
    req.session_epoch = -1;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (p, pos) in parts {
        let mut fp = FetchPartition::default();
        fp.partition = p.index;
        fp.current_leader_epoch = pos.leader_epoch;
        fp.fetch_offset = pos.fetch_offset;
        fp.last_fetched_epoch = pos.last_fetched_epoch;
        fp.log_start_offset = pos.log_start;
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

/// What one partition's fetch answer says, for the replica.
fn fetch_reply(pd: &PartitionData) -> FetchReply {
    let d = &pd.diverging_epoch;
    if pd.error_code == E::OffsetOutOfRange.code() {
        FetchReply::OutOfRange {
            log_start: pd.log_start_offset,
        }
    } else if pd.error_code != 0 {
        debug!(
            partition = pd.partition_index,
            code = pd.error_code,
            "replica fetch partition error"
        );
        FetchReply::Error(skein_proto::errors::replica_error_of(pd.error_code))
    } else if d.epoch >= 0 || d.end_offset >= 0 {
        FetchReply::Diverging {
            epoch: d.epoch,
            end_offset: d.end_offset,
        }
    } else {
        FetchReply::Records {
            hw: pd.high_watermark,
            log_start: pd.log_start_offset,
        }
    }
}
