//! Kafka RecordBatch v2 headers: parsing, CRC checks and the rewrites the leader makes. The
//! records inside a batch are [`crate::records`]'s (this module knows nothing below the header).
//!
//! Invariants this module keeps:
//! - A stored batch is accepted only if its CRC-32C matches, magic is 2 and its length fields
//!   agree with the bytes present.
//! - Rewrites touch only the base offset and partition leader epoch (outside the CRC), or the
//!   attributes' timestamp type and the max timestamp, after which the CRC is recomputed.
//! - The cleaner's rewrites ([`cleaned`], [`empty_of`]) keep the base offset, leader epoch,
//!   last offset delta, producer id, epoch and base sequence, and the attributes other than
//!   the codec of an emptied batch; they change the records, their count and the max timestamp
//!   (and an emptied batch's timestamps), and recompute length and CRC.

use thiserror::Error;

/// Bytes in a RecordBatch v2 header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field's payload starts (base offset + batch length).
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format skein stores.
pub const MAGIC_V2: i8 = 2;
/// Producer id of a non-idempotent batch.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a non-idempotent batch.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Sequence of a non-idempotent batch.
pub const NO_SEQUENCE: i32 = -1;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the batch length claims.
    #[error("truncated batch: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the batch claims.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A magic byte other than 2.
    #[error("unsupported magic {0}")]
    BadMagic(i8),
    /// The stored CRC does not match the bytes.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The length field is below the header size or otherwise impossible.
    #[error("invalid batch length {0}")]
    BadLength(i32),
    /// Header fields disagree with each other or with the records.
    #[error("invalid batch: {0}")]
    Invalid(&'static str),
    /// A compression codec id Kafka does not define.
    #[error("unknown compression codec {0}")]
    BadCompression(i16),
}

/// Compression codec of a batch, from its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records stored plain.
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing).
    Snappy,
    /// lz4 frame.
    Lz4,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's name as Kafka's `compression.type` spells it.
    pub fn config_name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec's id in a batch's attributes.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// The header fields of one batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Total bytes of the batch including the 12-byte log overhead.
    pub size: usize,
    /// Leader epoch stamped by the leader that appended it.
    pub leader_epoch: i32,
    /// Raw attributes.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record or -1.
    pub base_sequence: i32,
    /// Number of records the header claims.
    pub record_count: i32,
}

impl BatchHeader {
    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    /// Sequence of the last record, wrapping as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
    /// Codec from the attributes.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::BadCompression(other)),
        }
    }
    /// True when the batch carries an idempotent producer id.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// True for a transactional batch.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// True when timestamps are broker append times.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Total size (with log overhead) of the batch starting at `bytes[0]`, from its first 12 bytes.
pub fn peek_size(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            need: LOG_OVERHEAD,
            have: bytes.len(),
        });
    }
    let len = be_i32(bytes, OFF_LENGTH);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(len));
    }
    Ok(LOG_OVERHEAD + len as usize)
}

/// Decodes the header of the batch at `bytes[0]` without checking the CRC.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let size = peek_size(bytes)?;
    if bytes.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    }
    let magic = bytes[OFF_MAGIC] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(magic));
    }
    Ok(BatchHeader {
        base_offset: be_i64(bytes, OFF_BASE_OFFSET),
        size,
        leader_epoch: be_i32(bytes, OFF_LEADER_EPOCH),
        attributes: be_i16(bytes, OFF_ATTRIBUTES),
        last_offset_delta: be_i32(bytes, OFF_LAST_OFFSET_DELTA),
        base_timestamp: be_i64(bytes, OFF_BASE_TIMESTAMP),
        max_timestamp: be_i64(bytes, OFF_MAX_TIMESTAMP),
        producer_id: be_i64(bytes, OFF_PRODUCER_ID),
        producer_epoch: be_i16(bytes, OFF_PRODUCER_EPOCH),
        base_sequence: be_i32(bytes, OFF_BASE_SEQUENCE),
        record_count: be_i32(bytes, OFF_RECORD_COUNT),
    })
}

/// CRC-32C over the bytes the batch CRC covers (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Checks the CRC and the header's self-consistency of one whole batch (`batch.len()` == its size).
///
/// This is what recovery runs on every stored batch: cheap, and no record decoding.
pub fn verify_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(batch)?;
    if batch.len() < h.size {
        return Err(BatchError::Truncated {
            need: h.size,
            have: batch.len(),
        });
    }
    let batch = &batch[..h.size];
    let stored = be_i32(batch, OFF_CRC) as u32;
    let computed = compute_crc(batch);
    if stored != computed {
        return Err(BatchError::BadCrc { stored, computed });
    }
    if h.last_offset_delta < 0 || h.record_count < 0 {
        return Err(BatchError::Invalid("negative record count or offset delta"));
    }
    h.compression()?;
    Ok(h)
}

/// Reads a zigzag varint; returns the value and bytes consumed.
pub fn read_varint(b: &[u8]) -> Result<(i32, usize), BatchError> {
    let (v, n) = read_varlong(b)?;
    if v < i64::from(i32::MIN) || v > i64::from(i32::MAX) {
        return Err(BatchError::Invalid("varint out of range"));
    }
    Ok((v as i32, n))
}

/// Reads a zigzag varlong; returns the value and bytes consumed.
pub fn read_varlong(b: &[u8]) -> Result<(i64, usize), BatchError> {
    let mut raw: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let v = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Ok((v, i + 1));
        }
    }
    Err(BatchError::Invalid("malformed varint"))
}

/// Stamps the offset the log assigned and the leader epoch (both outside the CRC).
pub fn assign_offset(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// What the leader writes into a produced batch's timestamps, beyond its offset and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// The header agrees with its records: keep its timestamps.
    Keep,
    /// CreateTime, with the max timestamp computed from the records (the header's disagreed).
    CreateTime(i64),
    /// LogAppendTime at this broker time.
    LogAppendTime(i64),
}

/// The header a produced `batch` is stored with: its first [`HEADER_LEN`] bytes with the base
/// offset and leader epoch assigned and, unless `stamp` is [`Stamp::Keep`], its timestamp type
/// and max timestamp set, with a CRC recomputed over the new header and the unchanged records.
/// The batch stays as it is, so it is written as this header followed by `batch[HEADER_LEN..]`.
pub fn stamped_header(
    batch: &[u8],
    base_offset: i64,
    leader_epoch: i32,
    stamp: Stamp,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&batch[..HEADER_LEN]);
    assign_offset(&mut h, base_offset, leader_epoch);
    let (append_time, max_ts) = match stamp {
        Stamp::Keep => return h,
        Stamp::CreateTime(ts) => (false, ts),
        Stamp::LogAppendTime(ts) => (true, ts),
    };
    let attrs = be_i16(&h, OFF_ATTRIBUTES);
    let attrs = if append_time {
        attrs | ATTR_TIMESTAMP_TYPE
    } else {
        attrs & !ATTR_TIMESTAMP_TYPE
    };
    h[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    h[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_ts.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[OFF_ATTRIBUTES..]), &batch[HEADER_LEN..]);
    h[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Marks the batch LogAppendTime with `now_ms` as its max timestamp and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// `batch` with its records replaced by `body` (already compressed with the batch's codec),
/// now holding `record_count` records with max timestamp `max_timestamp`: the cleaner's
/// rewrite. Everything else in the header stays; length and CRC are recomputed.
pub fn cleaned(batch: &[u8], body: &[u8], record_count: i32, max_timestamp: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(body);
    let len = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    out[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&record_count.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// `out`, a batch header followed by a records body compressed with `codec`, with its length,
/// codec bits and CRC set to match: how a recompressed batch is framed.
pub fn reframe(mut out: Vec<u8>, codec: Compression) -> Vec<u8> {
    let len = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    let attrs = (be_i16(&out, OFF_ATTRIBUTES) & !ATTR_COMPRESSION_MASK) | codec.id();
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A header-only batch standing for `h` after the cleaner removed all its records: same base
/// offset, last offset delta, producer id, epoch, base sequence, leader epoch and flags, no
/// codec, no records, both timestamps set to `h`'s max (as Kafka writes an empty batch).
pub fn empty_of(h: &BatchHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
    out.extend_from_slice(&h.leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(h.attributes & !ATTR_COMPRESSION_MASK).to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// `batch` marked as a control batch (transaction markers), CRC recomputed: for tests and the
/// simulator (producers may not send control batches).
pub fn as_control(mut batch: Vec<u8>) -> Vec<u8> {
    let attrs = be_i16(&batch, OFF_ATTRIBUTES) | ATTR_CONTROL;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(&batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Iterates the whole batches in a buffer, yielding `(position, header)`; stops at the first error.
pub fn iter_headers(
    bytes: &[u8],
) -> impl Iterator<Item = Result<(usize, BatchHeader), BatchError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= bytes.len() {
            return None;
        }
        let rest = &bytes[pos..];
        match parse_header(rest) {
            Ok(h) if h.size <= rest.len() => {
                let at = pos;
                pos += h.size;
                Some(Ok((at, h)))
            }
            Ok(h) => {
                failed = true;
                Some(Err(BatchError::Truncated {
                    need: h.size,
                    have: rest.len(),
                }))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// Builds an uncompressed batch; for tests, the simulator and the CLI's own producer.
pub mod build {
    use super::*;

    /// One record to encode.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct SimpleRecord {
        /// Key or none.
        pub key: Option<Vec<u8>>,
        /// Value or none.
        pub value: Option<Vec<u8>>,
        /// Headers in order.
        pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        /// Timestamp in ms.
        pub timestamp: i64,
    }

    /// Producer identity for an idempotent batch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ProducerIdentity {
        /// Producer id.
        pub id: i64,
        /// Producer epoch.
        pub epoch: i16,
        /// First sequence.
        pub base_sequence: i32,
    }

    fn put_varlong(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    fn put_bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
        match b {
            None => put_varlong(out, -1),
            Some(b) => {
                put_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes `records` as one uncompressed v2 batch with base offset 0.
    pub fn batch(records: &[SimpleRecord], producer: Option<ProducerIdentity>) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let base_ts = records[0].timestamp;
        let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut rec = vec![0u8];
            put_varlong(&mut rec, r.timestamp - base_ts);
            put_varlong(&mut rec, i as i64);
            put_bytes(&mut rec, &r.key);
            put_bytes(&mut rec, &r.value);
            put_varlong(&mut rec, r.headers.len() as i64);
            for (k, v) in &r.headers {
                put_bytes(&mut rec, &Some(k.clone()));
                put_bytes(&mut rec, v);
            }
            put_varlong(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let attributes: i16 = 0;
        let (pid, epoch, seq) = match producer {
            Some(p) => (p.id, p.epoch, p.base_sequence),
            None => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&((records.len() - 1) as i32).to_be_bytes());
        out.extend_from_slice(&base_ts.to_be_bytes());
        out.extend_from_slice(&max_ts.to_be_bytes());
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = compute_crc(&out);
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// `batch` with its records replaced by `body` stored with codec `codec` (its length,
    /// attributes and CRC fixed): how a compressed batch is framed.
    pub fn with_body(batch: &[u8], body: &[u8], codec: Compression) -> Vec<u8> {
        let mut out = batch[..HEADER_LEN].to_vec();
        out.extend_from_slice(body);
        super::reframe(out, codec)
    }

    /// Overwrites the header's max timestamp with `max_ts` and fixes the CRC, as a client that
    /// leaves it unset (-1) or gets it wrong sends it.
    pub fn with_max_timestamp(mut batch: Vec<u8>, max_ts: i64) -> Vec<u8> {
        batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_ts.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// A batch of `n` records with values `value-<i>` at timestamp `ts`.
    pub fn simple(n: usize, ts: i64, producer: Option<ProducerIdentity>) -> Vec<u8> {
        let records: Vec<SimpleRecord> = (0..n)
            .map(|i| SimpleRecord {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("value-{i}").into_bytes()),
                headers: vec![],
                timestamp: ts,
            })
            .collect();
        batch(&records, producer)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn offset_rewrite_keeps_crc() {
        let mut b = simple(2, 5, None);
        assign_offset(&mut b, 42, 7);
        let h = verify_stored(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.leader_epoch, 7);
        assert_eq!(h.last_offset(), 43);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = simple(2, 5, None);
        set_log_append_time(&mut b, 99);
        let h = verify_stored(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    proptest::proptest! {
        /// The stamped header followed by the untouched records is the batch rewritten in
        /// place, and it verifies.
        #[test]
        fn stamped_header_matches_the_in_place_rewrite(
            n in 1usize..20,
            ts in 0i64..1_000_000,
            base in 0i64..1 << 40,
            epoch in 0i32..1000,
            append_time in proptest::option::of(0i64..1 << 41),
            wrong_max in proptest::option::of(-1i64..1 << 41),
        ) {
            // A producer's header may carry a wrong max; the leader then stamps the right one.
            let b = match wrong_max {
                Some(m) => with_max_timestamp(simple(n, ts, None), m),
                None => simple(n, ts, None),
            };
            let stamp = match (append_time, wrong_max) {
                (Some(t), _) => Stamp::LogAppendTime(t),
                (None, Some(_)) => Stamp::CreateTime(ts),
                (None, None) => Stamp::Keep,
            };
            let head = stamped_header(&b, base, epoch, stamp);
            let mut in_place = b.clone();
            assign_offset(&mut in_place, base, epoch);
            match stamp {
                Stamp::LogAppendTime(t) => set_log_append_time(&mut in_place, t),
                Stamp::CreateTime(_) => in_place = with_max_timestamp(in_place, ts),
                Stamp::Keep => {}
            }
            let mut stored = head.to_vec();
            stored.extend_from_slice(&b[HEADER_LEN..]);
            proptest::prop_assert_eq!(&stored, &in_place);
            let h = verify_stored(&stored).unwrap();
            proptest::prop_assert_eq!(h.base_offset, base);
            proptest::prop_assert_eq!(h.max_timestamp, append_time.unwrap_or(ts));
            proptest::prop_assert_eq!(h.is_log_append_time(), append_time.is_some());
        }
    }

    #[test]
    fn flipped_bit_is_caught() {
        let mut b = simple(2, 5, None);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(verify_stored(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn last_sequence_wraps() {
        let mut b = simple(3, 5, None);
        let mut h = parse_header(&b).unwrap();
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), 0);
        b.truncate(10);
        assert!(matches!(
            parse_header(&b),
            Err(BatchError::Truncated { .. })
        ));
    }
}
