//! A partition directory's small files and names: the leader-epoch checkpoint, segment
//! indexes, removals and listings, each a plain operation on the [`Fs`].

use std::io;
use std::path::Path;

use skein_core::log::Segment;
use tracing::warn;

use super::{io_err, StorageError};
use crate::fs::{Fs, FsFile, OpenMode, OsFs};

/// The file holding a partition's leader-epoch history.
pub(super) const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Marks a partition directory whose indexes were built from its records' own timestamps (see `open`).
pub(super) const TIMESTAMPS_CHECKED: &str = "timestamps-checked";

/// Name of a segment-related file: 20-digit zero-padded base offset plus extension, as Kafka does.
pub fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Reads a leader-epoch checkpoint (Kafka's format: version, count, then `epoch offset` lines).
pub(super) fn read_epochs<F: Fs>(fs: &F, dir: &Path) -> Vec<(i32, i64)> {
    let Ok(bytes) = fs.read(&dir.join(EPOCH_CHECKPOINT)) else {
        return Vec::new();
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Vec::new();
    }
    let Some(count) = lines.next().and_then(|l| l.trim().parse::<usize>().ok()) else {
        return Vec::new();
    };
    let entries: Vec<(i32, i64)> = lines
        .filter_map(|l| {
            let (e, o) = l.trim().split_once(' ')?;
            Some((e.parse().ok()?, o.parse().ok()?))
        })
        .collect();
    if entries.len() == count {
        entries
    } else {
        Vec::new()
    }
}

/// Writes the leader-epoch checkpoint durably (temporary file, fsync, rename, directory sync).
pub(super) fn write_epochs<F: Fs>(
    fs: &F,
    dir: &Path,
    epochs: &[(i32, i64)],
) -> Result<(), StorageError> {
    let mut text = format!("0\n{}\n", epochs.len());
    for (e, o) in epochs {
        text.push_str(&format!("{e} {o}\n"));
    }
    let tmp = dir.join(format!("{EPOCH_CHECKPOINT}.tmp"));
    write_synced(fs, &tmp, text.as_bytes())?;
    let path = dir.join(EPOCH_CHECKPOINT);
    fs.rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir_on(fs, dir);
    Ok(())
}

/// Creates or replaces `path` with `bytes` and fsyncs it (its directory entry is not synced).
pub(super) fn write_synced<F: Fs>(fs: &F, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    fs.write(path, bytes).map_err(io_err(path))?;
    fs.open(path, OpenMode::Read)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Writes a sealed segment's offset and time indexes (not synced: recovery rebuilds bad ones).
pub(super) fn write_indexes<F: Fs>(fs: &F, dir: &Path, seg: &Segment) -> Result<(), StorageError> {
    for (ext, bytes) in [
        ("index", seg.encode_offset_index()),
        ("timeindex", seg.encode_time_index()),
    ] {
        let p = dir.join(file_name(seg.base_offset, ext));
        fs.write(&p, &bytes).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Removes a segment's log, indexes and snapshot, whichever exist.
pub(super) fn remove_segment_files<F: Fs>(fs: &F, dir: &Path, base: i64) {
    for ext in ["log", "index", "timeindex", "snapshot"] {
        let _ = fs.remove_file(&dir.join(file_name(base, ext)));
    }
}

/// Base offsets of the files in `dir` with extension `ext`, sorted.
pub(super) fn list_bases<F: Fs>(fs: &F, dir: &Path, ext: &str) -> io::Result<Vec<i64>> {
    let suffix = format!(".{ext}");
    let mut out: Vec<i64> = fs
        .list_dir(dir)?
        .iter()
        .filter_map(|name| name.strip_suffix(&suffix)?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// A file's modification time in ms since the epoch, where the file system keeps one.
pub(super) fn mtime_ms<F: Fs>(fs: &F, path: &Path) -> Option<u64> {
    let m = fs.metadata(path).ok()?.modified?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// fsyncs a directory so created, renamed and deleted entries survive a crash.
pub fn sync_dir(dir: &Path) {
    sync_dir_on(&OsFs, dir);
}

/// [`sync_dir`] on any file system; a failure is logged (the next sync may succeed).
pub(super) fn sync_dir_on<F: Fs>(fs: &F, dir: &Path) {
    if let Err(e) = fs.sync_dir(dir) {
        warn!(dir = %dir.display(), error = %e, "directory sync failed");
    }
}
