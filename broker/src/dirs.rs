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

use skein_storage::partition::{is_orphan_partition_dir, sync_dir};
use skein_sys as sys;
use skein_sys::fs::{self, File};
use tracing::warn;

use crate::partition::Partition;

/// Directory of a partition.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

pub(crate) use skein_storage::partition::PARTITION_METADATA;

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

/// Removes partition directories of deleted topics left by a crash mid-delete (skein-storage's
/// `is_orphan_partition_dir` decides which).
pub(crate) fn remove_orphans(dir: &Path, parts: &BTreeMap<(String, i32), Arc<Partition>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.iter().filter(|e| !e.is_file) {
        let Ok(inside) = fs::read_dir(&e.path) else {
            continue;
        };
        let inside: Vec<(String, bool)> = inside
            .iter()
            .map(|f| (f.name.to_string_lossy().to_string(), f.is_file))
            .collect();
        let name = e.name.to_string_lossy().to_string();
        let held = |t: &str, p: i32| parts.contains_key(&(t.to_string(), p));
        if is_orphan_partition_dir(&name, &inside, held) {
            warn!(path = %e.path.display(), "removing directory of a deleted topic");
            let _ = fs::remove_dir_all(&e.path);
        }
    }
}
