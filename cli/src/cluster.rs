//! `skein cluster status`: the metadata quorum (DescribeQuorum at the quorum leader) and the
//! live brokers (Metadata).

use anyhow::{anyhow, bail};
use kafka_protocol::messages::MetadataResponse;
use skein_client::{backoff, topic_name, Client, ClientError, Cluster, ATTEMPTS_MAX};

use crate::write_stdout;

/// `skein cluster ...`: the cluster as a whole.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCmd {
    /// Show the metadata quorum (voters, leader, term, committed offset, each voter's log end)
    /// and the live brokers.
    Status,
}

/// Runs a `skein cluster` verb.
pub async fn run_cluster(bootstrap: &str, cmd: ClusterCmd) -> anyhow::Result<()> {
    let ClusterCmd::Status = cmd;
    let mut cluster = Cluster::connect(bootstrap).await?;
    let mut attempt = 0;
    let (md, quorum) = loop {
        attempt += 1;
        let md = cluster.metadata(Some(&[])).await?;
        let leader = md.controller_id.0;
        let answer = match cluster.node(leader).await {
            Ok(client) => describe_quorum(client).await,
            Err(e) => Err(e.into()),
        };
        match answer {
            Ok(q) if q.error_code == 0 || attempt >= ATTEMPTS_MAX => break (md, q),
            Err(e) if attempt >= ATTEMPTS_MAX => return Err(e),
            Ok(_) | Err(_) => {
                cluster.close_node(leader);
                backoff().await;
            }
        }
    };
    let out = format_cluster_status(&md, &quorum);
    write_stdout(out.as_bytes())?;
    if quorum.error_code != 0 {
        return Err(ClientError::kafka(
            "describe the metadata quorum".to_string(),
            quorum.error_code,
            None,
        )
        .into());
    }
    Ok(())
}

/// The quorum partition's description (its error code lifted to the top).
struct QuorumView {
    error_code: i16,
    leader: i32,
    term: i32,
    committed: i64,
    voters: Vec<(i32, i64)>,
}

async fn describe_quorum(client: &mut Client) -> anyhow::Result<QuorumView> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::DescribeQuorumRequest;
    if !client.supports::<DescribeQuorumRequest>() {
        bail!("the broker does not support DescribeQuorum (is it a skein or KRaft broker?)");
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
        .ok_or_else(|| anyhow!("DescribeQuorum response has no metadata partition"))?;
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

fn format_cluster_status(md: &MetadataResponse, q: &QuorumView) -> String {
    let mut out = String::new();
    let cluster_id = md.cluster_id.as_deref().unwrap_or("-");
    out.push_str(&format!("Cluster id:        {cluster_id}\n"));
    if q.error_code == 0 {
        out.push_str(&format!(
            "Quorum leader:     {} (term {})\n",
            q.leader, q.term
        ));
        out.push_str(&format!("Committed offset:  {}\n", q.committed));
        out.push_str("Voters:\n");
        out.push_str("  ID\tLOG END\tLAG\tROLE\n");
        for (id, end) in &q.voters {
            let lag = if *end >= 0 {
                (q.committed - end).max(0).to_string()
            } else {
                "-".into()
            };
            let role = if *id == q.leader {
                "leader"
            } else {
                "follower"
            };
            out.push_str(&format!("  {id}\t{end}\t{lag}\t{role}\n"));
        }
    } else {
        out.push_str("Quorum leader:     unknown (no leader answered)\n");
    }
    let mut brokers: Vec<_> = md.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    out.push_str(&format!("Brokers ({} live):\n", brokers.len()));
    out.push_str("  ID\tADDRESS\tRACK\n");
    for b in brokers {
        let rack = b.rack.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "  {}\t{}:{}\t{rack}\n",
            b.node_id.0,
            b.host.as_str(),
            b.port
        ));
    }
    let missing: Vec<String> = q
        .voters
        .iter()
        .filter(|(id, _)| !md.brokers.iter().any(|b| b.node_id.0 == *id))
        .map(|(id, _)| id.to_string())
        .collect();
    if !missing.is_empty() {
        out.push_str(&format!(
            "Voters not serving as brokers (fenced or not registered): {}\n",
            missing.join(", ")
        ));
    }
    out
}
