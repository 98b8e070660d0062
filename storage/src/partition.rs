//! One partition's files: carries out the storage work [`skein_core::log::PartitionLog`] decides.
//!
//! Layout of `<data-dir>/<topic>-<partition>/`: `<base>.log` (RecordBatch v2 bytes),
//! `<base>.index` and `<base>.timeindex` (sparse indexes, written when a segment is sealed and
//! at clean shutdown), `<offset>.snapshot` (idempotent-producer state as of that offset).
//!
//! Invariants: a sealed segment's log is fsynced before its indexes are written and before the
//! next segment takes writes; the log file of the active segment is exactly as long as the core
//! log says once a call returns (a failed write is truncated away and undone in the core).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skein_core::batch::{self, BatchHeader};
use skein_core::config::LogConfig;
use skein_core::fetch::Grant;
use skein_core::log::{
    trim_read, AppendError, Appended, PartitionLog, ReadPlan, Rolled, Segment, SegmentScan,
};
use skein_core::recovery::{PartitionRecovery, Removal, SegmentFile, Step};
use tracing::{error, info, warn};

use skein_sys::fs::{self, File, OpenOptions};

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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Name of a segment-related file: 20-digit zero-padded base offset plus extension, as Kafka does.
pub fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// A partition's log plus its open files.
pub struct PartitionStore {
    dir: PathBuf,
    log: PartitionLog,
    files: BTreeMap<i64, Arc<File>>,
    unflushed_messages: u64,
    /// The leader-epoch history as last written to `leader-epoch-checkpoint`.
    saved_epochs: Vec<(i32, i64)>,
    /// Page-cache write-behind of the active segment (see [`PartitionStore::set_cache_window`]).
    cache: CacheWindow,
}

/// Bytes of the active segment handed to write-behind at a time.
const WRITE_BEHIND_CHUNK: u64 = 1 << 20;

/// How much of the active segment the page cache keeps: everything before `keep` bytes behind
/// the end is written back early and dropped from the cache. Fresh page-cache pages are
/// expensive on some machines (the benchmark machine's writes fall from ~1.7 GB/s to ~0.4 GB/s
/// once the cache grows past about 2 GB); recycling a bounded set of pages avoids that.
#[derive(Debug, Default, Clone, Copy)]
struct CacheWindow {
    /// Bytes behind the segment end kept cached; 0 leaves the page cache to the kernel.
    keep: u64,
    /// The segment the positions below are in.
    segment: i64,
    /// Write-back started below this position.
    written_back: u64,
    /// Dropped from the cache below this position.
    dropped: u64,
}

/// A byte range of a file: (position, length).
type Range = (u64, u64);

impl CacheWindow {
    /// The active segment `segment` now ends at `end`: the ranges (position, length) to start
    /// writing back and to drop from the cache, each at most once and in order.
    fn advance(&mut self, segment: i64, end: u64) -> (Option<Range>, Option<Range>) {
        if self.keep == 0 {
            return (None, None);
        }
        if self.segment != segment || end < self.written_back {
            // A new active segment (the sealed one was fsynced whole at the roll), or this one
            // was cut back: start over.
            *self = CacheWindow {
                keep: self.keep,
                segment,
                ..CacheWindow::default()
            };
        }
        let mut writeback = None;
        if end >= self.written_back + WRITE_BEHIND_CHUNK {
            writeback = Some((self.written_back, end - self.written_back));
            self.written_back = end;
        }
        // Write-back of this range started at least `keep` bytes ago, so waiting for it is
        // normally instant.
        let mut drop = None;
        let drop_to = self.written_back.saturating_sub(self.keep);
        if drop_to >= self.dropped + WRITE_BEHIND_CHUNK {
            drop = Some((self.dropped, drop_to - self.dropped));
            self.dropped = drop_to;
        }
        (writeback, drop)
    }
}

/// The file holding a partition's leader-epoch history.
const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Marks a partition directory whose indexes were built from its records' own timestamps (see `open`).
const TIMESTAMPS_CHECKED: &str = "timestamps-checked";

/// Reads a leader-epoch checkpoint (Kafka's format: version, count, then `epoch offset` lines).
fn read_epochs(dir: &Path) -> Vec<(i32, i64)> {
    let Ok(text) = fs::read_to_string(dir.join(EPOCH_CHECKPOINT)) else {
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

impl PartitionStore {
    /// Opens (creating if absent) and recovers the partition in `dir`.
    ///
    /// `clean` says the last shutdown completed; otherwise the active segment is scanned in full
    /// and any torn or corrupt tail is truncated. What to trust and where to cut is decided by
    /// skein-core's [`PartitionRecovery`]; this carries out its steps on the files.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clean: bool,
        now_ms: u64,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut bases = list_bases(dir, "log").map_err(io_err(dir))?;
        if bases.is_empty() {
            let p = dir.join(file_name(0, "log"));
            File::create(&p).map_err(io_err(&p))?;
            sync_dir(dir);
            bases.push(0);
        }
        let mut files = Vec::with_capacity(bases.len());
        for base in &bases {
            let path = dir.join(file_name(*base, "log"));
            files.push(SegmentFile {
                base: *base,
                size: fs::metadata(&path).map_err(io_err(&path))?.len,
                modified_ms: mtime_ms(&path).unwrap_or(now_ms),
            });
        }
        // Indexes written before the leader checked batch timestamps may hold a producer's -1 or
        // wrong max: rebuild them all once from the records (the marker says it was done).
        let indexes_trusted = fs::metadata(dir.join(TIMESTAMPS_CHECKED)).is_ok();
        if !indexes_trusted && bases.len() > 1 {
            info!(dir = %dir.display(), segments = bases.len(), "rebuilding time indexes from the records once (written before batch timestamps were checked)");
        }
        let snapshots = list_bases(dir, "snapshot").map_err(io_err(dir))?;
        let mut rec =
            PartitionRecovery::new(files, snapshots, clean, indexes_trusted, &config, now_ms);
        loop {
            match rec.poll() {
                Step::Done => break,
                step => carry_out(dir, step, &mut rec, indexes_trusted)?,
            }
        }
        let saved = read_epochs(dir);
        let log = rec.finish(config, &saved);
        let mut files = BTreeMap::new();
        for seg in log.segments() {
            let path = dir.join(file_name(seg.base_offset, "log"));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            files.insert(seg.base_offset, Arc::new(f));
        }
        if !clean {
            info!(dir = %dir.display(), log_start = log.log_start_offset(), log_end = log.log_end_offset(), "recovered partition");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            log,
            files,
            unflushed_messages: 0,
            saved_epochs: saved,
            cache: CacheWindow::default(),
        })
    }

    /// Writes the leader-epoch history if it changed since the last write (it changes only
    /// when leadership does, so this is rare); durable before it returns.
    pub fn save_epochs(&mut self) -> Result<(), StorageError> {
        if self.log.epochs() == self.saved_epochs.as_slice() {
            return Ok(());
        }
        let epochs = self.log.epochs().to_vec();
        write_epochs(&self.dir, &epochs)?;
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
        self.cache = CacheWindow {
            keep,
            ..CacheWindow::default()
        };
    }

    /// Starts write-back of each full chunk behind the end of the active segment, and drops
    /// from the cache what lies more than the window behind it.
    fn write_behind(&mut self, file: &File, segment: i64, end: u64) {
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
            remove_segment_files(&self.dir, s.base_offset);
        }
        let seg = &segs[keep];
        let path = self.dir.join(file_name(seg.base_offset, "log"));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
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
            let _ = fs::remove_file(self.dir.join(file_name(seg.base_offset, ext)));
        }
        if let Ok(snaps) = list_bases(&self.dir, "snapshot") {
            for off in snaps.into_iter().filter(|o| *o > offset) {
                let _ = fs::remove_file(self.dir.join(file_name(off, "snapshot")));
            }
        }
        let epochs: Vec<(i32, i64)> = self
            .log
            .epochs()
            .iter()
            .copied()
            .filter(|(_, start)| *start < offset)
            .collect();
        write_epochs(&self.dir, &epochs)?;
        sync_dir(&self.dir);
        self.reopen(now_ms)
    }

    /// Recovers the partition again from its files, keeping its config and page-cache window.
    fn reopen(&mut self, now_ms: u64) -> Result<(), StorageError> {
        let config = self.log.config().clone();
        let keep = self.cache.keep;
        self.files.clear();
        *self = PartitionStore::open(&self.dir.clone(), config, false, now_ms)?;
        self.set_cache_window(keep);
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower that fell behind the leader's
    /// log start).
    pub fn reset_to(&mut self, offset: i64, now_ms: u64) -> Result<(), StorageError> {
        for s in self.log.segments().cloned().collect::<Vec<_>>() {
            remove_segment_files(&self.dir, s.base_offset);
        }
        if let Ok(snaps) = list_bases(&self.dir, "snapshot") {
            for off in snaps {
                let _ = fs::remove_file(self.dir.join(file_name(off, "snapshot")));
            }
        }
        let p = self.dir.join(file_name(offset, "log"));
        File::create(&p).map_err(io_err(&p))?;
        write_epochs(&self.dir, &[])?;
        sync_dir(&self.dir);
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

    /// Appends one produced batch, written as its stamped header followed by its records, so
    /// the batch itself is never copied or changed; returns where it went.
    pub fn append(&mut self, now_ms: u64, records: &[u8]) -> Result<Appended, StorageError> {
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
    fn active_file(&mut self, base: i64) -> Result<Arc<File>, StorageError> {
        if let Some(f) = self.files.get(&base) {
            return Ok(f.clone());
        }
        let path = self.dir.join(file_name(base, "log"));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir);
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
            write_indexes(&self.dir, seg)?;
        }
        self.active_file(r.new_base)?;
        let snap = self.dir.join(file_name(r.new_base, "snapshot"));
        fs::write(&snap, &r.producer_snapshot).map_err(io_err(&snap))?;
        sync_dir(&self.dir);
        self.prune_snapshots();
        Ok(())
    }

    fn prune_snapshots(&self) {
        // Keep the snapshots of live segments' bases and the newest ones; older are useless.
        let start = self.log.log_start_offset();
        if let Ok(snaps) = list_bases(&self.dir, "snapshot") {
            let mut snaps = snaps;
            snaps.sort_unstable();
            let keep_from = snaps.len().saturating_sub(3);
            for (i, off) in snaps.iter().enumerate() {
                if *off < start || i < keep_from {
                    let _ = fs::remove_file(self.dir.join(file_name(*off, "snapshot")));
                }
            }
        }
    }

    /// The active segment's file and the log end offset it covers, for a group-commit fsync.
    pub fn sync_target(&self) -> (Arc<File>, i64) {
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
    ) -> Result<Option<FetchRange>, skein_core::log::OffsetOutOfRange> {
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
    pub fn segment_file(&self, base: i64) -> Option<Arc<File>> {
        self.files.get(&base).cloned()
    }

    /// Applies retention; deletes expired segments' files.
    pub fn retention(&mut self, now_ms: u64) -> Result<usize, StorageError> {
        let r = self.log.retention(now_ms);
        if let Some(roll) = &r.roll {
            self.carry_out_roll(roll)?;
        }
        for base in &r.deleted {
            self.files.remove(base);
            remove_segment_files(&self.dir, *base);
        }
        if !r.deleted.is_empty() {
            info!(dir = %self.dir.display(), segments = r.deleted.len(), log_start = self.log.log_start_offset(), "retention deleted segments");
            sync_dir(&self.dir);
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
        write_indexes(&self.dir, &active)?;
        let snap = self
            .dir
            .join(file_name(self.log.log_end_offset(), "snapshot"));
        fs::write(&snap, self.log.producer_snapshot()).map_err(io_err(&snap))?;
        File::open(&snap)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&snap))?;
        sync_dir(&self.dir);
        self.prune_snapshots();
        Ok(())
    }

    /// Forgets idle producers.
    pub fn expire_producers(&mut self, now_ms: u64, expiration_ms: u64) {
        self.log.expire_producers(now_ms, expiration_ms);
    }
}

/// A planned fetch read: whole batches from `offset`, taken from `len` bytes at `position`.
pub struct FetchRange {
    /// The segment file.
    pub file: Arc<File>,
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

/// Reads a planned range and trims it to whole batches from the fetch offset (re-reading once if
/// the first batch is longer than the plan guessed).
pub fn read_range(r: &FetchRange) -> io::Result<bytes::Bytes> {
    let (file, position, seg_size, offset) = (&r.file, r.position, r.segment_size, r.offset);
    let (max_bytes, whole_first) = (r.grant.max_bytes, r.grant.whole_first);
    let mut buf = file.read_vec_at(r.len as usize, position)?;
    let (s, e) = match trim_read(&buf, offset, max_bytes, whole_first) {
        Ok(r) => r,
        Err(total) => {
            let total = (total as u64).min(seg_size - position);
            buf = file.read_vec_at(total as usize, position)?;
            trim_read(&buf, offset, max_bytes, whole_first).unwrap_or((0, 0))
        }
    };
    let mut bytes = bytes::Bytes::from(buf);
    bytes.truncate(e);
    Ok(bytes.slice(s..))
}

/// Carries out one step of a partition's recovery on its files (see [`PartitionStore::open`]).
fn carry_out(
    dir: &Path,
    step: Step,
    rec: &mut PartitionRecovery,
    indexes_trusted: bool,
) -> Result<(), StorageError> {
    match step {
        Step::ReadIndexes { base } => {
            let idx = fs::read(dir.join(file_name(base, "index"))).ok();
            let tidx = fs::read(dir.join(file_name(base, "timeindex"))).ok();
            let answer = rec.on_indexes(idx.zip(tidx));
            carry_out(dir, answer, rec, indexes_trusted)?;
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
            let (seg, complete) = scan_file(&path, scan, size)?;
            rec.on_scanned(seg, complete);
        }
        Step::WriteIndexes(seg) => write_indexes(dir, &seg)?,
        Step::Truncate { base, len, size } => {
            let path = dir.join(file_name(base, "log"));
            warn!(path = %path.display(), from = size, to = len, "torn or corrupt log tail found by CRC; truncating");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(len).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        Step::RemoveSegment { base, why } => {
            if why == Removal::BeforeGap {
                warn!(dir = %dir.display(), base, "segment before a gap left by an interrupted retention; dropping it");
            }
            remove_segment_files(dir, base);
        }
        Step::SyncDir => {
            if !indexes_trusted {
                // Not synced on its own: if the marker is lost, the next start rebuilds again.
                let p = dir.join(TIMESTAMPS_CHECKED);
                fs::write(&p, b"").map_err(io_err(&p))?;
            }
            sync_dir(dir);
        }
        Step::ReadSnapshot { offset } => {
            rec.on_snapshot(fs::read(dir.join(file_name(offset, "snapshot"))).ok());
        }
        Step::RemoveSnapshot { offset } => {
            let _ = fs::remove_file(dir.join(file_name(offset, "snapshot")));
        }
        Step::ReadHeaders { base, size } => {
            let headers = scan_headers(&dir.join(file_name(base, "log")), size)?;
            rec.on_headers(&headers);
        }
        Step::Done => {}
    }
    Ok(())
}

/// Scans a segment file from the scan's position to `size`; returns the segment and whether
/// the whole file was valid.
fn scan_file(
    path: &Path,
    mut scan: SegmentScan,
    size: u64,
) -> Result<(Segment, bool), StorageError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut pos = scan.position();
    let mut r = BufReader::with_capacity(1 << 20, ReadAt { file: &f, pos });
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
fn scan_headers(path: &Path, size: u64) -> Result<Vec<BatchHeader>, StorageError> {
    let f = File::open(path).map_err(io_err(path))?;
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

struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes the leader-epoch checkpoint durably (temporary file, fsync, rename, directory sync).
fn write_epochs(dir: &Path, epochs: &[(i32, i64)]) -> Result<(), StorageError> {
    let mut text = format!("0\n{}\n", epochs.len());
    for (e, o) in epochs {
        text.push_str(&format!("{e} {o}\n"));
    }
    let tmp = dir.join(format!("{EPOCH_CHECKPOINT}.tmp"));
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&tmp))?;
    let path = dir.join(EPOCH_CHECKPOINT);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir);
    Ok(())
}

fn write_indexes(dir: &Path, seg: &Segment) -> Result<(), StorageError> {
    for (ext, bytes) in [
        ("index", seg.encode_offset_index()),
        ("timeindex", seg.encode_time_index()),
    ] {
        let p = dir.join(file_name(seg.base_offset, ext));
        fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    Ok(())
}

fn remove_segment_files(dir: &Path, base: i64) {
    for ext in ["log", "index", "timeindex", "snapshot"] {
        let _ = fs::remove_file(dir.join(file_name(base, ext)));
    }
}

/// Base offsets of the files in `dir` with extension `ext`, sorted.
fn list_bases(dir: &Path, ext: &str) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e.name;
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(&format!(".{ext}")) {
            if let Ok(b) = stem.parse::<i64>() {
                out.push(b);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn mtime_ms(path: &Path) -> Option<u64> {
    let m = fs::metadata(path).ok()?.modified?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// fsyncs a directory so created, renamed and deleted entries survive a crash.
pub fn sync_dir(dir: &Path) {
    if let Err(e) = fs::sync_dir(dir) {
        warn!(dir = %dir.display(), error = %e, "directory sync failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_core::batch::build;

    fn cfg() -> LogConfig {
        LogConfig {
            segment_bytes: 2000,
            index_interval_bytes: 200,
            ..LogConfig::default()
        }
    }

    /// Appends `n` batches; gives each one's base offset and bytes as stored.
    fn fill(store: &mut PartitionStore, n: usize) -> Vec<(i64, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let b = build::simple(1 + i % 4, i as i64 * 10, None);
                let a = store.append(i as u64, &b).unwrap();
                (a.base_offset, stored(store, a.base_offset))
            })
            .collect()
    }

    /// The batch at `base` as the log file holds it.
    fn stored(store: &PartitionStore, base: i64) -> Vec<u8> {
        let range = store.plan_fetch(base, Grant::single(1)).unwrap().unwrap();
        let bytes = read_range(&range).unwrap();
        let h = batch::verify_stored(&bytes).unwrap();
        assert_eq!(h.base_offset, base);
        bytes[..h.size].to_vec()
    }

    /// A produced batch is stored with its offsets and epoch assigned, the rest unchanged.
    #[test]
    fn produced_batch_is_stored_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PartitionStore::open(&dir.path().join("t"), cfg(), true, 0).unwrap();
        s.set_leader_epoch(4).unwrap();
        fill(&mut s, 3);
        let b = build::simple(3, 7, None);
        let a = s.append(0, &b).unwrap();
        let got = stored(&s, a.base_offset);
        let mut expect = b.clone();
        batch::assign_offset(&mut expect, a.base_offset, 4);
        assert_eq!(got, expect);
    }

    fn read_all(store: &PartitionStore) -> Vec<BatchHeader> {
        let mut out = Vec::new();
        let mut off = store.log().log_start_offset();
        while let Some(range) = store.plan_fetch(off, Grant::single(100)).unwrap() {
            let bytes = read_range(&range).unwrap();
            let h = batch::verify_stored(&bytes).unwrap();
            off = h.next_offset();
            out.push(h);
        }
        out
    }

    #[test]
    fn reopen_clean_and_unclean() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
        let written = fill(&mut s, 100);
        let end = s.log().log_end_offset();
        assert!(s.log().segments().count() > 3);
        s.close().unwrap();
        drop(s);
        let s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
        assert_eq!(s.log().log_end_offset(), end);
        assert_eq!(read_all(&s).len(), written.len());
        drop(s);
        // Unclean: tear the active segment's tail and remove a sealed segment's index.
        let bases = list_bases(&p, "log").unwrap();
        let last = p.join(file_name(*bases.last().unwrap(), "log"));
        let len = fs::metadata(&last).unwrap().len;
        OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        fs::remove_file(p.join(file_name(bases[0], "index"))).unwrap();
        let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
        s.log().check_invariants();
        let got = read_all(&s);
        assert_eq!(got.len(), written.len() - 1);
        for (h, (off, b)) in got.iter().zip(&written) {
            assert_eq!((h.base_offset, h.size), (*off, b.len()));
        }
        assert_eq!(
            fs::metadata(&last).unwrap().len,
            len - written.last().unwrap().1.len() as u64
        );
    }

    #[test]
    fn producer_state_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
        fill(&mut s, 30);
        let id = build::ProducerIdentity {
            id: 5,
            epoch: 0,
            base_sequence: 0,
        };
        let b = build::simple(3, 0, Some(id));
        let first = s.append(0, &b).unwrap();
        drop(s); // crash: no close
        let mut s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
        let again = s.append(0, &b).unwrap();
        assert_eq!((again.base_offset, again.write), (first.base_offset, None));
    }

    /// A follower copies a leader's batches (offsets, epochs and producer state kept), and the
    /// epoch history survives a crash; truncation cuts at a batch boundary, drops the later
    /// epochs, and a later leader append of a replicated idempotent batch is a duplicate.
    #[test]
    fn follower_copies_truncates_and_keeps_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut leader = PartitionStore::open(&dir.path().join("l"), cfg(), true, 0).unwrap();
        let f = dir.path().join("f");
        let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
        let mut copied = Vec::new();
        leader.set_leader_epoch(1).unwrap();
        copied.extend(fill(&mut leader, 20));
        leader.set_leader_epoch(3).unwrap();
        let id = build::ProducerIdentity {
            id: 9,
            epoch: 0,
            base_sequence: 0,
        };
        let produced = build::simple(2, 0, Some(id));
        let a = leader.append(0, &produced).unwrap();
        copied.push((a.base_offset, stored(&leader, a.base_offset)));
        copied.extend(fill(&mut leader, 20));
        for (_, bytes) in &copied {
            follower.append_replicated(0, bytes).unwrap();
        }
        let end = leader.log().log_end_offset();
        assert_eq!(follower.log().log_end_offset(), end);
        assert_eq!(follower.log().epochs(), leader.log().epochs());
        assert_eq!(follower.log().last_epoch(), 3);
        // A batch that does not start at the log end is refused.
        assert!(follower.append_replicated(0, &copied[0].1).is_err());
        // Crash (no close): the epochs come back from the checkpoint and the tail.
        drop(follower);
        let mut follower = PartitionStore::open(&f, cfg(), false, 0).unwrap();
        assert_eq!(follower.log().epochs(), leader.log().epochs());
        // Cut inside epoch 3: the batch at the cut goes, epoch 3 stays where it starts.
        let cut = copied[26].0;
        follower.truncate_to(cut + 1, 0).unwrap();
        let held = read_all(&follower);
        // A cut inside a batch removes that whole batch.
        let expect = if copied[27].0 == cut + 1 {
            cut + 1
        } else {
            cut
        };
        assert_eq!(held.last().unwrap().next_offset(), expect);
        follower.truncate_to(a.base_offset, 0).unwrap();
        assert_eq!(follower.log().log_end_offset(), a.base_offset);
        assert_eq!(follower.log().last_epoch(), 1);
        assert_eq!(follower.log().epochs(), &[(1, 0)]);
        drop(follower);
        let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
        assert_eq!(follower.log().epochs(), &[(1, 0)]);
        // Copy the idempotent batch again; as leader, a retry of it is a duplicate.
        follower.append_replicated(0, &copied[20].1).unwrap();
        follower.set_leader_epoch(5).unwrap();
        let again = follower.append(0, &produced).unwrap();
        assert_eq!((again.base_offset, again.write), (a.base_offset, None));
    }

    /// Found by skein-sim (seeds 3121, 329): a crash during retention can bring back some deleted
    /// segments, leaving a gap; recovery must keep the newer side, where acknowledged data lives.
    #[test]
    fn a_gap_left_by_retention_keeps_the_newer_segments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
        fill(&mut s, 100);
        let end = s.log().log_end_offset();
        drop(s);
        let bases = list_bases(&p, "log").unwrap();
        assert!(bases.len() >= 4);
        // Retention deleted the first three segments; only the first two came back.
        fs::remove_file(p.join(file_name(bases[2], "log"))).unwrap();
        let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
        assert_eq!(s.log().log_end_offset(), end, "no acknowledged data lost");
        assert_eq!(s.log().log_start_offset(), bases[3]);
        assert_eq!(list_bases(&p, "log").unwrap(), bases[3..].to_vec());
    }

    #[test]
    fn retention_of_an_expired_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        let mut s = PartitionStore::open(
            &p,
            LogConfig {
                retention_ms: 1000,
                ..cfg()
            },
            true,
            0,
        )
        .unwrap();
        let b = build::simple(3, 5, None);
        s.append(10, &b).unwrap();
        assert_eq!(s.retention(100_000).unwrap(), 1);
        assert_eq!(s.log().log_start_offset(), 3);
        assert_eq!(list_bases(&p, "log").unwrap(), vec![3]);
        let b = build::simple(1, 100_000, None);
        assert_eq!(s.append(100_001, &b).unwrap().base_offset, 3);
        s.close().unwrap();
    }

    #[test]
    fn retention_deletes_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        let mut s = PartitionStore::open(&p, cfg(), true, 0).unwrap();
        fill(&mut s, 100);
        s.set_config(LogConfig {
            retention_bytes: 3000,
            ..cfg()
        });
        assert!(s.retention(0).unwrap() > 0);
        let bases = list_bases(&p, "log").unwrap();
        assert_eq!(bases[0], s.log().log_start_offset());
        assert!(s.log().size_bytes() <= 3000 + 2000);
        drop(s);
        let s = PartitionStore::open(&p, cfg(), false, 0).unwrap();
        assert_eq!(s.log().log_start_offset(), bases[0]);
    }

    /// Every segment file of a store, by base offset.
    fn files(store: &PartitionStore) -> Vec<(i64, Vec<u8>)> {
        store
            .log()
            .segments()
            .map(|seg| {
                let f = store.segment_file(seg.base_offset).unwrap();
                (
                    seg.base_offset,
                    f.read_vec_at(seg.size as usize, 0).unwrap(),
                )
            })
            .collect()
    }

    /// A replicated run whose write fails is cut back from the files, so the log matches its
    /// file again, and the same batches copy cleanly afterwards.
    #[test]
    fn a_failed_replicated_run_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut leader = PartitionStore::open(&dir.path().join("l"), cfg(), true, 0).unwrap();
        let copied = fill(&mut leader, 6);
        let f = dir.path().join("f");
        let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
        let first: Vec<u8> = copied[..3].iter().flat_map(|(_, b)| b.clone()).collect();
        let rest: Vec<u8> = copied[3..].iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(follower.append_replicated_all(0, &first).unwrap());
        let (end, before) = (follower.log().log_end_offset(), files(&follower));
        // The active segment's handle turns read-only: the run's write fails (EBADF).
        let base = follower.log().segments().last().unwrap().base_offset;
        let path = f.join(file_name(base, "log"));
        let read_only = OpenOptions::new().read(true).open(&path).unwrap();
        follower.files.insert(base, Arc::new(read_only));
        assert!(matches!(
            follower.append_replicated_all(0, &rest),
            Err(StorageError::Io { .. })
        ));
        assert_eq!(follower.log().log_end_offset(), end);
        assert_eq!(files(&follower), before);
        assert!(follower.append_replicated_all(0, &rest).unwrap());
        assert_eq!(files(&follower), files(&leader));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// A follower handed the leader's batches in arbitrary chunks, each starting at or before
        /// its log end (so some are repeated), ends with the leader's segments byte for byte,
        /// rolls included, and its batches survive a restart.
        #[test]
        fn replicated_runs_copy_the_leader(
            sizes in proptest::collection::vec(1usize..6, 1..40),
            cuts in proptest::collection::vec((0usize..40, 0usize..4), 1..12),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut leader = PartitionStore::open(&dir.path().join("l"), cfg(), true, 0).unwrap();
            leader.set_leader_epoch(2).unwrap();
            let mut stored_batches = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let a = leader.append(i as u64, &build::simple(*n, i as i64, None)).unwrap();
                stored_batches.push(stored(&leader, a.base_offset));
            }
            let f = dir.path().join("f");
            let mut follower = PartitionStore::open(&f, cfg(), true, 0).unwrap();
            let mut next = 0usize;
            for (len, back) in cuts.iter().copied().chain([(usize::MAX, 0)]) {
                let from = next.saturating_sub(back);
                let to = from.saturating_add(len.max(1)).min(stored_batches.len());
                if from >= to {
                    continue;
                }
                let chunk: Vec<u8> = stored_batches[from..to].concat();
                let grew = follower.append_replicated_all(0, &chunk).unwrap();
                proptest::prop_assert_eq!(grew, to > next);
                next = next.max(to);
            }
            proptest::prop_assert_eq!(files(&follower), files(&leader));
            proptest::prop_assert_eq!(follower.unflushed_messages(), leader.unflushed_messages());
            drop(follower);
            let follower = PartitionStore::open(&f, cfg(), false, 0).unwrap();
            proptest::prop_assert_eq!(files(&follower), files(&leader));
        }

        /// Write-behind covers the segment in order without gaps or overlaps, never drops what
        /// is within the window of the end or not yet handed to write-back, and leaves at most
        /// the window plus two chunks cached.
        #[test]
        fn cache_window_ranges(keep_mb in 1u64..64, steps in proptest::collection::vec(1u64..3_000_000, 1..400)) {
            let keep = keep_mb << 20;
            let mut w = CacheWindow { keep, ..CacheWindow::default() };
            let (mut end, mut wb_next, mut drop_next) = (0u64, 0u64, 0u64);
            for s in steps {
                end += s;
                let (wb, dr) = w.advance(7, end);
                if let Some((at, len)) = wb {
                    proptest::prop_assert_eq!(at, wb_next);
                    wb_next = at + len;
                    proptest::prop_assert_eq!(wb_next, end);
                }
                if let Some((at, len)) = dr {
                    proptest::prop_assert_eq!(at, drop_next);
                    drop_next = at + len;
                    proptest::prop_assert!(drop_next + keep <= wb_next);
                }
                proptest::prop_assert!(end - drop_next <= keep + 2 * WRITE_BEHIND_CHUNK);
            }
        }
    }

    #[test]
    fn cache_window_off_and_restarts() {
        const C: u64 = WRITE_BEHIND_CHUNK;
        let mut off = CacheWindow::default();
        assert_eq!(off.advance(0, 1 << 30), (None, None));
        let mut w = CacheWindow {
            keep: C,
            ..CacheWindow::default()
        };
        assert_eq!(w.advance(0, 6 * C), (Some((0, 6 * C)), Some((0, 5 * C))));
        // A roll: the new segment starts from position 0.
        assert_eq!(w.advance(100, C / 2), (None, None));
        assert_eq!(w.advance(100, 5 * C), (Some((0, 5 * C)), Some((0, 4 * C))));
        // Cut back below what was written back: start over in the same segment.
        assert_eq!(w.advance(100, C / 2), (None, None));
    }
}
