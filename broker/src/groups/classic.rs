//! Classic group membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, mapped to group
//! shard requests and their answers back to Kafka messages.

use crate::limits::GROUP_SYNC_WAIT;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{
    join_group_response::JoinGroupResponseMember, leave_group_response::MemberResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use skein_core::coordinator::group_shard::{GroupRequest, GroupResponse};
use skein_core::coordinator::runtime::CoordinatorError;
use skein_core::group::Join;
use skein_proto::context::RequestContext;
use skein_proto::errors::group_error;

use super::{call, s, CallError};
use crate::broker::Broker;
use crate::limits::GROUP_COMMIT_TIMEOUT_MS;

/// JoinGroup: answered when the rebalance completes.
pub async fn join_group(
    b: &Arc<Broker>,
    req: JoinGroupRequest,
    ctx: &RequestContext,
) -> JoinGroupResponse {
    let version = ctx.api_version;
    let mut r = JoinGroupResponse::default();
    r.generation_id = -1;
    r.member_id = req.member_id.clone();
    let group = req.group_id.0.to_string();
    let session = req.session_timeout_ms;
    let rebalance = if version == 0 || req.rebalance_timeout_ms < 0 {
        session
    } else {
        req.rebalance_timeout_ms
    };
    let join = Join {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let wait = Duration::from_millis(rebalance.max(session).max(0) as u64 + 30_000);
    let request = GroupRequest::Join {
        group: group.clone(),
        join,
    };
    match call(b, &group, request, wait).await {
        Ok(GroupResponse::Join(Ok(j))) => {
            r.generation_id = j.generation;
            r.protocol_name = Some(s(j.protocol));
            if version >= 7 {
                r.protocol_type = Some(s(j.protocol_type));
            }
            r.leader = s(j.leader);
            r.member_id = s(j.member_id);
            r.members = j
                .members
                .into_iter()
                .map(|(id, inst, meta)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = s(id);
                    m.group_instance_id = inst.map(s);
                    m.metadata = Bytes::from(meta);
                    m
                })
                .collect();
        }
        Ok(GroupResponse::Join(Err((e, member)))) => {
            r.error_code = group_error(e).code();
            r.member_id = s(member);
        }
        Ok(_) => r.error_code = E::UnknownServerError.code(),
        // The group metadata this join changed (a static member's replacement, KIP-345) is
        // stored before anyone learns of it, as Kafka does; if that fails, nobody does.
        Err(CallError::Coordinator(CoordinatorError::Write(_))) => {
            r.error_code = E::NotCoordinator.code()
        }
        Err(e) => r.error_code = e.code(E::RebalanceInProgress).code(),
    }
    r
}

/// SyncGroup: members get their assignment once the leader has sent it (and it is stored).
pub async fn sync_group(b: &Arc<Broker>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    let group = req.group_id.0.to_string();
    let request = GroupRequest::Sync {
        group: group.clone(),
        member: req.member_id.to_string(),
        instance: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: req.generation_id,
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
        protocol_type: req.protocol_type.as_ref().map(|x| x.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|x| x.to_string()),
    };
    match call(b, &group, request, GROUP_SYNC_WAIT).await {
        Ok(GroupResponse::Sync {
            result: Ok(assignment),
            protocol_type,
            protocol_name,
        }) => {
            r.assignment = Bytes::from(assignment);
            if version >= 5 {
                r.protocol_type = protocol_type.map(s);
                r.protocol_name = protocol_name.map(s);
            }
        }
        Ok(GroupResponse::Sync { result: Err(e), .. }) => r.error_code = group_error(e).code(),
        Ok(_) => r.error_code = E::UnknownServerError.code(),
        // Storing the generation's assignment failed: nobody learns it, the group rebalances.
        Err(CallError::Coordinator(CoordinatorError::Write(_))) => {
            r.error_code = E::RebalanceInProgress.code()
        }
        Err(e) => r.error_code = e.code(E::RebalanceInProgress).code(),
    }
    r
}

/// Heartbeat.
pub async fn heartbeat(b: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut r = HeartbeatResponse::default();
    let group = req.group_id.0.to_string();
    let request = GroupRequest::Heartbeat {
        group: group.clone(),
        member: req.member_id.to_string(),
        instance: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: req.generation_id,
    };
    let wait = Duration::from_millis(GROUP_COMMIT_TIMEOUT_MS * 2);
    r.error_code = match call(b, &group, request, wait).await {
        Ok(GroupResponse::Heartbeat(Ok(()))) => 0,
        Ok(GroupResponse::Heartbeat(Err(e))) => group_error(e).code(),
        Ok(_) => E::UnknownServerError.code(),
        Err(e) => e.code(E::CoordinatorNotAvailable).code(),
    };
    r
}

/// LeaveGroup (one member before v3, a batch after).
pub async fn leave_group(
    b: &Arc<Broker>,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let mut r = LeaveGroupResponse::default();
    let group = req.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let request = GroupRequest::Leave {
        group: group.clone(),
        members: leaving.clone(),
    };
    let wait = Duration::from_millis(GROUP_COMMIT_TIMEOUT_MS * 2);
    match call(b, &group, request, wait).await {
        Ok(GroupResponse::Leave(results)) => {
            if version >= 3 {
                r.members = leaving
                    .into_iter()
                    .zip(results)
                    .map(|((m, inst), res)| {
                        let mut mr = MemberResponse::default();
                        mr.member_id = s(m);
                        mr.group_instance_id = inst.map(s);
                        mr.error_code = res.err().map(|e| group_error(e).code()).unwrap_or(0);
                        mr
                    })
                    .collect();
            } else if let Some(Err(e)) = results.first() {
                r.error_code = group_error(*e).code();
            }
        }
        Ok(_) => r.error_code = E::UnknownServerError.code(),
        Err(e) => r.error_code = e.code(E::CoordinatorNotAvailable).code(),
    }
    r
}
