//! `skein topics create|list|describe|delete|delete-records`, shown the way kafka-topics.sh shows them.
//! The requests are skein-client's ([`skein_client::admin`]); this module parses and prints.

use std::io::Write;

use skein_client::{admin, Cluster, TopicInfo};

use crate::write_stdout;

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
    /// Delete a topic's records below an offset (moves the log start, as
    /// kafka-delete-records.sh does).
    DeleteRecords {
        /// Topic name.
        name: String,
        /// Delete the records below this offset; -1: below the high watermark (all of them).
        #[arg(long, allow_hyphen_values = true, value_parser = clap::value_parser!(i64).range(-1..))]
        offset: i64,
        /// The partition (repeatable); every partition when none is given.
        #[arg(long = "partition")]
        partitions: Vec<i32>,
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
            admin::create_topic(&mut cluster, &name, partitions, replication_factor, &config)
                .await?;
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
            admin::delete_topic(&mut cluster, &name).await?;
            println!("Deleted topic {name}.");
        }
        TopicsCmd::DeleteRecords {
            name,
            offset,
            mut partitions,
        } => {
            if partitions.is_empty() {
                let info = cluster.topic(&name).await?;
                partitions = info.partitions.iter().map(|p| p.index).collect();
            }
            let lows = admin::delete_records(&mut cluster, &name, &partitions, offset).await?;
            let mut out = Vec::new();
            for (p, low) in lows {
                writeln!(out, "partition: {name}-{p}\tlow_watermark: {low}")?;
            }
            write_stdout(&out)?;
        }
    }
    Ok(())
}

async fn describe_topic(cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let info = cluster.topic(name).await?;
    let configs = describe_topic_configs(cluster, name).await?;
    let out = format_topic_description(&info, configs.as_deref());
    write_stdout(out.as_bytes())?;
    Ok(())
}

/// The topic's non-default configs as `key=value`, sorted; `None` if the broker has no
/// DescribeConfigs.
async fn describe_topic_configs(
    cluster: &mut Cluster,
    name: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let Some(entries) = admin::describe_topic_configs(cluster, name).await? else {
        eprintln!("warning: the broker does not support DescribeConfigs; configs not shown");
        return Ok(None);
    };
    let mut configs: Vec<String> = entries
        .iter()
        .map(|c| {
            let value = match (&c.value, c.is_sensitive) {
                (Some(v), _) => v.clone(),
                (None, true) => "<sensitive>".to_owned(),
                (None, false) => "null".to_owned(),
            };
            format!("{}={value}", c.name)
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
