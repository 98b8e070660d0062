//! The broker's shared state: the metadata catalog and its durable log, the open partitions,
//! group-commit flushing, retention, and clean shutdown.
//!
//! Invariants: a metadata record is fsynced in `__metadata.log` before it is applied; a
//! partition exists in the map only while its topic exists in the catalog; an acks=all produce
//! is answered only when `synced` covers its last offset (unless the interval flush policy is on).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use skein_core::catalog::{Catalog, CatalogError, MetadataRecord};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::storage::{sync_dir, PartitionStore, StorageError};
use crate::sys::{
    self,
    fs::{self, File, OpenOptions},
};

const METADATA_LOG: &str = "__metadata.log";
const CLEAN_MARKER: &str = ".clean-shutdown";
const META_PROPERTIES: &str = "meta.properties";

/// Wall-clock milliseconds since the Unix epoch: the time the shell hands the core.
pub fn now_ms() -> u64 {
    sys::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One open partition.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// The log and its files.
    pub store: Mutex<PartitionStore>,
    /// Log end offset known to be fsynced.
    synced: watch::Sender<i64>,
    flushing: AtomicBool,
}

impl Partition {
    /// Waits until every offset below `end` is fsynced, sharing fsyncs among waiters (group commit).
    pub async fn wait_synced(&self, end: i64) -> Result<(), StorageError> {
        let mut rx = self.synced.subscribe();
        loop {
            if *rx.borrow_and_update() >= end {
                return Ok(());
            }
            if self
                .flushing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let res = self.flush().await;
                self.flushing.store(false, Ordering::Release);
                // Wake the others even on failure so one of them retries.
                self.synced.send_modify(|_| {});
                res?;
                continue;
            }
            if rx.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// fsyncs the active segment and publishes the offset it covers.
    async fn flush(&self) -> Result<(), StorageError> {
        let (file, target) = self.store.lock().expect("partition lock").sync_target();
        let res = sys::blocking(move || file.sync_data())
            .await
            .and_then(|r| r);
        res.map_err(|source| StorageError::Io {
            path: PathBuf::from(format!("{}-{}", self.topic, self.index)),
            source,
        })?;
        self.store.lock().expect("partition lock").note_flushed();
        self.synced.send_if_modified(|s| {
            let grew = target > *s;
            *s = (*s).max(target);
            grew
        });
        Ok(())
    }
}

struct Meta {
    catalog: Catalog,
    log: File,
}

/// The broker.
pub struct Broker {
    /// Settings.
    pub settings: Settings,
    /// Cluster id (persisted in meta.properties).
    pub cluster_id: String,
    meta: Mutex<Meta>,
    partitions: RwLock<BTreeMap<(String, i32), Arc<Partition>>>,
    /// Bumped after every append; long-polling fetches wait on it.
    pub appended: watch::Sender<u64>,
    /// Flipped on shutdown.
    pub shutting_down: watch::Sender<bool>,
}

impl Broker {
    /// Opens the data directory, replays metadata and recovers every partition.
    pub fn open(settings: Settings) -> anyhow::Result<Arc<Broker>> {
        let dir = settings.data_dir.clone();
        fs::create_dir_all(&dir).with_context(|| format!("creating data dir {}", dir.display()))?;
        // A data dir created just now must itself survive a crash, or everything in it is lost.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent);
        }
        let cluster_id = load_or_create_properties(&dir, settings.node_id)?;
        let clean = fs::metadata(dir.join(CLEAN_MARKER)).is_ok();
        let mut catalog = Catalog::new(settings.log_defaults.clone());
        let log_path = dir.join(METADATA_LOG);
        let records = read_metadata_log(&log_path)?;
        for r in &records {
            catalog.apply(r);
        }
        catalog.fence_producer_ids();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let now = now_ms();
        let mut parts = BTreeMap::new();
        for t in catalog.topics() {
            let cfg = catalog.log_config(&t.name).expect("topic exists");
            for p in 0..t.partitions as i32 {
                let pdir = partition_dir(&dir, &t.name, p);
                let store = PartitionStore::open(&pdir, cfg.clone(), clean, now)
                    .with_context(|| format!("recovering {}", pdir.display()))?;
                parts.insert((t.name.clone(), p), new_partition(&t.name, p, store));
            }
        }
        remove_orphans(&dir, &parts);
        // Only now is every partition recovered: from here on a crash is unclean again.
        let _ = fs::remove_file(dir.join(CLEAN_MARKER));
        sync_dir(&dir);
        info!(
            data_dir = %dir.display(),
            topics = catalog.topics().count(),
            partitions = parts.len(),
            clean,
            "data directory loaded"
        );
        Ok(Arc::new(Broker {
            settings,
            cluster_id,
            meta: Mutex::new(Meta { catalog, log }),
            partitions: RwLock::new(parts),
            appended: watch::channel(0).0,
            shutting_down: watch::channel(false).0,
        }))
    }

    /// Reads the catalog under its lock.
    pub fn with_catalog<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        f(&self.meta.lock().expect("meta lock").catalog)
    }

    /// Makes a record durable, applies it, and opens or removes partitions it creates or deletes.
    pub fn commit(&self, rec: MetadataRecord) -> anyhow::Result<()> {
        let mut meta = self.meta.lock().expect("meta lock");
        append_metadata(&mut meta.log, &rec)?;
        meta.catalog.apply(&rec);
        let dir = &self.settings.data_dir;
        let now = now_ms();
        match &rec {
            MetadataRecord::TopicCreated {
                name, partitions, ..
            } => self.open_partitions(&meta.catalog, name, 0, *partitions as i32, now)?,
            MetadataRecord::PartitionsAdded { name, total } => {
                let have = self
                    .partitions
                    .read()
                    .expect("partitions lock")
                    .range((name.clone(), 0)..=(name.clone(), i32::MAX))
                    .count() as i32;
                self.open_partitions(&meta.catalog, name, have, *total as i32, now)?
            }
            MetadataRecord::TopicDeleted { name } => {
                let removed: Vec<_> = {
                    let mut parts = self.partitions.write().expect("partitions lock");
                    let keys: Vec<_> = parts
                        .range((name.clone(), 0)..=(name.clone(), i32::MAX))
                        .map(|(k, _)| k.clone())
                        .collect();
                    keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
                };
                for p in removed {
                    let pdir = partition_dir(dir, &p.topic, p.index);
                    let trash = dir.join(format!(
                        "{}-{}.{}-delete",
                        p.topic,
                        p.index,
                        sys::uuid().simple()
                    ));
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
                sync_dir(dir);
            }
            MetadataRecord::ConfigAltered { name, .. } => {
                let cfg = meta.catalog.log_config(name).expect("topic exists");
                for p in self.topic_partitions(name) {
                    p.store
                        .lock()
                        .expect("partition lock")
                        .set_config(cfg.clone());
                }
            }
            MetadataRecord::ProducerIdBlock { .. } => {}
        }
        Ok(())
    }

    fn open_partitions(
        &self,
        catalog: &Catalog,
        name: &str,
        from: i32,
        to: i32,
        now: u64,
    ) -> anyhow::Result<()> {
        let cfg = catalog.log_config(name).expect("topic exists");
        for p in from..to {
            let pdir = partition_dir(&self.settings.data_dir, name, p);
            let store = PartitionStore::open(&pdir, cfg.clone(), true, now)?;
            self.partitions
                .write()
                .expect("partitions lock")
                .insert((name.to_string(), p), new_partition(name, p, store));
        }
        sync_dir(&self.settings.data_dir);
        Ok(())
    }

    /// Creates a topic (validated by the catalog); `Ok(false)` if it already existed by the time
    /// the lock was taken and `ignore_existing` is set.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), CreateError> {
        let rec = self.with_catalog(|c| {
            c.plan_create(
                name,
                partitions,
                replication_factor,
                configs,
                *sys::uuid().as_bytes(),
            )
        })?;
        if validate_only {
            return Ok(());
        }
        self.commit(rec).map_err(CreateError::Storage)
    }

    /// Creates a topic with default settings if auto-creation is on; true if it exists afterwards.
    pub fn auto_create(&self, name: &str) -> bool {
        if self.with_catalog(|c| c.topic(name).is_some()) {
            return true;
        }
        if !self.settings.auto_create_topics {
            return false;
        }
        match self.create_topic(name, self.settings.num_partitions, 1, &[], false) {
            Ok(()) => {
                info!(topic = name, "auto-created topic");
                true
            }
            Err(CreateError::Catalog(CatalogError::TopicExists(_))) => true,
            Err(e) => {
                warn!(topic = name, error = %e, "auto-create failed");
                false
            }
        }
    }

    /// Hands out a fresh producer id (persisting a new block when needed).
    pub fn next_producer_id(&self) -> anyhow::Result<i64> {
        let mut meta = self.meta.lock().expect("meta lock");
        loop {
            match meta.catalog.next_producer_id() {
                Ok(id) => return Ok(id),
                Err(rec) => {
                    append_metadata(&mut meta.log, &rec)?;
                    meta.catalog.apply(&rec);
                }
            }
        }
    }

    /// One partition.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(&(topic.to_string(), index))
            .cloned()
    }

    /// All partitions of a topic, in index order.
    pub fn topic_partitions(&self, topic: &str) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .range((topic.to_string(), 0)..=(topic.to_string(), i32::MAX))
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .values()
            .cloned()
            .collect()
    }

    /// Runs retention and producer expiry on every partition.
    pub fn run_retention(&self) {
        let now = now_ms();
        for p in self.all_partitions() {
            let mut st = p.store.lock().expect("partition lock");
            if let Err(e) = st.retention(now) {
                error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
            st.expire_producers(now, self.settings.producer_id_expiration_ms);
        }
    }

    /// Interval flush policy: fsyncs partitions with unflushed messages past `flush.messages`,
    /// or all of them when `force` (the `flush.ms` tick).
    pub async fn run_interval_flush(&self, force: bool) {
        for p in self.all_partitions() {
            let (pending, end) = {
                let st = p.store.lock().expect("partition lock");
                (st.unflushed_messages(), st.log().log_end_offset())
            };
            let due = match self.settings.flush_messages {
                Some(n) => pending >= n,
                None => false,
            };
            if pending > 0 && (force || due) {
                if let Err(e) = p.wait_synced(end).await {
                    error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// Clean shutdown: fsync and close every partition, then leave the clean-shutdown marker.
    pub fn close(&self) -> anyhow::Result<()> {
        let mut ok = true;
        for p in self.all_partitions() {
            if let Err(e) = p.store.lock().expect("partition lock").close() {
                error!(topic = %p.topic, partition = p.index, error = %e, "closing partition failed");
                ok = false;
            }
        }
        if ok {
            let marker = self.settings.data_dir.join(CLEAN_MARKER);
            File::create(&marker)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", marker.display()))?;
            sync_dir(&self.settings.data_dir);
        }
        Ok(())
    }

    /// Spawns the background tasks: retention, interval flushes.
    pub fn spawn_background(self: &Arc<Self>) {
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(b.settings.retention_check_ms));
            loop {
                tick.tick().await;
                let b2 = b.clone();
                let _ = sys::blocking(move || b2.run_retention()).await;
            }
        });
        if let Some(ms) = self.settings.flush_ms {
            let b = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(ms.max(1)));
                loop {
                    tick.tick().await;
                    b.run_interval_flush(true).await;
                }
            });
        }
    }
}

/// Why CreateTopics failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Refused by the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Could not persist or open files.
    #[error("storage failure: {0:#}")]
    Storage(anyhow::Error),
}

fn new_partition(topic: &str, index: i32, store: PartitionStore) -> Arc<Partition> {
    let end = store.log().log_end_offset();
    Arc::new(Partition {
        topic: topic.to_string(),
        index,
        store: Mutex::new(store),
        synced: watch::channel(end).0,
        flushing: AtomicBool::new(false),
    })
}

/// Directory of a partition.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// Removes partition directories of deleted topics left by a crash mid-delete.
///
/// Only directories that look like skein's own (named `<topic>-<n>` or `...-delete`, holding
/// nothing but segment, index and snapshot files) are touched, so a data dir pointed at a
/// directory with other content never loses it.
fn remove_orphans(dir: &Path, parts: &BTreeMap<(String, i32), Arc<Partition>>) {
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
            && ["log", "index", "timeindex", "snapshot"]
                .iter()
                .any(|ext| n.ends_with(&format!(".{ext}")))
    })
}

fn load_or_create_properties(dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = dir.join(META_PROPERTIES);
    if let Ok(text) = fs::read_to_string(&path) {
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("cluster.id=") {
                return Ok(id.trim().to_string());
            }
        }
    }
    let id = base64_uuid(sys::uuid());
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir);
    Ok(id)
}

/// Kafka prints cluster ids as URL-safe base64 of the UUID, without padding.
fn base64_uuid(u: uuid::Uuid) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = u.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Frame: u32 length, u32 CRC-32C of the payload, JSON payload.
fn append_metadata(log: &mut File, rec: &MetadataRecord) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(rec)?;
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    let before = log.size().context("sizing metadata log")?;
    let written = log
        .write_all(&frame)
        .and_then(|()| log.sync_data())
        .context("writing metadata log");
    if written.is_err() {
        // Cut a partial frame off (a full disk, say), or the records appended after it would
        // be unreachable at the next start, which stops reading at the first bad frame.
        if let Err(e) = log.set_len(before).and_then(|()| log.sync_data()) {
            error!(error = %e, "could not cut a failed metadata write off __metadata.log");
        }
    }
    written
}

fn read_metadata_log(path: &Path) -> anyhow::Result<Vec<MetadataRecord>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into()?) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into()?);
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    if pos < bytes.len() {
        warn!(path = %path.display(), valid = pos, len = bytes.len(), "torn metadata log tail; truncating");
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(pos as u64)?;
        f.sync_all()?;
    }
    Ok(out)
}
