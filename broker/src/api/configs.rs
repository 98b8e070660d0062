//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;

use skein_proto::errors::catalog_error;

use crate::broker::Broker;

use super::*;

/// (name, value, Kafka config source) of one described config.
type ConfigRow = (String, String, i8);

fn config_type(name: &str) -> i8 {
    // Kafka's ConfigType: BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7.
    match name {
        "cleanup.policy" => 7,
        "min.cleanable.dirty.ratio" => 6,
        "message.timestamp.type" | "compression.type" => 2,
        "unclean.leader.election.enable" => 1,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "log.segment.bytes"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level" => 3,
        k => skein_core::config_accepted::find(k).map_or(5, |a| a.config_type),
    }
}

/// DescribeConfigs for topics and the broker.
pub fn describe_configs(b: &Broker, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.to_string();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .map(|k| k.iter().map(|x| x.to_string()).collect());
        let wanted = |k: &str| {
            keys.as_ref()
                .map(|ks| ks.iter().any(|x| x == k))
                .unwrap_or(true)
        };
        let entries: Result<Vec<ConfigRow>, (E, String)> = match res.resource_type {
            RESOURCE_TOPIC => b.with_catalog(|c| match c.topic(&name) {
                None => Err((
                    E::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
                Some(t) => Ok(t
                    .config
                    .describe(c.defaults())
                    .into_iter()
                    .map(|e| (e.name, e.value, if e.is_default { 5 } else { 1 }))
                    .collect()),
            }),
            RESOURCE_BROKER => {
                if name.is_empty() || name == b.settings.node_id.to_string() {
                    let st = &b.settings;
                    let d = &st.log_defaults;
                    Ok(vec![
                        (
                            "auto.create.topics.enable".into(),
                            st.auto_create_topics.to_string(),
                            4,
                        ),
                        ("num.partitions".into(), st.num_partitions.to_string(), 4),
                        ("log.segment.bytes".into(), d.segment_bytes.to_string(), 4),
                        ("log.roll.ms".into(), d.segment_ms.to_string(), 4),
                        ("log.retention.ms".into(), d.retention_ms.to_string(), 4),
                        (
                            "log.retention.bytes".into(),
                            d.retention_bytes.to_string(),
                            4,
                        ),
                        (
                            "message.max.bytes".into(),
                            d.max_message_bytes.to_string(),
                            4,
                        ),
                        (
                            "log.message.timestamp.before.max.ms".into(),
                            d.timestamp_before_max_ms.to_string(),
                            4,
                        ),
                        (
                            "log.message.timestamp.after.max.ms".into(),
                            d.timestamp_after_max_ms.to_string(),
                            4,
                        ),
                        (
                            "socket.request.max.bytes".into(),
                            st.socket_request_max_bytes.to_string(),
                            4,
                        ),
                        ("broker.id".into(), st.node_id.to_string(), 4),
                    ])
                } else {
                    Err((
                        E::InvalidRequest,
                        format!("broker '{name}' is not this broker"),
                    ))
                }
            }
            other => Err((
                E::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        match entries {
            Err((code, msg)) => {
                out.error_code = code.code();
                out.error_message = Some(s(msg));
            }
            Ok(list) => {
                out.configs = list
                    .into_iter()
                    .filter(|(k, _, _)| wanted(k))
                    .map(|(k, v, source)| {
                        let mut c = DescribeConfigsResourceResult::default();
                        c.config_type = config_type(&k);
                        if req.include_synonyms {
                            let mut syn = DescribeConfigsSynonym::default();
                            syn.name = s(k.clone());
                            syn.value = Some(s(v.clone()));
                            syn.source = source;
                            c.synonyms = vec![syn];
                        }
                        c.name = s(k);
                        c.value = Some(s(v));
                        // Kafka sends null documentation unless it was asked for.
                        c.documentation = None;
                        c.config_source = source;
                        c.read_only = res.resource_type == RESOURCE_BROKER;
                        c
                    })
                    .collect();
            }
        }
        r.results.push(out);
    }
    r
}

async fn alter_topic(
    b: &Broker,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
    validate_only: bool,
) -> Result<(), (E, String)> {
    if validate_only {
        return b
            .with_catalog(|c| c.plan_alter(name, &changes, replace))
            .map(|_| ())
            .map_err(|e| (catalog_error(&e), e.to_string()));
    }
    b.commit(|c| c.plan_alter(name, &changes, replace))
        .await
        .map_err(|e| (e.code(), e.to_string()))
}

/// AlterConfigs (replaces a topic's whole override set).
pub async fn alter_configs(b: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let outcome = if res.resource_type == RESOURCE_TOPIC {
            let changes = res
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            alter_topic(
                b,
                res.resource_name.as_str(),
                changes,
                true,
                req.validate_only,
            )
            .await
        } else {
            Err((
                E::InvalidRequest,
                "only topic configs can be altered".into(),
            ))
        };
        if let Err((code, msg)) = outcome {
            out.error_code = code.code();
            out.error_message = Some(s(msg));
        }
        r.responses.push(out);
    }
    r
}

/// IncrementalAlterConfigs (SET, DELETE; APPEND / SUBTRACT for list configs).
pub async fn incremental_alter_configs(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut out = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.to_string();
        let outcome = if res.resource_type != RESOURCE_TOPIC {
            Err((
                E::InvalidRequest,
                "only topic configs can be altered".into(),
            ))
        } else {
            let current =
                b.with_catalog(|c| c.topic(&name).map(|t| t.config.describe(c.defaults())));
            let mut changes = Vec::new();
            let mut bad = None;
            for c in &res.configs {
                let key = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string());
                match c.config_operation {
                    0 => changes.push((key, value)),
                    1 => changes.push((key, None)),
                    op @ (2 | 3) if config_type(&key) == 7 => {
                        let now = current
                            .as_ref()
                            .and_then(|es| {
                                es.iter().find(|e| e.name == key).map(|e| e.value.clone())
                            })
                            .unwrap_or_default();
                        let mut items: Vec<String> = now
                            .split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect();
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .filter(|x| !x.is_empty())
                        {
                            if op == 2 && !items.iter().any(|x| x == v) {
                                items.push(v.to_string());
                            } else if op == 3 {
                                items.retain(|x| x != v);
                            }
                        }
                        changes.push((key, Some(items.join(","))));
                    }
                    op => {
                        bad = Some((
                            E::InvalidConfig,
                            format!("operation {op} is not valid for {key}"),
                        ));
                    }
                }
            }
            match bad {
                Some(e) => Err(e),
                None => alter_topic(b, &name, changes, false, req.validate_only).await,
            }
        };
        if let Err((code, msg)) = outcome {
            out.error_code = code.code();
            out.error_message = Some(s(msg));
        }
        r.responses.push(out);
    }
    r
}
