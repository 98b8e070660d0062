//! A fetch's read, planned under the partition lock and carried out outside it.

use std::io;
use std::sync::Arc;

use skein_core::fetch::Grant;
use skein_core::log::trim_read;

use crate::fs::{Fs, FsFile, OsFs};

/// A planned fetch read: whole batches from `offset`, taken from `len` bytes at `position`.
pub struct FetchRange<F: Fs = OsFs> {
    /// The segment file.
    pub file: Arc<F::File>,
    /// Start position (a batch boundary at or before `offset`).
    pub position: u64,
    /// Bytes to read first.
    pub len: u64,
    /// The segment's size when planned (complete batches only).
    pub segment_size: u64,
    /// Fetch offset.
    pub offset: i64,
    /// What the read may return (whole batches up to a byte limit, the first perhaps whole).
    pub grant: Grant,
}

/// Reads a planned range and trims it to whole batches from the fetch offset (re-reading while
/// the first wanted batch lies further than the plan guessed: longer than planned, or past a
/// cleaned segment's gap; each re-read is longer, and none passes the segment's end).
pub fn read_range<F: Fs>(r: &FetchRange<F>) -> io::Result<bytes::Bytes> {
    let (file, position, seg_size, offset) = (&r.file, r.position, r.segment_size, r.offset);
    let (max_bytes, whole_first) = (r.grant.max_bytes, r.grant.whole_first);
    let mut buf = file.read_vec_at(r.len as usize, position)?;
    let (s, e) = loop {
        match trim_read(&buf, offset, max_bytes, whole_first) {
            Ok(r) => break r,
            Err(total) => {
                let total = (total as u64).min(seg_size - position);
                if total <= buf.len() as u64 {
                    break (0, 0);
                }
                buf = file.read_vec_at(total as usize, position)?;
            }
        }
    };
    let mut bytes = bytes::Bytes::from(buf);
    bytes.truncate(e);
    Ok(bytes.slice(s..))
}
