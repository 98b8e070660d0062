//! Workload record values and their decoding from stored batches.
//!
//! Every record the workload produces carries a unique id in its value, `c<client>b<serial>r<i>:`
//! followed by filler, so the checker can tell exactly which record sits at which offset.

use std::fmt;

use skein_core::batch::{self, build};

/// The identity of one produced record: client, the client's batch serial, index in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordId {
    /// Producing client.
    pub client: u32,
    /// The client's batch counter (retries keep it).
    pub serial: u32,
    /// Index inside the batch.
    pub index: u32,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}b{}r{}", self.client, self.serial, self.index)
    }
}

impl RecordId {
    /// Parses the id at the start of a record value.
    pub fn parse(value: &[u8]) -> Option<RecordId> {
        let end = value.iter().position(|b| *b == b':')?;
        let s = std::str::from_utf8(&value[..end]).ok()?;
        let rest = s.strip_prefix('c')?;
        let (c, rest) = rest.split_once('b')?;
        let (b, r) = rest.split_once('r')?;
        Some(RecordId {
            client: c.parse().ok()?,
            serial: b.parse().ok()?,
            index: r.parse().ok()?,
        })
    }
}

/// Builds the batch of `ids` with `filler` bytes of padding per record.
pub fn build_batch(
    ids: &[RecordId],
    filler: usize,
    ts: i64,
    producer: Option<build::ProducerIdentity>,
) -> Vec<u8> {
    let records: Vec<build::SimpleRecord> = ids
        .iter()
        .map(|id| {
            let mut value = format!("{id}:").into_bytes();
            value.resize(value.len() + filler, b'.');
            build::SimpleRecord {
                key: None,
                value: Some(value),
                headers: vec![],
                timestamp: ts,
            }
        })
        .collect();
    build::batch(&records, producer)
}

/// The (offset, value) of every record in one stored, uncompressed batch.
pub fn decode(stored: &[u8]) -> Result<Vec<(i64, Vec<u8>)>, String> {
    let h = batch::parse_header(stored).map_err(|e| e.to_string())?;
    let mut body = &stored[batch::HEADER_LEN..h.size.min(stored.len())];
    let mut out = Vec::new();
    let vi = |b: &[u8]| batch::read_varint(b).map_err(|e| e.to_string());
    while !body.is_empty() {
        let (len, n) = vi(body)?;
        body = &body[n..];
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        if body.len() < len || len == 0 {
            return Err("record overruns batch".into());
        }
        let mut rec = &body[1..len];
        body = &body[len..];
        let (_, n) = batch::read_varlong(rec).map_err(|e| e.to_string())?;
        rec = &rec[n..];
        let (delta, n) = vi(rec)?;
        rec = &rec[n..];
        let (klen, n) = vi(rec)?;
        rec = &rec[n..];
        if klen > 0 {
            rec = rec.get(klen as usize..).ok_or("key overruns record")?;
        }
        let (vlen, n) = vi(rec)?;
        rec = &rec[n..];
        let value = if vlen >= 0 {
            rec.get(..vlen as usize)
                .ok_or("value overruns record")?
                .to_vec()
        } else {
            Vec::new()
        };
        out.push((h.base_offset + i64::from(delta), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_roundtrip_through_a_batch() {
        let ids: Vec<RecordId> = (0..3)
            .map(|i| RecordId {
                client: 2,
                serial: 7,
                index: i,
            })
            .collect();
        let mut b = build_batch(&ids, 20, 5, None);
        batch::assign_offset(&mut b, 40, 0);
        let got = decode(&b).unwrap();
        assert_eq!(got.len(), 3);
        for (i, (off, v)) in got.iter().enumerate() {
            assert_eq!(*off, 40 + i as i64);
            assert_eq!(RecordId::parse(v), Some(ids[i]));
        }
    }
}
