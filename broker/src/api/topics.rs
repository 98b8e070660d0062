//! CreateTopics, DeleteTopics and CreatePartitions: validated into metadata records by the catalog
//! and committed through the quorum.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use skein_core::catalog::Placement;
use tracing::debug;

use skein_proto::errors::catalog_error;

use crate::broker::Broker;

use super::*;

/// CreateTopics.
pub async fn create_topics(
    b: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut r = CreateTopicsResponse::default();
    let mut seen = std::collections::BTreeMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_insert(0) += 1;
    }
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        res.num_partitions = -1;
        res.replication_factor = -1;
        let outcome: Result<(), (E, String)> = async {
            if seen[&name] > 1 {
                return Err((
                    E::InvalidRequest,
                    format!("topic '{name}' appears more than once in the request"),
                ));
            }
            let mut partitions = if t.num_partitions == -1 {
                b.settings.num_partitions
            } else {
                t.num_partitions
            };
            let mut rf = if t.replication_factor == -1 {
                b.settings.default_replication_factor
            } else {
                t.replication_factor
            };
            let mut placement = b.spread(rf);
            if !t.assignments.is_empty() {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return Err((
                        E::InvalidRequest,
                        "give either assignments or partitions and replication factor".into(),
                    ));
                }
                let mut a = t.assignments.clone();
                a.sort_by_key(|x| x.partition_index);
                if a.iter()
                    .enumerate()
                    .any(|(i, x)| x.partition_index != i as i32)
                {
                    return Err((
                        E::InvalidReplicaAssignment,
                        "assignments must number the partitions 0, 1, 2, ...".into(),
                    ));
                }
                partitions = a.len() as i32;
                rf = a[0].broker_ids.len() as i16;
                placement = Placement::Manual(
                    a.iter()
                        .map(|x| x.broker_ids.iter().map(|n| i32::from(*n)).collect())
                        .collect(),
                );
            }
            let mut configs = Vec::new();
            for c in &t.configs {
                match &c.value {
                    Some(v) => configs.push((c.name.to_string(), v.to_string())),
                    None => {
                        return Err((
                            E::InvalidConfig,
                            format!("config {} has a null value", c.name.as_str()),
                        ))
                    }
                }
            }
            b.create_topic(&name, partitions, placement, &configs, req.validate_only)
                .await
                .map_err(|e| (e.code(), e.to_string()))?;
            res.num_partitions = partitions;
            res.replication_factor = rf;
            Ok(())
        }
        .await;
        match outcome {
            Err((code, msg)) => {
                debug!(topic = name, error = msg, "create topic refused");
                res.error_code = code.code();
                res.error_message = Some(s(msg));
            }
            Ok(()) => {
                if version >= 5 {
                    let described = b.with_catalog(|c| {
                        let defaults = c.defaults().clone();
                        // Validated only (or gone meanwhile): the configs asked for.
                        let asked = || {
                            let kv = t
                                .configs
                                .iter()
                                .filter_map(|c| Some((c.name.as_str(), c.value.as_deref()?)));
                            skein_core::config::TopicConfig::new(kv, &defaults).unwrap_or_default()
                        };
                        let (id, entries) = match c.topic(&name) {
                            Some(t) if !req.validate_only => {
                                (Some(t.id), t.config.describe(&defaults))
                            }
                            _ => (None, asked().describe(&defaults)),
                        };
                        (id, entries)
                    });
                    if let Some(id) = described.0 {
                        res.topic_id = topic_id_uuid(id);
                    }
                    res.configs = Some(
                        described
                            .1
                            .into_iter()
                            .map(|e| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = s(e.name);
                                c.value = Some(s(e.value));
                                c.config_source = if e.is_default { 5 } else { 1 };
                                c
                            })
                            .collect(),
                    );
                }
            }
        }
        r.topics.push(res);
    }
    r
}

/// DeleteTopics.
pub async fn delete_topics(
    b: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut r = DeleteTopicsResponse::default();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in targets {
        let mut res = DeletableTopicResult::default();
        res.topic_id = id;
        let name = name.or_else(|| {
            b.with_catalog(|c| {
                c.topics()
                    .find(|t| topic_id_uuid(t.id) == id)
                    .map(|t| t.name.clone())
            })
        });
        match name {
            None => res.error_code = E::UnknownTopicId.code(),
            Some(name) => {
                res.name = Some(TopicName(s(name.clone())));
                if name == crate::groups::OFFSETS_TOPIC {
                    // Kafka refuses too: every group's offsets live there.
                    res.error_code = E::InvalidTopicException.code();
                    res.error_message = Some(s(format!(
                        "the internal topic '{name}' holds every group's offsets; it cannot be deleted"
                    )));
                } else if let Err(e) = b.commit(|c| c.plan_delete(&name)).await {
                    res.error_code = e.code().code();
                    res.error_message = Some(s(e.to_string()));
                }
            }
        }
        r.responses.push(res);
    }
    r
}

/// CreatePartitions.
pub async fn create_partitions(
    b: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatePartitionsTopicResult::default();
        res.name = t.name.clone();
        let placement = match &t.assignments {
            Some(a) => Placement::Manual(
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|n| i32::from(*n)).collect())
                    .collect(),
            ),
            None => b.spread(1),
        };
        let outcome = if req.validate_only {
            b.with_catalog(|c| c.plan_partitions(&name, t.count, &placement))
                .map(|_| ())
                .map_err(|e| (catalog_error(&e), e.to_string()))
        } else {
            b.commit(|c| c.plan_partitions(&name, t.count, &placement))
                .await
                .map_err(|e| (e.code(), e.to_string()))
        };
        if let Err((code, msg)) = outcome {
            res.error_code = code.code();
            res.error_message = Some(s(msg));
        }
        r.results.push(res);
    }
    r
}
