//! ListOffsets and OffsetForLeaderEpoch: offsets by time, earliest, latest and max timestamp; a
//! leader epoch's end offset.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;
use tracing::warn;

use crate::broker::Broker;

use super::*;

/// ListOffsets v1-10: earliest (-2), latest (-1), max timestamp (-3, from v7), earliest local
/// (-4, from v8), latest tiered (-5, from v9), or by timestamp. v10's timeout (for tiered
/// storage's remote reads) has nothing to wait for here.
pub fn list_offsets(b: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let found = b.leader_partition(&name, p.partition_index);
            if let Ok((_, epoch)) = &found {
                if version >= 4 {
                    pr.leader_epoch = *epoch;
                }
                if let Some(e) = leader_epoch_check(p.current_leader_epoch, *epoch) {
                    pr.error_code = e.code();
                    tr.partitions.push(pr);
                    continue;
                }
            }
            // A new leader answers only once its high watermark has reached its first offset:
            // before that it could answer below what the previous leader exposed.
            let found = found.and_then(|(part, epoch)| {
                let r = part.replica();
                match r.leader().filter(|l| l.leader_epoch() == epoch) {
                    None => Err(E::NotLeaderOrFollower),
                    Some(l) if !l.hw_settled() => Err(E::OffsetNotAvailable),
                    Some(_) => {
                        let hw = r.hw();
                        drop(r);
                        Ok((part, hw))
                    }
                }
            });
            match found {
                Err(e) => pr.error_code = e.code(),
                Ok((part, hw)) => {
                    let by_time = match p.timestamp {
                        // EARLIEST, and EARLIEST_LOCAL (v8, KIP-405): without tiered storage the
                        // local log starts where the log does.
                        t if t == -2 || (t == -4 && version >= 8) => {
                            pr.offset = part.store.lock().expect("lock").log().log_start_offset();
                            None
                        }
                        // LATEST_TIERED (v9, KIP-1005): nothing is tiered, so Kafka answers -1.
                        -5 if version >= 9 => {
                            pr.offset = -1;
                            pr.leader_epoch = -1;
                            None
                        }
                        -1 => {
                            pr.offset = hw;
                            None
                        }
                        // MAX_TIMESTAMP (v7, KIP-734): the first record with the log's largest
                        // timestamp, as Kafka answers it (none in an empty log).
                        -3 if version >= 7 => {
                            let max = part.store.lock().expect("lock").log().max_timestamp();
                            (max >= 0).then_some(max)
                        }
                        ts if ts >= 0 => Some(ts),
                        _ => {
                            pr.error_code = E::InvalidRequest.code();
                            None
                        }
                    };
                    if let Some(ts) = by_time {
                        match offset_for_time(&part, ts) {
                            Ok(Some((off, found_ts))) if off < hw => {
                                pr.offset = off;
                                pr.timestamp = found_ts;
                            }
                            // No record at or after `ts`: Kafka answers with no leader epoch.
                            Ok(_) => pr.leader_epoch = -1,
                            Err(e) => {
                                warn!(topic = name, error = %e, "timestamp lookup failed");
                                pr.error_code = E::KafkaStorageError.code();
                            }
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

/// The first record with timestamp >= `ts`: (offset, its timestamp).
fn offset_for_time(
    p: &crate::partition::Partition,
    ts: i64,
) -> std::io::Result<Option<(i64, i64)>> {
    let (file, pos, seg_size) = {
        let st = p.store.lock().expect("partition lock");
        let log = st.log();
        let Some((base, pos, len)) = log.plan_timestamp_scan(ts) else {
            return Ok(None);
        };
        let Some(file) = st.segment_file(base) else {
            return Ok(None);
        };
        (file, pos, pos + len)
    };
    // Walk batches from the time-index position to the first record reaching `ts`. Each batch
    // is judged by its records, not its header's max timestamp: data written before the leader
    // checked headers may carry -1 there.
    let mut at = pos;
    let mut head = [0u8; skein_core::batch::HEADER_LEN];
    let mut whole = Vec::new();
    while at + head.len() as u64 <= seg_size {
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut head, at)?;
        let Ok(h) = skein_core::batch::parse_header(&head) else {
            break;
        };
        if at + h.size as u64 > seg_size {
            break;
        }
        whole.resize(h.size, 0);
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut whole, at)?;
        match skein_core::records::first_at_or_after(&whole, &h, ts) {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            // A stored batch whose records do not walk: fall back to its header.
            Err(_) if h.max_timestamp >= ts => return Ok(Some((h.base_offset, h.max_timestamp))),
            Err(_) => {}
        }
        at += h.size as u64;
    }
    Ok(None)
}

/// OffsetForLeaderEpoch.
pub fn offset_for_leader_epoch(
    b: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let name = t.topic.0.to_string();
        let mut tr = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = offset_for_leader_epoch_response::EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            let found = b.leader_partition(&name, p.partition);
            let epoch_err = match &found {
                Ok((_, ours)) => leader_epoch_check(p.current_leader_epoch, *ours),
                Err(_) => None,
            };
            if let Some(err) = epoch_err {
                e.error_code = err.code();
            } else {
                match found {
                    Err(err) => e.error_code = err.code(),
                    Ok((part, _)) => {
                        let (ep, off) = part
                            .store
                            .lock()
                            .expect("lock")
                            .log()
                            .end_offset_for_epoch(p.leader_epoch);
                        e.leader_epoch = ep;
                        e.end_offset = off;
                    }
                }
            }
            tr.partitions.push(e);
        }
        r.topics.push(tr);
    }
    r
}
