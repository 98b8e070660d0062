//! Consumer groups from the outside, as kafka-consumer-groups.sh manages them: list,
//! describe, committed offsets, delete, and commits while a group has no members.
//!
//! Invariant: every request but ListGroups goes to the group's coordinator
//! ([`coordinator_call`]), which is found again when it moves, at most [`ATTEMPTS_MAX`]
//! times; ListGroups goes to each broker for the groups it coordinates.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::assignment::{decode_assignment, Assignment};
use crate::cluster::{backoff, topic_name, Cluster, ATTEMPTS_MAX};
use crate::connection::Client;
use crate::coordinator::coordinator_call;
use crate::error::{code, ClientError};

const LIST_GROUPS_VERSION_MAX: i16 = 5;
/// v6 names an unknown group GROUP_ID_NOT_FOUND; before, it is a "Dead" group.
const DESCRIBE_GROUPS_VERSION_MAX: i16 = 6;
const DELETE_GROUPS_VERSION_MAX: i16 = 2;
/// OffsetFetch v2 is the first to take "all topics" (a null topic list).
const OFFSET_FETCH_VERSION_MIN: i16 = 2;
/// OffsetFetch v8 batches groups; one group at a time is all this needs.
const OFFSET_FETCH_VERSION_MAX: i16 = 7;
const OFFSET_COMMIT_VERSION_MIN: i16 = 2;
/// OffsetCommit v9 is the KIP-848 protocol (member epochs).
const OFFSET_COMMIT_VERSION_MAX: i16 = 8;

/// One group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedGroup {
    /// The group id.
    pub id: String,
    /// Its state (empty before ListGroups v4).
    pub state: String,
    /// Its protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
}

/// The groups one broker coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedGroups {
    /// The groups, in the broker's order.
    pub groups: Vec<ListedGroup>,
    /// Whether the broker was still loading groups after the last attempt, so the list may
    /// be short.
    pub still_loading: bool,
}

/// The groups broker `node` coordinates, retrying while it is still loading some.
pub async fn list_groups_at(cluster: &mut Cluster, node: i32) -> Result<ListedGroups, ClientError> {
    let mut attempt = 1;
    loop {
        let result: Result<_, ClientError> = async {
            let client = cluster.node(node).await?;
            let version = client.pick_version::<ListGroupsRequest>(LIST_GROUPS_VERSION_MAX)?;
            let response = client.send(ListGroupsRequest::default(), version).await?;
            let groups: Vec<ListedGroup> = response
                .groups
                .iter()
                .map(|g| ListedGroup {
                    id: g.group_id.to_string(),
                    // Before v4 ListGroups has no state.
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                })
                .collect();
            Ok((response.error_code, groups))
        }
        .await;
        match result {
            Ok((0, groups)) => {
                return Ok(ListedGroups {
                    groups,
                    still_loading: false,
                })
            }
            Ok((code::COORDINATOR_LOAD_IN_PROGRESS, groups)) if attempt >= ATTEMPTS_MAX => {
                return Ok(ListedGroups {
                    groups,
                    still_loading: true,
                })
            }
            Ok((code::COORDINATOR_LOAD_IN_PROGRESS, _)) => {}
            Ok((code, _)) => {
                return Err(ClientError::kafka(
                    format!("list groups on broker {node}"),
                    code,
                    None,
                ))
            }
            Err(e) => {
                cluster.forget(Some(node), &e);
                if !e.breaks_connection() || attempt >= ATTEMPTS_MAX {
                    return Err(e);
                }
            }
        }
        attempt += 1;
        backoff().await;
    }
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member id.
    pub id: String,
    /// The static member's instance id.
    pub instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// The member's host as the coordinator saw it.
    pub host: String,
    /// The decoded assignment, or why it could not be decoded.
    pub assignment: Result<Assignment, String>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// The coordinator's node id.
    pub coordinator: i32,
    /// The group's state (`Stable`, `Empty`, ...).
    pub state: String,
    /// Its protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// The assignor, while the group is stable or completing a rebalance.
    pub protocol: String,
    /// The members.
    pub members: Vec<Member>,
}

impl GroupDescription {
    /// Whether the group has no members, so that its offsets may be changed or it deleted.
    pub fn is_inactive(&self) -> bool {
        self.members.is_empty() && matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

/// DescribeGroups at the coordinator; `None` if the group does not exist.
pub async fn describe_group(
    cluster: &mut Cluster,
    group: &str,
) -> Result<Option<GroupDescription>, ClientError> {
    let (coordinator, code, described) =
        coordinator_call(cluster, group, async |client: &mut Client| {
            let version =
                client.pick_version::<DescribeGroupsRequest>(DESCRIBE_GROUPS_VERSION_MAX)?;
            let request = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
            let response = client.send(request, version).await?;
            let g = response
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| {
                    ClientError::kafka(
                        format!("describe group '{group}'"),
                        -1,
                        Some("the DescribeGroups response does not mention it"),
                    )
                })?;
            Ok((g.error_code, g))
        })
        .await?;
    if code == code::GROUP_ID_NOT_FOUND || (code == 0 && described.group_state.as_str() == "Dead") {
        return Ok(None);
    }
    if code != 0 {
        return Err(ClientError::kafka(
            format!("describe group '{group}'"),
            code,
            described.error_message.as_deref(),
        ));
    }
    let members = described
        .members
        .iter()
        .map(|m| Member {
            id: m.member_id.to_string(),
            instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: decode_assignment(&m.member_assignment).map_err(|e| e.to_string()),
        })
        .collect();
    Ok(Some(GroupDescription {
        coordinator,
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
    }))
}

/// The group's committed offsets of every topic, from OffsetFetch at the coordinator.
pub async fn fetch_committed(
    cluster: &mut Cluster,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    let (_, code, offsets) = coordinator_call(cluster, group, async |client: &mut Client| {
        let version = client.pick_version_between::<OffsetFetchRequest>(
            OFFSET_FETCH_VERSION_MIN,
            OFFSET_FETCH_VERSION_MAX,
        )?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(None);
        let response = client.send(request, version).await?;
        let mut offsets = BTreeMap::new();
        let mut partition_error = 0;
        for t in &response.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    partition_error = p.error_code;
                } else if p.committed_offset >= 0 {
                    offsets.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        let code = if response.error_code != 0 {
            response.error_code
        } else {
            partition_error
        };
        Ok((code, offsets))
    })
    .await?;
    if code != 0 {
        return Err(ClientError::kafka(
            format!("fetch the committed offsets of group '{group}'"),
            code,
            None,
        ));
    }
    Ok(offsets)
}

/// Deletes a group that has no members; NON_EMPTY_GROUP or GROUP_ID_NOT_FOUND otherwise.
pub async fn delete_group(cluster: &mut Cluster, group: &str) -> Result<(), ClientError> {
    let (_, code, ()) = coordinator_call(cluster, group, async |client: &mut Client| {
        let version = client.pick_version::<DeleteGroupsRequest>(DELETE_GROUPS_VERSION_MAX)?;
        let request = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
        let response = client.send(request, version).await?;
        let code = response
            .results
            .iter()
            .find(|r| r.group_id.as_str() == group)
            .map(|r| r.error_code)
            .ok_or_else(|| {
                ClientError::kafka(
                    format!("delete group '{group}'"),
                    -1,
                    Some("the DeleteGroups response does not mention it"),
                )
            })?;
        Ok((code, ()))
    })
    .await?;
    match code {
        0 => Ok(()),
        code => Err(ClientError::kafka(
            format!("delete group '{group}'"),
            code,
            None,
        )),
    }
}

/// OffsetCommit from outside the group (generation -1, no member id), which the coordinator
/// accepts only while the group has no members (UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION
/// otherwise); `plan` maps partitions of `topic` to offsets.
pub async fn commit_offsets(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    plan: &BTreeMap<i32, i64>,
) -> Result<(), ClientError> {
    let partitions: Vec<OffsetCommitRequestPartition> = plan
        .iter()
        .map(|(p, o)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_static_str("")))
        })
        .collect();
    let (_, code, failed_partition) =
        coordinator_call(cluster, group, async |client: &mut Client| {
            let version = client.pick_version_between::<OffsetCommitRequest>(
                OFFSET_COMMIT_VERSION_MIN,
                OFFSET_COMMIT_VERSION_MAX,
            )?;
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::from_static_str(""))
                .with_retention_time_ms(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(partitions.clone())]);
            let response = client.send(request, version).await?;
            let mut answered = 0;
            for p in response.topics.iter().flat_map(|t| t.partitions.iter()) {
                answered += 1;
                if p.error_code != 0 {
                    return Ok((p.error_code, Some(p.partition_index)));
                }
            }
            if answered != partitions.len() {
                return Err(ClientError::kafka(
                    format!("commit offsets of group '{group}'"),
                    -1,
                    Some("the OffsetCommit response does not answer every partition"),
                ));
            }
            Ok((0, None))
        })
        .await?;
    match code {
        0 => Ok(()),
        code => {
            let at = failed_partition.map_or_else(String::new, |p| format!(" ({topic}-{p})"));
            Err(ClientError::kafka(
                format!("commit offsets of group '{group}'{at}"),
                code,
                None,
            ))
        }
    }
}
