//! `skein cluster status`: the metadata quorum (DescribeQuorum at the quorum leader) and the
//! live brokers (Metadata).

use kafka_protocol::messages::MetadataResponse;
use skein_client::admin::{self, QuorumView};
use skein_client::{ClientError, Cluster};

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
    let (md, quorum) = admin::describe_metadata_quorum(&mut cluster).await?;
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
