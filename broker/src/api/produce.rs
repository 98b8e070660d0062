//! Produce: validation, leader and epoch checks, the append and the acks gates.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use tracing::{debug, warn};

use crate::broker::{now_ms, Broker};
use skein_storage::partition::StorageError;

use super::*;

/// Produce; `None` means no response is sent (acks=0).
pub async fn produce(
    b: Arc<Broker>,
    req: ProduceRequest,
) -> Result<Option<ProduceResponse>, String> {
    let acks = req.acks;
    let mut r = ProduceResponse::default();
    let bad_acks = !(-1..=1).contains(&acks);
    let transactional = req.transactional_id.is_some();
    let mut waits = Vec::new();
    let mut any_error: Option<String> = None;
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        let valid_name = skein_core::config::validate_topic_name(&name).is_ok();
        let exists = valid_name && !bad_acks && !transactional && b.auto_create(&name).await;
        for pd in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let err = if bad_acks {
                Some((
                    E::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ))
            } else if transactional {
                Some((
                    E::TransactionalIdAuthorizationFailed,
                    "transactions are not supported by this broker".to_string(),
                ))
            } else if name == crate::groups::OFFSETS_TOPIC {
                Some((
                    E::InvalidTopicException,
                    format!("cannot produce to the internal topic '{name}'"),
                ))
            } else if !valid_name {
                Some((
                    E::InvalidTopicException,
                    format!("invalid topic name '{name}'"),
                ))
            } else if !exists {
                Some((
                    E::UnknownTopicOrPartition,
                    format!("unknown topic '{name}'"),
                ))
            } else {
                let found = b.leader_partition(&name, pd.index).and_then(|(p, epoch)| {
                    // acks=all needs min.insync.replicas in the ISR before it appends.
                    let mut r = p.repl.lock().expect("repl lock");
                    match r.leading(epoch) {
                        None => Err(E::NotLeaderOrFollower),
                        Some(l) if acks == -1 && !l.enough_replicas() => Err(E::NotEnoughReplicas),
                        Some(_) => Ok((p.clone(), epoch)),
                    }
                });
                match found {
                    Err(E::NotEnoughReplicas) => Some((
                        E::NotEnoughReplicas,
                        format!(
                            "topic '{name}' partition {}: fewer in-sync replicas than min.insync.replicas",
                            pd.index
                        ),
                    )),
                    Err(e) => Some((e, format!("topic '{name}' partition {}: {e:?}", pd.index))),
                    Ok((p, epoch)) => match pd.records {
                        None => Some((E::InvalidRecord, "no records".to_string())),
                        Some(records) => {
                            match p.append_leading(epoch, now_ms(), &records) {
                                None => Some((
                                    E::NotLeaderOrFollower,
                                    format!(
                                        "topic '{name}' partition {}: leadership moved",
                                        pd.index
                                    ),
                                )),
                                Some((res, pending)) => match res {
                                Ok(a) => {
                                    pr.base_offset = a.base_offset;
                                    pr.log_append_time_ms = a.log_append_time;
                                    pr.log_start_offset = a.log_start_offset;
                                    if a.write.is_some() {
                                        b.appended.send_modify(|n| *n += 1);
                                    }
                                    if acks == -1 {
                                        waits.push((
                                            r.responses.len(),
                                            tr.partition_responses.len(),
                                            p.clone(),
                                            a.last_offset + 1,
                                            epoch,
                                        ));
                                    }
                                    if let Some(n) = b.settings.flush_messages {
                                        if pending >= n {
                                            let (p2, end) = (p.clone(), a.last_offset + 1);
                                            tokio::spawn(async move {
                                                let _ = p2.wait_synced(end).await;
                                            });
                                        }
                                    }
                                    None
                                }
                                Err(e) => {
                                    let code = storage_error(&e);
                                    if matches!(e, StorageError::Io { .. }) {
                                        warn!(topic = name, partition = pd.index, error = %e, "append failed");
                                    } else {
                                        debug!(topic = name, partition = pd.index, error = %e, "append refused");
                                    }
                                    Some((code, e.to_string()))
                                }
                            },
                            }
                        }
                    },
                }
            };
            if let Some((code, msg)) = err {
                pr.error_code = code.code();
                pr.error_message = Some(s(msg.clone()));
                any_error.get_or_insert(format!("{name}-{}: {}", pd.index, msg));
            }
            tr.partition_responses.push(pr);
        }
        r.responses.push(tr);
    }
    // Durability gate: acks=all answers only after the fsync covering each batch (unless the
    // interval flush policy is on) and once the high watermark covers it, i.e. every ISR
    // member holds it. All the request's partitions wait at once, so their fsyncs overlap.
    let interval = b.settings.interval_flush();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let wait_results =
        futures::future::join_all(waits.into_iter().map(|(t, i, p, end, epoch)| async move {
            if !interval {
                if let Err(e) = p.wait_synced(end).await {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
                    return (t, i, Err((E::KafkaStorageError, e.to_string())));
                }
            }
            let res = crate::replica::wait_replicated(&p, end, epoch, deadline)
                .await
                .map_err(|e| (e, crate::replica::wait_error_message(e).to_string()));
            (t, i, res)
        }))
        .await;
    for (t, i, res) in wait_results {
        if let Err((code, msg)) = res {
            let tr = &mut r.responses[t];
            let pr = &mut tr.partition_responses[i];
            pr.error_code = code.code();
            pr.error_message = Some(s(msg));
            pr.base_offset = -1;
        }
    }
    if acks == 0 {
        // Kafka answers nothing to acks=0, and closes the connection on an error so the
        // client notices.
        return match any_error {
            Some(e) => Err(format!("acks=0 produce failed: {e}")),
            None => Ok(None),
        };
    }
    Ok(Some(r))
}
