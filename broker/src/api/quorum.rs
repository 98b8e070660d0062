//! DescribeQuorum: the metadata quorum's voters and observers, relayed to the quorum leader from
//! any broker.

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use tracing::debug;

use skein_proto::context::RequestContext;

use crate::broker::Broker;
use crate::clock::now_ms;

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
use crate::limits::QUORUM_RELAY_TIMEOUT;

/// DescribeQuorum asked of any broker. Kafka's brokers forward it to the active controller, and
/// Kafka's admin client (kafka-metadata-quorum) sends it to whichever broker it likes: a node
/// that is not the quorum leader relays the request to the leader's client listener and
/// answers with the leader's answer, or with its own NOT_LEADER_OR_FOLLOWER when no leader is
/// known or it cannot be reached in time.
pub async fn describe_quorum_from_any(
    b: &Broker,
    req: DescribeQuorumRequest,
    ctx: &RequestContext,
) -> DescribeQuorumResponse {
    let (version, client_id) = (ctx.api_version, ctx.client_id.as_str());
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
        let mut c =
            skein_client::Client::connect_with(&addr, QUORUM_RELAY_CLIENT_ID, QUORUM_RELAY_TIMEOUT)
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
