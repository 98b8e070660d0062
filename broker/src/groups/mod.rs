//! The group APIs: handlers map Kafka messages to requests for the group coordinator runtime
//! (`crate::group_runtime`) and its answers back: `classic.rs` (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), `offsets.rs` (OffsetCommit, OffsetFetch, OffsetDelete), `admin.rs`
//! (ListGroups, DescribeGroups, DeleteGroups) and `consumer.rs` (KIP-848
//! ConsumerGroupHeartbeat and ConsumerGroupDescribe); this module finds a group's coordinator
//! and creates `__consumer_offsets` on first use.
//!
//! Invariant: a group's requests go to the shard of its offsets partition, by the partition
//! count the catalog holds now.

mod admin;
mod classic;
mod consumer;
mod offsets;

use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::protocol::StrBytes;
use skein_core::coordinator::group_shard::{GroupRequest, GroupResponse, GroupShard};
use skein_core::coordinator::partition_for;
use tracing::{info, warn};

pub use admin::{delete_groups, describe_groups, list_groups};
pub use classic::{heartbeat, join_group, leave_group, sync_group};
pub use consumer::{consumer_group_describe, consumer_group_heartbeat};
pub use offsets::{offset_commit, offset_delete, offset_fetch};

use crate::broker::Broker;
pub(crate) use crate::group_runtime::{CallError, OFFSETS_TOPIC};

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

/// The offsets partition of a group, by the live partition count of the topic.
fn index_of(b: &Broker, group: &str) -> Result<i32, E> {
    if group.is_empty() {
        return Err(E::InvalidGroupId);
    }
    match b.with_catalog(|c| c.topic(OFFSETS_TOPIC).map(|t| t.parts.len() as i32)) {
        Some(n) if n > 0 => Ok(partition_for(group, n)),
        _ => Err(E::CoordinatorNotAvailable),
    }
}

/// Sends `request` for `group` to its shard; the Kafka error if it has none or fails.
async fn call(
    b: &Broker,
    group: &str,
    request: GroupRequest,
    wait: Duration,
) -> Result<GroupResponse, CallError> {
    let index = index_of(b, group).map_err(CallError::Refused)?;
    b.groups.call(b, index, request, wait).await
}

/// Runs `f` on the shard of `group` (reads).
fn read<T>(b: &Broker, group: &str, f: impl FnOnce(&GroupShard) -> T) -> Result<T, E> {
    let index = index_of(b, group)?;
    b.groups.read(index, f)
}

/// Creates `__consumer_offsets` if it does not exist yet; true once it exists.
pub async fn ensure_offsets_topic(b: &Broker) -> bool {
    let policy = b.with_catalog(|c| {
        c.topic(OFFSETS_TOPIC)
            .map(|t| t.config.overrides().get("cleanup.policy").cloned())
    });
    if let Some(policy) = policy {
        if policy.as_deref() != Some("compact") {
            // Made before skein compacted logs: compact it from now on, as Kafka's is.
            let changes = vec![("cleanup.policy".to_string(), Some("compact".to_string()))];
            match b
                .commit(|c| c.plan_alter(OFFSETS_TOPIC, &changes, false))
                .await
            {
                Ok(_) => info!("{OFFSETS_TOPIC} is compacted from now on"),
                Err(e) => warn!(error = %e, "making {OFFSETS_TOPIC} compacted failed"),
            }
        }
        return true;
    }
    // The cluster's size is its voters (a single node has none configured) or the brokers
    // that ever registered, whichever is larger: a cluster whose other brokers are still
    // starting gets COORDINATOR_NOT_AVAILABLE for a moment rather than an offsets topic with
    // too few replicas forever, and a single node needs no configuration.
    let size = b
        .with_catalog(|c| c.brokers().count())
        .max(b.settings.voters.len())
        .max(1);
    let rf = b
        .settings
        .offsets_topic_replication_factor
        .min(i16::try_from(size).unwrap_or(i16::MAX));
    // As Kafka's: compacted (the newest commit of each group and partition is what counts).
    let configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            b.settings.offsets_topic_segment_bytes.to_string(),
        ),
    ];
    let res = b
        .create_topic(
            OFFSETS_TOPIC,
            b.settings.offsets_topic_partitions,
            b.spread(rf),
            &configs,
            false,
        )
        .await;
    match res {
        Ok(()) => {
            info!(
                partitions = b.settings.offsets_topic_partitions,
                replication_factor = rf,
                "created {OFFSETS_TOPIC}"
            );
            true
        }
        Err(e) => {
            let exists = b.with_catalog(|c| c.topic(OFFSETS_TOPIC).is_some());
            if !exists {
                warn!(error = %e, "creating {OFFSETS_TOPIC} failed");
            }
            exists
        }
    }
}

/// The coordinator of `group`: (node, host, port) or why there is none.
pub async fn coordinator_of(b: &Broker, group: &str) -> Result<(i32, String, i32), E> {
    if !ensure_offsets_topic(b).await {
        return Err(E::CoordinatorNotAvailable);
    }
    let index = index_of(b, group)?;
    b.with_catalog(|c| {
        let leader = c
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.parts.get(index as usize))
            .map(|p| p.leader)
            .unwrap_or(-1);
        match c.broker(leader) {
            Some(info) if !info.fenced => Ok((leader, info.host.clone(), info.port)),
            _ => Err(E::CoordinatorNotAvailable),
        }
    })
}
