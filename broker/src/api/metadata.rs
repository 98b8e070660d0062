//! Metadata and DescribeCluster: brokers, topics, partitions and leaders as this broker's catalog
//! has them.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use tracing::debug;

use crate::broker::Broker;

use super::*;

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
