//! Produce: request validation, then each partition's batch to its core replica, which gates,
//! appends and answers (acks=all once the high watermark covers the write).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use tracing::{debug, warn};

use skein_core::replica::{FlushPolicy, Input, ReplicaError};
use skein_proto::errors;
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::limits::PRODUCE_TICK_SLACK;
use crate::partition::{Data, Partition, ProduceAnswer};
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
                match (b.leader_partition(&name, pd.index), pd.records) {
                    (Err(e), _) => {
                        Some((e, format!("topic '{name}' partition {}: {e:?}", pd.index)))
                    }
                    (Ok(_), None) => Some((E::InvalidRecord, "no records".to_string())),
                    (Ok((p, _)), Some(records)) => {
                        let slot = (r.responses.len(), tr.partition_responses.len());
                        match append(&b, &p, acks, req.timeout_ms, &records, &mut pr) {
                            Ok(Some(wait)) => {
                                waits.push((slot, p, wait));
                                None
                            }
                            Ok(None) => None,
                            Err((code, msg)) => Some((
                                code,
                                format!("topic '{name}' partition {}: {msg}", pd.index),
                            )),
                        }
                    }
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
    // acks=all: each partition's replica answers once the high watermark covers the write
    // (under fsync-before-ack the leader's fsync counts towards it). All the request's
    // partitions wait at once, so their fsyncs overlap.
    let wait_results = futures::future::join_all(
        waits
            .into_iter()
            .map(|(slot, p, wait)| async move { (slot, wait_acked(&p, wait).await) }),
    )
    .await;
    for ((t, i), res) in wait_results {
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

/// An acks=all write waiting for its replica's answer.
pub struct Wait {
    token: u64,
    end: i64,
    answer: oneshot::Receiver<ProduceAnswer>,
    deadline: tokio::time::Instant,
}

/// Hands one partition's batch to its replica, which gates and appends it: fills in where it
/// landed; an acks=all write comes back to wait for.
fn append(
    b: &Broker,
    p: &Arc<Partition>,
    acks: i16,
    timeout_ms: i32,
    records: &[u8],
    pr: &mut PartitionProduceResponse,
) -> Result<Option<Wait>, (E, String)> {
    let token = p.token();
    let timeout_ms = timeout_ms.max(0) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    // Registered first: the answer may come before `drive` returns.
    let answer = (acks == -1).then(|| p.wait_for(token));
    let input = Input::Produce {
        token,
        acks: acks as i8,
        timeout_ms,
    };
    let fx = p.drive(input, Data::Produced(records));
    let refused = |e: ReplicaError| (errors::replica_error(e), e.to_string());
    let a = match fx.appended {
        None => {
            // Refused by the gate before the append.
            p.forget(token);
            let e = fx.produced.into_iter().find(|(t, _)| *t == token);
            return match e {
                Some((_, Err(e))) => Err(refused(e)),
                _ => Err((E::NotLeaderOrFollower, "not leading".to_string())),
            };
        }
        Some(Err(e)) => {
            p.forget(token);
            let code = storage_error(&e);
            if matches!(e, StorageError::Io { .. }) {
                warn!(topic = %p.topic, partition = p.index, error = %e, "append failed");
            } else {
                debug!(topic = %p.topic, partition = p.index, error = %e, "append refused");
            }
            return Err((code, e.to_string()));
        }
        Some(Ok(a)) => a,
    };
    pr.base_offset = a.base_offset;
    pr.log_append_time_ms = a.log_append_time;
    pr.log_start_offset = a.log_start_offset;
    if a.write.is_some() {
        b.appended.send_modify(|n| *n += 1);
    }
    if fx.fsync.is_some() {
        p.flush_in_background();
    }
    if let Some(n) = b.settings.flush_messages {
        if p.store.lock().expect("partition lock").unflushed_messages() >= n {
            p.flush_in_background();
        }
    }
    Ok(answer.map(|answer| Wait {
        token,
        end: a.last_offset + 1,
        answer,
        deadline,
    }))
}

/// Waits for an acks=all write's answer from its replica. The fsync is awaited here too, so
/// an I/O error reaches the client as KAFKA_STORAGE_ERROR; at the deadline the replica is
/// ticked, which times the write out.
async fn wait_acked(p: &Arc<Partition>, mut w: Wait) -> Result<(), (E, String)> {
    if p.flush_policy() == FlushPolicy::FsyncBeforeAck {
        if let Err(e) = p.wait_synced(w.end).await {
            warn!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
            p.forget(w.token);
            return Err((E::KafkaStorageError, e.to_string()));
        }
    }
    loop {
        tokio::select! {
            answer = &mut w.answer => return match answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err((errors::replica_error(e), e.to_string())),
                Err(_) => Err((E::NotLeaderOrFollower, "the partition was closed".to_string())),
            },
            _ = tokio::time::sleep_until(w.deadline) => {
                p.drive(Input::Tick, Data::None);
                w.deadline += PRODUCE_TICK_SLACK;
            }
        }
    }
}
