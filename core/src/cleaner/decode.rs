//! Reading a batch's records for the cleaner: the body decompressed whole (bounded by
//! [`crate::compression::DECOMPRESSED_BATCH_BYTES_MAX`]) and, per record, its offset, key,
//! whether its value is null, its timestamp and where its bytes lie.
//!
//! Invariants: a decode succeeds only if every record lies inside the body with its key and
//! value inside the record, offset deltas strictly increase from 0 or more up to the header's
//! last offset delta, and the count matches the header's.

use std::borrow::Cow;
use std::io::Read;
use std::ops::Range;

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_LEN};
use crate::compression;

/// One record of a decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp as Kafka reads it (the batch's max under LogAppendTime).
    pub timestamp: i64,
    /// Where its key lies in the plain body; `None` for a null key.
    pub key: Option<Range<usize>>,
    /// True when its value is null (a tombstone).
    pub tombstone: bool,
    /// Its bytes in the plain body, length prefix included.
    pub span: Range<usize>,
}

/// A batch's records, decompressed.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The plain (decompressed) body.
    pub plain: Cow<'a, [u8]>,
    /// The records in order.
    pub records: Vec<RecordRef>,
}

impl Decoded<'_> {
    /// The key bytes of record `r`.
    pub fn key(&self, r: &RecordRef) -> Option<&[u8]> {
        r.key.clone().map(|k| &self.plain[k])
    }
}

const BAD: BatchError = BatchError::Invalid("record overruns batch");

/// A zigzag varint at `at`: the value and the position after it.
fn varint(b: &[u8], at: usize) -> Result<(i64, usize), BatchError> {
    let (v, n) = batch::read_varlong(b.get(at..).ok_or(BAD)?)?;
    Ok((v, at + n))
}

/// A length-prefixed field at `at` inside `b`: its range (`None` when null) and the end.
fn field(b: &[u8], at: usize) -> Result<(Option<Range<usize>>, usize), BatchError> {
    let (len, at) = varint(b, at)?;
    if len < 0 {
        return Ok((None, at));
    }
    let end = at.checked_add(len as usize).filter(|e| *e <= b.len());
    let end = end.ok_or(BAD)?;
    Ok((Some(at..end), end))
}

/// Parses the record starting at `at` of the plain body; returns it and its end.
fn record(plain: &[u8], at: usize, h: &BatchHeader) -> Result<(RecordRef, usize), BatchError> {
    let (len, body) = varint(plain, at)?;
    if len <= 0 {
        return Err(BatchError::Invalid("empty or negative record length"));
    }
    let end = body.checked_add(len as usize).filter(|e| *e <= plain.len());
    let end = end.ok_or(BAD)?;
    let rec = &plain[..end];
    let (ts_delta, p) = varint(rec, body + 1)?;
    let (off_delta, p) = varint(rec, p)?;
    let (key, p) = field(rec, p)?;
    let (value, _) = field(rec, p)?;
    let off_delta = i32::try_from(off_delta).map_err(|_| BatchError::Invalid("offset delta"))?;
    let timestamp = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        h.base_timestamp.saturating_add(ts_delta)
    };
    let r = RecordRef {
        offset: h.base_offset + i64::from(off_delta),
        timestamp,
        key,
        tombstone: value.is_none(),
        span: at..end,
    };
    Ok((r, end))
}

/// The plain body of `batch`: borrowed when uncompressed, else decompressed whole.
fn plain_body<'a>(batch: &'a [u8], h: &BatchHeader) -> Result<Cow<'a, [u8]>, BatchError> {
    let body = &batch[HEADER_LEN..h.size];
    match h.compression()? {
        Compression::None => Ok(Cow::Borrowed(body)),
        codec => {
            let mut out = Vec::new();
            compression::decompressor(codec, body)?
                .read_to_end(&mut out)
                .map_err(|_| compression::CORRUPT)?;
            Ok(Cow::Owned(out))
        }
    }
}

/// Decodes every record of the whole stored `batch` with header `h`.
pub fn decode<'a>(batch: &'a [u8], h: &BatchHeader) -> Result<Decoded<'a>, BatchError> {
    let plain = plain_body(batch, h)?;
    let mut records = Vec::with_capacity(h.record_count.max(0) as usize);
    let mut at = 0;
    let mut next_min = h.base_offset;
    while at < plain.len() {
        let (r, end) = record(&plain, at, h)?;
        if r.offset < next_min || r.offset > h.last_offset() {
            return Err(BatchError::Invalid("record offsets out of order"));
        }
        next_min = r.offset + 1;
        records.push(r);
        at = end;
    }
    if records.len() != h.record_count.max(0) as usize {
        return Err(BatchError::Invalid("record count disagrees with records"));
    }
    Ok(Decoded { plain, records })
}
