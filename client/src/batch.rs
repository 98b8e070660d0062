//! Kafka's RecordBatch v2, as the client writes and reads it: one uncompressed batch per
//! partition per produce, and fetched bytes split into batches and records.
//!
//! Invariants: nothing the broker sends makes these functions panic (lengths and counts are
//! checked before anything is allocated for them, and the decoder runs under
//! `catch_unwind`); a fetched batch's CRC is checked before its records are used; control
//! batches never reach the caller.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::ClientError;

/// Size of a RecordBatch v2 header, from base offset through record count.
const BATCH_HEADER_BYTES: usize = 61;
/// Smallest encoded record: length, attributes, timestamp and offset deltas, key and value
/// lengths, header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// A record for the producer: an optional key and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerRecord {
    /// The key, which also picks the partition (murmur2, as the Java client does).
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
}

fn invalid(message: String) -> ClientError {
    ClientError::InvalidRecords(message)
}

/// The producer identity sent in every batch; (-1, -1) when not idempotent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProducerIdentity {
    /// The producer id (-1: none).
    pub id: i64,
    /// The producer epoch (-1: none).
    pub epoch: i16,
}

impl ProducerIdentity {
    /// No producer id: a producer that is not idempotent.
    pub const NONE: ProducerIdentity = ProducerIdentity { id: -1, epoch: -1 };

    /// Whether batches carry a producer id and sequence numbers.
    pub fn is_idempotent(&self) -> bool {
        self.id >= 0
    }
}

/// Encodes records as one uncompressed RecordBatch v2 with base offset 0.
pub fn encode_batch(
    records: &[ProducerRecord],
    producer: ProducerIdentity,
    base_sequence: i32,
    timestamp_ms: i64,
) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let i = i32::try_from(i).expect("pending records are bounded");
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.id,
                producer_epoch: producer.epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // The encoder keeps records in one batch while offset - sequence stays the
                // same, and writes the first record's sequence as the base sequence. Without
                // idempotence the base sequence must be -1, hence i - 1.
                sequence: if producer.is_idempotent() {
                    base_sequence.wrapping_add(i)
                } else {
                    i - 1
                },
                timestamp: timestamp_ms,
                key: r.key.clone(),
                value: Some(r.value.clone()),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| ClientError::InvalidRecords(format!("cannot encode a record batch: {e:#}")))?;
    Ok(buf.freeze())
}

/// A record read back from a fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedRecord {
    /// The partition it was read from.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The key, if the record has one.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
}

/// Records at or after `fetch_offset` in a fetch response's record bytes for `partition`, and
/// the offset to fetch next (`None` if no whole batch was present). A trailing partial batch
/// (brokers may cut the last one at the size limit) is ignored; control batches are skipped.
pub fn parse_fetched_records(
    mut data: Bytes,
    partition: i32,
    fetch_offset: i64,
) -> Result<(Vec<FetchedRecord>, Option<i64>), ClientError> {
    let mut records = Vec::new();
    let mut next_offset = None;
    while data.len() >= 12 {
        let base_offset = i64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        let batch_length = usize::try_from(batch_length).map_err(|_| {
            invalid(format!(
                "record batch at offset {base_offset} has negative length"
            ))
        })?;
        if data.len() < 12 + batch_length {
            break; // partial batch at the end
        }
        let batch = data.split_to(12 + batch_length);
        if batch.len() < BATCH_HEADER_BYTES {
            return Err(invalid(format!(
                "record batch at offset {base_offset} is too short ({} bytes)",
                batch.len()
            )));
        }
        let magic = batch[16] as i8;
        if magic != 2 {
            return Err(invalid(format!(
                "record batch at offset {base_offset} has message format v{magic}; only v2 is supported"
            )));
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
        let record_count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
        let after = base_offset
            .checked_add(i64::from(last_offset_delta))
            .and_then(|o| o.checked_add(1))
            .ok_or_else(|| {
                invalid(format!(
                    "record batch at offset {base_offset} overflows offsets"
                ))
            })?;
        next_offset = Some(after);
        let control = attributes & (1 << 5) != 0;
        if control {
            continue;
        }
        for record in decode_batch(batch, record_count)? {
            if record.offset >= fetch_offset {
                records.push(FetchedRecord {
                    partition,
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                });
            }
        }
    }
    Ok((records, next_offset))
}

/// Decodes one whole batch (checks the CRC, decompresses), refusing record counts the data
/// cannot hold before the decoder allocates for them.
pub fn decode_batch(mut batch: Bytes, record_count: i32) -> Result<Vec<Record>, ClientError> {
    let record_count =
        usize::try_from(record_count).map_err(|_| invalid("negative record count".to_owned()))?;
    let decompress = move |buf: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        let take = |b: &mut Bytes| Ok(std::mem::take(b));
        let data = match compression {
            Compression::None => std::mem::take(buf),
            Compression::Gzip => <cmpr::Gzip as Decompressor<Bytes>>::decompress(buf, take)?,
            Compression::Snappy => <cmpr::Snappy as Decompressor<Bytes>>::decompress(buf, take)?,
            Compression::Lz4 => <cmpr::Lz4 as Decompressor<Bytes>>::decompress(buf, take)?,
            Compression::Zstd => <cmpr::Zstd as Decompressor<Bytes>>::decompress(buf, take)?,
        };
        if record_count.saturating_mul(RECORD_BYTES_MIN) > data.len() {
            return Err(anyhow::anyhow!(
                "batch claims {record_count} records in {} bytes",
                data.len()
            ));
        }
        Ok(data)
    };
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress))
    }));
    match decoded {
        Ok(Ok(set)) => Ok(set.records),
        Ok(Err(e)) => Err(invalid(format!("cannot decode a record batch: {e:#}"))),
        Err(_) => Err(invalid(
            "cannot decode a record batch: the decoder panicked".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: Option<&str>, value: &str) -> ProducerRecord {
        ProducerRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn batches_encode_as_one_batch_and_read_back() {
        let records = vec![line(None, "a"), line(Some("k"), "b"), line(None, "")];
        for (identity, base, expect_base) in [
            (ProducerIdentity::NONE, 0, -1),
            (ProducerIdentity { id: 7, epoch: 2 }, 40, 40),
        ] {
            let bytes = encode_batch(&records, identity, base, 1_700_000_000_000).unwrap();
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(info.len(), 1, "one batch");
            assert_eq!(info[0].record_count, 3);
            assert_eq!(info[0].base_sequence, expect_base);
            assert_eq!(info[0].producer_id, identity.id);
            assert_eq!(info[0].producer_epoch, identity.epoch);
            let (got, next) = parse_fetched_records(bytes, 0, 0).unwrap();
            assert_eq!(next, Some(3));
            let values: Vec<&[u8]> = got.iter().map(|r| r.value.as_deref().unwrap()).collect();
            assert_eq!(values, vec![&b"a"[..], b"b", b""]);
            assert_eq!(got[1].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(
                got.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
        }
    }

    /// Rewrites a batch's base offset, as a broker does on append.
    fn at_offset(batch: &Bytes, base_offset: i64) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[0..8].copy_from_slice(&base_offset.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn fetched_records_skip_earlier_offsets_and_partial_batches() {
        let one = encode_batch(
            &[line(None, "x"), line(None, "y")],
            ProducerIdentity::NONE,
            0,
            1,
        )
        .unwrap();
        let mut data = BytesMut::new();
        data.extend_from_slice(&at_offset(&one, 10));
        data.extend_from_slice(&at_offset(&one, 12));
        let whole = data.clone().freeze();
        // A partial third batch, as a broker may send at its size limit.
        data.extend_from_slice(&at_offset(&one, 14)[..20]);
        let (got, next) = parse_fetched_records(data.freeze(), 0, 11).unwrap();
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        assert_eq!(next, Some(14));
        // Fewer bytes than one batch: nothing, and no next offset.
        let (got, next) = parse_fetched_records(whole.slice(..30), 0, 10).unwrap();
        assert!(got.is_empty());
        assert_eq!(next, None);
        assert_eq!(
            parse_fetched_records(Bytes::new(), 0, 0).unwrap(),
            (vec![], None)
        );
    }

    #[test]
    fn fetched_records_reject_corruption() {
        let one = encode_batch(&[line(None, "x")], ProducerIdentity::NONE, 0, 1).unwrap();
        let mut bad_crc = BytesMut::from(&one[..]);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(parse_fetched_records(bad_crc.freeze(), 0, 0).is_err());
        let mut old_magic = BytesMut::from(&one[..]);
        old_magic[16] = 1;
        let err = parse_fetched_records(old_magic.freeze(), 0, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("message format v1"), "{err}");
        // A record count no batch of this size can hold is refused before decoding.
        let mut huge_count = BytesMut::from(&one[..]);
        huge_count[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_fetched_records(huge_count.freeze(), 0, 0).is_err());
        let mut negative_length = BytesMut::from(&one[..]);
        negative_length[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(parse_fetched_records(negative_length.freeze(), 0, 0).is_err());
    }

    #[test]
    fn control_batches_are_skipped() {
        let one = encode_batch(&[line(None, "marker")], ProducerIdentity::NONE, 0, 1).unwrap();
        let mut control = BytesMut::from(&one[..]);
        // Set the control bit in the attributes and fix the CRC (over attributes..end).
        control[22] |= 1 << 5;
        let crc = crc32c_of(&control[21..]);
        control[17..21].copy_from_slice(&crc.to_be_bytes());
        let (got, next) = parse_fetched_records(control.freeze(), 0, 0).unwrap();
        assert!(got.is_empty());
        assert_eq!(next, Some(1));
    }

    /// CRC-32C (Castagnoli), bitwise; only for building test batches.
    fn crc32c_of(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
