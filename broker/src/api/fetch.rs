//! Fetch: consumers' and followers' reads within the response budget (KIP-74), the long-poll wait,
//! and the follower side of replication progress.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use skein_core::fetch::{response_max_bytes, FetchBudget};
use skein_core::log::committed_len;
use skein_core::replica::{FetchAnswer, Input, ReplicaError};
use skein_proto::errors;
use tracing::warn;

use crate::broker::Broker;
use crate::partition::{Data, Partition};
use skein_storage::partition::{read_range, PartitionStore};

/// Fetch, with min_bytes / max_wait long polling.
pub async fn fetch(b: Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    let mut changes = b.appended.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // KIP-227: skein creates no incremental sessions; it answers every fetch in full with
    // session id 0, which tells clients to keep sending full fetches.
    let session_error = if version >= 7 {
        if req.session_id != 0 {
            Some(E::FetchSessionIdNotFound)
        } else if req.session_epoch != 0 && req.session_epoch != -1 {
            Some(E::InvalidFetchSessionEpoch)
        } else {
            None
        }
    } else {
        None
    };
    if let Some(e) = session_error {
        let mut r = FetchResponse::default();
        r.error_code = e.code();
        return r;
    }
    loop {
        changes.borrow_and_update();
        let (r, bytes) = fetch_once(&b, &req);
        // Kafka answers at once when min_bytes is met, when a partition has an error (waiting
        // would not fix it), or when max_wait has passed.
        let has_error = r
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0);
        if req.min_bytes <= 0
            || bytes >= req.min_bytes as usize
            || has_error
            || tokio::time::Instant::now() >= deadline
        {
            return r;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Asks the partition's replica how a fetch may be answered (a follower's fetch also records
/// its progress there).
fn serve(
    p: &Arc<Partition>,
    st: &mut PartitionStore,
    replica: i32,
    fp: &FetchPartition,
) -> Result<FetchAnswer, ReplicaError> {
    let token = p.token();
    let input = if replica >= 0 {
        Input::FollowerFetch {
            token,
            replica,
            fetch_offset: fp.fetch_offset,
            last_fetched_epoch: fp.last_fetched_epoch,
            current_leader_epoch: fp.current_leader_epoch,
        }
    } else {
        Input::ConsumerFetch {
            token,
            fetch_offset: fp.fetch_offset,
            current_leader_epoch: fp.current_leader_epoch,
        }
    };
    let fx = p.drive_locked(st, input, Data::None);
    fx.fetched
        .into_iter()
        .find(|(t, _)| *t == token)
        .map_or(Err(ReplicaError::NotLeaderOrFollower), |(_, a)| a)
}

fn fetch_once(b: &Broker, req: &FetchRequest) -> (FetchResponse, usize) {
    // A broker fetching for its replica reads up to the log end and moves the high watermark;
    // a consumer reads below the high watermark only.
    let replica = req.replica_id.0;
    let mut r = FetchResponse::default();
    // KIP-74: the response's records total at most max_bytes, each partition's at most its
    // partition_max_bytes, but for the first batch of the first partition with data.
    let mut budget = FetchBudget::new(response_max_bytes(req.max_bytes));
    // A follower told to truncate is answered at once, whatever min_bytes says.
    let mut diverged = false;
    for topic in &req.topics {
        let name = topic.topic.0.to_string();
        let mut tr = FetchableTopicResponse::default();
        tr.topic = topic.topic.clone();
        tr.topic_id = topic.topic_id;
        for fp in &topic.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.preferred_read_replica = (-1).into();
            pd.records = Some(Bytes::new());
            let p = match b.leader_partition(&name, fp.partition) {
                Ok((p, _)) => p,
                Err(e) => {
                    pd.error_code = e.code();
                    tr.partitions.push(pd);
                    continue;
                }
            };
            let (plan, grant, upto) = {
                let mut st = p.store.lock().expect("partition lock");
                let start = st.log().log_start_offset();
                match serve(&p, &mut st, replica, fp) {
                    Err(e) => {
                        pd.error_code = errors::replica_error(e).code();
                        if e == ReplicaError::OffsetOutOfRange {
                            pd.high_watermark = p.replica().hw();
                            pd.log_start_offset = start;
                        }
                        tr.partitions.push(pd);
                        continue;
                    }
                    Ok(FetchAnswer::Diverging {
                        epoch,
                        end_offset,
                        hw,
                    }) => {
                        pd.diverging_epoch.epoch = epoch;
                        pd.diverging_epoch.end_offset = end_offset;
                        pd.high_watermark = hw;
                        pd.log_start_offset = start;
                        tr.partitions.push(pd);
                        // Answer at once: the follower must truncate first.
                        diverged = true;
                        continue;
                    }
                    Ok(FetchAnswer::Records {
                        from,
                        upto,
                        hw,
                        log_start,
                    }) => {
                        pd.high_watermark = hw;
                        pd.last_stable_offset = hw;
                        pd.log_start_offset = log_start;
                        let grant = budget.grant(fp.partition_max_bytes);
                        // Planned even when nothing may be returned: an offset out of range is
                        // still reported.
                        let plan = if from >= upto && replica < 0 {
                            Ok(None)
                        } else {
                            st.plan_fetch(from, grant)
                        };
                        (plan, grant, upto)
                    }
                }
            };
            match plan {
                Err(_) => pd.error_code = E::OffsetOutOfRange.code(),
                Ok(None) => {}
                Ok(Some(_)) if grant.is_empty() => {}
                Ok(Some(range)) => {
                    match read_range(&range) {
                        Ok(bytes) => {
                            // Counted as sent: a consumer's cut below the high watermark.
                            let bytes = if replica < 0 {
                                cut_at_hw(bytes, upto)
                            } else {
                                bytes
                            };
                            if budget.take(grant, bytes.len() as u64) {
                                pd.records = Some(bytes);
                            } else {
                                // trim_read keeps reads within the grant; never sent if not.
                                warn!(
                                    topic = name,
                                    partition = fp.partition,
                                    len = bytes.len(),
                                    ?grant,
                                    "fetch read over its byte budget left out"
                                );
                            }
                        }
                        Err(e) => {
                            warn!(topic = name, partition = fp.partition, error = %e, "fetch read failed");
                            pd.error_code = E::KafkaStorageError.code();
                        }
                    }
                }
            }
            tr.partitions.push(pd);
        }
        r.responses.push(tr);
    }
    let bytes = budget.used() as usize;
    (r, if diverged { bytes.max(1) } else { bytes })
}

/// Cuts fetched bytes before the first batch at or above `hw` (consumers read committed
/// records only).
fn cut_at_hw(bytes: Bytes, hw: i64) -> Bytes {
    let len = committed_len(&bytes, hw);
    bytes.slice(..len)
}
