//! Admin requests: topics (create, delete, configs) and the metadata quorum.
//!
//! Invariant: creating and deleting go to the controller ([`Cluster::controller_call`]);
//! every retry is bounded by [`ATTEMPTS_MAX`].

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{backoff, topic_name, Cluster, ATTEMPTS_MAX};
use crate::connection::Client;
use crate::error::ClientError;

/// Server-side timeout given to CreateTopics and DeleteTopics.
const SERVER_TIMEOUT_MS: i32 = 30_000;
const CREATE_TOPICS_VERSION_MAX: i16 = 7;
const DELETE_TOPICS_VERSION_MAX: i16 = 6;
const DESCRIBE_CONFIGS_VERSION_MAX: i16 = 4;
/// DescribeConfigs resource type for topics.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs config source meaning "Kafka's default".
const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// One config of a topic as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    /// The config's name, e.g. `retention.ms`.
    pub name: String,
    /// Its value; `None` when the broker hides it (sensitive) or it has none.
    pub value: Option<String>,
    /// Whether the broker marks it sensitive.
    pub is_sensitive: bool,
}

/// Creates a topic (at the controller), with config overrides `config` (key, value).
pub async fn create_topic(
    cluster: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    config: &[(String, String)],
) -> Result<(), ClientError> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            config
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    cluster
        .controller_call(format!("create topic '{name}'"), async |client| {
            let version = client.pick_version::<CreateTopicsRequest>(CREATE_TOPICS_VERSION_MAX)?;
            let request = CreateTopicsRequest::default()
                .with_topics(vec![topic.clone()])
                .with_timeout_ms(SERVER_TIMEOUT_MS);
            let response = client.send(request, version).await?;
            let result = response
                .topics
                .iter()
                .find(|t| t.name.as_str() == name)
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "CreateTopics response does not mention topic '{name}'"
                    ))
                })?;
            Ok((
                result.error_code,
                result.error_message.as_deref().map(str::to_string),
            ))
        })
        .await
}

/// Deletes a topic (at the controller).
pub async fn delete_topic(cluster: &mut Cluster, name: &str) -> Result<(), ClientError> {
    cluster
        .controller_call(format!("delete topic '{name}'"), async |client| {
            let version = client.pick_version::<DeleteTopicsRequest>(DELETE_TOPICS_VERSION_MAX)?;
            let mut request = DeleteTopicsRequest::default().with_timeout_ms(SERVER_TIMEOUT_MS);
            // v6 names topics by (name, id); earlier versions by name alone.
            if version >= 6 {
                request.topics =
                    vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
            } else {
                request.topic_names = vec![topic_name(name)];
            }
            let response = client.send(request, version).await?;
            let result = response
                .responses
                .iter()
                .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(name))
                .or(response.responses.first())
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "DeleteTopics response does not mention topic '{name}'"
                    ))
                })?;
            Ok((
                result.error_code,
                result.error_message.as_deref().map(str::to_string),
            ))
        })
        .await
}

/// The topic's configs that are not Kafka's defaults, in the broker's order; `None` if the
/// broker has no DescribeConfigs.
pub async fn describe_topic_configs(
    cluster: &mut Cluster,
    name: &str,
) -> Result<Option<Vec<ConfigEntry>>, ClientError> {
    let client = cluster.bootstrap().await?;
    if !client.supports::<DescribeConfigsRequest>() {
        return Ok(None);
    }
    let version = client.pick_version::<DescribeConfigsRequest>(DESCRIBE_CONFIGS_VERSION_MAX)?;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(None)]);
    let response = client.send(request, version).await?;
    let result = response
        .results
        .iter()
        .find(|r| r.resource_name.as_str() == name)
        .ok_or_else(|| {
            ClientError::Protocol(format!(
                "DescribeConfigs response does not mention topic '{name}'"
            ))
        })?;
    if result.error_code != 0 {
        return Err(ClientError::kafka(
            format!("describe configs of topic '{name}'"),
            result.error_code,
            result.error_message.as_deref(),
        ));
    }
    let configs = result
        .configs
        .iter()
        // Like Java's ConfigEntry.isDefault(): only DEFAULT_CONFIG counts as default.
        .filter(|c| c.config_source != CONFIG_SOURCE_DEFAULT)
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            is_sensitive: c.is_sensitive,
        })
        .collect();
    Ok(Some(configs))
}

/// The quorum partition's description (its error code lifted to the top).
#[derive(Debug, Clone, PartialEq)]
pub struct QuorumView {
    /// The partition's error code, or the request's (0: none).
    pub error_code: i16,
    /// The quorum leader's node id.
    pub leader: i32,
    /// The leader's term (epoch).
    pub term: i32,
    /// The committed offset (the quorum's high watermark).
    pub committed: i64,
    /// Each voter's node id and log end offset (-1 if unknown).
    pub voters: Vec<(i32, i64)>,
}

/// DescribeQuorum of the metadata partition, sent with `client`.
pub async fn describe_quorum(client: &mut Client) -> Result<QuorumView, ClientError> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::DescribeQuorumRequest;
    if !client.supports::<DescribeQuorumRequest>() {
        return Err(ClientError::NotSupported {
            api: "DescribeQuorum".to_owned(),
            needed_by: "describing the metadata quorum (skein and KRaft brokers have it)"
                .to_owned(),
        });
    }
    let version = client.pick_version::<DescribeQuorumRequest>(1)?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name("__cluster_metadata"))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response = client.send(request, version).await?;
    if response.error_code != 0 {
        return Ok(QuorumView {
            error_code: response.error_code,
            leader: -1,
            term: -1,
            committed: -1,
            voters: vec![],
        });
    }
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| {
            ClientError::Protocol("DescribeQuorum response has no metadata partition".to_owned())
        })?;
    Ok(QuorumView {
        error_code: p.error_code,
        leader: p.leader_id.0,
        term: p.leader_epoch,
        committed: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
    })
}

/// The cluster's metadata and its quorum, asked of the quorum leader, retried (boundedly)
/// while the leader moves. A quorum answer with an error code is returned as it is.
pub async fn describe_metadata_quorum(
    cluster: &mut Cluster,
) -> Result<(MetadataResponse, QuorumView), ClientError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let md = cluster.metadata(Some(&[])).await?;
        let leader = md.controller_id.0;
        let answer = match cluster.node(leader).await {
            Ok(client) => describe_quorum(client).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(q) if q.error_code == 0 || attempt >= ATTEMPTS_MAX => return Ok((md, q)),
            Err(e) if attempt >= ATTEMPTS_MAX => return Err(e),
            Ok(_) | Err(_) => {
                cluster.close_node(leader);
                backoff().await;
            }
        }
    }
}

/// Deletes the records of `topic` below `offset` in each of `partitions` (-1: below the high
/// watermark), asking each partition's leader; the new low watermark (log start) of each, in
/// order. A partition whose leader moved is retried after a metadata refresh.
pub async fn delete_records(
    cluster: &mut Cluster,
    topic: &str,
    partitions: &[i32],
    offset: i64,
) -> Result<Vec<(i32, i64)>, ClientError> {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::DeleteRecordsRequest;
    let mut out = Vec::new();
    for &p in partitions {
        let what = format!("delete records of '{topic}' partition {p}");
        let mut attempt = 1;
        let low = loop {
            let info = cluster.topic(topic).await?;
            let leader = info
                .partitions
                .iter()
                .find(|i| i.index == p)
                .map(|i| i.leader)
                .ok_or_else(|| ClientError::kafka(&what, 3, Some("no such partition")))?;
            let res: Result<i64, ClientError> = async {
                let client = cluster.node(leader).await?;
                let version = client.pick_version::<DeleteRecordsRequest>(2)?;
                let request = DeleteRecordsRequest::default()
                    .with_timeout_ms(SERVER_TIMEOUT_MS)
                    .with_topics(vec![DeleteRecordsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![DeleteRecordsPartition::default()
                            .with_partition_index(p)
                            .with_offset(offset)])]);
                let response = client.send(request, version).await?;
                let r = response
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .find(|r| r.partition_index == p)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!("DeleteRecords answer lacks partition {p}"))
                    })?;
                if r.error_code != 0 {
                    return Err(ClientError::kafka(&what, r.error_code, None));
                }
                Ok(r.low_watermark)
            }
            .await;
            match res {
                Ok(low) => break low,
                Err(e) if e.is_retriable() && attempt < ATTEMPTS_MAX => {
                    attempt += 1;
                    backoff().await;
                }
                Err(e) => return Err(e),
            }
        };
        out.push((p, low));
    }
    Ok(out)
}
