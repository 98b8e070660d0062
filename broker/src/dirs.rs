//! The data directory's partition folders: where a partition lives, the topic id it was
//! created for (Kafka's `partition.metadata`), moving a deleted one aside, and sweeping the
//! folders of topics deleted by a crash mid-delete.
//!
//! Invariant: only folders that look like skein's own (named `<topic>-<n>` or `...-delete`,
//! holding nothing but partition files) are ever removed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skein_storage::partition::sync_dir;
use skein_sys as sys;
use skein_sys::fs::{self, File};
use tracing::warn;

use crate::partition::Partition;

/// Directory of a partition.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// Which topic a partition directory belongs to (Kafka's `partition.metadata`).
pub(crate) const PARTITION_METADATA: &str = "partition.metadata";

/// The topic id a partition directory was created for, if it says.
pub(crate) fn stored_topic_id(pdir: &Path) -> Option<String> {
    let text = fs::read_to_string(pdir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .map(|s| s.trim().to_string())
}

/// Records the topic id in a partition directory (once; atomically and durably).
pub(crate) fn write_topic_id(pdir: &Path, topic_id: &str) -> std::io::Result<()> {
    if stored_topic_id(pdir).as_deref() == Some(topic_id) {
        return Ok(());
    }
    let tmp = pdir.join(format!("{PARTITION_METADATA}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(format!("version: 0\ntopic_id: {topic_id}\n").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, pdir.join(PARTITION_METADATA))?;
    sync_dir(pdir);
    Ok(())
}

/// Moves a partition directory out of the way at once and deletes it in the background.
pub(crate) fn trash_partition_dir(dir: &Path, topic: &str, index: i32) {
    let pdir = partition_dir(dir, topic, index);
    let trash = dir.join(format!("{topic}-{index}.{}-delete", sys::uuid().simple()));
    if fs::rename(&pdir, &trash).is_ok() {
        if sys::simulated() {
            let _ = fs::remove_dir_all(trash);
        } else {
            std::thread::spawn(move || {
                let _ = fs::remove_dir_all(trash);
            });
        }
    }
}

/// Removes partition directories of deleted topics left by a crash mid-delete.
///
/// Only directories that look like skein's own (named `<topic>-<n>` or `...-delete`, holding
/// nothing but segment, index and snapshot files) are touched, so a data dir pointed at a
/// directory with other content never loses it.
pub(crate) fn remove_orphans(dir: &Path, parts: &BTreeMap<(String, i32), Arc<Partition>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let name = e.name.to_string_lossy().to_string();
        let path = e.path;
        if e.is_file || !only_segment_files(&path) {
            continue;
        }
        let key = name
            .rsplit_once('-')
            .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)));
        let orphan = match key {
            Some(k) => !parts.contains_key(&k),
            None => name.ends_with("-delete"),
        };
        if orphan {
            warn!(path = %path.display(), "removing directory of a deleted topic");
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn only_segment_files(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.iter().all(|e| {
        let n = e.name.to_string_lossy().to_string();
        e.is_file
            && (n == PARTITION_METADATA
                || ["log", "index", "timeindex", "snapshot", "tmp"]
                    .iter()
                    .any(|ext| n.ends_with(&format!(".{ext}"))))
    })
}
