//! Group administration: ListGroups and DescribeGroups (read from the shards) and DeleteGroups.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    list_groups_response::ListedGroup,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use skein_core::coordinator::group_shard::{GroupRequest, GroupResponse};
use skein_core::coordinator::Shard;
use skein_core::group::GroupState;
use skein_proto::errors::group_error;

use super::{call, read, s};
use crate::broker::Broker;
use crate::limits::GROUP_COMMIT_TIMEOUT_MS;

/// ListGroups: the groups this broker coordinates.
pub fn list_groups(b: &Broker, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut r = ListGroupsResponse::default();
    let loading = b.groups.with_runtime(|rt| rt.loading());
    if loading {
        r.error_code = E::CoordinatorLoadInProgress.code();
    }
    let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
    let wanted = |kind: &str, state: &str| {
        (req.types_filter.is_empty()
            || req
                .types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(kind)))
            && (states.is_empty() || states.contains(&state.to_lowercase()))
    };
    b.groups.with_runtime(|rt| {
        for (_, shard) in rt.shards() {
            let shard = shard.groups();
            // (id, protocol type, state, group type) of classic and KIP-848 groups alike.
            let classic = shard.groups().map(|g| {
                let ptype = g.protocol_type().unwrap_or_default();
                (g.id(), ptype, g.state().name(), "classic")
            });
            let consumer = shard
                .consumer_groups()
                .map(|g| (g.id(), "consumer", g.state_name(), "consumer"));
            for (id, ptype, state, kind) in classic.chain(consumer) {
                if !wanted(kind, state) {
                    continue;
                }
                let mut lg = ListedGroup::default();
                lg.group_id = GroupId(s(id));
                lg.protocol_type = s(ptype);
                if version >= 4 {
                    lg.group_state = s(state);
                }
                if version >= 5 {
                    lg.group_type = s(kind);
                }
                r.groups.push(lg);
            }
        }
    });
    r
}

/// One member as DescribeGroups reports it.
fn described_member(
    id: &str,
    instance_id: &Option<String>,
    client_id: &str,
    client_host: &str,
    metadata: Vec<u8>,
    assignment: Vec<u8>,
) -> DescribedGroupMember {
    let mut dm = DescribedGroupMember::default();
    dm.member_id = s(id);
    dm.group_instance_id = instance_id.clone().map(s);
    dm.client_id = s(client_id);
    dm.client_host = s(client_host);
    dm.member_metadata = Bytes::from(metadata);
    dm.member_assignment = Bytes::from(assignment);
    dm
}

/// DescribeGroups.
pub fn describe_groups(
    b: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut r = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.authorized_operations = i32::MIN;
        let res = read(b, id.as_str(), |shard| {
            describe(shard.groups(), id.as_str(), &mut d)
        });
        match res {
            Err(e) => d.error_code = e.code(),
            Ok(true) => {}
            Ok(false) => {
                d.group_state = s("Dead");
                if version >= 6 {
                    d.error_code = E::GroupIdNotFound.code();
                    d.error_message = Some(s(format!("group '{}' not found", id.as_str())));
                }
            }
        }
        r.groups.push(d);
    }
    r
}

/// Fills `d` with group `id` of `shard`, KIP-848 or classic; false if there is none.
fn describe(shard: &Shard, id: &str, d: &mut DescribedGroup) -> bool {
    if let Some(cg) = shard
        .consumer_group(id)
        .filter(|cg| cg.members().next().is_some())
    {
        // A KIP-848 group, described the classic way (assignments as
        // ConsumerProtocolAssignment bytes) for tools that only know DescribeGroups.
        d.group_state = s(cg.state_name());
        d.protocol_type = s("consumer");
        d.protocol_data = s("uniform");
        d.members = cg
            .members()
            .map(|m| {
                let assigned = consumer_protocol_assignment(m.assigned.difference(&m.revoking));
                described_member(
                    &m.id,
                    &m.instance_id,
                    &m.client_id,
                    &m.client_host,
                    Vec::new(),
                    assigned,
                )
            })
            .collect();
        return true;
    }
    let Some(g) = shard.group(id) else {
        return false;
    };
    d.group_state = s(g.state().name());
    d.protocol_type = s(g.protocol_type().unwrap_or_default());
    let protocol = g.protocol().unwrap_or_default().to_string();
    let chosen = matches!(
        g.state(),
        GroupState::Stable | GroupState::CompletingRebalance
    );
    d.protocol_data = s(if chosen {
        protocol.clone()
    } else {
        String::new()
    });
    d.members = g
        .members()
        .map(|m| {
            let metadata = m
                .protocols
                .iter()
                .find(|(n, _)| *n == protocol)
                .map(|(_, md)| md.clone())
                .unwrap_or_default();
            let assignment = if g.state() == GroupState::Stable {
                m.assignment.clone()
            } else {
                Vec::new()
            };
            described_member(
                &m.id,
                &m.instance_id,
                &m.client_id,
                &m.client_host,
                metadata,
                assignment,
            )
        })
        .collect();
    true
}

/// ConsumerProtocolAssignment v0 bytes of `tps` (by topic, no user data).
fn consumer_protocol_assignment<'a>(tps: impl Iterator<Item = &'a (String, i32)>) -> Vec<u8> {
    let mut by: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by.entry(t.as_str()).or_default().push(*p);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(by.len() as i32).to_be_bytes());
    for (t, ps) in by {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// DeleteGroups: only groups without members; their offsets go too.
pub async fn delete_groups(b: &Arc<Broker>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut d = DeletableGroupResult::default();
        d.group_id = id.clone();
        let request = GroupRequest::DeleteGroup {
            group: id.to_string(),
        };
        let wait = Duration::from_millis(GROUP_COMMIT_TIMEOUT_MS * 2);
        d.error_code = match call(b, id.as_str(), request, wait).await {
            Ok(GroupResponse::DeleteGroup(Ok(()))) => 0,
            Ok(GroupResponse::DeleteGroup(Err(e))) => group_error(e).code(),
            Ok(_) => E::UnknownServerError.code(),
            Err(e) => e.code(E::RequestTimedOut).code(),
        };
        r.results.push(d);
    }
    r
}
