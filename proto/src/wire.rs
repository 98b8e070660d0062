//! Response frames that carry fetched record batches by reference.
//!
//! A Fetch response is mostly record batches read from segment files. Encoding it into one
//! buffer copies every batch once more; [`encode_frame`] instead encodes with kafka-protocol's
//! own encoder into a [`ChunkedBuf`], which keeps each registered batch buffer as a chunk of
//! its own, and [`write_frame`] sends the chunks with vectored writes.
//!
//! Invariant: a frame's chunks, concatenated, are byte for byte what encoding the same message
//! into one `BytesMut` gives (a proptest checks it for every Fetch version skein serves).

use std::io::{self, IoSlice};
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A response frame: its bytes in order, in one or more chunks.
pub type Frame = Vec<Bytes>;

/// Shared slices shorter than this are copied: a chunk of its own costs more than the copy.
const SHARE_MIN: usize = 512;

/// Chunks handed to one vectored write at most.
const MAX_IOVECS: usize = 64;

/// An encode buffer that keeps registered shared buffers by reference: when the encoder puts
/// exactly one of them (same address and length), the bytes so far become a chunk and the
/// shared buffer follows as the next one, without a copy.
#[derive(Debug, Default)]
pub struct ChunkedBuf {
    done: Vec<Bytes>,
    done_len: usize,
    cur: BytesMut,
    shared: Vec<Bytes>,
    /// Registered buffers before this one have been put.
    next: usize,
}

impl ChunkedBuf {
    /// A buffer that will not copy `shared` when the encoder writes one of them whole.
    pub fn new(shared: Vec<Bytes>) -> Self {
        ChunkedBuf {
            shared: shared
                .into_iter()
                .filter(|b| b.len() >= SHARE_MIN)
                .collect(),
            ..Default::default()
        }
    }

    /// The chunks written, in order.
    pub fn finish(mut self) -> Frame {
        self.end_chunk();
        self.done
    }

    fn end_chunk(&mut self) {
        if !self.cur.is_empty() {
            let c = self.cur.split().freeze();
            self.done_len += c.len();
            self.done.push(c);
        }
    }

    /// Folds every chunk back into one buffer (for an encoder that seeks back into them).
    fn unshare(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let mut all = BytesMut::with_capacity(self.done_len + self.cur.len());
        for c in self.done.drain(..) {
            all.extend_from_slice(&c);
        }
        all.extend_from_slice(&self.cur);
        self.cur = all;
        self.done_len = 0;
    }
}

// SAFETY: every method forwards to the `BytesMut` being written, which upholds `BufMut`'s
// contract; `put_slice` only adds whole chunks before it or forwards.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is `cur`'s.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARE_MIN {
            // The encoder puts the buffers in the order they were registered: look from the
            // last one found, so a response with many partitions is not searched quadratically.
            let found = self.shared[self.next..]
                .iter()
                .position(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
            if let Some(i) = found {
                let b = self.shared[self.next + i].clone();
                self.next += i + 1;
                self.end_chunk();
                self.done_len += b.len();
                self.done.push(b);
                return;
            }
        }
        self.cur.extend_from_slice(src);
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.done_len + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.done_len {
            self.unshare();
        }
        self.cur.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        if r.start < self.done_len {
            self.unshare();
        }
        let at = self.done_len;
        &mut self.cur[r.start - at..r.end - at]
    }
}

/// Encodes a response frame (size prefix, header, body) without copying `shared` buffers the
/// body holds (fetched records).
pub fn encode_frame<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
    shared: Vec<Bytes>,
) -> Result<Frame, String> {
    let mut buf = ChunkedBuf::new(shared);
    buf.put_i32(0);
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation_id;
    h.encode(&mut buf, header_version)
        .map_err(|e| format!("encoding response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding response v{version}: {e}"))?;
    let size = (buf.offset() - 4) as i32;
    let mut chunks = buf.finish();
    // The size prefix opens the first chunk, which is header bytes (never a shared buffer).
    let mut first = BytesMut::from(&chunks[0][..]);
    first[..4].copy_from_slice(&size.to_be_bytes());
    chunks[0] = first.freeze();
    Ok(chunks)
}

/// Writes a frame's chunks in order, as few vectored writes as the socket takes.
pub async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, mut chunks: Frame) -> io::Result<()> {
    if let [one] = &chunks[..] {
        return wr.write_all(one).await;
    }
    let mut i = 0;
    while i < chunks.len() {
        let slices: Vec<IoSlice<'_>> = chunks[i..]
            .iter()
            .take(MAX_IOVECS)
            .map(|c| IoSlice::new(c))
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let len = chunks[i].len();
            if n >= len {
                n -= len;
                i += 1;
            } else {
                chunks[i].advance(n);
                n = 0;
            }
        }
        while i < chunks.len() && chunks[i].is_empty() {
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    /// What the one-buffer encoder gives for the same frame.
    fn plain<R: Encodable>(body: &R, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let mut h = ResponseHeader::default();
        h.correlation_id = 7;
        h.encode(&mut buf, 1).unwrap();
        body.encode(&mut buf, version).unwrap();
        let n = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&n.to_be_bytes());
        buf.to_vec()
    }

    /// A partition's records, diverging epoch (-1: none), aborted list or not, and watermark.
    type Part = (Option<Vec<u8>>, i32, bool, i64);

    fn partition() -> impl Strategy<Value = Part> {
        (
            proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..3000)),
            -1i32..3,
            any::<bool>(),
            -1i64..1 << 40,
        )
    }

    fn response(topics: Vec<(String, Vec<Part>)>, version: i16) -> FetchResponse {
        let mut r = FetchResponse::default();
        r.throttle_time_ms = 3;
        if version >= 7 {
            r.error_code = 0;
        }
        for (name, parts) in topics {
            let mut t = FetchableTopicResponse::default();
            t.topic = TopicName(StrBytes::from_string(name));
            for (i, (records, epoch, aborted, hw)) in parts.into_iter().enumerate() {
                let mut p = PartitionData::default();
                p.partition_index = i as i32;
                p.high_watermark = hw;
                p.last_stable_offset = hw;
                p.log_start_offset = 0;
                p.records = records.map(Bytes::from);
                if epoch >= 0 {
                    p.diverging_epoch.epoch = epoch;
                    p.diverging_epoch.end_offset = hw;
                }
                if aborted {
                    let mut a = AbortedTransaction::default();
                    a.producer_id = kafka_protocol::messages::ProducerId(5);
                    a.first_offset = 9;
                    p.aborted_transactions = Some(vec![a]);
                }
                t.partitions.push(p);
            }
            r.responses.push(t);
        }
        r
    }

    fn records_of(r: &FetchResponse) -> Vec<Bytes> {
        r.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.clone())
            .collect()
    }

    proptest! {
        /// The chunks are the one-buffer encoding, and batches of SHARE_MIN bytes or more go
        /// out as the very buffers the response holds.
        #[test]
        fn chunks_concatenate_to_the_plain_encoding(
            version in 4i16..=12,
            topics in proptest::collection::vec(
                ("[a-z]{1,12}", proptest::collection::vec(partition(), 0..5)), 0..4),
        ) {
            let r = response(topics, version);
            let chunks = encode_frame(7, 1, &r, version, records_of(&r)).unwrap();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            prop_assert_eq!(joined, plain(&r, version));
            for rec in records_of(&r).iter().filter(|b| b.len() >= SHARE_MIN) {
                prop_assert!(chunks.iter().any(|c| c.as_ptr() == rec.as_ptr() && c.len() == rec.len()));
            }
        }

        /// A frame written through a writer that takes a few bytes at a time arrives whole.
        #[test]
        fn write_frame_survives_short_writes(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 1..8),
            limit in 1usize..300,
        ) {
            let chunks: Frame = pieces.iter().cloned().map(Bytes::from).collect();
            let want: Vec<u8> = pieces.concat();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(async {
                let mut w = ShortWriter { out: Vec::new(), limit };
                write_frame(&mut w, chunks).await.unwrap();
                w.out
            });
            prop_assert_eq!(got, want);
        }
    }

    /// An encoder that seeks back into written chunks gets the same bytes (they are folded
    /// back into one buffer).
    #[test]
    fn seeking_back_unshares() {
        let shared = Bytes::from(vec![9u8; 1000]);
        let mut b = ChunkedBuf::new(vec![shared.clone()]);
        b.put_i32(1);
        b.put_slice(&shared);
        b.put_u8(2);
        b.range(0..4).copy_from_slice(&5i32.to_be_bytes());
        let mut want = 5i32.to_be_bytes().to_vec();
        want.extend_from_slice(&shared);
        want.push(2);
        let joined: Vec<u8> = b.finish().concat();
        assert_eq!(joined, want);
    }

    struct ShortWriter {
        out: Vec<u8>,
        limit: usize,
    }

    impl AsyncWrite for ShortWriter {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut left = self.limit;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                left -= k;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
}
