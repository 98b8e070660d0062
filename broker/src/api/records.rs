//! DeleteRecords: moves partitions' log start offsets forward (the leader's replica decides;
//! followers follow the leader's log start as they fetch).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use skein_core::replica::Input;
use skein_proto::errors;

use crate::broker::Broker;
use crate::partition::Data;

/// DeleteRecords v0-2: for each partition, the new low watermark (log start offset) or an error.
/// As Kafka: internal topics are INVALID_TOPIC_EXCEPTION; the rest (-1 for the high watermark,
/// OFFSET_OUT_OF_RANGE past it, POLICY_VIOLATION on a compact-only topic) is the leader's
/// replica's decision. The answer is
/// the leader's new log start (Kafka waits for every replica's; skein's followers follow as they
/// fetch).
pub fn delete_records(b: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match delete_one(b, &name, p.partition_index, p.offset) {
                Ok(low) => pr.low_watermark = low,
                Err(e) => pr.error_code = e.code(),
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

fn delete_one(b: &Broker, topic: &str, index: i32, offset: i64) -> Result<i64, E> {
    if topic.starts_with("__") {
        return Err(E::InvalidTopicException);
    }
    let (part, _) = b.leader_partition(topic, index)?;
    let token = part.token();
    let fx = part.drive(Input::DeleteRecords { token, offset }, Data::None);
    if let Some(e) = &fx.storage_error {
        tracing::warn!(topic, partition = index, error = %e, "deleting records failed");
        return Err(E::KafkaStorageError);
    }
    match fx.deleted.into_iter().find(|(t, _)| *t == token) {
        Some((_, Ok(low))) => Ok(low),
        Some((_, Err(e))) => Err(errors::replica_error(e)),
        None => Err(E::NotLeaderOrFollower),
    }
}
