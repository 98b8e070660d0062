//! The consumer: a topic's partitions (or one of them) read from their leaders, one Fetch
//! per leader per [`Consumer::poll`], following leadership changes.
//!
//! Invariants:
//! - a partition's position only moves forward, to just past the last whole batch read;
//! - a batch larger than the partition's fetch size doubles that size (up to
//!   [`FETCH_PARTITION_BYTES_MAX`]) instead of stalling;
//! - each poll puts a different partition first in its requests, since a broker fills a
//!   response in request order (KIP-74) and busy partitions must not starve the rest;
//! - a retriable failure (lost connection, moved leader) refreshes metadata before the next
//!   poll; [`ATTEMPTS_MAX`] failed polls in a row end with an error.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest};

use crate::batch::{parse_fetched_records, FetchedRecord};
use crate::cluster::{backoff, topic_name, Cluster, TopicInfo, ATTEMPTS_MAX};
use crate::error::{code, is_leadership_error, ClientError};
use crate::offsets::{list_offsets, OFFSET_EARLIEST, OFFSET_LATEST};

const FETCH_VERSION_MIN: i16 = 4;
const FETCH_VERSION_MAX: i16 = 12;
/// Longest the broker may hold a fetch with no data.
pub const FETCH_MAX_WAIT_MS: u64 = 500;
/// Bytes asked per partition at first.
pub const FETCH_PARTITION_BYTES_DEFAULT: i32 = 1024 * 1024;
/// Bytes asked per partition at most, when one batch is larger than the default.
pub const FETCH_PARTITION_BYTES_MAX: i32 = 64 * 1024 * 1024;
/// Bytes asked per response (under the client's 100 MiB response limit).
const FETCH_RESPONSE_BYTES_MAX: i32 = 80 * 1024 * 1024;

/// Reads records of one topic: the next offset per partition and where each partition's
/// leader is.
pub struct Consumer {
    cluster: Cluster,
    topic: TopicInfo,
    positions: BTreeMap<i32, i64>,
    partition_bytes: BTreeMap<i32, i32>,
    /// Polls so far: each puts a different partition first in its requests.
    round: usize,
    /// Polls in a row that met a retriable failure.
    failed_rounds: u32,
}

impl Consumer {
    /// A consumer of `topic`'s partitions (all, or only `partition`), each positioned at
    /// offset 0 until a seek.
    pub async fn new(
        mut cluster: Cluster,
        topic: &str,
        partition: Option<i32>,
    ) -> Result<Consumer, ClientError> {
        let info = cluster.topic(topic).await?;
        let selected: Vec<i32> = match partition {
            Some(p) if info.partitions.iter().any(|i| i.index == p) => vec![p],
            Some(p) => {
                return Err(ClientError::Invalid(format!(
                    "partition {p} does not exist: topic '{topic}' has {} partitions",
                    info.partitions.len()
                )))
            }
            None => info.partitions.iter().map(|p| p.index).collect(),
        };
        Ok(Consumer {
            cluster,
            topic: info,
            positions: selected.iter().map(|p| (*p, 0)).collect(),
            partition_bytes: selected
                .iter()
                .map(|p| (*p, FETCH_PARTITION_BYTES_DEFAULT))
                .collect(),
            round: 0,
            failed_rounds: 0,
        })
    }

    /// The topic as the latest metadata describes it.
    pub fn topic(&self) -> &TopicInfo {
        &self.topic
    }

    /// Gives the cluster connections back.
    pub fn into_cluster(self) -> Cluster {
        self.cluster
    }

    /// The partitions read, in order.
    pub fn partitions(&self) -> Vec<i32> {
        self.positions.keys().copied().collect()
    }

    /// The next offset to read from `partition`, if it is one of this consumer's.
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.positions.get(&partition).copied()
    }

    /// Reads `partition` from `offset` next; an error if the partition is not one of this
    /// consumer's or the offset is negative.
    pub fn seek(&mut self, partition: i32, offset: i64) -> Result<(), ClientError> {
        if offset < 0 {
            return Err(ClientError::Invalid(format!("offset {offset} is negative")));
        }
        match self.positions.get_mut(&partition) {
            Some(position) => {
                *position = offset;
                Ok(())
            }
            None => Err(ClientError::Invalid(format!(
                "partition {partition} of '{}' is not read by this consumer",
                self.topic.name
            ))),
        }
    }

    /// Moves every partition to its log start.
    pub async fn seek_to_beginning(&mut self) -> Result<(), ClientError> {
        self.seek_to(OFFSET_EARLIEST).await
    }

    /// Moves every partition to its log end, so only new records are read.
    pub async fn seek_to_end(&mut self) -> Result<(), ClientError> {
        self.seek_to(OFFSET_LATEST).await
    }

    /// Sets each partition's start from ListOffsets (`timestamp` -2 earliest, -1 latest).
    async fn seek_to(&mut self, timestamp: i64) -> Result<(), ClientError> {
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let found = list_offsets(&mut self.cluster, &mut self.topic, &partitions, timestamp)
            .await
            .map_err(|e| e.context("looking up start offsets"))?;
        self.positions.extend(found);
        Ok(())
    }

    fn partitions_by_leader(&self) -> (BTreeMap<i32, Vec<i32>>, bool) {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut leaderless = false;
        for partition in self.positions.keys() {
            match self.topic.leader_of(*partition) {
                Some(l) => by_leader.entry(l).or_default().push(*partition),
                None => leaderless = true,
            }
        }
        (by_leader, leaderless)
    }

    /// One Fetch per leader, waiting at most `max_wait` (capped at [`FETCH_MAX_WAIT_MS`])
    /// for data; appends the records read to `out`, in partition order per leader. Records
    /// are appended even when an error is returned, so the caller can hand them on first.
    pub async fn poll(
        &mut self,
        max_wait: Duration,
        out: &mut Vec<FetchedRecord>,
    ) -> Result<(), ClientError> {
        let max_wait_ms = i32::try_from(max_wait.as_millis().min(u128::from(FETCH_MAX_WAIT_MS)))
            .expect("bounded by FETCH_MAX_WAIT_MS");
        let (by_leader, leaderless) = self.partitions_by_leader();
        let mut failure = leaderless.then(|| {
            ClientError::kafka(
                "fetch",
                code::LEADER_NOT_AVAILABLE,
                Some("a partition has no leader"),
            )
        });
        self.round = self.round.wrapping_add(1);
        for (leader, mut partitions) in by_leader {
            // Busy partitions listed first cannot take every response, and a batch over the
            // partition limit arrives once its partition comes first.
            let n = partitions.len();
            partitions.rotate_left(self.round % n);
            if let Err(e) = self
                .fetch_from(leader, &partitions, max_wait_ms, out)
                .await?
            {
                failure = Some(e);
            }
        }
        let Some(e) = failure else {
            self.failed_rounds = 0;
            return Ok(());
        };
        self.failed_rounds += 1;
        if self.failed_rounds >= ATTEMPTS_MAX {
            return Err(e.context(format!(
                "consuming '{}' failed after {ATTEMPTS_MAX} attempts",
                self.topic.name
            )));
        }
        backoff().await;
        self.topic = self.cluster.topic(&self.topic.name.clone()).await?;
        Ok(())
    }

    /// The Fetch for `partitions` at their positions.
    fn fetch_request(&self, partitions: &[i32], max_wait_ms: i32) -> FetchRequest {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_RESPONSE_BYTES_MAX)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&self.topic.name))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(self.positions[p])
                                .with_partition_max_bytes(self.partition_bytes[p])
                        })
                        .collect(),
                )])
    }

    /// One Fetch to one leader; appends the records to `out`. Returns the number of
    /// records added, or a retriable error for the caller to refresh metadata on.
    async fn fetch_from(
        &mut self,
        leader: i32,
        partitions: &[i32],
        max_wait_ms: i32,
        out: &mut Vec<FetchedRecord>,
    ) -> Result<Result<usize, ClientError>, ClientError> {
        let request = self.fetch_request(partitions, max_wait_ms);
        let client = match self.cluster.node(leader).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let version =
            client.pick_version_between::<FetchRequest>(FETCH_VERSION_MIN, FETCH_VERSION_MAX)?;
        let response = match client.send(request, version).await {
            Ok(r) => r,
            Err(e) if e.breaks_connection() => {
                self.cluster.forget(Some(leader), &e);
                return Ok(Err(e));
            }
            Err(e) => return Err(e),
        };
        let name = self.topic.name.clone();
        if response.error_code != 0 {
            return Err(ClientError::kafka(
                format!("fetch from {name}"),
                response.error_code,
                None,
            ));
        }
        let mut added = 0;
        let mut retriable = None;
        for data in response
            .responses
            .iter()
            .filter(|t| t.topic.as_str() == name)
            .flat_map(|t| t.partitions.iter())
        {
            match self.take_partition(data, out)? {
                Ok(n) => added += n,
                Err(e) => retriable = Some(e),
            }
        }
        Ok(match retriable {
            Some(e) if added == 0 => Err(e),
            _ => Ok(added),
        })
    }

    /// Takes one partition's part of a Fetch answer: its records go to `out` and its
    /// position moves past them. Returns how many were added, or a leadership error to
    /// retry after a metadata refresh; any other error code ends the consumer.
    fn take_partition(
        &mut self,
        data: &PartitionData,
        out: &mut Vec<FetchedRecord>,
    ) -> Result<Result<usize, ClientError>, ClientError> {
        let name = &self.topic.name;
        let p = data.partition_index;
        let Some(position) = self.positions.get(&p).copied() else {
            return Ok(Ok(0)); // not asked for
        };
        if data.error_code != 0 {
            let err = ClientError::kafka(
                format!("fetch {name}-{p} at offset {position}"),
                data.error_code,
                None,
            );
            if is_leadership_error(data.error_code) {
                return Ok(Err(err));
            }
            let hint = if data.error_code == code::OFFSET_OUT_OF_RANGE {
                format!(
                    " (partition {p} holds offsets {}..{})",
                    data.log_start_offset, data.high_watermark
                )
            } else {
                String::new()
            };
            return Err(err.context(format!("consuming '{name}' failed{hint}")));
        }
        let bytes = data.records.clone().unwrap_or_default();
        let had_bytes = !bytes.is_empty();
        let (records, next) = parse_fetched_records(bytes, p, position).map_err(|e| {
            e.context(format!(
                "reading records of {name}-{p} at offset {position}"
            ))
        })?;
        match next {
            Some(next) => {
                self.positions.insert(p, next.max(position));
            }
            None if had_bytes => {
                // Only part of one batch fit: ask for more bytes next time.
                let bytes = self.partition_bytes[&p];
                if bytes >= FETCH_PARTITION_BYTES_MAX {
                    return Err(ClientError::InvalidRecords(format!(
                        "a record batch in {name}-{p} at offset {position} exceeds \
                         {FETCH_PARTITION_BYTES_MAX} bytes"
                    )));
                }
                self.partition_bytes
                    .insert(p, bytes.saturating_mul(2).min(FETCH_PARTITION_BYTES_MAX));
            }
            None => {}
        }
        let added = records.len();
        out.extend(records);
        Ok(Ok(added))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode_batch, ProducerIdentity, ProducerRecord};
    use crate::fake_broker::{self, reply};
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader};
    use kafka_protocol::protocol::Decodable;
    use std::sync::{Arc, Mutex};

    /// How the fake broker answers a Fetch of t-0: (error code, records) from the fetch
    /// offset and the partition's byte limit.
    type Script = dyn Fn(usize, i64, i32) -> (i16, Option<Bytes>) + Send + Sync;

    /// A broker leading t-0 that answers the n-th Fetch with `script`; records each
    /// Fetch's (offset, partition byte limit).
    async fn fake_broker(script: Arc<Script>) -> (String, Arc<Mutex<Vec<(i64, i32)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = seen.clone();
        let handler = move |header: &RequestHeader, mut body: Bytes| {
            assert_eq!(header.request_api_key, ApiKey::Fetch as i16);
            let req = FetchRequest::decode(&mut body, header.request_api_version).unwrap();
            let asked = &req.topics[0].partitions[0];
            let n = {
                let mut seen = shared.lock().unwrap();
                seen.push((asked.fetch_offset, asked.partition_max_bytes));
                seen.len()
            };
            let (error_code, records) = script(n, asked.fetch_offset, asked.partition_max_bytes);
            let resp =
                FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(topic_name("t"))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_error_code(error_code)
                        .with_log_start_offset(5)
                        .with_high_watermark(9)
                        .with_records(records)])]);
            reply::<FetchRequest>(&resp, header)
        };
        let addr = fake_broker::start(&[(ApiKey::Fetch, 4, 12)], 1, Arc::new(handler)).await;
        (addr, seen)
    }

    async fn consumer(addr: &str) -> Consumer {
        let cluster = Cluster::connect(addr).await.unwrap();
        Consumer::new(cluster, "t", Some(0)).await.unwrap()
    }

    #[tokio::test]
    async fn follows_a_moved_leader_and_grows_the_fetch_size_for_a_large_batch() {
        let value = Bytes::from(vec![b'x'; 1536 * 1024]);
        let record = ProducerRecord { key: None, value };
        let batch = encode_batch(&[record], ProducerIdentity::NONE, 0, 1).unwrap();
        let script = move |n: usize, offset: i64, max_bytes: i32| match (n, offset) {
            (1, _) => (code::NOT_LEADER_OR_FOLLOWER, None),
            (_, 0) => {
                let cut = batch.len().min(usize::try_from(max_bytes).unwrap());
                (0, Some(batch.slice(..cut)))
            }
            _ => (0, Some(Bytes::new())),
        };
        let (addr, seen) = fake_broker(Arc::new(script)).await;
        let mut consumer = consumer(&addr).await;
        let mut records = Vec::new();
        for _ in 0..3 {
            consumer
                .poll(Duration::from_millis(10), &mut records)
                .await
                .unwrap();
        }
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].partition, records[0].offset), (0, 0));
        assert_eq!(records[0].value.as_ref().map(Bytes::len), Some(1536 * 1024));
        assert_eq!(consumer.position(0), Some(1));
        let mib = 1024 * 1024;
        assert_eq!(*seen.lock().unwrap(), [(0, mib), (0, mib), (0, 2 * mib)]);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempt_limit() {
        let script = |_, _, _| (code::NOT_LEADER_OR_FOLLOWER, None);
        let (addr, seen) = fake_broker(Arc::new(script)).await;
        let mut consumer = consumer(&addr).await;
        let mut records = Vec::new();
        for _ in 1..ATTEMPTS_MAX {
            consumer
                .poll(Duration::from_millis(10), &mut records)
                .await
                .unwrap();
        }
        let err = consumer
            .poll(Duration::from_millis(10), &mut records)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "consuming 't' failed after 6 attempts");
        assert_eq!(err.kafka_code(), Some(code::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(seen.lock().unwrap().len(), 6);
        assert!(records.is_empty());
    }

    #[tokio::test]
    async fn out_of_range_names_the_partitions_offsets() {
        let script = |_, _, _| (code::OFFSET_OUT_OF_RANGE, None);
        let (addr, _) = fake_broker(Arc::new(script)).await;
        let mut consumer = consumer(&addr).await;
        consumer.seek(0, 2).unwrap();
        let err = consumer
            .poll(Duration::from_millis(10), &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "consuming 't' failed (partition 0 holds offsets 5..9)"
        );
        assert_eq!(err.kafka_code(), Some(code::OFFSET_OUT_OF_RANGE));
        assert!(consumer.seek(1, 0).is_err(), "not one of its partitions");
        assert!(consumer.seek(0, -1).is_err(), "negative offset");
    }
}
