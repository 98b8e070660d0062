//! Offsets by time: ListOffsets at the partitions' leaders (log start, log end, or the first
//! offset at or after a timestamp).
//!
//! Invariant: leadership changes are retried after a metadata refresh, at most
//! [`ATTEMPTS_MAX`] rounds; a partition is answered only from its leader's reply.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};

use crate::cluster::{backoff, topic_name, Cluster, TopicInfo, ATTEMPTS_MAX};
use crate::error::{code, is_leadership_error, ClientError};

/// ListOffsets timestamp meaning "the log start".
pub const OFFSET_EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the log end".
pub const OFFSET_LATEST: i64 = -1;

const LIST_OFFSETS_VERSION_MIN: i16 = 1;
const LIST_OFFSETS_VERSION_MAX: i16 = 7;

/// Offsets of `partitions` of `topic` from ListOffsets at their leaders: `timestamp` -2 for
/// the log start, -1 for the log end, else the first offset whose record timestamp is at or
/// after it (-1 where no record is that new). Leadership errors refresh `topic` and retry.
pub async fn list_offsets(
    cluster: &mut Cluster,
    topic: &mut TopicInfo,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let mut offsets = BTreeMap::new();
    let mut attempt = 1;
    let mut unresolved: Vec<i32> = partitions.to_vec();
    while !unresolved.is_empty() {
        let mut failure = None;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &unresolved {
            match topic.leader_of(*p) {
                Some(l) => by_leader.entry(l).or_default().push(*p),
                None => {
                    failure = Some(ClientError::kafka(
                        format!("partition {}-{p}", topic.name),
                        code::LEADER_NOT_AVAILABLE,
                        None,
                    ))
                }
            }
        }
        for (leader, partitions) in by_leader {
            match list_offsets_at(cluster, &topic.name, leader, &partitions, timestamp).await {
                Ok(found) => {
                    for (p, offset) in found {
                        offsets.insert(p, offset);
                        unresolved.retain(|u| *u != p);
                    }
                }
                Err(e) if e.is_retriable() => {
                    cluster.forget(Some(leader), &e);
                    failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if failure.is_none() && !unresolved.is_empty() {
            // A leader answered without some partitions asked for: ask again, boundedly.
            failure = Some(ClientError::kafka(
                format!("list offsets of {}", topic.name),
                -1,
                Some("the response left partitions out"),
            ));
        }
        if let Some(e) = failure {
            if attempt >= ATTEMPTS_MAX {
                return Err(e);
            }
            attempt += 1;
            backoff().await;
            *topic = cluster.topic(&topic.name.clone()).await?;
        }
    }
    Ok(offsets)
}

/// One ListOffsets to one leader; partitions that failed retriably are left out.
async fn list_offsets_at(
    cluster: &mut Cluster,
    name: &str,
    leader: i32,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>, ClientError> {
    let client = cluster.node(leader).await?;
    let version = client.pick_version_between::<ListOffsetsRequest>(
        LIST_OFFSETS_VERSION_MIN,
        LIST_OFFSETS_VERSION_MAX,
    )?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = client.send(request, version).await?;
    let mut found = Vec::new();
    let mut retriable = None;
    for p in response
        .topics
        .iter()
        .filter(|t| t.name.as_str() == name)
        .flat_map(|t| t.partitions.iter())
    {
        if p.error_code == 0 {
            found.push((p.partition_index, p.offset));
            continue;
        }
        let err = ClientError::kafka(
            format!("list offsets of {name}-{}", p.partition_index),
            p.error_code,
            None,
        );
        if is_leadership_error(p.error_code) {
            retriable = Some(err);
        } else {
            return Err(err);
        }
    }
    match (found.is_empty(), retriable) {
        (true, Some(e)) => Err(e),
        _ => Ok(found),
    }
}
