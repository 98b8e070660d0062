//! Decompression of a compressed batch's records, as readers over the batch's bytes.
//!
//! The codecs are Kafka's: gzip, snappy (raw, or the xerial framing the Java client writes), the
//! LZ4 frame format and zstd. Each codec gives a `Read` that the record walk pulls from, so
//! memory stays bounded by the codec's window however far a batch expands; the one exception is
//! raw (unframed) snappy, whose format can only be decoded whole, into one buffer of at most
//! [`DECOMPRESSED_BATCH_BYTES_MAX`].
//!
//! Invariants: a reader never yields more than [`DECOMPRESSED_BATCH_BYTES_MAX`] bytes (past that
//! it fails, so a compression bomb costs bounded work); corrupt input is an error, never a panic.

use std::io::{self, Read};

use crate::batch::{BatchError, Compression};

/// Most bytes one batch's records may expand to; a larger batch is refused as invalid.
pub const DECOMPRESSED_BATCH_BYTES_MAX: u64 = 1 << 30;
/// Most bytes one block of the xerial snappy framing may expand to (snappy-java writes 32 KiB).
const XERIAL_BLOCK_BYTES_MAX: usize = 64 << 20;
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// A reader over the decompressed records of a batch body compressed with `codec`.
pub fn decompressor<'a>(
    codec: Compression,
    body: &'a [u8],
) -> Result<Box<dyn Read + 'a>, BatchError> {
    let r: Box<dyn Read + 'a> = match codec {
        Compression::None => Box::new(body),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Compression::Snappy if body.starts_with(&XERIAL_MAGIC) => Box::new(XerialSnappy {
            rest: body.get(XERIAL_HEADER_LEN..).ok_or(CORRUPT)?,
            block: Vec::new(),
            at: 0,
        }),
        Compression::Snappy => {
            let len = snap::raw::decompress_len(body).map_err(|_| CORRUPT)?;
            if len as u64 > DECOMPRESSED_BATCH_BYTES_MAX {
                return Err(TOO_LARGE);
            }
            let out = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|_| CORRUPT)?;
            Box::new(io::Cursor::new(out))
        }
        Compression::Lz4 => Box::new(lz4::Decoder::new(body).map_err(|_| CORRUPT)?),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(body).map_err(|_| CORRUPT)?)
        }
    };
    Ok(Box::new(Capped {
        inner: r,
        left: DECOMPRESSED_BATCH_BYTES_MAX,
    }))
}

/// The error for bytes a codec cannot decode.
pub const CORRUPT: BatchError = BatchError::Invalid("compressed records do not decompress");
/// The error for a batch that expands past [`DECOMPRESSED_BATCH_BYTES_MAX`].
pub const TOO_LARGE: BatchError = BatchError::Invalid("compressed records expand past 1 GiB");

/// Fails once more than `left` bytes were read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other("decompressed batch too large"))?;
        Ok(n)
    }
}

/// snappy-java's stream framing: a 16-byte header, then blocks of (u32 length, raw snappy).
struct XerialSnappy<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    at: usize,
}

impl XerialSnappy<'_> {
    fn next_block(&mut self) -> io::Result<bool> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if self.rest.is_empty() {
            return Ok(false);
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(bad("truncated xerial block length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let block = rest
            .get(..len)
            .ok_or_else(|| bad("truncated xerial block"))?;
        self.rest = &rest[len..];
        let n = snap::raw::decompress_len(block).map_err(|_| bad("bad snappy block"))?;
        if n > XERIAL_BLOCK_BYTES_MAX {
            return Err(bad("snappy block too large"));
        }
        self.block.resize(n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut self.block)
            .map_err(|_| bad("bad snappy block"))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for XerialSnappy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Compresses `plain` with `codec` (tests and the simulator build compressed batches with it).
pub fn compress(codec: Compression, plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Compression::None => plain.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(plain).expect("in-memory write");
            e.finish().expect("in-memory write")
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(plain)
            .expect("snappy compresses any input"),
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .expect("lz4 encoder");
            e.write_all(plain).expect("in-memory write");
            let (out, r) = e.finish();
            r.expect("in-memory write");
            out
        }
        Compression::Zstd => zstd::stream::encode_all(plain, 1).expect("in-memory write"),
    }
}

/// Encodes `records` as one v2 batch (base offset 0) with its records compressed by `codec`:
/// for tests, benchmarks and the simulator.
pub fn encode(
    records: &[crate::batch::build::SimpleRecord],
    producer: Option<crate::batch::build::ProducerIdentity>,
    codec: Compression,
) -> Vec<u8> {
    use crate::batch::{build, HEADER_LEN};
    let plain = build::batch(records, producer);
    build::with_body(&plain, &compress(codec, &plain[HEADER_LEN..]), codec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames raw snappy `plain` the way snappy-java does (for tests of the xerial reader).
    fn compress_xerial(plain: &[u8], block_bytes: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for chunk in plain.chunks(block_bytes.max(1)) {
            let c = snap::raw::Encoder::new()
                .compress_vec(chunk)
                .expect("snappy compresses any input");
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    fn roundtrip(codec: Compression, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompressor(codec, &compress(codec, plain))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn every_codec_round_trips() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert_eq!(roundtrip(c, &plain), plain, "{c:?}");
        }
    }

    #[test]
    fn xerial_framing_is_read() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 13) as u8).collect();
        let mut out = Vec::new();
        decompressor(Compression::Snappy, &compress_xerial(&plain, 32 << 10))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for bytes in [&b""[..], b"\x00\x01\x02garbage", &XERIAL_MAGIC[..]] {
                let mut out = Vec::new();
                let r = decompressor(c, bytes).and_then(|mut r| {
                    r.read_to_end(&mut out).map_err(|_| CORRUPT)?;
                    Ok(())
                });
                // Empty input may decode to nothing; anything else must fail cleanly.
                assert!(r.is_err() || out.is_empty(), "{c:?} {bytes:?}");
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let mut capped = Capped {
            inner: io::repeat(0),
            left: 10_000,
        };
        let mut out = Vec::new();
        assert!(capped.read_to_end(&mut out).is_err());
        assert!(out.len() <= 10_000);
    }
}
