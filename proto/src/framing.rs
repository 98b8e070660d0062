//! Request framing: a connection's byte stream split into size-prefixed request frames, each
//! holding a permit of the broker-wide request-bytes budget for as long as it is processed.
//!
//! Invariants: a frame is never larger than the limit it is read with; its bytes are taken
//! from the budget before they are buffered past the length prefix; a dropped read loses no
//! bytes and no permit.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Size of a read when no frame is pending: several small requests per read syscall.
const READ_CHUNK: usize = 64 * 1024;

/// Splits a connection's byte stream into request frames.
///
/// Cancellation-safe: the connection loop drops `next` whenever a response completes first,
/// so all progress (bytes read, the frame's budget permit) lives here and not in the future.
/// A dropped `next` loses nothing; reading resumes exactly where it stopped.
#[derive(Default)]
pub struct FrameReader {
    buf: BytesMut,
    /// The budget for the frame whose length prefix has been read.
    permit: Option<OwnedSemaphorePermit>,
}

impl FrameReader {
    /// The next frame and its budget permit; `None` on a clean end of stream between frames.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        max_frame: usize,
        budget: &Arc<Semaphore>,
    ) -> Result<Option<(Bytes, OwnedSemaphorePermit)>, String> {
        loop {
            let mut want = READ_CHUNK;
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len < 4 {
                    return Err(format!("invalid frame size {len}"));
                }
                let len = len as usize;
                if len > max_frame {
                    return Err(format!(
                        "frame of {len} bytes is larger than socket.request.max.bytes {max_frame}"
                    ));
                }
                if self.permit.is_none() {
                    // Dropping this wait takes no permits, so it is cancellation-safe too.
                    let permit = budget
                        .clone()
                        .acquire_many_owned(len as u32)
                        .await
                        .map_err(|_| "shutting down".to_string())?;
                    self.permit = Some(permit);
                }
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    let body = self.buf.split_to(len).freeze();
                    let permit = self.permit.take().expect("permit taken above");
                    return Ok(Some((body, permit)));
                }
                want = want.max(4 + len - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want);
            }
            // `read_buf` is cancellation-safe: if dropped, no bytes were taken from the socket.
            let n = rd
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(format!(
                        "truncated frame: connection closed with {} bytes of a frame unread",
                        self.buf.len()
                    ))
                };
            }
        }
    }
}

/// The fixed start of every request header: api key, api version and correlation id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPrefix {
    /// The raw api key (not necessarily one this broker knows).
    pub api_key: i16,
    /// The request's api version.
    pub api_version: i16,
    /// The correlation id the response must carry.
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// Reads the prefix of a frame without consuming it; `None` if the frame is shorter.
    pub fn peek(frame: &[u8]) -> Option<RequestPrefix> {
        let b = frame.get(..8)?;
        Some(RequestPrefix {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Result<Option<Vec<u8>>, String>> {
        let budget = Arc::new(Semaphore::new(1 << 20));
        let mut reader = FrameReader::default();
        let mut rd = input;
        let mut out = Vec::new();
        loop {
            match reader.next(&mut rd, max, &budget).await {
                Ok(Some((f, _permit))) => out.push(Ok(Some(f.to_vec()))),
                Ok(None) => {
                    out.push(Ok(None));
                    return out;
                }
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn splits_frames_and_refuses_bad_lengths() {
        let mut input = Vec::new();
        for body in [&b"abcd"[..], &b"0123456789"[..]] {
            input.extend_from_slice(&(body.len() as i32).to_be_bytes());
            input.extend_from_slice(body);
        }
        let got = frames(&input, 100).await;
        assert_eq!(
            got,
            vec![
                Ok(Some(b"abcd".to_vec())),
                Ok(Some(b"0123456789".to_vec())),
                Ok(None)
            ]
        );
        let got = frames(&input, 8).await;
        assert!(
            matches!(&got[1], Err(e) if e.contains("larger than")),
            "{got:?}"
        );
        let got = frames(&(-1i32).to_be_bytes(), 100).await;
        assert!(matches!(&got[0], Err(e) if e.contains("invalid frame size")));
        let got = frames(&input[..6], 100).await;
        assert!(matches!(&got[0], Err(e) if e.contains("truncated")));
    }

    #[test]
    fn prefix_needs_eight_bytes() {
        assert_eq!(RequestPrefix::peek(&[0; 7]), None);
        let p = RequestPrefix::peek(&[0, 1, 0, 12, 0, 0, 1, 2, 9]).unwrap();
        assert_eq!((p.api_key, p.api_version, p.correlation_id), (1, 12, 258));
    }
}
