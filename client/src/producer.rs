//! The producer: records in, acknowledged batches out, one Produce request per partition
//! leader per round, retried across leadership changes.
//!
//! Invariants:
//! - a flush either ends with every pending record acknowledged (or sent, with acks=0) or
//!   fails; it retries retriable errors at most [`ATTEMPTS_MAX`] rounds, refreshing the
//!   topic's metadata between rounds;
//! - a retry resends the batch encoded for the first attempt (see [`crate::accumulator`]),
//!   and DUPLICATE_SEQUENCE_NUMBER counts as acknowledged: the broker has the batch once;
//! - idempotence is used only with acks=-1, as the Java producer does when acks is set and
//!   idempotence is left at its default.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse};

use crate::accumulator::{Accumulator, PendingBatch};
use crate::batch::{ProducerIdentity, ProducerRecord};
use crate::cluster::{backoff, topic_name, Cluster, TopicInfo, ATTEMPTS_MAX};
use crate::error::{code, error_code_is_retriable, ClientError};

/// Server-side timeout given to Produce.
const SERVER_TIMEOUT_MS: i32 = 30_000;
const INIT_PRODUCER_ID_VERSION_MAX: i16 = 4;
const PRODUCE_VERSION_MIN: i16 = 3;
const PRODUCE_VERSION_MAX: i16 = 9;
/// Transaction timeout sent with InitProducerId (the Java producer's default).
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// How a [`Producer`] sends.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    /// Acknowledgements: -1 (all in-sync replicas), 1 (the leader) or 0 (none).
    pub acks: i16,
    /// Idempotent producer (producer id and sequence numbers); used only with acks -1.
    pub idempotent: bool,
    /// Send every record to this partition instead of partitioning by key.
    pub partition: Option<i32>,
    /// How long a caller should hold pending records while input pauses, before a flush.
    pub linger: Duration,
    /// Flush once this many key and value bytes are pending.
    pub pending_bytes_max: usize,
    /// Flush once this many records are pending.
    pub pending_records_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: -1,
            idempotent: true,
            partition: None,
            linger: Duration::from_millis(20),
            pending_bytes_max: 512 * 1024,
            pending_records_max: 10_000,
        }
    }
}

/// Produces records to one topic.
pub struct Producer {
    cluster: Cluster,
    topic: TopicInfo,
    acks: i16,
    linger: Duration,
    accumulator: Accumulator,
    produced: u64,
}

/// Wall-clock milliseconds since the Unix epoch, for record timestamps.
fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

impl Producer {
    /// A producer for `topic`: looks the topic up, checks `config.partition`, and gets a
    /// producer id if the producer is idempotent.
    pub async fn new(
        mut cluster: Cluster,
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        let idempotent = config.idempotent && config.acks == -1;
        let info = cluster.topic(topic).await?;
        if info.partitions.is_empty() {
            return Err(ClientError::Invalid(format!(
                "topic '{topic}' has no partitions"
            )));
        }
        if let Some(p) = config.partition {
            if !info.partitions.iter().any(|i| i.index == p) {
                return Err(ClientError::Invalid(format!(
                    "partition {p} does not exist: topic '{topic}' has {} partitions",
                    info.partitions.len()
                )));
            }
        }
        let identity = if idempotent {
            init_producer_id(&mut cluster).await?
        } else {
            ProducerIdentity::NONE
        };
        let sticky_position = usize::try_from(now_ms()).unwrap_or(0) % info.partitions.len();
        Ok(Producer {
            cluster,
            topic: info,
            acks: config.acks,
            linger: config.linger,
            accumulator: Accumulator::new(
                identity,
                config.partition,
                sticky_position,
                config.pending_bytes_max,
                config.pending_records_max,
            ),
            produced: 0,
        })
    }

    /// The topic as the latest metadata describes it.
    pub fn topic(&self) -> &TopicInfo {
        &self.topic
    }

    /// The producer id and epoch in use ([`ProducerIdentity::NONE`] if not idempotent).
    pub fn identity(&self) -> ProducerIdentity {
        self.accumulator.identity()
    }

    /// Gives the cluster connections back, e.g. for a consumer.
    pub fn into_cluster(self) -> Cluster {
        self.cluster
    }

    /// Records acknowledged so far (with acks=0: sent so far).
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The configured linger: how long to wait for more records before flushing.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// Queues a record for the next flush.
    pub fn add(&mut self, record: ProducerRecord) {
        self.accumulator.add(&self.topic, record);
    }

    /// Whether records are waiting for a flush.
    pub fn has_pending(&self) -> bool {
        !self.accumulator.is_empty()
    }

    /// Whether the pending records reach a size limit, so the caller should flush now.
    pub fn is_full(&self) -> bool {
        self.accumulator.is_full()
    }

    /// Sends every pending record, retrying retriable errors; one batch per partition.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.accumulator.is_empty() {
            return Ok(());
        }
        let mut batches = self.accumulator.drain(now_ms())?;
        let mut attempt = 1;
        while !batches.is_empty() {
            let failures = self.send_batches(&mut batches).await?;
            let Some(last_error) = failures else { break };
            if attempt >= ATTEMPTS_MAX {
                return Err(last_error.context(format!(
                    "giving up on producing to '{}' after {ATTEMPTS_MAX} attempts",
                    self.topic.name
                )));
            }
            attempt += 1;
            backoff().await;
            self.topic = self.cluster.topic(&self.topic.name.clone()).await?;
        }
        self.accumulator.rotate_sticky(self.topic.partitions.len());
        Ok(())
    }

    /// One round: a Produce request per leader. Acknowledged batches leave `batches`;
    /// returns the last retriable error if some remain, fails on anything else.
    async fn send_batches(
        &mut self,
        batches: &mut BTreeMap<i32, PendingBatch>,
    ) -> Result<Option<ClientError>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut retriable = None;
        for partition in batches.keys() {
            match self.topic.partitions.iter().find(|p| p.index == *partition) {
                Some(p) if p.leader >= 0 => by_leader.entry(p.leader).or_default().push(*partition),
                Some(_) => {
                    retriable = Some(ClientError::kafka(
                        format!("produce to {}-{partition}", self.topic.name),
                        code::LEADER_NOT_AVAILABLE,
                        Some("no leader in metadata"),
                    ))
                }
                None => {
                    return Err(ClientError::Invalid(format!(
                        "partition {partition} of '{}' does not exist",
                        self.topic.name
                    )))
                }
            }
        }
        for (leader, partitions) in by_leader {
            let request = self.produce_request(batches, &partitions);
            match self.send_produce(leader, request).await {
                Ok(None) => {
                    // acks=0: nothing to check.
                    for p in &partitions {
                        self.acknowledge(*p, batches);
                    }
                }
                Ok(Some(response)) => {
                    if let Some(e) = self.check_produce_response(&response, &partitions, batches)? {
                        retriable = Some(e);
                    }
                }
                Err(e) if e.is_retriable() => {
                    self.cluster.forget(Some(leader), &e);
                    retriable = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(retriable)
    }

    fn produce_request(
        &self,
        batches: &BTreeMap<i32, PendingBatch>,
        partitions: &[i32],
    ) -> ProduceRequest {
        let partition_data = partitions
            .iter()
            .map(|p| {
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(batches[p].bytes.clone()))
            })
            .collect();
        ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(SERVER_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic.name))
                .with_partition_data(partition_data)])
    }

    async fn send_produce(
        &mut self,
        leader: i32,
        request: ProduceRequest,
    ) -> Result<Option<ProduceResponse>, ClientError> {
        let acks = self.acks;
        let client = self.cluster.node(leader).await?;
        let version = client
            .pick_version_between::<ProduceRequest>(PRODUCE_VERSION_MIN, PRODUCE_VERSION_MAX)?;
        if acks == 0 {
            client.send_without_response(request, version).await?;
            return Ok(None);
        }
        client.send(request, version).await.map(Some)
    }

    fn acknowledge(&mut self, partition: i32, batches: &mut BTreeMap<i32, PendingBatch>) {
        if let Some(batch) = batches.remove(&partition) {
            self.produced += u64::try_from(batch.record_count).unwrap_or(0);
            self.accumulator.acknowledge(partition, batch.record_count);
        }
    }

    fn check_produce_response(
        &mut self,
        response: &ProduceResponse,
        partitions: &[i32],
        batches: &mut BTreeMap<i32, PendingBatch>,
    ) -> Result<Option<ClientError>, ClientError> {
        let mut retriable = None;
        for partition in partitions {
            let result = response
                .responses
                .iter()
                .filter(|t| t.name.as_str() == self.topic.name)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == *partition)
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "Produce response does not mention {}-{partition}",
                        self.topic.name
                    ))
                })?;
            let error_code = result.error_code;
            // A retry of a batch the broker already has: it was written once, as intended.
            if error_code == 0 || error_code == code::DUPLICATE_SEQUENCE_NUMBER {
                self.acknowledge(*partition, batches);
                continue;
            }
            let mut message = result.error_message.as_deref().map(|m| m.to_string());
            if let Some(first) = result.record_errors.first() {
                let detail = format!(
                    "record {} of the batch: {}",
                    first.batch_index,
                    first.batch_index_error_message.as_deref().unwrap_or("")
                );
                message = Some(match message {
                    Some(m) => format!("{m}; {detail}"),
                    None => detail,
                });
            }
            let err = ClientError::kafka(
                format!("produce to {}-{partition}", self.topic.name),
                error_code,
                message.as_deref(),
            );
            // CORRUPT_MESSAGE is retriable in Kafka, but resending the same bytes cannot help.
            if error_code_is_retriable(error_code) && error_code != code::CORRUPT_MESSAGE {
                retriable = Some(err);
            } else {
                return Err(err);
            }
        }
        Ok(retriable)
    }
}

/// Asks the cluster for a producer id and epoch (InitProducerId without a transactional id).
pub async fn init_producer_id(cluster: &mut Cluster) -> Result<ProducerIdentity, ClientError> {
    for attempt in 1..=ATTEMPTS_MAX {
        let client = cluster.bootstrap().await?;
        if !client.supports::<InitProducerIdRequest>() {
            return Err(ClientError::NotSupported {
                api: "InitProducerId".to_owned(),
                needed_by: "the idempotent producer".to_owned(),
            });
        }
        let version = client.pick_version::<InitProducerIdRequest>(INIT_PRODUCER_ID_VERSION_MAX)?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
        let response = client.send(request, version).await?;
        let code = response.error_code;
        if code == 0 {
            return Ok(ProducerIdentity {
                id: response.producer_id.0,
                epoch: response.producer_epoch,
            });
        }
        let err = ClientError::kafka("InitProducerId", code, None);
        if !error_code_is_retriable(code) || attempt == ATTEMPTS_MAX {
            return Err(err);
        }
        backoff().await;
    }
    unreachable!("the last attempt returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_broker::{self, reply};
    use bytes::Bytes;
    use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ApiKey, ProducerId, RequestHeader};
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::records::RecordBatchDecoder;
    use std::sync::{Arc, Mutex};

    /// What the fake broker saw of one Produce: (bytes, base sequence, record count).
    type SeenBatch = (Bytes, i32, i32);

    /// A broker leading t-0 that fails the first `failures` Produce requests with
    /// NOT_LEADER_OR_FOLLOWER and records every batch it is sent.
    async fn fake_broker(failures: usize) -> (String, Arc<Mutex<Vec<SeenBatch>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = seen.clone();
        let handler = move |header: &RequestHeader, mut body: Bytes| {
            let v = header.request_api_version;
            match ApiKey::try_from(header.request_api_key) {
                Ok(ApiKey::InitProducerId) => {
                    let resp = InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(7))
                        .with_producer_epoch(3);
                    reply::<InitProducerIdRequest>(&resp, header)
                }
                Ok(ApiKey::Produce) => {
                    let req = ProduceRequest::decode(&mut body, v).unwrap();
                    let bytes = req.topic_data[0].partition_data[0].records.clone().unwrap();
                    let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
                    let attempts = {
                        let mut seen = shared.lock().unwrap();
                        seen.push((bytes, info[0].base_sequence, info[0].record_count));
                        seen.len()
                    };
                    let error_code = if attempts <= failures {
                        code::NOT_LEADER_OR_FOLLOWER
                    } else {
                        0
                    };
                    let resp = ProduceResponse::default().with_responses(vec![
                        TopicProduceResponse::default()
                            .with_name(topic_name("t"))
                            .with_partition_responses(vec![PartitionProduceResponse::default()
                                .with_index(0)
                                .with_error_code(error_code)]),
                    ]);
                    reply::<ProduceRequest>(&resp, header)
                }
                other => panic!("unexpected request {other:?}"),
            }
        };
        let apis = [(ApiKey::InitProducerId, 0, 4), (ApiKey::Produce, 3, 9)];
        let addr = fake_broker::start(&apis, 1, Arc::new(handler)).await;
        (addr, seen)
    }

    fn record(value: &'static str) -> ProducerRecord {
        ProducerRecord {
            key: None,
            value: Bytes::from_static(value.as_bytes()),
        }
    }

    #[tokio::test]
    async fn retries_resend_the_same_sequence_and_acks_advance_it() {
        let (addr, broker) = fake_broker(2).await;
        let cluster = Cluster::connect(&addr).await.unwrap();
        let mut producer = Producer::new(cluster, "t", ProducerConfig::default())
            .await
            .unwrap();
        assert_eq!(producer.identity(), ProducerIdentity { id: 7, epoch: 3 });
        for v in ["a", "b", "c"] {
            producer.add(record(v));
        }
        producer.flush().await.unwrap();
        assert_eq!(producer.produced(), 3);
        producer.add(record("d"));
        producer.add(record("e"));
        producer.flush().await.unwrap();
        assert_eq!(producer.produced(), 5);
        let seen = broker.lock().unwrap().clone();
        let summary: Vec<(i32, i32)> = seen.iter().map(|(_, seq, n)| (*seq, *n)).collect();
        // Two refusals and the acknowledged attempt carry the same batch, then the next
        // batch starts where the acknowledged one ended.
        assert_eq!(summary, [(0, 3), (0, 3), (0, 3), (3, 2)]);
        assert!(
            seen[0].0 == seen[1].0 && seen[1].0 == seen[2].0,
            "retries resend the bytes"
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_attempt_limit() {
        let (addr, _broker) = fake_broker(usize::MAX).await;
        let cluster = Cluster::connect(&addr).await.unwrap();
        let mut producer = Producer::new(cluster, "t", ProducerConfig::default())
            .await
            .unwrap();
        producer.add(record("a"));
        let err = producer.flush().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "giving up on producing to 't' after 6 attempts"
        );
        assert_eq!(err.kafka_code(), Some(code::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(producer.produced(), 0);
    }
}
