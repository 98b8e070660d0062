//! The producer's decisions that need no I/O: which partition a record goes to, when the
//! pending records are enough for a flush, how they become one batch per partition, and the
//! sequence numbers of an idempotent producer.
//!
//! Invariants:
//! - a partition's batch is encoded once per flush ([`Accumulator::drain`]), so every retry
//!   of it resends the same bytes and the same base sequence, and the broker can drop a
//!   duplicate;
//! - a partition's next sequence advances only when its batch is acknowledged
//!   ([`Accumulator::acknowledge`]), by the batch's record count, wrapping from `i32::MAX`
//!   to 0 as Kafka's do;
//! - keyed records go where the Java client sends them (murmur2); keyless ones stick to one
//!   partition until the next flush, then move to the next partition.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::batch::{encode_batch, ProducerIdentity, ProducerRecord};
use crate::cluster::TopicInfo;
use crate::error::ClientError;
use crate::partitioner::partition_for_key;

/// One partition's records, encoded as a RecordBatch v2 and waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBatch {
    /// The encoded batch.
    pub bytes: Bytes,
    /// Records in it.
    pub record_count: i32,
}

/// Pending records by partition, with the producer's sequence numbers.
#[derive(Debug, Clone)]
pub struct Accumulator {
    identity: ProducerIdentity,
    fixed_partition: Option<i32>,
    /// Position in the topic's partitions for keyless records; advances after each flush.
    sticky_position: usize,
    /// Next sequence number per partition (idempotent only).
    sequences: BTreeMap<i32, i32>,
    /// Records waiting for the next flush, by partition.
    pending: BTreeMap<i32, Vec<ProducerRecord>>,
    pending_bytes: usize,
    pending_records: usize,
    pending_bytes_max: usize,
    pending_records_max: usize,
}

impl Accumulator {
    /// An empty accumulator; `sticky_position` picks the first partition for keyless records.
    pub fn new(
        identity: ProducerIdentity,
        fixed_partition: Option<i32>,
        sticky_position: usize,
        pending_bytes_max: usize,
        pending_records_max: usize,
    ) -> Accumulator {
        Accumulator {
            identity,
            fixed_partition,
            sticky_position,
            sequences: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            pending_records: 0,
            pending_bytes_max,
            pending_records_max,
        }
    }

    /// The producer identity written into every batch.
    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    /// The partition `record` goes to.
    pub fn partition_for(&self, topic: &TopicInfo, record: &ProducerRecord) -> i32 {
        if let Some(p) = self.fixed_partition {
            return p;
        }
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        match &record.key {
            Some(key) => partition_for_key(key, count).unwrap_or(0),
            None => topic
                .partitions
                .get(self.sticky_position)
                .map_or(0, |p| p.index),
        }
    }

    /// Adds a record to its partition's pending records.
    pub fn add(&mut self, topic: &TopicInfo, record: ProducerRecord) {
        let partition = self.partition_for(topic, &record);
        self.pending_bytes += record.value.len() + record.key.as_ref().map_or(0, Bytes::len);
        self.pending_records += 1;
        self.pending.entry(partition).or_default().push(record);
    }

    /// Whether no record is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the pending records reach the byte or record limit, so a flush is due.
    pub fn is_full(&self) -> bool {
        self.pending_bytes >= self.pending_bytes_max
            || self.pending_records >= self.pending_records_max
    }

    /// Takes every pending record as one batch per partition, numbered from each
    /// partition's next sequence.
    pub fn drain(&mut self, timestamp_ms: i64) -> Result<BTreeMap<i32, PendingBatch>, ClientError> {
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.pending_records = 0;
        let mut batches = BTreeMap::new();
        for (partition, records) in &pending {
            let bytes = encode_batch(
                records,
                self.identity,
                self.next_sequence(*partition),
                timestamp_ms,
            )?;
            let record_count = i32::try_from(records.len()).map_err(|_| {
                ClientError::Invalid(format!("{} records in one batch", records.len()))
            })?;
            batches.insert(
                *partition,
                PendingBatch {
                    bytes,
                    record_count,
                },
            );
        }
        Ok(batches)
    }

    /// Records that `partition`'s batch of `record_count` records was acknowledged.
    pub fn acknowledge(&mut self, partition: i32, record_count: i32) {
        let next = self.sequences.entry(partition).or_insert(0);
        *next = increment_sequence(*next, record_count);
    }

    /// The base sequence `partition`'s next batch gets.
    pub fn next_sequence(&self, partition: i32) -> i32 {
        self.sequences.get(&partition).copied().unwrap_or(0)
    }

    /// After a flush: keyless records move on to the next partition.
    pub fn rotate_sticky(&mut self, partition_count: usize) {
        if self.fixed_partition.is_none() && partition_count > 0 {
            self.sticky_position = (self.sticky_position + 1) % partition_count;
        }
    }
}

/// Kafka's sequence increment: sequences wrap from i32::MAX to 0
/// (`DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PartitionInfo;
    use kafka_protocol::records::RecordBatchDecoder;

    fn topic(partitions: i32) -> TopicInfo {
        TopicInfo {
            name: "t".into(),
            topic_id: None,
            partitions: (0..partitions)
                .map(|index| PartitionInfo {
                    index,
                    leader: 1,
                    replicas: vec![1],
                    isr: vec![1],
                    error_code: 0,
                })
                .collect(),
        }
    }

    fn record(key: Option<&str>, value: &str) -> ProducerRecord {
        ProducerRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    /// (base sequence, record count, producer id) as written in a batch's header.
    fn header(batch: &PendingBatch) -> (i32, i32, i64) {
        let info = RecordBatchDecoder::decode_batch_info(&mut batch.bytes.clone()).unwrap();
        assert_eq!(info.len(), 1);
        (
            info[0].base_sequence,
            info[0].record_count,
            info[0].producer_id,
        )
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 2, 5), 2);
    }

    #[test]
    fn sequences_advance_only_on_acknowledgement() {
        let identity = ProducerIdentity { id: 9, epoch: 0 };
        let t = topic(2);
        let mut acc = Accumulator::new(identity, Some(1), 0, usize::MAX, usize::MAX);
        for v in ["a", "b", "c"] {
            acc.add(&t, record(None, v));
        }
        let first = acc.drain(1).unwrap();
        assert!(acc.is_empty());
        assert_eq!(header(&first[&1]), (0, 3, 9));
        // The flush's send failed retriably: the producer resends `first` as it is. Nothing
        // was acknowledged, so the sequence has not moved.
        assert_eq!(acc.next_sequence(1), 0);
        acc.acknowledge(1, first[&1].record_count);
        assert_eq!(acc.next_sequence(1), 3);
        acc.add(&t, record(None, "d"));
        acc.add(&t, record(None, "e"));
        let second = acc.drain(2).unwrap();
        assert_eq!(header(&second[&1]), (3, 2, 9));
        acc.acknowledge(1, 2);
        assert_eq!(acc.next_sequence(1), 5);
        assert_eq!(acc.next_sequence(0), 0, "sequences are per partition");
    }

    #[test]
    fn without_idempotence_batches_carry_no_sequence() {
        let t = topic(1);
        let mut acc = Accumulator::new(ProducerIdentity::NONE, None, 0, usize::MAX, usize::MAX);
        acc.add(&t, record(None, "a"));
        let batches = acc.drain(1).unwrap();
        assert_eq!(header(&batches[&0]), (-1, 1, -1));
    }

    #[test]
    fn keyed_records_follow_murmur2_and_keyless_ones_stick() {
        let t = topic(3);
        let mut acc = Accumulator::new(ProducerIdentity::NONE, None, 2, usize::MAX, usize::MAX);
        let keyed = record(Some("foobar"), "v");
        assert_eq!(
            acc.partition_for(&t, &keyed),
            partition_for_key(b"foobar", 3).unwrap()
        );
        assert_eq!(acc.partition_for(&t, &record(None, "x")), 2);
        acc.rotate_sticky(3);
        assert_eq!(acc.partition_for(&t, &record(None, "x")), 0);
        let fixed = Accumulator::new(ProducerIdentity::NONE, Some(1), 0, 1, 1);
        assert_eq!(fixed.partition_for(&t, &keyed), 1);
    }

    #[test]
    fn full_at_either_limit() {
        let t = topic(1);
        let mut by_count = Accumulator::new(ProducerIdentity::NONE, None, 0, usize::MAX, 2);
        by_count.add(&t, record(None, "a"));
        assert!(!by_count.is_full());
        by_count.add(&t, record(None, "b"));
        assert!(by_count.is_full());
        let mut by_bytes = Accumulator::new(ProducerIdentity::NONE, None, 0, 4, usize::MAX);
        by_bytes.add(&t, record(Some("k"), "ab"));
        assert!(!by_bytes.is_full());
        by_bytes.add(&t, record(None, "c"));
        assert!(by_bytes.is_full());
        by_bytes.drain(0).unwrap();
        assert!(!by_bytes.is_full() && by_bytes.is_empty());
    }
}
