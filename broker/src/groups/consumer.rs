//! KIP-848 consumer groups: ConsumerGroupHeartbeat (join, stay, reconcile, leave) and
//! ConsumerGroupDescribe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use skein_core::consumer_group::Heartbeat as CgHeartbeat;
use skein_core::coordinator::group_shard::{ConsumerHeartbeatError, GroupRequest, GroupResponse};
use skein_proto::context::RequestContext;
use skein_proto::errors::{consumer_group_error, group_error};

use super::{call, read, s};
use crate::broker::Broker;
use crate::group_runtime::GroupHost;
use crate::limits::GROUP_COMMIT_TIMEOUT_MS;

fn topic_ids(b: &Broker) -> BTreeMap<String, uuid::Uuid> {
    b.with_catalog(|c| {
        c.topics()
            .map(|t| (t.name.clone(), uuid::Uuid::from_bytes(t.id)))
            .collect()
    })
}

/// Topic partitions grouped by topic id, for heartbeat and describe answers.
fn by_topic_id(
    tps: impl IntoIterator<Item = (String, i32)>,
    ids: &BTreeMap<String, uuid::Uuid>,
) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        out.entry(t).or_default().push(p);
    }
    out.into_iter()
        .filter_map(|(t, ps)| ids.get(&t).map(|id| (*id, t, ps)))
        .collect()
}

/// ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile, leave.
pub async fn consumer_group_heartbeat(
    b: &Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    ctx: &RequestContext,
) -> ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.member_epoch = -1;
    r.heartbeat_interval_ms = b.settings.consumer_group.heartbeat_interval_ms;
    let group = req.group_id.0.to_string();
    if req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|x| !x.is_empty())
    {
        r.error_code = E::InvalidRequest.code();
        r.error_message = Some(s(
            "regular-expression subscriptions are not supported by this broker; subscribe by topic names",
        ));
        return r;
    }
    if req.member_epoch == 0 && req.subscribed_topic_names.is_none() {
        r.error_code = E::InvalidRequest.code();
        r.error_message = Some(s("a joining member must give its subscribed topics"));
        return r;
    }
    if req.member_epoch == 0 && req.rebalance_timeout_ms < 0 {
        r.error_code = E::InvalidRequest.code();
        r.error_message = Some(s("a joining member must give its rebalance timeout"));
        return r;
    }
    let ids = topic_ids(b);
    let names: BTreeMap<uuid::Uuid, String> = ids.iter().map(|(n, i)| (*i, n.clone())).collect();
    let hb = CgHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|x| x.to_string()),
        rack_id: req.rack_id.as_ref().map(|x| x.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .filter_map(|tp| names.get(&tp.topic_id).map(|n| (n, &tp.partitions)))
                .flat_map(|(n, ps)| ps.iter().map(move |p| (n.clone(), *p)))
                .collect()
        }),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host(),
    };
    let counts = b.topic_counts();
    let request = GroupRequest::ConsumerHeartbeat {
        group: group.clone(),
        heartbeat: hb,
        topics: counts,
    };
    let wait = Duration::from_millis(GROUP_COMMIT_TIMEOUT_MS * 2);
    let res = match call(b, &group, request, wait).await {
        Ok(GroupResponse::ConsumerHeartbeat(res)) => res.map_err(|e| match e {
            ConsumerHeartbeatError::Group(e) => group_error(e),
            ConsumerHeartbeatError::Consumer(e) => consumer_group_error(e),
        }),
        Ok(_) => Err(E::UnknownServerError),
        Err(e) => Err(e.code(E::RequestTimedOut)),
    };
    match res {
        Err(e) => {
            r.error_code = e.code();
            if e == E::GroupIdNotFound {
                r.error_message = Some(s(format!(
                    "group '{group}' is a classic group with members"
                )));
            }
        }
        Ok(beat) => {
            r.member_id = Some(s(beat.member_id));
            r.member_epoch = beat.member_epoch;
            if let Some(assigned) = beat.assignment.filter(|_| beat.member_epoch >= 0) {
                let mut a = Assignment::default();
                a.topic_partitions = by_topic_id(assigned, &ids)
                    .into_iter()
                    .map(|(id, _, ps)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = ps;
                        tp
                    })
                    .collect();
                r.assignment = Some(a);
            }
        }
    }
    r
}

/// ConsumerGroupDescribe (KIP-848 groups).
pub fn consumer_group_describe(
    b: &Broker,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup as Described, Member, TopicPartitions,
    };
    let ids = topic_ids(b);
    let assignment = |tps: Vec<(String, i32)>| {
        let mut a = Assignment::default();
        a.topic_partitions = by_topic_id(tps, &ids)
            .into_iter()
            .map(|(id, name, ps)| {
                let mut tp = TopicPartitions::default();
                tp.topic_id = id;
                tp.topic_name = TopicName(s(name));
                tp.partitions = ps;
                tp
            })
            .collect();
        a
    };
    let mut r = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids {
        let mut d = Described::default();
        d.group_id = id.clone();
        d.authorized_operations = i32::MIN;
        let res = read(b, id.as_str(), |shard| {
            let shard = shard.groups();
            let Some(g) = shard.consumer_group(id.as_str()) else {
                return Err(if shard.group(id.as_str()).is_some() {
                    (
                        E::GroupIdNotFound,
                        format!("group '{}' is not a consumer group", id.as_str()),
                    )
                } else {
                    (
                        E::GroupIdNotFound,
                        format!("group '{}' not found", id.as_str()),
                    )
                });
            };
            d.group_state = s(g.state_name());
            d.group_epoch = g.group_epoch();
            d.assignment_epoch = g.assignment_epoch();
            d.assignor_name = s("uniform");
            d.members = g
                .members()
                .map(|m| {
                    let mut dm = Member::default();
                    dm.member_id = s(m.id.clone());
                    dm.instance_id = m.instance_id.clone().map(s);
                    dm.rack_id = m.rack_id.clone().map(s);
                    dm.member_epoch = m.epoch;
                    dm.client_id = s(m.client_id.clone());
                    dm.client_host = s(m.client_host.clone());
                    dm.subscribed_topic_names = m
                        .subscribed
                        .iter()
                        .map(|t| TopicName(s(t.clone())))
                        .collect();
                    dm.assignment = assignment(m.assigned.iter().cloned().collect());
                    dm.target_assignment = assignment(g.target_of(&m.id).cloned().collect());
                    dm.member_type = 1;
                    dm
                })
                .collect();
            Ok(())
        });
        match res {
            Err(e) => d.error_code = e.code(),
            Ok(Err((e, msg))) => {
                d.error_code = e.code();
                d.error_message = Some(s(msg));
            }
            Ok(Ok(())) => {}
        }
        r.groups.push(d);
    }
    r
}
