//! Carrying out a clean of one partition on its files: skein-core's [`CleanJob`] decides what to
//! read, write, rename and remove (the file protocol is in [`skein_core::cleaner::job`]); this
//! does it, and at open brings back a directory an interrupted clean left
//! ([`recover_leftovers`], deciding with [`recover_clean_leftovers`]).
//!
//! A clean runs mostly without the partition lock: [`Cleaning`] holds its own handles of the
//! segment files it reads (a segment removed meanwhile stays readable through them) and writes
//! only `.cleaned` files nobody else touches. The steps that change the log (swap, install,
//! removals, final renames) run in [`PartitionStore::commit_clean`] with the lock held, and only
//! if nothing cut the log since the clean started (retention, truncation, a reset, another
//! clean): otherwise the clean is abandoned and its `.cleaned` files removed.
//!
//! Invariants: the commit point (`<base>.log.swap` durable) is passed only with the lock held
//! and the replaced segments unchanged; the in-memory log switches to a destination only after
//! that commit point; the cleaner checkpoint only moves forward over offsets cleaned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use skein_core::batch;
use skein_core::cleaner::choose::{self, Cleanable, SegmentInfo};
use skein_core::cleaner::job::{CleanJob, CleanStats, CleanStep};
use skein_core::cleaner::leftovers::{
    recover_clean_leftovers, FileKind, LeftoverAction, LeftoverFile,
};
use skein_core::cleaner::CleanerConfig;
use skein_core::log::{Segment, SegmentScan};
use tracing::{info, warn};

use super::files::{
    file_name, remove_segment_files, sync_dir_on, write_synced, CLEANER_CHECKPOINT,
};
use super::recover::scan_file;
use super::{io_err, PartitionStore, StorageError};
use crate::fs::{Fs, FsFile, OpenMode};

/// Where a clean stands after [`Cleaning::run`].
#[derive(Debug, PartialEq, Eq)]
pub enum CleanProgress {
    /// A destination is written and sealed: call [`PartitionStore::commit_clean`] with the lock.
    Commit,
    /// The clean finished; what it did.
    Done(CleanStats),
    /// The clean stopped early (its `.cleaned` files are removed); why.
    Abandoned(String),
}

/// One clean of one partition in progress (see the module docs).
pub struct Cleaning<F: Fs> {
    fs: F,
    dir: PathBuf,
    job: CleanJob,
    sources: BTreeMap<i64, Arc<F::File>>,
    dest: Option<(i64, F::File, u64)>,
    cuts: u64,
    pending: Option<CleanStep>,
}

impl<F: Fs> PartitionStore<F> {
    /// The log's cleanable range now, with high watermark `hw`; `None` when the topic is not
    /// compacted.
    pub fn cleanable(&self, now_ms: u64, hw: i64) -> Option<Cleanable> {
        let cfg = self.log.config();
        if !cfg.cleanup_policy.compact {
            return None;
        }
        let segs = self.segment_infos();
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        #[cfg(feature = "canary")]
        let c = choose::cleanable_with_canary(
            &segs,
            self.first_dirty,
            hw,
            now,
            cfg,
            self.canary.canary,
        );
        #[cfg(not(feature = "canary"))]
        let c = choose::cleanable(&segs, self.first_dirty, hw, now, cfg);
        Some(c)
    }

    /// The cleaner's view of every segment; the first batch's timestamp is read from the file
    /// only when `max.compaction.lag.ms` is set (it is what that setting judges).
    fn segment_infos(&self) -> Vec<SegmentInfo> {
        let lag = self.log.config().max_compaction_lag_ms < i64::MAX;
        self.log
            .segments()
            .map(|s| {
                let first = lag
                    .then(|| self.files.get(&s.base_offset))
                    .flatten()
                    .filter(|_| s.size >= batch::HEADER_LEN as u64)
                    .and_then(|f| f.read_vec_at(batch::HEADER_LEN, 0).ok())
                    .and_then(|h| batch::parse_header(&h).ok())
                    .map(|h| h.max_timestamp);
                SegmentInfo::of(s, first)
            })
            .collect()
    }

    /// Starts a clean over `range` (from [`PartitionStore::cleanable`]); drive it with
    /// [`Cleaning::run`] without the partition lock.
    pub fn start_clean(&self, range: &Cleanable, cfg: CleanerConfig) -> Cleaning<F> {
        let c = self.log.config();
        #[cfg_attr(not(feature = "canary"), allow(unused_mut))]
        let mut job = CleanJob::new(
            self.segment_infos(),
            range,
            self.log.producers().batch_offsets_to_keep(),
            c.segment_bytes,
            c.index_interval_bytes,
            cfg,
        );
        #[cfg(feature = "canary")]
        job.set_canary(self.canary.canary);
        Cleaning {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            job,
            sources: self.files.clone(),
            dest: None,
            cuts: self.cuts,
            pending: None,
        }
    }

    /// The steps that change the log, with the partition lock held: swap the sealed
    /// destination in, install it, remove what it replaces, finish the renames. False when the
    /// log was cut since the clean started: the clean is abandoned (its files removed).
    pub fn commit_clean(&mut self, c: &mut Cleaning<F>) -> Result<bool, StorageError> {
        let Some(CleanStep::Swap { base }) = c.pending.take() else {
            panic!("commit_clean follows a run that said Commit");
        };
        if self.cuts != c.cuts {
            c.remove_cleaned(base);
            return Ok(false);
        }
        c.swap(base)?;
        // From the commit point on the destination replaces its group, on disk and here.
        loop {
            match c.job.poll() {
                CleanStep::Install { segment, replaces } => {
                    let path = self.dir.join(file_name(base, "log.swap"));
                    let f = self
                        .fs
                        .open(&path, OpenMode::Write)
                        .map_err(io_err(&path))?;
                    for b in &replaces {
                        self.files.remove(b);
                    }
                    self.files.insert(base, Arc::new(f));
                    self.log.replace_cleaned(*segment, &replaces);
                    self.cuts += 1;
                    c.cuts = self.cuts;
                }
                CleanStep::DeleteSegment { base: old } => {
                    for ext in ["log", "index", "timeindex"] {
                        let _ = self.fs.remove_file(&self.dir.join(file_name(old, ext)));
                    }
                }
                CleanStep::FinishSwap { base } => finish_swap(&self.fs, &self.dir, base),
                step => {
                    c.pending = Some(step);
                    return Ok(true);
                }
            }
        }
    }

    /// Records the first dirty offset a finished clean wrote to its checkpoint.
    pub fn set_first_dirty(&mut self, first_dirty: i64) {
        self.first_dirty = Some(first_dirty.min(self.log.log_end_offset()));
    }

    /// The log was cut back to `end` (truncation or reset): nothing at or past it is clean.
    pub(super) fn note_cut(&mut self, end: i64) {
        self.cuts += 1;
        if self.first_dirty.is_some_and(|d| d > end) {
            self.first_dirty = Some(end);
        }
    }
}

impl<F: Fs> Cleaning<F> {
    /// Carries out the clean's steps that need no partition lock, until a destination is ready
    /// to commit or the clean ends. `throttle` is told the bytes of every read and write (and may
    /// sleep to keep the cleaner's I/O rate).
    pub fn run(&mut self, throttle: &mut dyn FnMut(u64)) -> CleanProgress {
        loop {
            if let Some(p) = self.run_steps(usize::MAX, throttle) {
                return p;
            }
        }
    }

    /// [`Cleaning::run`], but carrying out at most `steps` of the clean's steps (a read, a
    /// write, a seal, ...); `None` when it stopped after them with more to do. A simulator
    /// calls it to interleave other work, crashes and disk faults with one clean; calling it
    /// until it answers is exactly [`Cleaning::run`].
    pub fn run_steps(
        &mut self,
        steps: usize,
        throttle: &mut dyn FnMut(u64),
    ) -> Option<CleanProgress> {
        for _ in 0..steps {
            let step = self.pending.take().unwrap_or_else(|| self.job.poll());
            #[cfg(debug_assertions)]
            self.job.check_invariants();
            match self.carry_out(step, throttle) {
                Ok(None) => {}
                Ok(Some(p)) => return Some(p),
                Err(e) => {
                    if let Some((base, _, _)) = self.dest.take() {
                        self.remove_cleaned(base);
                    }
                    return Some(CleanProgress::Abandoned(e.to_string()));
                }
            }
        }
        None
    }

    /// The first dirty offset the finished clean recorded.
    pub fn first_dirty(&self) -> Option<i64> {
        self.job.map_end()
    }

    fn carry_out(
        &mut self,
        step: CleanStep,
        throttle: &mut dyn FnMut(u64),
    ) -> Result<Option<CleanProgress>, StorageError> {
        match step {
            CleanStep::Read {
                segment,
                position,
                len,
            } => {
                let path = self.dir.join(file_name(segment, "log"));
                let Some(f) = self.sources.get(&segment) else {
                    return Err(io_err(&path)(std::io::ErrorKind::NotFound.into()));
                };
                let mut buf = vec![0u8; len as usize];
                let mut got = 0;
                while got < buf.len() {
                    match f.read_at(&mut buf[got..], position + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                }
                buf.truncate(got);
                throttle(got as u64);
                // A refused chunk makes the next poll say Abort.
                let _ = self.job.on_read(&buf);
            }
            CleanStep::CreateCleaned { base } => {
                self.remove_cleaned(base);
                let path = self.dir.join(file_name(base, "log.cleaned"));
                let f = self
                    .fs
                    .open(&path, OpenMode::Truncate)
                    .map_err(io_err(&path))?;
                self.dest = Some((base, f, 0));
            }
            CleanStep::Append { base, bytes } => {
                let path = self.dir.join(file_name(base, "log.cleaned"));
                let (_, f, pos) = self.dest.as_mut().expect("a destination is open");
                f.write_all_at(&bytes, *pos).map_err(io_err(&path))?;
                *pos += bytes.len() as u64;
                throttle(bytes.len() as u64);
            }
            CleanStep::SealCleaned { segment } => self.seal(&segment)?,
            step @ CleanStep::Swap { .. } => {
                self.pending = Some(step);
                return Ok(Some(CleanProgress::Commit));
            }
            CleanStep::WriteCheckpoint { first_dirty } => {
                let tmp = self.dir.join(format!("{CLEANER_CHECKPOINT}.tmp"));
                write_synced(&self.fs, &tmp, format!("0\n{first_dirty}\n").as_bytes())?;
                let path = self.dir.join(CLEANER_CHECKPOINT);
                self.fs.rename(&tmp, &path).map_err(io_err(&path))?;
                sync_dir_on(&self.fs, &self.dir);
            }
            CleanStep::Abort { cleaned, error } => {
                if let Some(base) = cleaned {
                    self.remove_cleaned(base);
                }
                self.dest = None;
                return Ok(Some(CleanProgress::Abandoned(error.to_string())));
            }
            CleanStep::Done => return Ok(Some(CleanProgress::Done(self.job.stats()))),
            step @ (CleanStep::Install { .. }
            | CleanStep::DeleteSegment { .. }
            | CleanStep::FinishSwap { .. }) => {
                unreachable!("{step:?} follows a swap, in commit_clean")
            }
        }
        Ok(None)
    }

    /// Writes the destination's indexes, sets its mtime and fsyncs its three files.
    fn seal(&mut self, seg: &Segment) -> Result<(), StorageError> {
        let (base, f, _) = self.dest.take().expect("a destination is open");
        let log = self.dir.join(file_name(base, "log.cleaned"));
        let mtime = UNIX_EPOCH + Duration::from_millis(seg.modified_ms);
        f.set_modified(mtime).map_err(io_err(&log))?;
        f.sync_all().map_err(io_err(&log))?;
        for (ext, bytes) in [
            ("index.cleaned", seg.encode_offset_index()),
            ("timeindex.cleaned", seg.encode_time_index()),
        ] {
            write_synced(&self.fs, &self.dir.join(file_name(base, ext)), &bytes)?;
        }
        Ok(())
    }

    /// The commit point: `.cleaned` -> `.swap` (indexes first, the log last), directory synced.
    fn swap(&self, base: i64) -> Result<(), StorageError> {
        for ext in ["index", "timeindex", "log"] {
            let from = self.dir.join(file_name(base, &format!("{ext}.cleaned")));
            let to = self.dir.join(file_name(base, &format!("{ext}.swap")));
            if let Err(e) = self.fs.rename(&from, &to) {
                self.remove_swap(base);
                self.remove_cleaned(base);
                return Err(io_err(&from)(e));
            }
        }
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            // Not known durable: take the swap back so no later recovery finishes it over
            // segments retention may have removed by then.
            self.remove_swap(base);
            return Err(io_err(&self.dir)(e));
        }
        Ok(())
    }

    fn remove_cleaned(&self, base: i64) {
        for ext in ["log.cleaned", "index.cleaned", "timeindex.cleaned"] {
            let _ = self.fs.remove_file(&self.dir.join(file_name(base, ext)));
        }
    }

    fn remove_swap(&self, base: i64) {
        for ext in ["log.swap", "index.swap", "timeindex.swap"] {
            let _ = self.fs.remove_file(&self.dir.join(file_name(base, ext)));
        }
    }
}

/// Renames `<base>.{index,timeindex}.swap` then `<base>.log.swap` over the plain names, and
/// syncs the directory. An index swap already renamed (a crash in between) is skipped.
fn finish_swap<F: Fs>(fs: &F, dir: &Path, base: i64) {
    for ext in ["index", "timeindex", "log"] {
        let from = dir.join(file_name(base, &format!("{ext}.swap")));
        if fs.exists(&from) {
            if let Err(e) = fs.rename(&from, &dir.join(file_name(base, ext))) {
                warn!(path = %from.display(), error = %e, "finishing a cleaned segment's swap failed; the next start finishes it");
            }
        }
    }
    sync_dir_on(fs, dir);
}

/// Reads a partition's cleaner checkpoint (`0`, then the first dirty offset), if it has one.
pub(super) fn read_checkpoint<F: Fs>(fs: &F, dir: &Path) -> Option<i64> {
    let text = String::from_utf8(fs.read(&dir.join(CLEANER_CHECKPOINT)).ok()?).ok()?;
    let mut lines = text.lines();
    (lines.next()?.trim() == "0").then_some(())?;
    lines.next()?.trim().parse().ok()
}

/// What an interrupted clean left in `dir`, brought back to a consistent set of segments
/// before recovery lists them (see [`recover_clean_leftovers`]).
pub(super) fn recover_leftovers<F: Fs>(
    fs: &F,
    dir: &Path,
    index_interval: u32,
) -> Result<(), StorageError> {
    let mut files = Vec::new();
    for name in fs.list_dir(dir).map_err(io_err(dir))? {
        let Some((base, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = base.parse::<i64>() else {
            continue;
        };
        let kind = match ext {
            "log" => FileKind::Log,
            "index" => FileKind::Index,
            "log.cleaned" | "index.cleaned" | "timeindex.cleaned" => FileKind::Cleaned,
            "index.swap" | "timeindex.swap" => FileKind::IndexSwap,
            "log.swap" => {
                let path = dir.join(&name);
                let size = fs.metadata(&path).map_err(io_err(&path))?.len;
                let scan = SegmentScan::new(base, 0, index_interval).allow_gaps();
                let (seg, complete) = scan_file(fs, &path, scan, size)?;
                if !complete {
                    warn!(path = %path.display(), "a committed cleaned segment does not scan to its end");
                }
                FileKind::LogSwap {
                    next_offset: seg.next_offset,
                }
            }
            _ => continue,
        };
        files.push(LeftoverFile { base, kind });
    }
    let actions = recover_clean_leftovers(&files);
    if !actions.is_empty() {
        info!(dir = %dir.display(), actions = actions.len(), "finishing an interrupted clean");
    }
    for a in actions {
        match a {
            LeftoverAction::RemoveCleaned { base } => {
                for ext in ["log.cleaned", "index.cleaned", "timeindex.cleaned"] {
                    let _ = fs.remove_file(&dir.join(file_name(base, ext)));
                }
            }
            LeftoverAction::RemoveIndexSwaps { base } => {
                for ext in ["index.swap", "timeindex.swap"] {
                    let _ = fs.remove_file(&dir.join(file_name(base, ext)));
                }
            }
            LeftoverAction::RemoveSegment { base } => remove_segment_files(fs, dir, base),
            LeftoverAction::CompleteSwap { base } => {
                for ext in ["index", "timeindex", "log"] {
                    let from = dir.join(file_name(base, &format!("{ext}.swap")));
                    if fs.exists(&from) {
                        let to = dir.join(file_name(base, ext));
                        fs.rename(&from, &to).map_err(io_err(&to))?;
                    }
                }
            }
            LeftoverAction::SyncDir => fs.sync_dir(dir).map_err(io_err(dir))?,
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "clean_tests.rs"]
mod tests;
