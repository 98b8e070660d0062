//! `skein topics create|list|describe|delete`, shown the way kafka-topics.sh shows them.
//! Creating and deleting go to the controller ([`Cluster::controller_call`]).

use std::io::Write;

use anyhow::anyhow;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use skein_client::{topic_name, ClientError, Cluster, TopicInfo};

use crate::write_stdout;

/// Server-side timeout given to CreateTopics and DeleteTopics.
const SERVER_TIMEOUT_MS: i32 = 30_000;
const CREATE_TOPICS_VERSION_MAX: i16 = 7;
const DELETE_TOPICS_VERSION_MAX: i16 = 6;
const DESCRIBE_CONFIGS_VERSION_MAX: i16 = 4;
/// DescribeConfigs resource type for topics.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs config source meaning "Kafka's default".
const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// `skein topics ...`: create, list, describe and delete topics.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TopicsCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// A topic config override KEY=VALUE (repeatable), e.g. --config retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        config: Vec<(String, String)>,
        /// Replicas per partition.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: i16,
    },
    /// List topic names, one per line.
    List,
    /// Show a topic's partitions (leader, replicas, ISR) and its non-default configs.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

/// Runs `skein topics ...` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_topics(bootstrap: &str, cmd: TopicsCmd) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    match cmd {
        TopicsCmd::Create {
            name,
            partitions,
            config,
            replication_factor,
        } => {
            create_topic(&mut cluster, &name, partitions, replication_factor, &config).await?;
            println!("Created topic {name}.");
        }
        TopicsCmd::List => {
            let response = cluster.metadata(None).await?;
            let mut names: Vec<String> = response
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .collect();
            names.sort();
            let mut out = Vec::new();
            for n in names {
                writeln!(out, "{n}")?;
            }
            write_stdout(&out)?;
        }
        TopicsCmd::Describe { name } => describe_topic(&mut cluster, &name).await?,
        TopicsCmd::Delete { name } => {
            delete_topic(&mut cluster, &name).await?;
            println!("Deleted topic {name}.");
        }
    }
    Ok(())
}

async fn create_topic(
    cluster: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    config: &[(String, String)],
) -> anyhow::Result<()> {
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
        .await?;
    Ok(())
}

async fn delete_topic(cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
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
        .await?;
    Ok(())
}
async fn describe_topic(cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let info = cluster.topic(name).await?;
    let configs = describe_topic_configs(cluster, name).await?;
    let out = format_topic_description(&info, configs.as_deref());
    write_stdout(out.as_bytes())?;
    Ok(())
}

/// The topic's non-default configs as `key=value`; `None` if the broker has no DescribeConfigs.
async fn describe_topic_configs(
    cluster: &mut Cluster,
    name: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let client = cluster.bootstrap().await?;
    if !client.supports::<DescribeConfigsRequest>() {
        eprintln!("warning: the broker does not support DescribeConfigs; configs not shown");
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
        .ok_or_else(|| anyhow!("DescribeConfigs response does not mention topic '{name}'"))?;
    if result.error_code != 0 {
        return Err(ClientError::kafka(
            format!("describe configs of topic '{name}'"),
            result.error_code,
            result.error_message.as_deref(),
        )
        .into());
    }
    let mut configs: Vec<String> = result
        .configs
        .iter()
        // Like Java's ConfigEntry.isDefault(): only DEFAULT_CONFIG counts as default.
        .filter(|c| c.config_source != CONFIG_SOURCE_DEFAULT)
        .map(|c| {
            let value = match (&c.value, c.is_sensitive) {
                (Some(v), _) => v.to_string(),
                (None, true) => "<sensitive>".to_owned(),
                (None, false) => "null".to_owned(),
            };
            format!("{}={value}", c.name.as_str())
        })
        .collect();
    configs.sort();
    Ok(Some(configs))
}

/// kafka-topics.sh --describe layout: a topic line, then one line per partition.
fn format_topic_description(info: &TopicInfo, configs: Option<&[String]>) -> String {
    let join = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let replication_factor = info.partitions.first().map_or(0, |p| p.replicas.len());
    let mut out = format!("Topic: {}", info.name);
    if let Some(id) = &info.topic_id {
        out.push_str(&format!("\tTopicId: {id}"));
    }
    out.push_str(&format!(
        "\tPartitionCount: {}\tReplicationFactor: {replication_factor}",
        info.partitions.len()
    ));
    match configs {
        Some(c) => out.push_str(&format!("\tConfigs: {}\n", c.join(","))),
        None => out.push('\n'),
    }
    for p in &info.partitions {
        let leader = if p.leader < 0 {
            "none".to_owned()
        } else {
            p.leader.to_string()
        };
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
            info.name,
            p.index,
            join(&p.replicas),
            join(&p.isr)
        ));
        if p.error_code != 0 {
            out.push_str(&format!(
                "\tError: {}",
                skein_client::error_code_name(p.error_code)
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_client::PartitionInfo;

    #[test]
    fn describe_output_looks_like_kafka_topics() {
        let info = TopicInfo {
            name: "t".into(),
            topic_id: None,
            partitions: vec![
                PartitionInfo {
                    index: 0,
                    leader: 1,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    error_code: 0,
                },
                PartitionInfo {
                    index: 1,
                    leader: -1,
                    replicas: vec![2, 1],
                    isr: vec![],
                    error_code: 5,
                },
            ],
        };
        let configs = vec!["retention.ms=5".to_owned()];
        assert_eq!(
            format_topic_description(&info, Some(&configs)),
            "Topic: t\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: retention.ms=5\n\
             \tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\n\
             \tTopic: t\tPartition: 1\tLeader: none\tReplicas: 2,1\tIsr: \tError: LEADER_NOT_AVAILABLE\n"
        );
    }
}
