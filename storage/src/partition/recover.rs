//! Carrying out a partition's recovery plan on its files: skein-core's [`PartitionRecovery`]
//! decides what to read, trust, cut and remove; this reads, scans, truncates and removes.

use std::io::{self, BufReader, Read};
use std::path::Path;

use skein_core::batch::{self, BatchHeader};
use skein_core::log::{Segment, SegmentScan};
use skein_core::recovery::{PartitionRecovery, Removal, Step};
use tracing::warn;

use super::files::{
    file_name, remove_segment_files, sync_dir_on, write_indexes, TIMESTAMPS_CHECKED,
};
use super::{io_err, StorageError};
use crate::fs::{Fs, FsFile, OpenMode};

/// Carries out one step of a partition's recovery on its files (see [`PartitionStore::open`]).
pub(super) fn carry_out<F: Fs>(
    fs: &F,
    dir: &Path,
    step: Step,
    rec: &mut PartitionRecovery,
    indexes_trusted: bool,
) -> Result<(), StorageError> {
    match step {
        Step::ReadIndexes { base } => {
            let idx = fs.read(&dir.join(file_name(base, "index"))).ok();
            let tidx = fs.read(&dir.join(file_name(base, "timeindex"))).ok();
            let answer = rec.on_indexes(idx.zip(tidx));
            carry_out(fs, dir, answer, rec, indexes_trusted)?;
        }
        Step::Scan {
            base,
            size,
            scan,
            after_bad_index,
        } => {
            let path = dir.join(file_name(base, "log"));
            if after_bad_index {
                warn!(path = %path.display(), "segment index disagrees with its log; rebuilding");
            }
            let (seg, complete) = scan_file(fs, &path, scan, size)?;
            rec.on_scanned(seg, complete);
        }
        Step::WriteIndexes(seg) => write_indexes(fs, dir, &seg)?,
        Step::Truncate { base, len, size } => {
            let path = dir.join(file_name(base, "log"));
            warn!(path = %path.display(), from = size, to = len, "torn or corrupt log tail found by CRC; truncating");
            let f = fs.open(&path, OpenMode::Write).map_err(io_err(&path))?;
            f.set_len(len).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        Step::RemoveSegment { base, why } => {
            if why == Removal::BeforeGap {
                warn!(dir = %dir.display(), base, "segment before a gap left by an interrupted retention; dropping it");
            }
            remove_segment_files(fs, dir, base);
        }
        Step::SyncDir => {
            if !indexes_trusted {
                // Not synced on its own: if the marker is lost, the next start rebuilds again.
                let p = dir.join(TIMESTAMPS_CHECKED);
                fs.write(&p, b"").map_err(io_err(&p))?;
            }
            sync_dir_on(fs, dir);
        }
        Step::ReadSnapshot { offset } => {
            rec.on_snapshot(fs.read(&dir.join(file_name(offset, "snapshot"))).ok());
        }
        Step::RemoveSnapshot { offset } => {
            let _ = fs.remove_file(&dir.join(file_name(offset, "snapshot")));
        }
        Step::ReadHeaders { base, size } => {
            let headers = scan_headers(fs, &dir.join(file_name(base, "log")), size)?;
            rec.on_headers(&headers);
        }
        Step::Done => {}
    }
    Ok(())
}

/// Scans a segment file from the scan's position to `size`; returns the segment and whether
/// the whole file was valid.
pub(super) fn scan_file<F: Fs>(
    fs: &F,
    path: &Path,
    mut scan: SegmentScan,
    size: u64,
) -> Result<(Segment, bool), StorageError> {
    let f = fs.open(path, OpenMode::Read).map_err(io_err(path))?;
    let mut pos = scan.position();
    // No larger than what is left to scan: the buffer is zeroed before its first fill.
    let cap = usize::try_from(size.saturating_sub(pos))
        .unwrap_or(usize::MAX)
        .clamp(batch::LOG_OVERHEAD, 1 << 20);
    let mut r = BufReader::with_capacity(cap, ReadAt { file: &f, pos });
    let mut buf = Vec::new();
    let mut complete = true;
    while pos < size {
        let mut head = [0u8; batch::LOG_OVERHEAD];
        if size - pos < batch::LOG_OVERHEAD as u64 || r.read_exact(&mut head).is_err() {
            complete = false;
            break;
        }
        let Ok(len) = batch::peek_size(&head) else {
            complete = false;
            break;
        };
        if len as u64 > size - pos {
            complete = false;
            break;
        }
        buf.clear();
        buf.extend_from_slice(&head);
        buf.resize(len, 0);
        if r.read_exact(&mut buf[batch::LOG_OVERHEAD..]).is_err() || scan.push(&buf).is_err() {
            complete = false;
            break;
        }
        pos += len as u64;
    }
    Ok((scan.finish(), complete))
}

/// Headers of every batch in the first `size` bytes of a segment file (already validated).
fn scan_headers<F: Fs>(fs: &F, path: &Path, size: u64) -> Result<Vec<BatchHeader>, StorageError> {
    let f = fs.open(path, OpenMode::Read).map_err(io_err(path))?;
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut head = [0u8; batch::HEADER_LEN];
    while pos + batch::HEADER_LEN as u64 <= size {
        f.read_exact_at(&mut head, pos).map_err(io_err(path))?;
        let Ok(h) = batch::parse_header(&head) else {
            break;
        };
        out.push(h);
        pos += h.size as u64;
    }
    Ok(out)
}

/// A file read from a position onwards, for a `BufReader`.
struct ReadAt<'a, T> {
    file: &'a T,
    pos: u64,
}

impl<T: FsFile> Read for ReadAt<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
