//! Recompression of a produced batch to its topic's `compression.type`, as Kafka's leader does
//! when the topic names a codec other than the one the producer used (`producer` keeps every
//! batch as sent). Snappy is written in the xerial framing snappy-java writes, which is what
//! Kafka's own broker stores, so every client that reads Kafka reads it.
//!
//! Invariants: the recompressed batch holds exactly the records of the original (the same
//! bytes once decompressed) under the same header but for its codec bits, length and CRC;
//! the work is streamed, so memory stays bounded by the output, which is capped at a limit
//! (max.message.bytes) and abandoned past it.

use std::io::{self, Read, Write};

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_LEN};
use crate::compression;
use crate::config::{LogConfig, TopicCompression};
use crate::log::AppendError;
use crate::records;

/// Why a batch could not be recompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecompressError {
    /// The original does not decompress (or expands past the cap).
    Corrupt(BatchError),
    /// The recompressed batch would be larger than the limit (at least `size` bytes).
    TooLarge {
        /// Bytes written when it was abandoned.
        size: usize,
    },
}

/// snappy-java's stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// Uncompressed bytes per xerial block (snappy-java's default).
const XERIAL_BLOCK: usize = 32 << 10;

/// A produced batch as a topic with `config` stores it: `Some` recompressed when its
/// `compression.type` names another codec than the batch's, `None` to store it as sent. A batch
/// the log would refuse anyway is refused with the same error (or left to the append to refuse).
pub fn for_topic(config: &LogConfig, records: &[u8]) -> Result<Option<Vec<u8>>, AppendError> {
    if config.compression.codec.is_none() {
        return Ok(None);
    }
    let Some(to) = batch::parse_header(records)
        .ok()
        .and_then(|h| h.compression().ok())
        .and_then(|sent| config.compression.recode(sent))
    else {
        return Ok(None);
    };
    let max = config.max_message_bytes;
    if records.len() > max as usize {
        return Ok(None);
    }
    let h = records::check_produced(records)?.header;
    if h.size != records.len() {
        return Ok(None);
    }
    match recompress(records, &h, to, &config.compression, max as usize) {
        Ok(b) => Ok(Some(b)),
        Err(RecompressError::Corrupt(e)) => Err(AppendError::Corrupt(e)),
        Err(RecompressError::TooLarge { size }) => Err(AppendError::TooLarge { size, max }),
    }
}

/// `batch` (validated, header `h`) with its records recompressed to `to` at `levels`; the
/// result is at most `limit` bytes.
pub fn recompress(
    batch: &[u8],
    h: &BatchHeader,
    to: Compression,
    levels: &TopicCompression,
    limit: usize,
) -> Result<Vec<u8>, RecompressError> {
    let from = h.compression().map_err(RecompressError::Corrupt)?;
    let mut plain = compression::decompressor(from, &batch[HEADER_LEN..h.size])
        .map_err(RecompressError::Corrupt)?;
    let mut out = Capped {
        buf: Vec::with_capacity(h.size.min(limit)),
        limit,
        over: false,
    };
    out.buf.extend_from_slice(&batch[..HEADER_LEN]);
    let res = encode(&mut plain, to, levels, &mut out);
    if out.over {
        return Err(RecompressError::TooLarge {
            size: out.buf.len(),
        });
    }
    res.map_err(|_| RecompressError::Corrupt(compression::CORRUPT))?;
    Ok(batch::reframe(out.buf, to))
}

/// Streams `plain` into `out`, compressed with `codec`.
fn encode(
    plain: &mut dyn Read,
    codec: Compression,
    levels: &TopicCompression,
    out: &mut Capped,
) -> io::Result<()> {
    match codec {
        Compression::None => {
            io::copy(plain, out)?;
        }
        Compression::Gzip => {
            let level = match levels.gzip_level {
                -1 => flate2::Compression::default(),
                l => flate2::Compression::new(l.clamp(1, 9) as u32),
            };
            let mut e = flate2::write::GzEncoder::new(out, level);
            io::copy(plain, &mut e)?;
            e.finish()?;
        }
        Compression::Snappy => {
            let mut e = XerialWriter::new(out)?;
            io::copy(plain, &mut e)?;
            e.finish()?;
        }
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(levels.lz4_level.clamp(1, 17) as u32)
                .build(out)?;
            io::copy(plain, &mut e)?;
            let (_, r) = e.finish();
            r?;
        }
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(out, levels.zstd_level)?;
            io::copy(plain, &mut e)?;
            e.finish()?;
        }
    }
    Ok(())
}

/// An output buffer that refuses to grow past `limit` bytes.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.over = true;
            return Err(io::Error::other(
                "recompressed batch over max.message.bytes",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// snappy-java's framing: the header, then blocks of (u32 compressed length, raw snappy) of
/// at most [`XERIAL_BLOCK`] uncompressed bytes each.
struct XerialWriter<W: Write> {
    inner: W,
    block: Vec<u8>,
    encoder: snap::raw::Encoder,
    packed: Vec<u8>,
}

impl<W: Write> XerialWriter<W> {
    fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(&XERIAL_HEADER)?;
        Ok(Self {
            inner,
            block: Vec::with_capacity(XERIAL_BLOCK),
            encoder: snap::raw::Encoder::new(),
            packed: vec![0; snap::raw::max_compress_len(XERIAL_BLOCK)],
        })
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let n = self
            .encoder
            .compress(&self.block, &mut self.packed)
            .map_err(io::Error::other)?;
        self.inner.write_all(&(n as u32).to_be_bytes())?;
        self.inner.write_all(&self.packed[..n])?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.flush_block()
    }
}

impl<W: Write> Write for XerialWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(XERIAL_BLOCK - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        if self.block.len() == XERIAL_BLOCK {
            self.flush_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build::SimpleRecord;
    use crate::records::check_produced;

    fn records(n: usize, value_len: usize) -> Vec<SimpleRecord> {
        (0..n)
            .map(|i| SimpleRecord {
                key: Some(format!("key-{i}").into_bytes()),
                value: Some(vec![(i % 251) as u8; value_len]),
                headers: Vec::new(),
                timestamp: 1_000 + i as i64,
            })
            .collect()
    }

    /// The decompressed records of a batch.
    fn plain(b: &[u8]) -> Vec<u8> {
        let h = batch::parse_header(b).unwrap();
        let mut out = Vec::new();
        compression::decompressor(h.compression().unwrap(), &b[HEADER_LEN..h.size])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn every_codec_to_every_codec_keeps_the_records_and_header() {
        let recs = records(300, 200);
        for from in Compression::ALL {
            let b = compression::encode(&recs, None, from);
            let h = check_produced(&b).unwrap().header;
            for to in Compression::ALL {
                let out = recompress(&b, &h, to, &TopicCompression::default(), 1 << 20)
                    .unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e:?}"));
                let oh = check_produced(&out).unwrap().header;
                assert_eq!(oh.compression().unwrap(), to);
                assert_eq!(plain(&out), plain(&b), "{from:?} -> {to:?}");
                assert_eq!(
                    (oh.record_count, oh.last_offset_delta, oh.max_timestamp),
                    (h.record_count, h.last_offset_delta, h.max_timestamp)
                );
                assert_eq!(oh.size, out.len());
            }
        }
    }

    #[test]
    fn snappy_is_framed_as_xerial_in_blocks() {
        let recs = records(2_000, 100);
        let b = compression::encode(&recs, None, Compression::None);
        let h = check_produced(&b).unwrap().header;
        let out = recompress(&b, &h, Compression::Snappy, &Default::default(), 1 << 20).unwrap();
        assert!(out[HEADER_LEN..].starts_with(&XERIAL_HEADER));
        assert!(plain(&b).len() > 2 * XERIAL_BLOCK, "spans several blocks");
        assert_eq!(plain(&out), plain(&b));
    }

    #[test]
    fn levels_change_the_output_and_past_the_limit_it_is_refused() {
        let recs = records(500, 300);
        let b = compression::encode(&recs, None, Compression::None);
        let h = check_produced(&b).unwrap().header;
        let at = |gzip_level| {
            let levels = TopicCompression {
                gzip_level,
                ..Default::default()
            };
            recompress(&b, &h, Compression::Gzip, &levels, 1 << 20).unwrap()
        };
        assert_ne!(at(1), at(9));
        let err = recompress(&b, &h, Compression::None, &Default::default(), 1_000).unwrap_err();
        assert!(matches!(err, RecompressError::TooLarge { size } if size <= 1_000));
    }

    #[test]
    fn a_corrupt_body_is_an_error_not_a_panic() {
        let recs = records(50, 50);
        let mut b = compression::encode(&recs, None, Compression::Gzip);
        let h = batch::parse_header(&b).unwrap();
        for x in &mut b[HEADER_LEN + 10..] {
            *x ^= 0x5a;
        }
        let r = recompress(&b, &h, Compression::Zstd, &Default::default(), 1 << 20);
        assert!(matches!(r, Err(RecompressError::Corrupt(_))));
    }
}
