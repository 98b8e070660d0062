//! Committed offsets: OffsetCommit (answered once the commit is replicated), OffsetFetch (read
//! from the shard) and OffsetDelete.

use crate::limits::GROUP_MAX_METADATA;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use skein_core::coordinator::group_shard::{GroupRequest, GroupResponse};
use skein_core::offsets::OffsetValue;
use skein_proto::errors::group_error;

use super::{call, read, s};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::limits::GROUP_COMMIT_TIMEOUT_MS;

/// How long a write's answer is waited for (the runtime fails it after the commit timeout).
fn wait() -> Duration {
    Duration::from_millis(GROUP_COMMIT_TIMEOUT_MS * 2)
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
                    } else if meta.len() > GROUP_MAX_METADATA {
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
    let request = GroupRequest::Commit {
        group: group.clone(),
        member: req.member_id.to_string(),
        instance: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: req.generation_id_or_member_epoch,
        offsets: valid,
    };
    let outcome: Result<(), E> = match call(b, &group, request, wait()).await {
        Ok(GroupResponse::Commit(res)) => res.map_err(group_error),
        Ok(_) => Err(E::UnknownServerError),
        Err(e) => Err(e.code(E::RequestTimedOut)),
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
    read(b, group, |shard| match topics {
        None => {
            let mut out: Fetched = Vec::new();
            for ((t, p), c) in shard.groups().offsets(group) {
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
                    .map(|p| match shard.groups().offset(group, &t, p) {
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
    let request = GroupRequest::DeleteOffsets {
        group: group.clone(),
        partitions: parts,
    };
    let per = match call(b, &group, request, wait()).await {
        Ok(GroupResponse::DeleteOffsets(Ok(per))) => per,
        Ok(GroupResponse::DeleteOffsets(Err(e))) => {
            r.error_code = group_error(e).code();
            return r;
        }
        Ok(_) => {
            r.error_code = E::UnknownServerError.code();
            return r;
        }
        Err(e) => {
            r.error_code = e.code(E::RequestTimedOut).code();
            return r;
        }
    };
    let mut i = 0;
    for t in &req.topics {
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            if let Some(Err(e)) = per.get(i) {
                pr.error_code = group_error(*e).code();
            }
            i += 1;
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
