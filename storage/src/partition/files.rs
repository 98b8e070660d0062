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

/// The file holding a partition's cleaner checkpoint (its first dirty offset).
pub(super) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// The log start offset DeleteRecords (or the leader's) moved this log to.
pub(super) const LOG_START: &str = "log-start-offset-checkpoint";

/// Which topic a partition directory belongs to (Kafka's `partition.metadata`, the broker's).
pub const PARTITION_METADATA: &str = "partition.metadata";

/// Extensions of the segment-related files a partition directory holds.
const SEGMENT_EXTS: [&str; 7] = [
    "log",
    "index",
    "timeindex",
    "snapshot",
    "tmp",
    "cleaned",
    "swap",
];

/// True when `name` is a file skein keeps in a partition directory.
pub fn is_partition_file(name: &str) -> bool {
    name == PARTITION_METADATA
        || name == EPOCH_CHECKPOINT
        || name == TIMESTAMPS_CHECKED
        || name == LOG_START
        || name == CLEANER_CHECKPOINT
        || name
            .rsplit_once('.')
            .is_some_and(|(_, ext)| SEGMENT_EXTS.contains(&ext))
}

/// True when directory `name` directly under a data dir, holding `entries` (name, is a plain
/// file), is the partition directory of a deleted topic, left by a crash mid-delete: named
/// `<topic>-<n>` for a partition `held(topic, n)` denies, or `...-delete` (moved aside), and
/// holding nothing but partition files, so a data dir pointed at a directory with other
/// content never loses it. The broker's start-up sweep and the simulator both ask this.
pub fn is_orphan_partition_dir(
    name: &str,
    entries: &[(String, bool)],
    held: impl Fn(&str, i32) -> bool,
) -> bool {
    if !entries
        .iter()
        .all(|(n, plain)| *plain && is_partition_file(n))
    {
        return false;
    }
    match name
        .rsplit_once('-')
        .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?)))
    {
        Some((topic, index)) => !held(topic, index),
        None => name.ends_with("-delete"),
    }
}

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

/// Reads the saved log start offset (`0`, then the offset), if any.
pub(super) fn read_log_start<F: Fs>(fs: &F, dir: &Path) -> Option<i64> {
    let text = String::from_utf8(fs.read(&dir.join(LOG_START)).ok()?).ok()?;
    let mut lines = text.lines();
    (lines.next()?.trim() == "0").then_some(())?;
    lines.next()?.trim().parse().ok()
}

/// Saves the log start offset durably (temporary file, fsync, rename, directory sync).
pub(super) fn write_log_start<F: Fs>(fs: &F, dir: &Path, offset: i64) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{LOG_START}.tmp"));
    write_synced(fs, &tmp, format!("0\n{offset}\n").as_bytes())?;
    let path = dir.join(LOG_START);
    fs.rename(&tmp, &path).map_err(io_err(&path))?;
    fs.sync_dir(dir).map_err(io_err(dir))
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

#[cfg(test)]
mod orphan_tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, bool)> {
        names.iter().map(|n| (n.to_string(), true)).collect()
    }

    #[test]
    fn a_deleted_topics_directory_with_every_file_a_partition_keeps_is_an_orphan() {
        let all = files(&[
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000000.timeindex",
            "00000000000000000042.snapshot",
            EPOCH_CHECKPOINT,
            TIMESTAMPS_CHECKED,
            PARTITION_METADATA,
        ]);
        assert!(is_orphan_partition_dir("gone-3", &all, |_, _| false));
        assert!(!is_orphan_partition_dir("kept-3", &all, |t, p| t == "kept" && p == 3));
        assert!(is_orphan_partition_dir(
            "t-0.0123abcd-delete",
            &all,
            |_, _| true
        ));
        // A hyphenated topic name splits at its last hyphen.
        assert!(!is_orphan_partition_dir("my-topic-1", &all, |t, p| t
            == "my-topic"
            && p == 1));
    }

    #[test]
    fn a_directory_with_anything_else_in_it_is_never_an_orphan() {
        let mut foreign = files(&["00000000000000000000.log", "notes.txt"]);
        assert!(!is_orphan_partition_dir("gone-3", &foreign, |_, _| false));
        foreign = vec![
            ("00000000000000000000.log".into(), true),
            ("sub".into(), false),
        ];
        assert!(!is_orphan_partition_dir("gone-3", &foreign, |_, _| false));
        // Not named like a partition: kept whatever it holds.
        assert!(!is_orphan_partition_dir("backup", &files(&[]), |_, _| {
            false
        }));
        assert!(!is_orphan_partition_dir(
            "__raft",
            &files(&["x.log"]),
            |_, _| false
        ));
    }
}
