//! Kafka API handlers: decoded kafka-protocol requests in, responses out. The only place that
//! maps between the wire messages and the core's types and errors.
//!
//! Every handler answers every topic and partition it was asked about, in request order, with
//! the protocol's error code for what went wrong; none of them panics on client input.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError as E;
use skein_core::catalog::{CatalogError, Placement};
use skein_core::fetch::{response_max_bytes, FetchBudget};
use skein_core::log::AppendError;
use skein_core::replication::FetchCheck;
use tracing::{debug, warn};

use crate::broker::{now_ms, quorum_error, Broker};
use crate::storage::{read_range, StorageError};

/// Every API the broker serves, with the versions it advertises: (key, min, max).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeQuorum, 0, 1),
];

/// The lowest Produce version ApiVersions lists, below the lowest one served (v3).
///
/// librdkafka up to 2.11 compresses with gzip, snappy and lz4 only for a broker whose Produce
/// range includes v0, and otherwise sends those batches uncompressed. Apache Kafka 4.0 removed
/// Produce v0-v2 (KIP-896) and lists them anyway for this reason (KAFKA-18659,
/// `ApiKeys.PRODUCE_API_VERSIONS_RESPONSE_MIN_VERSION`); skein does the same. A request at
/// v0-v2 is refused ([`legacy_produce_refusal`]), never served.
pub const PRODUCE_ADVERTISED_MIN: i16 = 0;

/// The served version range of an API key, if served (Produce is listed from
/// [`PRODUCE_ADVERTISED_MIN`] but served from here).
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

/// The ApiVersions answer; `error` set for the KIP-511 UNSUPPORTED_VERSION fallback.
pub fn api_versions(error: Option<E>) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error.map(|e| e.code()).unwrap_or(0);
    r.api_keys = SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = if *k == ApiKey::Produce {
                PRODUCE_ADVERTISED_MIN
            } else {
                *lo
            };
            v.max_version = *hi;
            v
        })
        .collect();
    r
}

/// The client's view of the leader epoch against ours (-1: the client does not say).
fn leader_epoch_check(current: i32, ours: i32) -> Option<E> {
    match current {
        -1 => None,
        e if e > ours => Some(E::UnknownLeaderEpoch),
        e if e < ours => Some(E::FencedLeaderEpoch),
        _ => None,
    }
}

fn topic_id_uuid(id: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id)
}

/// The Kafka error code of a refused metadata change.
pub fn catalog_error(e: &CatalogError) -> E {
    match e {
        CatalogError::TopicExists(_) => E::TopicAlreadyExists,
        CatalogError::UnknownTopic(_) => E::UnknownTopicOrPartition,
        CatalogError::InvalidTopic(_) => E::InvalidTopicException,
        CatalogError::InvalidPartitions(_) => E::InvalidPartitions,
        CatalogError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        CatalogError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
        CatalogError::InvalidConfig(_) => E::InvalidConfig,
    }
}

fn storage_error(e: &StorageError) -> E {
    match e {
        StorageError::Append(a) => match a {
            AppendError::Corrupt(_) => E::CorruptMessage,
            AppendError::InvalidRecord(_) => E::InvalidRecord,
            AppendError::TooLarge { .. } => E::MessageTooLarge,
            AppendError::LargerThanSegment { .. } => E::RecordListTooLarge,
            AppendError::OutOfOrderSequence(_) => E::OutOfOrderSequenceNumber,
            AppendError::InvalidProducerEpoch(_) => E::InvalidProducerEpoch,
            AppendError::InvalidTimestamp { .. } => E::InvalidTimestamp,
        },
        StorageError::Io { .. } => E::KafkaStorageError,
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

/// Metadata.
pub async fn metadata(b: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut r = MetadataResponse::default();
    r.brokers = b.with_catalog(|c| {
        c.brokers()
            .filter(|x| !x.fenced)
            .map(|x| {
                let mut m = MetadataResponseBroker::default();
                m.node_id = x.id.into();
                m.host = s(x.host.clone());
                m.port = x.port;
                m.rack = x.rack.clone().map(s);
                m
            })
            .collect()
    });
    r.cluster_id = Some(s(b.cluster_id()));
    r.controller_id = controller_id(b).into();
    r.cluster_authorized_operations = i32::MIN;
    let auto = version < 4 || req.allow_auto_topic_creation;
    let names: Vec<Result<String, (uuid::Uuid, E)>> = match req.topics {
        None => b.with_catalog(|c| c.topics().map(|t| Ok(t.name.clone())).collect()),
        Some(ts) if ts.is_empty() && version == 0 => {
            b.with_catalog(|c| c.topics().map(|t| Ok(t.name.clone())).collect())
        }
        Some(ts) => ts
            .into_iter()
            .map(|t| match t.name {
                Some(n) => Ok(n.0.to_string()),
                None => b
                    .with_catalog(|c| {
                        c.topics()
                            .find(|x| topic_id_uuid(x.id) == t.topic_id)
                            .map(|x| x.name.clone())
                    })
                    .ok_or((t.topic_id, E::UnknownTopicId)),
            })
            .collect(),
    };
    for n in names {
        let mut t = MetadataResponseTopic::default();
        t.topic_authorized_operations = if req.include_topic_authorized_operations {
            // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
            [3, 4, 5, 6, 7, 8, 10, 11].iter().map(|op| 1 << op).sum()
        } else {
            i32::MIN
        };
        let name = match n {
            Ok(name) => name,
            Err((id, e)) => {
                t.topic_id = id;
                t.error_code = e.code();
                r.topics.push(t);
                continue;
            }
        };
        t.name = Some(TopicName(s(name.clone())));
        if let Err(why) = skein_core::config::validate_topic_name(&name) {
            debug!(topic = name, why, "metadata for an invalid topic name");
            t.error_code = E::InvalidTopicException.code();
            r.topics.push(t);
            continue;
        }
        let exists = if auto {
            b.auto_create(&name).await
        } else {
            b.with_catalog(|c| c.topic(&name).is_some())
        };
        let info = b.with_catalog(|c| {
            c.topic(&name).map(|t| {
                let live: Vec<i32> = c.live_brokers();
                (t.id, t.parts.clone(), live)
            })
        });
        match (exists, info) {
            (true, Some((id, parts, live))) => {
                t.topic_id = topic_id_uuid(id);
                t.is_internal = name == crate::groups::OFFSETS_TOPIC;
                t.partitions = parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let mut mp = MetadataResponsePartition::default();
                        mp.partition_index = i as i32;
                        mp.leader_id = p.leader.into();
                        mp.leader_epoch = p.leader_epoch;
                        mp.replica_nodes = p.replicas.iter().map(|x| (*x).into()).collect();
                        mp.isr_nodes = p.isr.iter().map(|x| (*x).into()).collect();
                        mp.offline_replicas = p
                            .replicas
                            .iter()
                            .filter(|x| !live.contains(x))
                            .map(|x| (*x).into())
                            .collect();
                        if p.leader < 0 {
                            mp.error_code = E::LeaderNotAvailable.code();
                        }
                        mp
                    })
                    .collect();
            }
            _ => t.error_code = E::UnknownTopicOrPartition.code(),
        }
        r.topics.push(t);
    }
    r
}

/// The node Metadata and DescribeCluster name as controller: the quorum leader, if known and
/// registered (clients only use it to send admin requests, which any broker forwards).
fn controller_id(b: &Broker) -> i32 {
    let leader = b
        .quorum()
        .status()
        .leader
        .and_then(|l| i32::try_from(l).ok());
    match leader {
        Some(l) if b.with_catalog(|c| c.broker(l).is_some_and(|x| !x.fenced)) => l,
        _ => b.settings.node_id,
    }
}

// ---------------------------------------------------------------------------------------------
// Produce

/// The answer to a Produce request at one of the versions listed but not served (v0-v2): every
/// partition asked about gets UNSUPPORTED_VERSION, in the request's own wire format, which
/// kafka-protocol does not encode (its Produce messages start at v3).
#[derive(Debug, Default, PartialEq)]
pub struct LegacyProduceRefusal {
    /// Each topic named in the request, with the partition indexes asked for.
    pub topics: Vec<(StrBytes, Vec<i32>)>,
}

/// Reads a Produce v0-v2 body (after the request header) and builds its refusal; `None` for
/// acks=0, which gets no answer. A v0-v2 body is a v3 body without the leading
/// `transactional_id`, so it is decoded as v3 behind a null one.
pub fn legacy_produce_refusal(
    body: &[u8],
    version: i16,
) -> Result<Option<LegacyProduceRefusal>, String> {
    if !(0..=2).contains(&version) {
        return Err(format!("Produce v{version} is not a legacy version"));
    }
    let mut v3 = bytes::BytesMut::with_capacity(body.len() + 2);
    v3.extend_from_slice(&(-1i16).to_be_bytes());
    v3.extend_from_slice(body);
    let req = ProduceRequest::decode(&mut v3.freeze(), 3)
        .map_err(|e| format!("malformed Produce v{version} request: {e}"))?;
    if req.acks == 0 {
        return Ok(None);
    }
    Ok(Some(LegacyProduceRefusal {
        topics: req
            .topic_data
            .into_iter()
            .map(|t| (t.name.0, t.partition_data.iter().map(|p| p.index).collect()))
            .collect(),
    }))
}

impl Encodable for LegacyProduceRefusal {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        if !(0..=2).contains(&version) {
            anyhow::bail!("the legacy Produce refusal is encoded at v0-v2, not v{version}");
        }
        buf.put_i32(self.topics.len() as i32);
        for (name, partitions) in &self.topics {
            let name = name.as_bytes();
            buf.put_i16(i16::try_from(name.len())?);
            buf.put_slice(name);
            buf.put_i32(partitions.len() as i32);
            for index in partitions {
                buf.put_i32(*index);
                buf.put_i16(E::UnsupportedVersion.code());
                buf.put_i64(-1); // base_offset
                if version >= 2 {
                    buf.put_i64(-1); // log_append_time_ms
                }
            }
        }
        if version >= 1 {
            buf.put_i32(0); // throttle_time_ms
        }
        Ok(())
    }

    fn compute_size(&self, version: i16) -> anyhow::Result<usize> {
        let partition = 4 + 2 + 8 + if version >= 2 { 8 } else { 0 };
        let topics: usize = self
            .topics
            .iter()
            .map(|(name, ps)| 2 + name.len() + 4 + ps.len() * partition)
            .sum();
        Ok(4 + topics + if version >= 1 { 4 } else { 0 })
    }
}

/// Produce; `None` means no response is sent (acks=0).
pub async fn produce(
    b: Arc<Broker>,
    req: ProduceRequest,
) -> Result<Option<ProduceResponse>, String> {
    let acks = req.acks;
    let mut r = ProduceResponse::default();
    let bad_acks = !(-1..=1).contains(&acks);
    let transactional = req.transactional_id.is_some();
    let mut waits = Vec::new();
    let mut any_error: Option<String> = None;
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        let valid_name = skein_core::config::validate_topic_name(&name).is_ok();
        let exists = valid_name && !bad_acks && !transactional && b.auto_create(&name).await;
        for pd in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let err = if bad_acks {
                Some((
                    E::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ))
            } else if transactional {
                Some((
                    E::TransactionalIdAuthorizationFailed,
                    "transactions are not supported by this broker".to_string(),
                ))
            } else if name == crate::groups::OFFSETS_TOPIC {
                Some((
                    E::InvalidTopicException,
                    format!("cannot produce to the internal topic '{name}'"),
                ))
            } else if !valid_name {
                Some((
                    E::InvalidTopicException,
                    format!("invalid topic name '{name}'"),
                ))
            } else if !exists {
                Some((
                    E::UnknownTopicOrPartition,
                    format!("unknown topic '{name}'"),
                ))
            } else {
                let found = b.leader_partition(&name, pd.index).and_then(|(p, epoch)| {
                    // acks=all needs min.insync.replicas in the ISR before it appends.
                    let mut r = p.repl.lock().expect("repl lock");
                    match r.leading(epoch) {
                        None => Err(E::NotLeaderOrFollower),
                        Some(l) if acks == -1 && !l.enough_replicas() => Err(E::NotEnoughReplicas),
                        Some(_) => Ok((p.clone(), epoch)),
                    }
                });
                match found {
                    Err(E::NotEnoughReplicas) => Some((
                        E::NotEnoughReplicas,
                        format!(
                            "topic '{name}' partition {}: fewer in-sync replicas than min.insync.replicas",
                            pd.index
                        ),
                    )),
                    Err(e) => Some((e, format!("topic '{name}' partition {}: {e:?}", pd.index))),
                    Ok((p, epoch)) => match pd.records {
                        None => Some((E::InvalidRecord, "no records".to_string())),
                        Some(records) => {
                            match p.append_leading(epoch, now_ms(), &records) {
                                None => Some((
                                    E::NotLeaderOrFollower,
                                    format!(
                                        "topic '{name}' partition {}: leadership moved",
                                        pd.index
                                    ),
                                )),
                                Some((res, pending)) => match res {
                                Ok(a) => {
                                    pr.base_offset = a.base_offset;
                                    pr.log_append_time_ms = a.log_append_time;
                                    pr.log_start_offset = a.log_start_offset;
                                    if a.write.is_some() {
                                        b.appended.send_modify(|n| *n += 1);
                                    }
                                    if acks == -1 {
                                        waits.push((
                                            r.responses.len(),
                                            tr.partition_responses.len(),
                                            p.clone(),
                                            a.last_offset + 1,
                                            epoch,
                                        ));
                                    }
                                    if let Some(n) = b.settings.flush_messages {
                                        if pending >= n {
                                            let (p2, end) = (p.clone(), a.last_offset + 1);
                                            tokio::spawn(async move {
                                                let _ = p2.wait_synced(end).await;
                                            });
                                        }
                                    }
                                    None
                                }
                                Err(e) => {
                                    let code = storage_error(&e);
                                    if matches!(e, StorageError::Io { .. }) {
                                        warn!(topic = name, partition = pd.index, error = %e, "append failed");
                                    } else {
                                        debug!(topic = name, partition = pd.index, error = %e, "append refused");
                                    }
                                    Some((code, e.to_string()))
                                }
                            },
                            }
                        }
                    },
                }
            };
            if let Some((code, msg)) = err {
                pr.error_code = code.code();
                pr.error_message = Some(s(msg.clone()));
                any_error.get_or_insert(format!("{name}-{}: {}", pd.index, msg));
            }
            tr.partition_responses.push(pr);
        }
        r.responses.push(tr);
    }
    // Durability gate: acks=all answers only after the fsync covering each batch (unless the
    // interval flush policy is on) and once the high watermark covers it, i.e. every ISR
    // member holds it. All the request's partitions wait at once, so their fsyncs overlap.
    let interval = b.settings.interval_flush();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let wait_results =
        futures::future::join_all(waits.into_iter().map(|(t, i, p, end, epoch)| async move {
            if !interval {
                if let Err(e) = p.wait_synced(end).await {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
                    return (t, i, Err((E::KafkaStorageError, e.to_string())));
                }
            }
            let res = crate::replica::wait_replicated(&p, end, epoch, deadline)
                .await
                .map_err(|e| (e, crate::replica::wait_error_message(e).to_string()));
            (t, i, res)
        }))
        .await;
    for (t, i, res) in wait_results {
        if let Err((code, msg)) = res {
            let tr = &mut r.responses[t];
            let pr = &mut tr.partition_responses[i];
            pr.error_code = code.code();
            pr.error_message = Some(s(msg));
            pr.base_offset = -1;
        }
    }
    if acks == 0 {
        // Kafka answers nothing to acks=0, and closes the connection on an error so the
        // client notices.
        return match any_error {
            Some(e) => Err(format!("acks=0 produce failed: {e}")),
            None => Ok(None),
        };
    }
    Ok(Some(r))
}

// ---------------------------------------------------------------------------------------------
// Fetch

/// Fetch, with min_bytes / max_wait long polling.
pub async fn fetch(b: Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    let mut changes = b.appended.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // KIP-227: skein creates no incremental sessions; it answers every fetch in full with
    // session id 0, which tells clients to keep sending full fetches.
    let session_error = if version >= 7 {
        if req.session_id != 0 {
            Some(E::FetchSessionIdNotFound)
        } else if req.session_epoch != 0 && req.session_epoch != -1 {
            Some(E::InvalidFetchSessionEpoch)
        } else {
            None
        }
    } else {
        None
    };
    if let Some(e) = session_error {
        let mut r = FetchResponse::default();
        r.error_code = e.code();
        return r;
    }
    loop {
        changes.borrow_and_update();
        let (r, bytes) = fetch_once(&b, &req);
        // Kafka answers at once when min_bytes is met, when a partition has an error (waiting
        // would not fix it), or when max_wait has passed.
        let has_error = r
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0);
        if req.min_bytes <= 0
            || bytes >= req.min_bytes as usize
            || has_error
            || tokio::time::Instant::now() >= deadline
        {
            return r;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn fetch_once(b: &Broker, req: &FetchRequest) -> (FetchResponse, usize) {
    // A broker fetching for its replica reads up to the log end and moves the high watermark;
    // a consumer reads below the high watermark only.
    let replica = req.replica_id.0;
    let now = b.mono_ms();
    let mut r = FetchResponse::default();
    // KIP-74: the response's records total at most max_bytes, each partition's at most its
    // partition_max_bytes, but for the first batch of the first partition with data.
    let mut budget = FetchBudget::new(response_max_bytes(req.max_bytes));
    // A follower told to truncate is answered at once, whatever min_bytes says.
    let mut diverged = false;
    for topic in &req.topics {
        let name = topic.topic.0.to_string();
        let mut tr = FetchableTopicResponse::default();
        tr.topic = topic.topic.clone();
        tr.topic_id = topic.topic_id;
        for fp in &topic.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.preferred_read_replica = (-1).into();
            pd.records = Some(Bytes::new());
            let (p, epoch) = match b.leader_partition(&name, fp.partition) {
                Ok((p, epoch)) => match leader_epoch_check(fp.current_leader_epoch, epoch) {
                    None => (p, epoch),
                    Some(e) => {
                        pd.error_code = e.code();
                        tr.partitions.push(pd);
                        continue;
                    }
                },
                Err(e) => {
                    pd.error_code = e.code();
                    tr.partitions.push(pd);
                    continue;
                }
            };
            let (plan, grant, hw, start) = {
                let st = p.store.lock().expect("partition lock");
                let end = st.log().log_end_offset();
                let hw = {
                    let mut rp = p.repl.lock().expect("repl lock");
                    let Some(l) = rp.leading(epoch) else {
                        pd.error_code = E::NotLeaderOrFollower.code();
                        tr.partitions.push(pd);
                        continue;
                    };
                    if replica >= 0 {
                        match l.check_fetch(
                            replica,
                            fp.fetch_offset,
                            fp.last_fetched_epoch,
                            st.log(),
                        ) {
                            FetchCheck::NotReplica => {
                                pd.error_code = E::NotLeaderOrFollower.code();
                                tr.partitions.push(pd);
                                continue;
                            }
                            FetchCheck::Diverging { epoch, end_offset } => {
                                pd.diverging_epoch.epoch = epoch;
                                pd.diverging_epoch.end_offset = end_offset;
                                pd.high_watermark = l.hw();
                                pd.log_start_offset = st.log().log_start_offset();
                                tr.partitions.push(pd);
                                // Answer at once: the follower must truncate first.
                                diverged = true;
                                continue;
                            }
                            FetchCheck::Accepted => {
                                if fp.fetch_offset >= st.log().log_start_offset()
                                    && fp.fetch_offset <= end
                                    && l.on_fetch(replica, fp.fetch_offset, end, now)
                                {
                                    p.repl_changed.send_modify(|n| *n += 1);
                                    b.appended.send_modify(|n| *n += 1);
                                }
                            }
                        }
                    }
                    l.hw()
                };
                let grant = budget.grant(fp.partition_max_bytes);
                let plan = if replica < 0 && fp.fetch_offset >= hw && fp.fetch_offset <= end {
                    // Nothing committed there yet.
                    Ok(None)
                } else {
                    // Planned even when nothing may be returned: an offset out of range is
                    // still reported.
                    st.plan_fetch(fp.fetch_offset, grant)
                };
                (plan, grant, hw, st.log().log_start_offset())
            };
            pd.high_watermark = hw;
            pd.last_stable_offset = hw;
            pd.log_start_offset = start;
            match plan {
                Err(_) => pd.error_code = E::OffsetOutOfRange.code(),
                Ok(None) => {}
                Ok(Some(_)) if grant.is_empty() => {}
                Ok(Some(range)) => {
                    match read_range(&range) {
                        Ok(bytes) => {
                            // Counted as sent: a consumer's cut below the high watermark.
                            let bytes = if replica < 0 {
                                crate::replica::cut_at_hw(bytes, hw)
                            } else {
                                bytes
                            };
                            if budget.take(grant, bytes.len() as u64) {
                                pd.records = Some(bytes);
                            } else {
                                // trim_read keeps reads within the grant; never sent if not.
                                warn!(
                                    topic = name,
                                    partition = fp.partition,
                                    len = bytes.len(),
                                    ?grant,
                                    "fetch read over its byte budget left out"
                                );
                            }
                        }
                        Err(e) => {
                            warn!(topic = name, partition = fp.partition, error = %e, "fetch read failed");
                            pd.error_code = E::KafkaStorageError.code();
                        }
                    }
                }
            }
            tr.partitions.push(pd);
        }
        r.responses.push(tr);
    }
    let bytes = budget.used() as usize;
    (r, if diverged { bytes.max(1) } else { bytes })
}

// ---------------------------------------------------------------------------------------------
// ListOffsets, OffsetForLeaderEpoch

/// ListOffsets: earliest (-2), latest (-1), max timestamp (-3; listed from v7), or by timestamp.
pub fn list_offsets(b: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let found = b.leader_partition(&name, p.partition_index);
            if let Ok((_, epoch)) = &found {
                if version >= 4 {
                    pr.leader_epoch = *epoch;
                }
                if let Some(e) = leader_epoch_check(p.current_leader_epoch, *epoch) {
                    pr.error_code = e.code();
                    tr.partitions.push(pr);
                    continue;
                }
            }
            // A new leader answers only once its high watermark has reached its first offset:
            // before that it could answer below what the previous leader exposed.
            let found = found.and_then(|(part, epoch)| {
                let mut r = part.repl.lock().expect("repl lock");
                match r.leading(epoch) {
                    None => Err(E::NotLeaderOrFollower),
                    Some(l) if !l.hw_settled() => Err(E::OffsetNotAvailable),
                    Some(l) => {
                        let hw = l.hw();
                        drop(r);
                        Ok((part, hw))
                    }
                }
            });
            match found {
                Err(e) => pr.error_code = e.code(),
                Ok((part, hw)) => {
                    let by_time = match p.timestamp {
                        -2 => {
                            pr.offset = part.store.lock().expect("lock").log().log_start_offset();
                            None
                        }
                        -1 => {
                            pr.offset = hw;
                            None
                        }
                        // MAX_TIMESTAMP (v7, KIP-734): the first record with the log's largest
                        // timestamp, as Kafka answers it (none in an empty log).
                        -3 if version >= 7 => {
                            let max = part.store.lock().expect("lock").log().max_timestamp();
                            (max >= 0).then_some(max)
                        }
                        ts if ts >= 0 => Some(ts),
                        _ => {
                            pr.error_code = E::InvalidRequest.code();
                            None
                        }
                    };
                    if let Some(ts) = by_time {
                        match offset_for_time(&part, ts) {
                            Ok(Some((off, found_ts))) if off < hw => {
                                pr.offset = off;
                                pr.timestamp = found_ts;
                            }
                            // No record at or after `ts`: Kafka answers with no leader epoch.
                            Ok(_) => pr.leader_epoch = -1,
                            Err(e) => {
                                warn!(topic = name, error = %e, "timestamp lookup failed");
                                pr.error_code = E::KafkaStorageError.code();
                            }
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

/// The first record with timestamp >= `ts`: (offset, its timestamp).
fn offset_for_time(p: &crate::broker::Partition, ts: i64) -> std::io::Result<Option<(i64, i64)>> {
    let (file, pos, seg_size) = {
        let st = p.store.lock().expect("partition lock");
        let log = st.log();
        let Some((base, pos, len)) = log.plan_timestamp_scan(ts) else {
            return Ok(None);
        };
        let Some(file) = st.segment_file(base) else {
            return Ok(None);
        };
        (file, pos, pos + len)
    };
    // Walk batches from the time-index position to the first record reaching `ts`. Each batch
    // is judged by its records, not its header's max timestamp: data written before the leader
    // checked headers may carry -1 there.
    let mut at = pos;
    let mut head = [0u8; skein_core::batch::HEADER_LEN];
    let mut whole = Vec::new();
    while at + head.len() as u64 <= seg_size {
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut head, at)?;
        let Ok(h) = skein_core::batch::parse_header(&head) else {
            break;
        };
        if at + h.size as u64 > seg_size {
            break;
        }
        whole.resize(h.size, 0);
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut whole, at)?;
        match skein_core::records::first_at_or_after(&whole, &h, ts) {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            // A stored batch whose records do not walk: fall back to its header.
            Err(_) if h.max_timestamp >= ts => return Ok(Some((h.base_offset, h.max_timestamp))),
            Err(_) => {}
        }
        at += h.size as u64;
    }
    Ok(None)
}

/// OffsetForLeaderEpoch.
pub fn offset_for_leader_epoch(
    b: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let name = t.topic.0.to_string();
        let mut tr = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = offset_for_leader_epoch_response::EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            let found = b.leader_partition(&name, p.partition);
            let epoch_err = match &found {
                Ok((_, ours)) => leader_epoch_check(p.current_leader_epoch, *ours),
                Err(_) => None,
            };
            if let Some(err) = epoch_err {
                e.error_code = err.code();
            } else {
                match found {
                    Err(err) => e.error_code = err.code(),
                    Ok((part, _)) => {
                        let (ep, off) = part
                            .store
                            .lock()
                            .expect("lock")
                            .log()
                            .end_offset_for_epoch(p.leader_epoch);
                        e.leader_epoch = ep;
                        e.end_offset = off;
                    }
                }
            }
            tr.partitions.push(e);
        }
        r.topics.push(tr);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// InitProducerId

/// InitProducerId (idempotent producers; transactions are refused).
pub async fn init_producer_id(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = (-1).into();
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        warn!("InitProducerId with a transactional id: transactions are not supported");
        r.error_code = E::TransactionalIdAuthorizationFailed.code();
        return r;
    }
    // Kafka gives a non-transactional producer a fresh id at epoch 0 on every call.
    match b.next_producer_id().await {
        Ok(id) => {
            r.producer_id = id.into();
            r.producer_epoch = 0;
        }
        Err(e) => {
            warn!(error = %e, "allocating a producer id failed");
            r.error_code = quorum_error(&e).code();
        }
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Admin

/// CreateTopics.
pub async fn create_topics(
    b: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut r = CreateTopicsResponse::default();
    let mut seen = std::collections::BTreeMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_insert(0) += 1;
    }
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        res.num_partitions = -1;
        res.replication_factor = -1;
        let outcome: Result<(), (E, String)> = async {
            if seen[&name] > 1 {
                return Err((
                    E::InvalidRequest,
                    format!("topic '{name}' appears more than once in the request"),
                ));
            }
            let mut partitions = if t.num_partitions == -1 {
                b.settings.num_partitions
            } else {
                t.num_partitions
            };
            let mut rf = if t.replication_factor == -1 {
                b.settings.default_replication_factor
            } else {
                t.replication_factor
            };
            let mut placement = b.spread(rf);
            if !t.assignments.is_empty() {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return Err((
                        E::InvalidRequest,
                        "give either assignments or partitions and replication factor".into(),
                    ));
                }
                let mut a = t.assignments.clone();
                a.sort_by_key(|x| x.partition_index);
                if a.iter()
                    .enumerate()
                    .any(|(i, x)| x.partition_index != i as i32)
                {
                    return Err((
                        E::InvalidReplicaAssignment,
                        "assignments must number the partitions 0, 1, 2, ...".into(),
                    ));
                }
                partitions = a.len() as i32;
                rf = a[0].broker_ids.len() as i16;
                placement = Placement::Manual(
                    a.iter()
                        .map(|x| x.broker_ids.iter().map(|n| i32::from(*n)).collect())
                        .collect(),
                );
            }
            let mut configs = Vec::new();
            for c in &t.configs {
                match &c.value {
                    Some(v) => configs.push((c.name.to_string(), v.to_string())),
                    None => {
                        return Err((
                            E::InvalidConfig,
                            format!("config {} has a null value", c.name.as_str()),
                        ))
                    }
                }
            }
            b.create_topic(&name, partitions, placement, &configs, req.validate_only)
                .await
                .map_err(|e| (e.code(), e.to_string()))?;
            res.num_partitions = partitions;
            res.replication_factor = rf;
            Ok(())
        }
        .await;
        match outcome {
            Err((code, msg)) => {
                debug!(topic = name, error = msg, "create topic refused");
                res.error_code = code.code();
                res.error_message = Some(s(msg));
            }
            Ok(()) => {
                if version >= 5 {
                    let described = b.with_catalog(|c| {
                        let defaults = c.defaults().clone();
                        let (id, entries) = match c.topic(&name) {
                            Some(t) => (Some(t.id), t.config.describe(&defaults)),
                            None => (
                                None,
                                skein_core::config::TopicConfig::default().describe(&defaults),
                            ),
                        };
                        (id, entries)
                    });
                    if let Some(id) = described.0 {
                        res.topic_id = topic_id_uuid(id);
                    }
                    res.configs = Some(
                        described
                            .1
                            .into_iter()
                            .map(|e| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = s(e.name);
                                c.value = Some(s(e.value));
                                c.config_source = if e.is_default { 5 } else { 1 };
                                c
                            })
                            .collect(),
                    );
                }
            }
        }
        r.topics.push(res);
    }
    r
}

/// DeleteTopics.
pub async fn delete_topics(
    b: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut r = DeleteTopicsResponse::default();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in targets {
        let mut res = DeletableTopicResult::default();
        res.topic_id = id;
        let name = name.or_else(|| {
            b.with_catalog(|c| {
                c.topics()
                    .find(|t| topic_id_uuid(t.id) == id)
                    .map(|t| t.name.clone())
            })
        });
        match name {
            None => res.error_code = E::UnknownTopicId.code(),
            Some(name) => {
                res.name = Some(TopicName(s(name.clone())));
                if name == crate::groups::OFFSETS_TOPIC {
                    // Kafka refuses too: every group's offsets live there.
                    res.error_code = E::InvalidTopicException.code();
                    res.error_message = Some(s(format!(
                        "the internal topic '{name}' holds every group's offsets; it cannot be deleted"
                    )));
                } else if let Err(e) = b.commit(|c| c.plan_delete(&name)).await {
                    res.error_code = e.code().code();
                    res.error_message = Some(s(e.to_string()));
                }
            }
        }
        r.responses.push(res);
    }
    r
}

/// CreatePartitions.
pub async fn create_partitions(
    b: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatePartitionsTopicResult::default();
        res.name = t.name.clone();
        let placement = match &t.assignments {
            Some(a) => Placement::Manual(
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|n| i32::from(*n)).collect())
                    .collect(),
            ),
            None => b.spread(1),
        };
        let outcome = if req.validate_only {
            b.with_catalog(|c| c.plan_partitions(&name, t.count, &placement))
                .map(|_| ())
                .map_err(|e| (catalog_error(&e), e.to_string()))
        } else {
            b.commit(|c| c.plan_partitions(&name, t.count, &placement))
                .await
                .map_err(|e| (e.code(), e.to_string()))
        };
        if let Err((code, msg)) = outcome {
            res.error_code = code.code();
            res.error_message = Some(s(msg));
        }
        r.results.push(res);
    }
    r
}

/// (name, value, Kafka config source) of one described config.
type ConfigRow = (String, String, i8);

fn config_type(name: &str) -> i8 {
    // Kafka's ConfigType: BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7.
    match name {
        "cleanup.policy" => 7,
        "message.timestamp.type" => 2,
        "unclean.leader.election.enable" => 1,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "log.segment.bytes" => 3,
        _ => 5,
    }
}

/// DescribeConfigs for topics and the broker.
pub fn describe_configs(b: &Broker, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.to_string();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .map(|k| k.iter().map(|x| x.to_string()).collect());
        let wanted = |k: &str| {
            keys.as_ref()
                .map(|ks| ks.iter().any(|x| x == k))
                .unwrap_or(true)
        };
        let entries: Result<Vec<ConfigRow>, (E, String)> = match res.resource_type {
            RESOURCE_TOPIC => b.with_catalog(|c| match c.topic(&name) {
                None => Err((
                    E::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
                Some(t) => Ok(t
                    .config
                    .describe(c.defaults())
                    .into_iter()
                    .map(|e| (e.name, e.value, if e.is_default { 5 } else { 1 }))
                    .collect()),
            }),
            RESOURCE_BROKER => {
                if name.is_empty() || name == b.settings.node_id.to_string() {
                    let st = &b.settings;
                    let d = &st.log_defaults;
                    Ok(vec![
                        (
                            "auto.create.topics.enable".into(),
                            st.auto_create_topics.to_string(),
                            4,
                        ),
                        ("num.partitions".into(), st.num_partitions.to_string(), 4),
                        ("log.segment.bytes".into(), d.segment_bytes.to_string(), 4),
                        ("log.roll.ms".into(), d.segment_ms.to_string(), 4),
                        ("log.retention.ms".into(), d.retention_ms.to_string(), 4),
                        (
                            "log.retention.bytes".into(),
                            d.retention_bytes.to_string(),
                            4,
                        ),
                        (
                            "message.max.bytes".into(),
                            d.max_message_bytes.to_string(),
                            4,
                        ),
                        (
                            "log.message.timestamp.before.max.ms".into(),
                            d.timestamp_before_max_ms.to_string(),
                            4,
                        ),
                        (
                            "log.message.timestamp.after.max.ms".into(),
                            d.timestamp_after_max_ms.to_string(),
                            4,
                        ),
                        (
                            "socket.request.max.bytes".into(),
                            st.socket_request_max_bytes.to_string(),
                            4,
                        ),
                        ("broker.id".into(), st.node_id.to_string(), 4),
                    ])
                } else {
                    Err((
                        E::InvalidRequest,
                        format!("broker '{name}' is not this broker"),
                    ))
                }
            }
            other => Err((
                E::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        match entries {
            Err((code, msg)) => {
                out.error_code = code.code();
                out.error_message = Some(s(msg));
            }
            Ok(list) => {
                out.configs = list
                    .into_iter()
                    .filter(|(k, _, _)| wanted(k))
                    .map(|(k, v, source)| {
                        let mut c = DescribeConfigsResourceResult::default();
                        c.config_type = config_type(&k);
                        if req.include_synonyms {
                            let mut syn = DescribeConfigsSynonym::default();
                            syn.name = s(k.clone());
                            syn.value = Some(s(v.clone()));
                            syn.source = source;
                            c.synonyms = vec![syn];
                        }
                        c.name = s(k);
                        c.value = Some(s(v));
                        // Kafka sends null documentation unless it was asked for.
                        c.documentation = None;
                        c.config_source = source;
                        c.read_only = res.resource_type == RESOURCE_BROKER;
                        c
                    })
                    .collect();
            }
        }
        r.results.push(out);
    }
    r
}

async fn alter_topic(
    b: &Broker,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
    validate_only: bool,
) -> Result<(), (E, String)> {
    if validate_only {
        return b
            .with_catalog(|c| c.plan_alter(name, &changes, replace))
            .map(|_| ())
            .map_err(|e| (catalog_error(&e), e.to_string()));
    }
    b.commit(|c| c.plan_alter(name, &changes, replace))
        .await
        .map_err(|e| (e.code(), e.to_string()))
}

/// AlterConfigs (replaces a topic's whole override set).
pub async fn alter_configs(b: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let outcome = if res.resource_type == RESOURCE_TOPIC {
            let changes = res
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            alter_topic(
                b,
                res.resource_name.as_str(),
                changes,
                true,
                req.validate_only,
            )
            .await
        } else {
            Err((
                E::InvalidRequest,
                "only topic configs can be altered".into(),
            ))
        };
        if let Err((code, msg)) = outcome {
            out.error_code = code.code();
            out.error_message = Some(s(msg));
        }
        r.responses.push(out);
    }
    r
}

/// IncrementalAlterConfigs (SET, DELETE; APPEND / SUBTRACT for list configs).
pub async fn incremental_alter_configs(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut out = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.to_string();
        let outcome = if res.resource_type != RESOURCE_TOPIC {
            Err((
                E::InvalidRequest,
                "only topic configs can be altered".into(),
            ))
        } else {
            let current =
                b.with_catalog(|c| c.topic(&name).map(|t| t.config.describe(c.defaults())));
            let mut changes = Vec::new();
            let mut bad = None;
            for c in &res.configs {
                let key = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string());
                match c.config_operation {
                    0 => changes.push((key, value)),
                    1 => changes.push((key, None)),
                    op @ (2 | 3) if config_type(&key) == 7 => {
                        let now = current
                            .as_ref()
                            .and_then(|es| {
                                es.iter().find(|e| e.name == key).map(|e| e.value.clone())
                            })
                            .unwrap_or_default();
                        let mut items: Vec<String> = now
                            .split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect();
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .filter(|x| !x.is_empty())
                        {
                            if op == 2 && !items.iter().any(|x| x == v) {
                                items.push(v.to_string());
                            } else if op == 3 {
                                items.retain(|x| x != v);
                            }
                        }
                        changes.push((key, Some(items.join(","))));
                    }
                    op => {
                        bad = Some((
                            E::InvalidConfig,
                            format!("operation {op} is not valid for {key}"),
                        ));
                    }
                }
            }
            match bad {
                Some(e) => Err(e),
                None => alter_topic(b, &name, changes, false, req.validate_only).await,
            }
        };
        if let Err((code, msg)) = outcome {
            out.error_code = code.code();
            out.error_message = Some(s(msg));
        }
        r.responses.push(out);
    }
    r
}

/// FindCoordinator (GROUP keys; batched from v4): the leader of the group's
/// `__consumer_offsets` partition, creating the topic on first use.
pub async fn find_coordinator(
    b: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    let keys: Vec<StrBytes> = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut answers = Vec::new();
    for key in &keys {
        let answer: Result<(i32, String, i32), (E, String)> = match req.key_type {
            0 if key.is_empty() => Err((E::InvalidRequest, "empty group id".into())),
            0 => crate::groups::coordinator_of(b, key.as_str())
                .await
                .map_err(|e| {
                    (
                        e,
                        format!("no coordinator for group '{}' yet: {e:?}", key.as_str()),
                    )
                }),
            1 => Err((
                E::InvalidRequest,
                "transactions are not supported by this broker".into(),
            )),
            t => Err((
                E::InvalidRequest,
                format!("unknown coordinator key type {t}"),
            )),
        };
        answers.push(answer);
    }
    if version >= 4 {
        r.coordinators = keys
            .iter()
            .zip(answers)
            .map(|(k, a)| {
                let mut c = find_coordinator_response::Coordinator::default();
                c.key = k.clone();
                match a {
                    Ok((node, host, port)) => {
                        c.node_id = node.into();
                        c.host = s(host);
                        c.port = port;
                    }
                    Err((e, msg)) => {
                        c.error_code = e.code();
                        c.error_message = Some(s(msg));
                        c.node_id = (-1).into();
                        c.port = -1;
                    }
                }
                c
            })
            .collect();
    } else {
        match answers.pop().expect("one key") {
            Ok((node, host, port)) => {
                r.node_id = node.into();
                r.host = s(host);
                r.port = port;
            }
            Err((e, msg)) => {
                r.error_code = e.code();
                if version >= 1 {
                    r.error_message = Some(s(msg));
                }
                r.node_id = (-1).into();
                r.port = -1;
            }
        }
    }
    r
}

/// DescribeCluster.
pub fn describe_cluster(b: &Broker, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = s(b.cluster_id());
    r.controller_id = controller_id(b).into();
    r.endpoint_type = req.endpoint_type;
    r.cluster_authorized_operations = i32::MIN;
    r.brokers = b.with_catalog(|c| {
        c.brokers()
            .filter(|x| !x.fenced)
            .map(|x| {
                let mut br = DescribeClusterBroker::default();
                br.broker_id = x.id.into();
                br.host = s(x.host.clone());
                br.port = x.port;
                br.rack = x.rack.clone().map(s);
                br
            })
            .collect()
    });
    r
}

/// The name KRaft gives the metadata log in DescribeQuorum.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeQuorum: the metadata quorum as its leader sees it (offsets are Raft log indexes);
/// other nodes answer NOT_LEADER_OR_FOLLOWER with the leader they know.
pub fn describe_quorum(b: &Broker, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    use describe_quorum_response::{PartitionData, ReplicaState, TopicData};
    let st = b.quorum().status();
    let leader_id = st.leader.and_then(|l| i32::try_from(l).ok()).unwrap_or(-1);
    let mut r = DescribeQuorumResponse::default();
    for t in req.topics {
        let mut td = TopicData::default();
        td.topic_name = t.topic_name.clone();
        for p in t.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition_index;
            pd.leader_id = leader_id.into();
            pd.leader_epoch = i32::try_from(st.term).unwrap_or(i32::MAX);
            if t.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                pd.error_code = E::UnknownTopicOrPartition.code();
            } else if st.role != skein_core::raft::Role::Leader {
                pd.error_code = E::NotLeaderOrFollower.code();
            } else {
                pd.high_watermark = st.commit_index as i64;
                // Kafka's leader reports its own fetch and caught-up times as now; skein keeps
                // no per-follower times, so the others stay -1 (unknown).
                let now = now_ms() as i64;
                pd.current_voters = st
                    .voters
                    .iter()
                    .map(|v| {
                        let mut rs = ReplicaState::default();
                        rs.replica_id = (*v as i32).into();
                        rs.log_end_offset = st
                            .matched
                            .iter()
                            .find(|(id, _)| id == v)
                            .map_or(-1, |(_, m)| *m as i64);
                        let own = st.leader == Some(*v);
                        rs.last_fetch_timestamp = if own { now } else { -1 };
                        rs.last_caught_up_timestamp = if own { now } else { -1 };
                        rs
                    })
                    .collect();
                pd.observers = b.with_catalog(|c| {
                    c.brokers()
                        .filter(|x| !st.voters.contains(&(x.id as u64)))
                        .map(|x| {
                            let mut rs = ReplicaState::default();
                            rs.replica_id = x.id.into();
                            rs.log_end_offset = -1;
                            rs.last_fetch_timestamp = -1;
                            rs.last_caught_up_timestamp = -1;
                            rs
                        })
                        .collect()
                });
            }
            td.partitions.push(pd);
        }
        r.topics.push(td);
    }
    r
}

/// Client id of a DescribeQuorum that a broker relays to the quorum leader; never relayed again.
pub const QUORUM_RELAY_CLIENT_ID: &str = "skein-describe-quorum-relay";

/// Bound on relaying one DescribeQuorum to the quorum leader (connect, ApiVersions, the request).
const QUORUM_RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// DescribeQuorum asked of any broker. Kafka's brokers forward it to the active controller, and
/// Kafka's admin client (kafka-metadata-quorum) sends it to whichever broker it likes: a node
/// that is not the quorum leader relays the request to the leader's client listener and
/// answers with the leader's answer, or with its own NOT_LEADER_OR_FOLLOWER when no leader is
/// known or it cannot be reached in time.
pub async fn describe_quorum_from_any(
    b: &Broker,
    req: DescribeQuorumRequest,
    version: i16,
    client_id: &str,
) -> DescribeQuorumResponse {
    let local = describe_quorum(b, req.clone());
    let not_leader = local
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code == E::NotLeaderOrFollower.code());
    if !not_leader || client_id == QUORUM_RELAY_CLIENT_ID {
        return local;
    }
    let Some(leader) = b.quorum().status().leader else {
        return local;
    };
    let Some(addr) = i32::try_from(leader).ok().and_then(|id| {
        b.with_catalog(|c| {
            c.broker(id)
                .filter(|x| !x.fenced)
                .map(|x| format!("{}:{}", x.host, x.port))
        })
    }) else {
        return local;
    };
    let relay = async {
        let mut c = crate::client::Client::connect_with(
            &addr,
            QUORUM_RELAY_CLIENT_ID,
            QUORUM_RELAY_TIMEOUT,
        )
        .await?;
        c.send(req, version).await
    };
    match tokio::time::timeout(QUORUM_RELAY_TIMEOUT, relay).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            debug!(%addr, error = %e, "DescribeQuorum relay to the quorum leader failed");
            local
        }
        Err(_) => {
            debug!(%addr, "DescribeQuorum relay to the quorum leader timed out");
            local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A Produce v0-v2 body: acks, timeout, then topics of (name, [(partition, records)]).
    fn legacy_body(acks: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_i16(acks);
        b.put_i32(1500);
        b.put_i32(topics.len() as i32);
        for (name, parts) in topics {
            b.put_i16(name.len() as i16);
            b.put_slice(name.as_bytes());
            b.put_i32(parts.len() as i32);
            for p in *parts {
                b.put_i32(*p);
                b.put_i32(3); // a record set kafka-protocol does not look into
                b.put_slice(b"xyz");
            }
        }
        b
    }

    #[test]
    fn api_versions_lists_produce_from_v0_but_serves_from_v3() {
        let r = api_versions(None);
        let produce = r
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .expect("Produce listed");
        assert_eq!((produce.min_version, produce.max_version), (0, 9));
        assert_eq!(supported_range(ApiKey::Produce), Some((3, 9)));
        // Every other API is listed exactly as served.
        for k in &r.api_keys {
            if k.api_key != ApiKey::Produce as i16 {
                let key = ApiKey::try_from(k.api_key).unwrap();
                assert_eq!(supported_range(key), Some((k.min_version, k.max_version)));
            }
        }
    }

    #[test]
    fn legacy_produce_is_refused_per_partition_in_its_own_format() {
        let body = legacy_body(1, &[("a", &[0, 2]), ("bb", &[7])]);
        for version in 0..=2i16 {
            let refusal = legacy_produce_refusal(&body, version).unwrap().unwrap();
            assert_eq!(
                refusal.topics,
                vec![(s("a"), vec![0, 2]), (s("bb"), vec![7])]
            );
            let mut buf = bytes::BytesMut::new();
            refusal.encode(&mut buf, version).unwrap();
            assert_eq!(buf.len(), refusal.compute_size(version).unwrap());
            let mut want = Vec::new();
            want.put_i32(2);
            for (name, parts) in [("a", &[0, 2][..]), ("bb", &[7][..])] {
                want.put_i16(name.len() as i16);
                want.put_slice(name.as_bytes());
                want.put_i32(parts.len() as i32);
                for p in parts {
                    want.put_i32(*p);
                    want.put_i16(35); // UNSUPPORTED_VERSION
                    want.put_i64(-1);
                    if version >= 2 {
                        want.put_i64(-1);
                    }
                }
            }
            if version >= 1 {
                want.put_i32(0);
            }
            assert_eq!(&buf[..], &want[..], "v{version}");
        }
    }

    #[test]
    fn legacy_produce_acks_0_truncated_and_served_versions() {
        let body = legacy_body(0, &[("a", &[0])]);
        assert_eq!(legacy_produce_refusal(&body, 2).unwrap(), None);
        let body = legacy_body(-1, &[("a", &[0])]);
        assert!(legacy_produce_refusal(&body[..body.len() - 2], 1).is_err());
        assert!(legacy_produce_refusal(&body, 3).is_err());
        assert!(legacy_produce_refusal(&body, -1).is_err());
        assert!(LegacyProduceRefusal::default()
            .encode(&mut bytes::BytesMut::new(), 3)
            .is_err());
    }
}
