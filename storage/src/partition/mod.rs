//! One partition's files: carries out the storage work [`skein_core::log::PartitionLog`] decides.
//!
//! Layout of `<data-dir>/<topic>-<partition>/`: `<base>.log` (RecordBatch v2 bytes),
//! `<base>.index` and `<base>.timeindex` (sparse indexes, written when a segment is sealed and
//! at clean shutdown), `<offset>.snapshot` (idempotent-producer state as of that offset).
//!
//! Invariants: a sealed segment's log is fsynced before its indexes are written and before the
//! next segment takes writes; the log file of the active segment is exactly as long as the core
//! log says once a call returns (a failed write is truncated away and undone in the core).
//!
//! The store is generic over the file system ([`Fs`]): [`OsFs`] in the broker, the
//! simulator's crash-losing disk in skein-sim.
//!
//! With the `canary` feature (skein-sim only, never the broker), `open_with_canary` hands a
//! planted skein-core bug to the recovery and the log it builds, and to the cleaner's choice of
//! what is cleanable and each clean it starts; nothing else differs.

mod cache;
mod clean;
mod fetch;
mod files;
mod recover;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skein_core::batch;
use skein_core::config::LogConfig;
use skein_core::fetch::Grant;
use skein_core::log::{AppendError, Appended, PartitionLog, ReadPlan, Rolled, Segment};
use skein_core::recovery::{PartitionRecovery, SegmentFile, Step};
use tracing::{error, info};

use crate::fs::{Fs, FsFile, OpenMode, OsFs};
use cache::CacheWindow;
pub use clean::{CleanProgress, Cleaning};
pub use fetch::{read_range, FetchRange};
pub use files::{
    file_name, is_orphan_partition_dir, is_partition_file, sync_dir, PARTITION_METADATA,
};
use files::{
    list_bases, mtime_ms, read_epochs, read_log_start, remove_segment_files, sync_dir_on,
    write_epochs, write_indexes, write_log_start, write_synced, TIMESTAMPS_CHECKED,
};

/// A storage failure, reported to clients as KAFKA_STORAGE_ERROR.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The core refused the append.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The file system failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

/// Replicated batches accepted by the core and written together: contiguous in `records`
/// and in segment `segment_base` from `position`.
struct Run {
    segment_base: i64,
    position: u64,
    start: usize,
    len: usize,
    messages: u64,
}

/// The planted bug a store hands to its recovery and log (empty without the `canary` feature).
#[derive(Debug, Clone, Copy, Default)]
struct CanaryHook {
    #[cfg(feature = "canary")]
    canary: Option<skein_core::canary::Canary>,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A partition's log plus its open files on file system `F`.
pub struct PartitionStore<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    log: PartitionLog,
    files: BTreeMap<i64, Arc<F::File>>,
    unflushed_messages: u64,
    /// The leader-epoch history as last written to `leader-epoch-checkpoint`.
    saved_epochs: Vec<(i32, i64)>,
    /// Page-cache write-behind of the active segment (see [`PartitionStore::set_cache_window`]).
    cache: CacheWindow,
    /// The planted bug handed to every recovery of this store (see `open_with_canary`).
    canary: CanaryHook,
    /// Counts the changes that cut or replace segments (truncation, reset, retention, a clean's
    /// install): a clean started before one of them is abandoned instead of committed.
    cuts: u64,
    /// The cleaner's first dirty offset, as its checkpoint file says.
    first_dirty: Option<i64>,
}

impl PartitionStore<OsFs> {
    /// Opens (creating if absent) and recovers the partition in `dir` on the real file system
    /// (see [`PartitionStore::open_on`]).
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clean: bool,
        now_ms: u64,
    ) -> Result<Self, StorageError> {
        Self::open_on(OsFs, dir, config, clean, now_ms)
    }
}

impl<F: Fs> PartitionStore<F> {
    /// Opens (creating if absent) and recovers the partition in `dir` on file system `fs`.
    ///
    /// `clean` says the last shutdown completed; otherwise the active segment is scanned in full
    /// and any torn or corrupt tail is truncated. What to trust and where to cut is decided by
    /// skein-core's [`PartitionRecovery`]; this carries out its steps on the files.
    pub fn open_on(
        fs: F,
        dir: &Path,
        config: LogConfig,
        clean: bool,
        now_ms: u64,
    ) -> Result<Self, StorageError> {
        Self::open_hooked(fs, dir, config, clean, now_ms, CanaryHook::default())
    }

    /// [`PartitionStore::open_on`] with a planted skein-core bug handed to the recovery and to
    /// the log it builds (and to every later recovery of this store); skein-sim only.
    #[cfg(feature = "canary")]
    pub fn open_with_canary(
        fs: F,
        dir: &Path,
        config: LogConfig,
        clean: bool,
        now_ms: u64,
        canary: Option<skein_core::canary::Canary>,
    ) -> Result<Self, StorageError> {
        Self::open_hooked(fs, dir, config, clean, now_ms, CanaryHook { canary })
    }

    fn open_hooked(
        fs: F,
        dir: &Path,
        config: LogConfig,
        clean: bool,
        now_ms: u64,
        canary: CanaryHook,
    ) -> Result<Self, StorageError> {
        fs.create_dir_all(dir).map_err(io_err(dir))?;
        clean::recover_leftovers(&fs, dir, config.index_interval_bytes)?;
        let mut bases = list_bases(&fs, dir, "log").map_err(io_err(dir))?;
        if bases.is_empty() {
            let p = dir.join(file_name(0, "log"));
            fs.open(&p, OpenMode::Truncate).map_err(io_err(&p))?;
            sync_dir_on(&fs, dir);
            bases.push(0);
        }
        let mut files = Vec::with_capacity(bases.len());
        for base in &bases {
            let path = dir.join(file_name(*base, "log"));
            files.push(SegmentFile {
                base: *base,
                size: fs.metadata(&path).map_err(io_err(&path))?.len,
                modified_ms: mtime_ms(&fs, &path).unwrap_or(now_ms),
            });
        }
        // Indexes written before the leader checked batch timestamps may hold a producer's -1 or
        // wrong max: rebuild them all once from the records (the marker says it was done).
        let indexes_trusted = fs.exists(&dir.join(TIMESTAMPS_CHECKED));
        if !indexes_trusted && bases.len() > 1 {
            info!(dir = %dir.display(), segments = bases.len(), "rebuilding time indexes from the records once (written before batch timestamps were checked)");
        }
        let snapshots = list_bases(&fs, dir, "snapshot").map_err(io_err(dir))?;
        let mut rec =
            PartitionRecovery::new(files, snapshots, clean, indexes_trusted, &config, now_ms);
        #[cfg(feature = "canary")]
        rec.set_canary(canary.canary);
        loop {
            match rec.poll() {
                Step::Done => break,
                step => recover::carry_out(&fs, dir, step, &mut rec, indexes_trusted)?,
            }
        }
        let saved = read_epochs(&fs, dir);
        #[cfg_attr(not(feature = "canary"), allow(unused_mut))]
        let mut log = rec.finish(config, &saved);
        #[cfg(feature = "canary")]
        log.set_canary(canary.canary);
        let mut files = BTreeMap::new();
        for seg in log.segments() {
            let path = dir.join(file_name(seg.base_offset, "log"));
            let f = fs.open(&path, OpenMode::Write).map_err(io_err(&path))?;
            files.insert(seg.base_offset, Arc::new(f));
        }
        if !clean {
            info!(dir = %dir.display(), log_start = log.log_start_offset(), log_end = log.log_end_offset(), "recovered partition");
        }
        let first_dirty = clean::read_checkpoint(&fs, dir).map(|d| d.min(log.log_end_offset()));
        let saved_start = read_log_start(&fs, dir);
        let mut store = Self {
            fs,
            dir: dir.to_path_buf(),
            log,
            files,
            unflushed_messages: 0,
            saved_epochs: saved,
            cache: CacheWindow::default(),
            canary,
            cuts: 0,
            first_dirty,
        };
        if let Some(start) = saved_start {
            store.drop_below_start(start);
        }
        Ok(store)
    }

    /// Writes the leader-epoch history if it changed since the last write (it changes only
    /// when leadership does, so this is rare); durable before it returns.
    pub fn save_epochs(&mut self) -> Result<(), StorageError> {
        if self.log.epochs() == self.saved_epochs.as_slice() {
            return Ok(());
        }
        let epochs = self.log.epochs().to_vec();
        write_epochs(&self.fs, &self.dir, &epochs)?;
        self.saved_epochs = epochs;
        Ok(())
    }

    /// Appends one batch copied from the leader, keeping its offsets (a follower's write);
    /// the fetcher uses [`PartitionStore::append_replicated_all`], tests pin the core's checks.
    #[cfg(test)]
    pub fn append_replicated(&mut self, now_ms: u64, records: &[u8]) -> Result<(), StorageError> {
        let appended = self.log.append_replicated(now_ms, records)?;
        self.write_appended(&appended, records, &[])?;
        self.save_epochs()
    }

    /// Appends the whole batches in `records` copied from the leader, skipping those below the
    /// log end (an answer repeated), and writes each run of them that lands contiguously in one
    /// segment with one write. Returns whether anything was appended. On an error the batches
    /// before the failing one stay appended, as with one [`PartitionStore::append_replicated`]
    /// call per batch.
    pub fn append_replicated_all(
        &mut self,
        now_ms: u64,
        records: &[u8],
    ) -> Result<bool, StorageError> {
        let mut run: Option<Run> = None;
        let mut appended_any = false;
        let mut pos = 0usize;
        while pos < records.len() {
            let Ok(size) = batch::peek_size(&records[pos..]) else {
                break;
            };
            if pos + size > records.len() {
                break;
            }
            let one = &records[pos..pos + size];
            let base = batch::parse_header(one).map_or(-1, |h| h.base_offset);
            if base < self.log.log_end_offset() {
                pos += size;
                continue;
            }
            let a = match self.log.append_replicated(now_ms, one) {
                Ok(a) => a,
                Err(e) => {
                    self.write_run(run.take(), records, now_ms)?;
                    return Err(e.into());
                }
            };
            appended_any = true;
            if let Some(r) = &a.roll {
                // The run before the roll belongs to the sealed segment: write it first (a
                // failure there cuts the log back from the files, this batch included).
                self.write_run(run.take(), records, now_ms)?;
                if let Err(e) = self.carry_out_roll(r) {
                    self.log.abort_append(&a);
                    return Err(e);
                }
            }
            if let Some(w) = a.write {
                let extends = run.as_ref().is_some_and(|r| {
                    r.segment_base == w.segment_base
                        && r.position + r.len as u64 == w.position
                        && r.start + r.len == pos
                });
                if extends {
                    let r = run.as_mut().expect("checked");
                    r.len += size;
                    r.messages += (a.last_offset - a.base_offset + 1) as u64;
                } else {
                    self.write_run(run.take(), records, now_ms)?;
                    run = Some(Run {
                        segment_base: w.segment_base,
                        position: w.position,
                        start: pos,
                        len: size,
                        messages: (a.last_offset - a.base_offset + 1) as u64,
                    });
                }
            }
            pos += size;
        }
        self.write_run(run, records, now_ms)?;
        Ok(appended_any)
    }

    /// Writes a run of replicated batches the core has accepted. If the write fails, the file
    /// is cut back to where the run started, the log recovered from the files, and the error
    /// given.
    fn write_run(
        &mut self,
        run: Option<Run>,
        records: &[u8],
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let Some(r) = run else { return Ok(()) };
        let bytes = &records[r.start..r.start + r.len];
        let written = self.active_file(r.segment_base).and_then(|file| {
            file.write_all_at(bytes, r.position).map_err(|source| {
                let _ = file.set_len(r.position);
                StorageError::Io {
                    path: self.dir.join(file_name(r.segment_base, "log")),
                    source,
                }
            })?;
            Ok(file)
        });
        match written {
            Ok(file) => {
                self.unflushed_messages += r.messages;
                self.write_behind(&file, r.segment_base, r.position + r.len as u64);
                Ok(())
            }
            Err(e) => {
                // The file was cut back to where the run started: recover the log from the
                // files, as after a crash (the core holds the run, and its epochs, in memory).
                if let Err(again) = self.reopen(now_ms) {
                    error!(error = %again, "recovering after a failed replicated write failed; \
                        the partition is recovered from its files at the next start");
                }
                Err(e)
            }
        }
    }

    /// Writes an accepted append's bytes, `head` then `tail`, where the log placed them.
    fn write_appended(
        &mut self,
        appended: &Appended,
        head: &[u8],
        tail: &[u8],
    ) -> Result<(), StorageError> {
        if let Some(r) = &appended.roll {
            if let Err(e) = self.carry_out_roll(r) {
                self.log.abort_append(appended);
                return Err(e);
            }
        }
        if let Some(w) = appended.write {
            let file = match self.active_file(w.segment_base) {
                Ok(f) => f,
                Err(e) => {
                    self.log.abort_append(appended);
                    return Err(e);
                }
            };
            if let Err(source) = file.write_all_at2(head, tail, w.position) {
                let path = self.dir.join(file_name(w.segment_base, "log"));
                let _ = file.set_len(w.position);
                self.log.abort_append(appended);
                return Err(StorageError::Io { path, source });
            }
            self.unflushed_messages += (appended.last_offset - appended.base_offset + 1) as u64;
            self.write_behind(&file, w.segment_base, w.position + w.len as u64);
        }
        Ok(())
    }

    /// Keeps the page cache to `keep` bytes behind the log end (log data is read back from
    /// disk by fetches further behind), or leaves it to the kernel when `keep` is 0.
    pub fn set_cache_window(&mut self, keep: u64) {
        self.cache = CacheWindow::new(keep);
    }

    /// Starts write-back of each full chunk behind the end of the active segment, and drops
    /// from the cache what lies more than the window behind it.
    fn write_behind(&mut self, file: &F::File, segment: i64, end: u64) {
        let (writeback, drop) = self.cache.advance(segment, end);
        if let Some((at, len)) = writeback {
            file.start_writeback(at, len);
        }
        if let Some((at, len)) = drop {
            file.drop_cached(at, len);
        }
    }

    /// Cuts the log back to end at `offset` (a follower whose log diverged from its leader's):
    /// later segments go, the one holding `offset` is cut at that batch boundary, and the
    /// partition is recovered again from disk, producer state and epochs included.
    pub fn truncate_to(&mut self, offset: i64, now_ms: u64) -> Result<(), StorageError> {
        let offset = offset.max(self.log.log_start_offset());
        if offset >= self.log.log_end_offset() {
            return Ok(());
        }
        let segs: Vec<Segment> = self.log.segments().cloned().collect();
        let keep = segs
            .iter()
            .rposition(|s| s.base_offset <= offset)
            .unwrap_or(0);
        for s in &segs[keep + 1..] {
            remove_segment_files(&self.fs, &self.dir, s.base_offset);
        }
        let seg = &segs[keep];
        let path = self.dir.join(file_name(seg.base_offset, "log"));
        let f = self
            .fs
            .open(&path, OpenMode::Write)
            .map_err(io_err(&path))?;
        // Walk batch headers from the index point at or before `offset` to its batch.
        let mut pos = seg.position_for_offset(offset);
        let mut head = [0u8; batch::HEADER_LEN];
        while pos + batch::HEADER_LEN as u64 <= seg.size {
            f.read_exact_at(&mut head, pos).map_err(io_err(&path))?;
            let Ok(h) = batch::parse_header(&head) else {
                break;
            };
            if h.last_offset() >= offset {
                break;
            }
            pos += h.size as u64;
        }
        f.set_len(pos.min(seg.size)).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        for ext in ["index", "timeindex"] {
            let _ = self
                .fs
                .remove_file(&self.dir.join(file_name(seg.base_offset, ext)));
        }
        if let Ok(snaps) = list_bases(&self.fs, &self.dir, "snapshot") {
            for off in snaps.into_iter().filter(|o| *o > offset) {
                let _ = self
                    .fs
                    .remove_file(&self.dir.join(file_name(off, "snapshot")));
            }
        }
        let epochs: Vec<(i32, i64)> = self
            .log
            .epochs()
            .iter()
            .copied()
            .filter(|(_, start)| *start < offset)
            .collect();
        write_epochs(&self.fs, &self.dir, &epochs)?;
        sync_dir_on(&self.fs, &self.dir);
        self.reopen(now_ms)
    }

    /// Recovers the partition again from its files, keeping its config and page-cache window.
    fn reopen(&mut self, now_ms: u64) -> Result<(), StorageError> {
        let config = self.log.config().clone();
        let keep = self.cache.keep;
        let cuts = self.cuts;
        self.files.clear();
        let (fs, dir) = (self.fs.clone(), self.dir.clone());
        *self = PartitionStore::open_hooked(fs, &dir, config, false, now_ms, self.canary)?;
        self.set_cache_window(keep);
        self.cuts = cuts;
        self.note_cut(self.log.log_end_offset());
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower that fell behind the leader's
    /// log start).
    pub fn reset_to(&mut self, offset: i64, now_ms: u64) -> Result<(), StorageError> {
        for s in self.log.segments().cloned().collect::<Vec<_>>() {
            remove_segment_files(&self.fs, &self.dir, s.base_offset);
        }
        if let Ok(snaps) = list_bases(&self.fs, &self.dir, "snapshot") {
            for off in snaps {
                let _ = self
                    .fs
                    .remove_file(&self.dir.join(file_name(off, "snapshot")));
            }
        }
        let p = self.dir.join(file_name(offset, "log"));
        self.fs.open(&p, OpenMode::Truncate).map_err(io_err(&p))?;
        write_epochs(&self.fs, &self.dir, &[])?;
        sync_dir_on(&self.fs, &self.dir);
        self.reopen(now_ms)
    }

    /// The core log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Moves the log to a newer leader epoch (see [`PartitionLog::set_leader_epoch`]) and
    /// saves the epoch history.
    pub fn set_leader_epoch(&mut self, epoch: i32) -> Result<(), StorageError> {
        self.log.set_leader_epoch(epoch);
        self.save_epochs()
    }

    /// Replaces the log config (after AlterConfigs).
    pub fn set_config(&mut self, config: LogConfig) {
        self.log.set_config(config);
    }

    /// Appends one produced batch, written as its stamped header followed by its records (so
    /// the batch itself is never copied or changed, unless the topic's `compression.type`
    /// recompresses it); returns where it went.
    pub fn append(&mut self, now_ms: u64, records: &[u8]) -> Result<Appended, StorageError> {
        let recoded = skein_core::recompress::for_topic(self.log.config(), records)?;
        let records = recoded.as_deref().unwrap_or(records);
        let (appended, header) = self.log.append_split(now_ms, records)?;
        // A failed roll stands in the core (its new segment is empty); the batch was not
        // written, so it is undone and reported. The next append makes a missing file.
        if appended.write.is_some() {
            let tail = &records[skein_core::batch::HEADER_LEN..];
            self.write_appended(&appended, &header, tail)?;
        }
        Ok(appended)
    }

    /// The file of the active segment, created if an earlier roll failed before making it.
    fn active_file(&mut self, base: i64) -> Result<Arc<F::File>, StorageError> {
        if let Some(f) = self.files.get(&base) {
            return Ok(f.clone());
        }
        let path = self.dir.join(file_name(base, "log"));
        let f = self
            .fs
            .open(&path, OpenMode::Truncate)
            .map_err(io_err(&path))?;
        sync_dir_on(&self.fs, &self.dir);
        let f = Arc::new(f);
        self.files.insert(base, f.clone());
        Ok(f)
    }

    fn carry_out_roll(&mut self, r: &Rolled) -> Result<(), StorageError> {
        let sealed = self
            .files
            .get(&r.sealed_base)
            .expect("sealed segment file")
            .clone();
        let sealed_path = self.dir.join(file_name(r.sealed_base, "log"));
        sealed.sync_data().map_err(io_err(&sealed_path))?;
        // Retention may roll an expired active segment and delete it in the same pass; then
        // there are no indexes to write.
        if let Some(seg) = self.log.segment(r.sealed_base) {
            write_indexes(&self.fs, &self.dir, seg)?;
        }
        self.active_file(r.new_base)?;
        let snap = self.dir.join(file_name(r.new_base, "snapshot"));
        self.fs
            .write(&snap, &r.producer_snapshot)
            .map_err(io_err(&snap))?;
        sync_dir_on(&self.fs, &self.dir);
        self.prune_snapshots();
        Ok(())
    }

    fn prune_snapshots(&self) {
        // Keep the snapshots of live segments' bases and the newest ones; older are useless.
        let start = self.log.log_start_offset();
        if let Ok(snaps) = list_bases(&self.fs, &self.dir, "snapshot") {
            let mut snaps = snaps;
            snaps.sort_unstable();
            let keep_from = snaps.len().saturating_sub(3);
            for (i, off) in snaps.iter().enumerate() {
                if *off < start || i < keep_from {
                    let _ = self
                        .fs
                        .remove_file(&self.dir.join(file_name(*off, "snapshot")));
                }
            }
        }
    }

    /// The active segment's file and the log end offset it covers, for a group-commit fsync.
    pub fn sync_target(&self) -> (Arc<F::File>, i64) {
        let (_, f) = self.files.iter().next_back().expect("active file");
        (f.clone(), self.log.log_end_offset())
    }

    /// Messages appended since the last [`PartitionStore::note_flushed`].
    pub fn unflushed_messages(&self) -> u64 {
        self.unflushed_messages
    }

    /// Records that a flush completed.
    pub fn note_flushed(&mut self) {
        self.unflushed_messages = 0;
    }

    /// Plans a fetch and returns the file and range to read (read outside the partition lock).
    pub fn plan_fetch(
        &self,
        offset: i64,
        grant: Grant,
    ) -> Result<Option<FetchRange<F>>, skein_core::log::OffsetOutOfRange> {
        match self.log.plan_read(offset, grant.max_bytes)? {
            ReadPlan::Empty => Ok(None),
            ReadPlan::Range {
                segment_base,
                position,
                len,
            } => Ok(Some(FetchRange {
                file: self.files.get(&segment_base).expect("segment file").clone(),
                position,
                len,
                segment_size: self.log.segment(segment_base).expect("segment").size,
                offset,
                grant,
            })),
        }
    }

    /// The open file of a segment.
    pub fn segment_file(&self, base: i64) -> Option<Arc<F::File>> {
        self.files.get(&base).cloned()
    }

    /// Moves the log start up to `offset` (DeleteRecords on a leader, the leader's log start on
    /// a follower): the new start is made durable in `log-start-offset-checkpoint` first, then
    /// the segments wholly below it are deleted.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<(), StorageError> {
        let offset = offset.min(self.log.log_end_offset());
        if offset <= self.log.log_start_offset() {
            return Ok(());
        }
        write_log_start(&self.fs, &self.dir, offset)?;
        self.drop_below_start(offset);
        Ok(())
    }

    /// Moves the core log's start and deletes the files of the segments it drops.
    fn drop_below_start(&mut self, offset: i64) {
        let gone = self.log.advance_log_start(offset);
        for base in &gone {
            self.files.remove(base);
            remove_segment_files(&self.fs, &self.dir, *base);
        }
        if !gone.is_empty() {
            self.cuts += 1;
            sync_dir_on(&self.fs, &self.dir);
            self.prune_snapshots();
        }
    }

    /// Applies retention; deletes expired segments' files.
    pub fn retention(&mut self, now_ms: u64) -> Result<usize, StorageError> {
        let r = self.log.retention(now_ms);
        if let Some(roll) = &r.roll {
            self.carry_out_roll(roll)?;
        }
        for base in &r.deleted {
            self.files.remove(base);
            remove_segment_files(&self.fs, &self.dir, *base);
        }
        if !r.deleted.is_empty() {
            self.cuts += 1;
            info!(dir = %self.dir.display(), segments = r.deleted.len(), log_start = self.log.log_start_offset(), "retention deleted segments");
            sync_dir_on(&self.fs, &self.dir);
            self.prune_snapshots();
        }
        Ok(r.deleted.len())
    }

    /// Clean shutdown: fsync, write the active segment's indexes and a producer snapshot at the end.
    pub fn close(&mut self) -> Result<(), StorageError> {
        let (f, _) = self.sync_target();
        let active = self.log.segments().last().expect("active").clone();
        let path = self.dir.join(file_name(active.base_offset, "log"));
        f.sync_all().map_err(io_err(&path))?;
        write_indexes(&self.fs, &self.dir, &active)?;
        let snap = self
            .dir
            .join(file_name(self.log.log_end_offset(), "snapshot"));
        write_synced(&self.fs, &snap, &self.log.producer_snapshot())?;
        sync_dir_on(&self.fs, &self.dir);
        self.prune_snapshots();
        Ok(())
    }

    /// Forgets idle producers.
    pub fn expire_producers(&mut self, now_ms: u64, expiration_ms: u64) {
        self.log.expire_producers(now_ms, expiration_ms);
    }
}
