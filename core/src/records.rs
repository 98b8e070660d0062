//! The records inside a RecordBatch v2, plain or compressed: one walk checks their framing and
//! offsets and yields each record's offset delta, timestamp and whether its key is null.
//!
//! A batch's header says what its records hold (count, first timestamp, max timestamp), but a
//! client may get it wrong: some leave `max_timestamp` at -1. Retention and time lookups must
//! judge a batch by its records, so the leader computes the timestamps here and stores a header
//! that agrees with them, and recovery recomputes them from stored bytes.
//!
//! Validating a produced batch lives here too ([`check_produced`]): its header (through
//! [`crate::batch`]) and every record, compressed ones decompressed as a stream.
//!
//! Invariants: a walk succeeds only if every record's length covers exactly its fields, offset
//! deltas are strictly increasing from 0 or more and at most the header's last offset delta
//! (dense from 0 for a produced batch; a cleaned batch has gaps, see [`crate::cleaner`]), and no
//! timestamp overflows; a record's timestamp is the batch's first
//! timestamp plus its delta (for LogAppendTime batches, the batch's max timestamp, as Kafka
//! reads it); a compressed batch is walked as a stream (see [`crate::compression`]).

use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_LEN};
use crate::compression;

/// What a walk of one batch's records found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTimestamps {
    /// Records walked.
    pub count: i32,
    /// Largest record timestamp; -1 when no record carries one.
    pub max: i64,
    /// Smallest record timestamp other than -1 (no timestamp); `None` when no record has one.
    pub min: Option<i64>,
}

/// What a walk reads of one record for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Walked {
    offset_delta: i32,
    timestamp_delta: i64,
    /// The key's length is -1 (null): what a compacted topic refuses.
    null_key: bool,
}

/// Where a walk reads record bytes from: a plain slice, or a decompressing reader.
trait Source {
    fn byte(&mut self) -> Result<Option<u8>, BatchError>;
    fn skip(&mut self, n: usize) -> Result<(), BatchError>;
}

#[cfg(test)]
struct Slice<'a>(&'a [u8]);

#[cfg(test)]
impl Source for Slice<'_> {
    #[inline]
    fn byte(&mut self) -> Result<Option<u8>, BatchError> {
        let Some((b, rest)) = self.0.split_first() else {
            return Ok(None);
        };
        self.0 = rest;
        Ok(Some(*b))
    }
    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), BatchError> {
        if n > self.0.len() {
            return Err(BatchError::Invalid("record overruns batch"));
        }
        self.0 = &self.0[n..];
        Ok(())
    }
}

/// Bytes a streaming walk pulls from its reader at a time.
const STREAM_BUFFER_BYTES: usize = 32 << 10;

/// A decompressing reader behind a buffer, so a walk reads bytes from memory.
struct Stream<R>(BufReader<R>);

impl<R: Read> Stream<R> {
    fn new(r: R) -> Self {
        Stream(BufReader::with_capacity(STREAM_BUFFER_BYTES, r))
    }

    /// The buffered bytes, refilled when empty; empty at the end of the input.
    fn buffered(&mut self) -> Result<&[u8], BatchError> {
        loop {
            match self.0.fill_buf() {
                Ok(_) => return Ok(self.0.buffer()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(compression::CORRUPT),
            }
        }
    }
}

impl<R: Read> Source for Stream<R> {
    #[inline]
    fn byte(&mut self) -> Result<Option<u8>, BatchError> {
        let Some(&b) = self.buffered()?.first() else {
            return Ok(None);
        };
        self.0.consume(1);
        Ok(Some(b))
    }
    fn skip(&mut self, mut n: usize) -> Result<(), BatchError> {
        while n > 0 {
            let take = n.min(self.buffered()?.len());
            if take == 0 {
                return Err(BatchError::Invalid("record overruns batch"));
            }
            self.0.consume(take);
            n -= take;
        }
        Ok(())
    }
}

/// One record being read: counts the bytes its length field allows.
struct Record<'s, S> {
    src: &'s mut S,
    left: usize,
}

impl<S: Source> Record<'_, S> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        if self.left == 0 {
            return Err(BatchError::Invalid("field overruns record"));
        }
        self.left -= 1;
        self.src
            .byte()?
            .ok_or(BatchError::Invalid("record overruns batch"))
    }
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(BatchError::Invalid("malformed varint"))
    }
    fn varint(&mut self) -> Result<i32, BatchError> {
        i32::try_from(self.varlong()?).map_err(|_| BatchError::Invalid("varint out of range"))
    }
    fn skip(&mut self, n: usize) -> Result<(), BatchError> {
        if n > self.left {
            return Err(BatchError::Invalid("field overruns record"));
        }
        self.left -= n;
        self.src.skip(n)
    }
    /// Skips a varint-length-prefixed field; true when it is null (a negative length).
    fn skip_field(&mut self) -> Result<bool, BatchError> {
        let len = self.varint()?;
        if len >= 0 {
            self.skip(len as usize)?;
        }
        Ok(len < 0)
    }
}

/// Reads a zigzag varint from the source; `None` at a clean end of input.
fn first_varint<S: Source>(src: &mut S) -> Result<Option<i32>, BatchError> {
    let Some(b) = src.byte()? else {
        return Ok(None);
    };
    let mut raw = u64::from(b & 0x7f);
    let mut last = b;
    let mut i = 1;
    while last & 0x80 != 0 {
        if i == 10 {
            return Err(BatchError::Invalid("malformed varint"));
        }
        last = src
            .byte()?
            .ok_or(BatchError::Invalid("record overruns batch"))?;
        raw |= u64::from(last & 0x7f) << (7 * i);
        i += 1;
    }
    let v = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    i32::try_from(v)
        .map(Some)
        .map_err(|_| BatchError::Invalid("varint out of range"))
}

/// Walks every record, calling `f` with what it read of each; returns the record count.
fn walk<S: Source>(
    src: &mut S,
    mut f: impl FnMut(Walked) -> ControlFlow<()>,
) -> Result<i32, BatchError> {
    let mut count: i32 = 0;
    let mut next_min: i64 = 0;
    while let Some(len) = first_varint(src)? {
        if len < 0 {
            return Err(BatchError::Invalid("negative record length"));
        }
        if len == 0 {
            return Err(BatchError::Invalid("empty record"));
        }
        let mut rec = Record {
            src: &mut *src,
            left: len as usize,
        };
        rec.byte()?; // attributes
        let ts_delta = rec.varlong()?;
        let offset_delta = rec.varint()?;
        if i64::from(offset_delta) < next_min {
            return Err(BatchError::Invalid(
                "record offset deltas are not increasing",
            ));
        }
        next_min = i64::from(offset_delta) + 1;
        let null_key = rec.skip_field()?;
        rec.skip_field()?; // value
        let headers = rec.varint()?;
        if headers < 0 {
            return Err(BatchError::Invalid("negative header count"));
        }
        for _ in 0..headers {
            let klen = rec.varint()?;
            if klen < 0 {
                return Err(BatchError::Invalid("null header key"));
            }
            rec.skip(klen as usize)?;
            rec.skip_field()?;
        }
        if rec.left != 0 {
            return Err(BatchError::Invalid("trailing bytes in record"));
        }
        count = count
            .checked_add(1)
            .ok_or(BatchError::Invalid("too many records"))?;
        let walked = Walked {
            offset_delta,
            timestamp_delta: ts_delta,
            null_key,
        };
        if f(walked).is_break() {
            break;
        }
    }
    Ok(count)
}

/// Reads a zigzag varint at the start of `b`: the value and the bytes it took.
#[inline(always)]
fn slice_varlong(b: &[u8]) -> Result<(i64, usize), BatchError> {
    // One or two bytes are the common case (deltas, key, value and record lengths under 8 KiB):
    // decoded inline.
    let zigzag = |raw: u64| ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    match *b {
        [b0, ..] if b0 & 0x80 == 0 => Ok((zigzag(u64::from(b0)), 1)),
        [b0, b1, ..] if b1 & 0x80 == 0 => {
            Ok((zigzag(u64::from(b0 & 0x7f) | (u64::from(b1) << 7)), 2))
        }
        _ => slice_varlong_long(b),
    }
}

/// [`slice_varlong`] for varints of more than one byte (or none).
#[inline(never)]
fn slice_varlong_long(b: &[u8]) -> Result<(i64, usize), BatchError> {
    let mut raw: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    Err(BatchError::Invalid("malformed varint"))
}

#[inline]
fn slice_varint(b: &[u8]) -> Result<(i32, usize), BatchError> {
    let (v, n) = slice_varlong(b)?;
    let v = i32::try_from(v).map_err(|_| BatchError::Invalid("varint out of range"))?;
    Ok((v, n))
}

/// Skips a varint-length-prefixed field (null when negative) at the start of `rec`.
#[inline(always)]
fn slice_skip_field(rec: &[u8]) -> Result<&[u8], BatchError> {
    let (len, n) = slice_varint(rec)?;
    slice_skip_len(&rec[n..], len)
}

/// Skips `len` bytes of `rec` (none for a null field's negative length).
#[inline(always)]
fn slice_skip_len(rec: &[u8], len: i32) -> Result<&[u8], BatchError> {
    if len < 0 {
        return Ok(rec);
    }
    rec.get(len as usize..)
        .ok_or(BatchError::Invalid("field overruns record"))
}

/// [`walk`] over a plain body in memory: the same rules, without a byte-at-a-time source (the
/// produce path's common case; a property test holds the two walks to the same answers).
fn walk_slice(
    mut body: &[u8],
    mut f: impl FnMut(Walked) -> ControlFlow<()>,
) -> Result<i32, BatchError> {
    let mut count: i32 = 0;
    let mut next_min: i64 = 0;
    while !body.is_empty() {
        let (len, n) = slice_varint(body)?;
        if len < 0 {
            return Err(BatchError::Invalid("negative record length"));
        }
        if len == 0 {
            return Err(BatchError::Invalid("empty record"));
        }
        body = &body[n..];
        let Some(mut rec) = body.get(..len as usize) else {
            return Err(BatchError::Invalid("record overruns batch"));
        };
        body = &body[len as usize..];
        rec = &rec[1..]; // attributes
        let (ts_delta, n) = slice_varlong(rec)?;
        rec = &rec[n..];
        let (offset_delta, n) = slice_varint(rec)?;
        rec = &rec[n..];
        if i64::from(offset_delta) < next_min {
            return Err(BatchError::Invalid(
                "record offset deltas are not increasing",
            ));
        }
        next_min = i64::from(offset_delta) + 1;
        let (key_len, n) = slice_varint(rec)?;
        let null_key = key_len < 0;
        rec = slice_skip_len(&rec[n..], key_len)?; // key
        rec = slice_skip_field(rec)?; // value
        let (headers, n) = slice_varint(rec)?;
        rec = &rec[n..];
        if headers < 0 {
            return Err(BatchError::Invalid("negative header count"));
        }
        for _ in 0..headers {
            let (klen, n) = slice_varint(rec)?;
            if klen < 0 {
                return Err(BatchError::Invalid("null header key"));
            }
            rec = rec[n..]
                .get(klen as usize..)
                .ok_or(BatchError::Invalid("field overruns record"))?;
            rec = slice_skip_field(rec)?;
        }
        if !rec.is_empty() {
            return Err(BatchError::Invalid("trailing bytes in record"));
        }
        count = count
            .checked_add(1)
            .ok_or(BatchError::Invalid("too many records"))?;
        let walked = Walked {
            offset_delta,
            timestamp_delta: ts_delta,
            null_key,
        };
        if f(walked).is_break() {
            break;
        }
    }
    Ok(count)
}

/// Walks the records of an uncompressed body (the bytes after the header); returns the count.
pub fn walk_plain(body: &[u8]) -> Result<i32, BatchError> {
    walk_slice(body, |_| ControlFlow::Continue(()))
}

/// Runs `f` over each record of the whole `batch` (header `h`, plain or compressed).
fn each_record(
    batch: &[u8],
    h: &BatchHeader,
    f: impl FnMut(Walked) -> ControlFlow<()>,
) -> Result<i32, BatchError> {
    let body = &batch[HEADER_LEN..h.size];
    match h.compression()? {
        Compression::None => walk_slice(body, f),
        codec => walk_compressed(codec, body, f),
    }
}

/// The streaming walk over a compressed body, kept out of line: inlined into [`each_record`] it
/// slowed the plain walk, the produce path's common case, by a third.
#[inline(never)]
fn walk_compressed(
    codec: Compression,
    body: &[u8],
    f: impl FnMut(Walked) -> ControlFlow<()>,
) -> Result<i32, BatchError> {
    walk(&mut Stream::new(compression::decompressor(codec, body)?), f)
}

/// The timestamp of a record with `delta`, as Kafka reads it.
fn record_timestamp(h: &BatchHeader, delta: i64) -> Option<i64> {
    if h.is_log_append_time() {
        Some(h.max_timestamp)
    } else {
        h.base_timestamp.checked_add(delta)
    }
}

/// Walks a whole batch's records (decompressing if needed): their count and timestamps.
pub fn timestamps(batch: &[u8], h: &BatchHeader) -> Result<RecordTimestamps, BatchError> {
    summarize(batch, h).map(|s| s.timestamps)
}

/// What one walk of a batch's records found.
struct Summary {
    timestamps: RecordTimestamps,
    /// The last record's offset delta; -1 when there is no record.
    last_delta: i32,
    /// Some record's key is null.
    null_key: bool,
}

/// [`timestamps`], also giving the last record's offset delta and whether any key is null.
fn summarize(batch: &[u8], h: &BatchHeader) -> Result<Summary, BatchError> {
    let mut out = RecordTimestamps {
        count: 0,
        max: -1,
        min: None,
    };
    let mut bad = false;
    let mut last_delta = -1;
    let mut null_key = false;
    out.count = each_record(batch, h, |w| {
        last_delta = w.offset_delta;
        null_key |= w.null_key;
        match record_timestamp(h, w.timestamp_delta) {
            Some(ts) if ts >= -1 => {
                out.max = out.max.max(ts);
                if ts != -1 {
                    out.min = Some(out.min.map_or(ts, |m| m.min(ts)));
                }
                ControlFlow::Continue(())
            }
            _ => {
                bad = true;
                ControlFlow::Break(())
            }
        }
    })?;
    if bad {
        return Err(BatchError::Invalid("record timestamp below -1"));
    }
    if last_delta > h.last_offset_delta {
        return Err(BatchError::Invalid(
            "record offset delta past the last offset delta",
        ));
    }
    Ok(Summary {
        timestamps: out,
        last_delta,
        null_key,
    })
}

/// The max timestamp a stored batch is judged by: its records' (the header's when it is
/// LogAppendTime, or when the records do not walk, so recovery never refuses a stored batch for it).
pub fn stored_max_timestamp(batch: &[u8], h: &BatchHeader) -> i64 {
    if h.is_log_append_time() {
        return h.max_timestamp;
    }
    timestamps(batch, h).map_or(h.max_timestamp, |t| t.max)
}

/// The first record of a stored batch with timestamp >= `ts`: `(offset, timestamp)`.
pub fn first_at_or_after(
    batch: &[u8],
    h: &BatchHeader,
    ts: i64,
) -> Result<Option<(i64, i64)>, BatchError> {
    let mut found = None;
    each_record(batch, h, |w| match record_timestamp(h, w.timestamp_delta) {
        Some(t) if t >= ts => {
            found = Some((h.base_offset + i64::from(w.offset_delta), t));
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })?;
    Ok(found)
}

/// A produced batch that passed validation: its header as sent and what its records hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// The header as the producer sent it.
    pub header: BatchHeader,
    /// The records' timestamps, computed by walking them (decompressed if need be).
    pub timestamps: RecordTimestamps,
    /// Some record's key is null, which a compacted topic refuses. Found by the same walk, so
    /// the check costs a compacted topic no second decompression and others nothing.
    pub null_key: bool,
}

/// Full validation of a batch a producer sent: CRC, header and every record (compressed ones
/// are decompressed as a stream).
pub fn validate_produced(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    check_produced(batch).map(|p| p.header)
}

/// [`validate_produced`], also giving the records' timestamps and whether any key is null.
pub fn check_produced(batch: &[u8]) -> Result<Produced, BatchError> {
    let h = batch::verify_stored(batch)?;
    if h.record_count == 0 {
        return Err(BatchError::Invalid("batch holds no records"));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::Invalid(
            "last offset delta disagrees with record count",
        ));
    }
    if h.is_control() {
        return Err(BatchError::Invalid("control batches may not be produced"));
    }
    if h.has_producer_id() && (h.producer_epoch < 0 || h.base_sequence < 0) {
        return Err(BatchError::Invalid(
            "idempotent batch without epoch or sequence",
        ));
    }
    let Summary {
        timestamps,
        last_delta,
        null_key,
    } = summarize(batch, &h)?;
    if timestamps.count != h.record_count {
        return Err(BatchError::Invalid("record count disagrees with records"));
    }
    // Increasing deltas, as many as the header's last delta + 1, ending at it: dense from 0.
    if last_delta != h.last_offset_delta {
        return Err(BatchError::Invalid("record offset deltas are not dense"));
    }
    Ok(Produced {
        header: h,
        timestamps,
        null_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build;
    use proptest::prelude::*;

    fn rec(ts: i64) -> build::SimpleRecord {
        build::SimpleRecord {
            timestamp: ts,
            key: Some(b"k".to_vec()),
            value: Some(vec![7; 40]),
            headers: vec![(b"h".to_vec(), Some(b"v".to_vec()))],
        }
    }

    fn plain(recs: &[build::SimpleRecord]) -> (Vec<u8>, BatchHeader) {
        let b = build::batch(recs, None);
        let h = batch::parse_header(&b).unwrap();
        (b, h)
    }

    #[test]
    fn timestamps_come_from_the_records() {
        let (b, h) = plain(&[rec(1005), rec(997), rec(1020)]);
        let t = timestamps(&b, &h).unwrap();
        assert_eq!((t.count, t.max, t.min), (3, 1020, Some(997)));
        assert_eq!(first_at_or_after(&b, &h, 1006).unwrap(), Some((2, 1020)));
        assert_eq!(first_at_or_after(&b, &h, 1021).unwrap(), None);
        // A header that says -1 changes nothing: the records decide.
        let b = build::with_max_timestamp(b, -1);
        let h = batch::parse_header(&b).unwrap();
        assert_eq!(timestamps(&b, &h).unwrap().max, 1020);
    }

    #[test]
    fn records_without_timestamps() {
        let (b, h) = plain(&[rec(-1), rec(-1)]);
        let t = timestamps(&b, &h).unwrap();
        assert_eq!((t.count, t.max, t.min), (2, -1, None));
    }

    #[test]
    fn timestamps_below_minus_one_are_refused() {
        let (b, h) = plain(&[rec(-1), rec(-2)]);
        assert!(timestamps(&b, &h).is_err());
    }

    #[test]
    fn compressed_batches_are_walked() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = crate::compression::encode(&[rec(51), rec(59), rec(54)], None, codec);
            let h = batch::parse_header(&b).unwrap();
            let t = timestamps(&b, &h).unwrap();
            assert_eq!((t.count, t.max, t.min), (3, 59, Some(51)), "{codec:?}");
            assert_eq!(first_at_or_after(&b, &h, 55).unwrap(), Some((1, 59)));
        }
    }

    #[test]
    fn null_keys_are_found_plain_and_compressed() {
        let null = build::SimpleRecord {
            key: None,
            ..rec(5)
        };
        let empty = build::SimpleRecord {
            key: Some(vec![]),
            ..rec(5)
        };
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let found = |recs: &[build::SimpleRecord]| {
                let b = crate::compression::encode(recs, None, codec);
                check_produced(&b).unwrap().null_key
            };
            assert!(!found(&[rec(1), rec(2)]), "{codec:?}");
            // An empty key has length 0: a key, not a null one.
            assert!(!found(std::slice::from_ref(&empty)), "{codec:?}");
            assert!(found(std::slice::from_ref(&null)), "{codec:?}");
            assert!(found(&[rec(1), null.clone(), rec(2)]), "{codec:?}");
            assert!(found(&[rec(1), rec(2), null.clone()]), "{codec:?}");
        }
    }

    proptest! {
        /// The streaming walk over a compressed body agrees with the slice walk over the plain one.
        #[test]
        fn compressed_walk_agrees_with_plain(
            stamps in proptest::collection::vec(0i64..1_000_000, 1..40),
            codec in prop_oneof![Just(Compression::Gzip), Just(Compression::Snappy), Just(Compression::Lz4), Just(Compression::Zstd)],
        ) {
            let recs: Vec<_> = stamps.iter().map(|t| rec(*t)).collect();
            let plain = build::batch(&recs, None);
            let packed = crate::compression::encode(&recs, None, codec);
            let (hp, hc) = (batch::parse_header(&plain).unwrap(), batch::parse_header(&packed).unwrap());
            let tp = timestamps(&plain, &hp).unwrap();
            prop_assert_eq!(tp, timestamps(&packed, &hc).unwrap());
            prop_assert_eq!(tp.max, *stamps.iter().max().unwrap());
            prop_assert_eq!(tp.min, stamps.iter().min().copied());
        }

        /// The in-memory walk and the streaming walk give the same answer on any body.
        #[test]
        fn slice_and_stream_walks_agree(
            stamps in proptest::collection::vec((0i64..1_000_000, any::<bool>()), 1..10),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<proptest::sample::Index>(),
        ) {
            let recs: Vec<_> = stamps
                .iter()
                .map(|(t, null_key)| build::SimpleRecord {
                    key: (!null_key).then(|| b"k".to_vec()),
                    ..rec(*t)
                })
                .collect();
            let mut body = build::batch(&recs, None)[HEADER_LEN..].to_vec();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            let body = &body[..cut.index(body.len() + 1)];
            let mut seen_a = Vec::new();
            let a = walk_slice(body, |w| { seen_a.push(w); ControlFlow::Continue(()) });
            let mut seen_b = Vec::new();
            let b = walk(&mut Slice(body), |w| { seen_b.push(w); ControlFlow::Continue(()) });
            let mut seen_c = Vec::new();
            let mut stream = Stream::new(body);
            let c = walk(&mut stream, |w| { seen_c.push(w); ControlFlow::Continue(()) });
            prop_assert_eq!(a.is_ok(), b.is_ok());
            prop_assert_eq!(a.is_ok(), c.is_ok());
            if let (Ok(a), Ok(b), Ok(c)) = (a, b, c) {
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, c);
                prop_assert_eq!(&seen_a, &seen_b);
                prop_assert_eq!(&seen_a, &seen_c);
            }
        }

        /// Random bodies never panic, compressed or not.
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), codec in 0i16..5) {
            let mut b = build::batch(&[rec(0)], None);
            b.truncate(HEADER_LEN);
            b.extend_from_slice(&body);
            let len = (b.len() - batch::LOG_OVERHEAD) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[21..23].copy_from_slice(&codec.to_be_bytes());
            let h = batch::parse_header(&b).unwrap();
            let _ = timestamps(&b, &h);
            let _ = first_at_or_after(&b, &h, 0);
        }
    }
}
