//! Workload record values and their decoding from stored batches.
//!
//! Every record the workload produces carries a unique id in its value, `c<client>b<serial>r<i>:`
//! followed by filler, so the checker can tell exactly which record sits at which offset. On a
//! compacted topic records are keyed (`k<n>`, from a small key space so keys repeat), some are
//! tombstones (null value), and the id also travels in a record header `id`, so a tombstone is
//! told apart too.

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

/// The header that carries a keyed record's id.
pub const ID_HEADER: &[u8] = b"id";

/// What one keyed record of a compacted topic is: its key (`k<key>`) and whether it is a
/// tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedSpec {
    /// The key's number.
    pub key: u32,
    /// A null value.
    pub tombstone: bool,
}

/// The key bytes of key number `key`.
pub fn key_bytes(key: u32) -> Vec<u8> {
    format!("k{key}").into_bytes()
}

/// Builds the batch of `ids` for a compacted topic: record `i` has key `specs[i].key`, a null
/// value when `specs[i].tombstone`, else the id and `filler` bytes; every record carries its id
/// in the [`ID_HEADER`] header.
pub fn build_keyed_batch(
    ids: &[RecordId],
    specs: &[KeyedSpec],
    filler: usize,
    ts: i64,
    producer: Option<build::ProducerIdentity>,
) -> Vec<u8> {
    assert_eq!(ids.len(), specs.len());
    let records: Vec<build::SimpleRecord> = ids
        .iter()
        .zip(specs)
        .map(|(id, spec)| {
            let value = (!spec.tombstone).then(|| {
                let mut value = format!("{id}:").into_bytes();
                value.resize(value.len() + filler, b'.');
                value
            });
            build::SimpleRecord {
                key: Some(key_bytes(spec.key)),
                value,
                headers: vec![(ID_HEADER.to_vec(), Some(id.to_string().into_bytes()))],
                timestamp: ts,
            }
        })
        .collect();
    build::batch(&records, producer)
}

/// One record of a stored batch, as a consumer decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Its offset.
    pub offset: i64,
    /// Its key (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Its value (`None`: null, a tombstone).
    pub value: Option<Vec<u8>>,
    /// The value of its [`ID_HEADER`] header, if it has one.
    pub id_header: Option<Vec<u8>>,
}

impl Decoded {
    /// The id the record carries: its header's, else its value's.
    pub fn id(&self) -> Option<RecordId> {
        match &self.id_header {
            Some(h) => {
                let mut v = h.clone();
                v.push(b':');
                RecordId::parse(&v)
            }
            None => RecordId::parse(self.value.as_deref().unwrap_or_default()),
        }
    }
}

/// Reads a length-prefixed (zigzag varint) field: `None` for a negative length.
fn field<'a>(rec: &mut &'a [u8], what: &str) -> Result<Option<&'a [u8]>, String> {
    let (len, n) = batch::read_varint(rec).map_err(|e| e.to_string())?;
    *rec = &rec[n..];
    if len < 0 {
        return Ok(None);
    }
    let v = rec
        .get(..len as usize)
        .ok_or_else(|| format!("{what} overruns record"))?;
    *rec = &rec[len as usize..];
    Ok(Some(v))
}

/// Every record in one stored batch (a compressed one is decompressed first).
pub fn decode_records(stored: &[u8]) -> Result<Vec<Decoded>, String> {
    use std::io::Read;
    let h = batch::parse_header(stored).map_err(|e| e.to_string())?;
    let raw = &stored[batch::HEADER_LEN..h.size.min(stored.len())];
    let codec = h.compression().map_err(|e| e.to_string())?;
    let mut plain = Vec::new();
    if codec != batch::Compression::None {
        skein_core::compression::decompressor(codec, raw)
            .map_err(|e| e.to_string())?
            .read_to_end(&mut plain)
            .map_err(|e| e.to_string())?;
    }
    let mut body = if codec == batch::Compression::None {
        raw
    } else {
        &plain[..]
    };
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
        let key = field(&mut rec, "key")?.map(<[u8]>::to_vec);
        let value = field(&mut rec, "value")?.map(<[u8]>::to_vec);
        let mut id_header = None;
        if !rec.is_empty() {
            let (count, n) = vi(rec)?;
            rec = &rec[n..];
            for _ in 0..count.max(0) {
                let name = field(&mut rec, "header name")?.unwrap_or_default();
                let v = field(&mut rec, "header value")?;
                if name == ID_HEADER {
                    id_header = v.map(<[u8]>::to_vec);
                }
            }
        }
        out.push(Decoded {
            offset: h.base_offset + i64::from(delta),
            key,
            value,
            id_header,
        });
    }
    Ok(out)
}

/// The (offset, value) of every record in one stored batch (a null value reads as empty).
pub fn decode(stored: &[u8]) -> Result<Vec<(i64, Vec<u8>)>, String> {
    Ok(decode_records(stored)?
        .into_iter()
        .map(|r| (r.offset, r.value.unwrap_or_default()))
        .collect())
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

    #[test]
    fn keyed_records_and_tombstones_carry_their_ids() {
        let ids: Vec<RecordId> = (0..2)
            .map(|i| RecordId {
                client: 1,
                serial: 3,
                index: i,
            })
            .collect();
        let specs = [
            KeyedSpec {
                key: 4,
                tombstone: false,
            },
            KeyedSpec {
                key: 9,
                tombstone: true,
            },
        ];
        let mut b = build_keyed_batch(&ids, &specs, 5, 7, None);
        batch::assign_offset(&mut b, 10, 0);
        let got = decode_records(&b).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key.as_deref(), Some(&b"k4"[..]));
        assert_eq!(got[1].key.as_deref(), Some(&b"k9"[..]));
        assert!(got[0].value.is_some() && got[1].value.is_none());
        assert_eq!((got[0].id(), got[1].id()), (Some(ids[0]), Some(ids[1])));
        assert_eq!((got[0].offset, got[1].offset), (10, 11));
    }
}
