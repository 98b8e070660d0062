//! The metadata quorum's durable state on disk: carries out the storage outputs of
//! [`skein_core::raft::Raft`] and recovers its [`Durable`] state at start.
//!
//! Layout of `<data-dir>/__raft/`:
//! - `hardstate`: two 512-byte slots, each `[crc32c u32][seq u64][term u64][voted_for i64]`
//!   (big-endian, voted_for -1 for none). A new hard state goes into the slot that does not hold
//!   the newest valid one, so a torn write leaves the previous state readable; recovery takes the
//!   valid slot with the higher `seq`.
//! - `log`: entries in order, each framed `[len u32][crc32c u32][JSON Entry]`.
//! - `snapshot`: one frame `[len u32][crc32c u32][JSON Snapshot]`, replaced atomically
//!   (write a temporary file, fsync, rename, fsync the directory).
//!
//! Invariants: nothing written here is relied on until [`RaftStore::sync`] returns (Raft holds
//! every reply that depends on it until then); recovery never returns a log with a gap after the
//! snapshot, and drops a torn or corrupt log tail (which was never acknowledged as durable,
//! because a frame is only acknowledged after the fsync that covers it).

use std::io;
use std::path::{Path, PathBuf};

use skein_core::raft::{Durable, Entry, HardState, Output, Snapshot};
use tracing::warn;

use crate::fs::{Fs, FsFile, OpenMode, OsFs};

const SLOT_BYTES: u64 = 512;
const SLOT_PAYLOAD: usize = 4 + 8 + 8 + 8;
/// Largest entry or snapshot frame accepted on recovery (metadata is small; a bigger length is
/// corruption).
const FRAME_BYTES_MAX: usize = 256 << 20;

/// Why the quorum's storage failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    /// The file system failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// What is on disk cannot be a log this store wrote.
    #[error("corrupt raft state in {path}: {why}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RaftStoreError + '_ {
    move |source| RaftStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The open files of the quorum's state on file system `F`.
pub struct RaftStore<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    hard: F::File,
    hard_seq: u64,
    /// Slot the next hard state goes to.
    hard_slot: u64,
    log: F::File,
    /// Byte position of each stored entry, by index: `positions[i]` is entry
    /// `first_index + i`.
    positions: Vec<u64>,
    /// Term of each stored entry, as `positions`.
    terms: Vec<u64>,
    first_index: u64,
    /// (index, term) of the stored snapshot ((0, 0) without one).
    snapshot_id: (u64, u64),
    log_len: u64,
    dirty: bool,
}

impl RaftStore<OsFs> {
    /// Opens (creating if absent) the state in `dir` on the real file system and recovers it.
    pub fn open(dir: &Path) -> Result<(RaftStore, Durable), RaftStoreError> {
        RaftStore::open_on(OsFs, dir)
    }
}

impl<F: Fs> RaftStore<F> {
    /// Opens (creating if absent) the state in `dir` on file system `fs` and recovers it.
    pub fn open_on(fs: F, dir: &Path) -> Result<(RaftStore<F>, Durable), RaftStoreError> {
        let fresh = !fs.exists(dir);
        fs.create_dir_all(dir).map_err(io_err(dir))?;
        if fresh {
            if let Some(parent) = dir.parent() {
                fs.sync_dir(parent).map_err(io_err(parent))?;
            }
        }
        let hard_path = dir.join("hardstate");
        let hard = fs
            .open(&hard_path, OpenMode::Create)
            .map_err(io_err(&hard_path))?;
        let (hard_state, hard_seq, hard_slot) = read_hard_state(&hard);
        let snapshot = read_snapshot(&fs, &dir.join("snapshot"))?;
        let log_path = dir.join("log");
        let log = fs
            .open(&log_path, OpenMode::Create)
            .map_err(io_err(&log_path))?;
        fs.sync_dir(dir).map_err(io_err(dir))?;
        let snap_index = snapshot.as_ref().map_or(0, |s| s.index);
        let (stored, positions, valid_len) = recover_log(&log, &log_path, snap_index)?;
        let first_index = stored.first().map_or(snap_index + 1, |e| e.index);
        let terms = stored.iter().map(|e| e.term).collect();
        // A crash between writing a new snapshot and rewriting the log leaves entries the
        // snapshot covers at the front: skip them. A gap after the snapshot is corruption.
        let entries: Vec<Entry> = stored
            .into_iter()
            .filter(|e| e.index > snap_index)
            .collect();
        if let Some(first) = entries.first() {
            if first.index != snap_index + 1 {
                return Err(RaftStoreError::Corrupt {
                    path: log_path,
                    why: format!(
                        "log resumes at index {} after a snapshot through {snap_index}",
                        first.index
                    ),
                });
            }
        }
        let store = RaftStore {
            fs,
            dir: dir.to_path_buf(),
            hard,
            hard_seq,
            hard_slot,
            log,
            positions,
            terms,
            first_index,
            snapshot_id: snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term)),
            log_len: valid_len,
            dirty: false,
        };
        Ok((
            store,
            Durable {
                hard_state,
                snapshot,
                entries,
            },
        ))
    }

    /// Carries out one storage output (others are ignored); nothing is durable before
    /// [`Self::sync`].
    pub fn apply(&mut self, out: &Output) -> Result<(), RaftStoreError> {
        match out {
            Output::PersistHardState(h) => self.write_hard_state(*h),
            Output::AppendEntries(entries) => self.append(entries),
            Output::TruncateFrom { index } => self.truncate_from(*index),
            Output::PersistSnapshot(s) => self.install_snapshot(s),
            _ => Ok(()),
        }
    }

    /// (term, index) of the last stored entry (the snapshot's when no entry follows it), as
    /// written, synced or not.
    pub fn last(&self) -> (u64, u64) {
        let index = self.first_index + self.positions.len() as u64 - 1;
        let term = match self.terms.last() {
            Some(t) => *t,
            None if index == self.snapshot_id.0 => self.snapshot_id.1,
            None => 0, // nothing stored at all
        };
        (term, index)
    }

    /// fsyncs everything written since the last sync.
    pub fn sync(&mut self) -> Result<(), RaftStoreError> {
        if !self.dirty {
            return Ok(());
        }
        let hp = self.dir.join("hardstate");
        self.hard.sync_data().map_err(io_err(&hp))?;
        let lp = self.dir.join("log");
        self.log.sync_data().map_err(io_err(&lp))?;
        self.dirty = false;
        Ok(())
    }

    fn write_hard_state(&mut self, h: HardState) -> Result<(), RaftStoreError> {
        self.hard_seq += 1;
        let mut slot = [0u8; SLOT_PAYLOAD];
        slot[4..12].copy_from_slice(&self.hard_seq.to_be_bytes());
        slot[12..20].copy_from_slice(&h.term.to_be_bytes());
        let vote = h.voted_for.map_or(-1i64, |v| v as i64);
        slot[20..28].copy_from_slice(&vote.to_be_bytes());
        let crc = crc32c::crc32c(&slot[4..]);
        slot[0..4].copy_from_slice(&crc.to_be_bytes());
        let p = self.dir.join("hardstate");
        self.hard
            .write_all_at(&slot, self.hard_slot * SLOT_BYTES)
            .map_err(io_err(&p))?;
        self.hard_slot = 1 - self.hard_slot;
        self.dirty = true;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), RaftStoreError> {
        let p = self.dir.join("log");
        let mut buf = Vec::new();
        for e in entries {
            let expect = self.first_index + self.positions.len() as u64;
            assert_eq!(e.index, expect, "raft store: append out of order");
            self.positions.push(self.log_len + buf.len() as u64);
            self.terms.push(e.term);
            frame(&mut buf, &serde_json::to_vec(e).expect("entry encodes"));
        }
        self.log
            .write_all_at(&buf, self.log_len)
            .map_err(io_err(&p))?;
        self.log_len += buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) -> Result<(), RaftStoreError> {
        if index < self.first_index {
            // Everything stored goes (the snapshot stays).
            self.positions.clear();
            self.terms.clear();
            self.first_index = index.max(1);
            self.log_len = 0;
        } else {
            let keep = (index - self.first_index) as usize;
            if keep >= self.positions.len() {
                return Ok(());
            }
            self.log_len = self.positions[keep];
            self.positions.truncate(keep);
            self.terms.truncate(keep);
        }
        let p = self.dir.join("log");
        self.log.set_len(self.log_len).map_err(io_err(&p))?;
        self.dirty = true;
        Ok(())
    }

    /// Makes `s` the stored snapshot and drops the entries it covers; durable on return (it is
    /// rare, and atomic replacement needs its own fsyncs).
    fn install_snapshot(&mut self, s: &Snapshot) -> Result<(), RaftStoreError> {
        // First make the pending log and hard state durable: the rewritten log below is built
        // from this store's view, which must not get ahead of the disk's.
        self.sync()?;
        let tmp = self.dir.join("snapshot.tmp");
        let mut buf = Vec::new();
        frame(&mut buf, &serde_json::to_vec(s).expect("snapshot encodes"));
        write_durably(&self.fs, &tmp, &buf)?;
        let target = self.dir.join("snapshot");
        self.fs.rename(&tmp, &target).map_err(io_err(&target))?;
        self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        // Rewrite the log without the covered entries.
        let lp = self.dir.join("log");
        let mut kept = Vec::new();
        let mut positions = Vec::new();
        let mut terms = Vec::new();
        for (i, pos) in self.positions.iter().enumerate() {
            let index = self.first_index + i as u64;
            if index <= s.index {
                continue;
            }
            terms.push(self.terms[i]);
            let end = self.positions.get(i + 1).copied().unwrap_or(self.log_len);
            let mut bytes = vec![0u8; (end - pos) as usize];
            self.log
                .read_exact_at(&mut bytes, *pos)
                .map_err(io_err(&lp))?;
            positions.push(kept.len() as u64);
            kept.extend_from_slice(&bytes);
        }
        let tmp = self.dir.join("log.tmp");
        write_durably(&self.fs, &tmp, &kept)?;
        self.fs.rename(&tmp, &lp).map_err(io_err(&lp))?;
        self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        self.log = self.fs.open(&lp, OpenMode::Write).map_err(io_err(&lp))?;
        self.first_index = s.index + 1;
        self.snapshot_id = (s.index, s.term);
        self.positions = positions;
        self.terms = terms;
        self.log_len = kept.len() as u64;
        Ok(())
    }
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The frame at the start of `bytes`: its payload and total length, or `None` if torn/corrupt.
fn unframe(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    if len > FRAME_BYTES_MAX {
        return None;
    }
    let crc = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(8..8 + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, 8 + len))
}

/// Creates or replaces `path` with `bytes` and fsyncs it (its directory entry is not synced).
fn write_durably<F: Fs>(fs: &F, path: &Path, bytes: &[u8]) -> Result<(), RaftStoreError> {
    let f = fs.open(path, OpenMode::Truncate).map_err(io_err(path))?;
    f.write_all_at(bytes, 0).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn read_hard_state<T: FsFile>(f: &T) -> (HardState, u64, u64) {
    let mut best: Option<(u64, HardState, u64)> = None;
    for slot in 0..2u64 {
        let mut b = [0u8; SLOT_PAYLOAD];
        if f.read_exact_at(&mut b, slot * SLOT_BYTES).is_err() {
            continue;
        }
        let crc = u32::from_be_bytes(b[0..4].try_into().expect("4 bytes"));
        if crc != crc32c::crc32c(&b[4..]) || b.iter().all(|x| *x == 0) {
            continue;
        }
        let seq = u64::from_be_bytes(b[4..12].try_into().expect("8 bytes"));
        let term = u64::from_be_bytes(b[12..20].try_into().expect("8 bytes"));
        let vote = i64::from_be_bytes(b[20..28].try_into().expect("8 bytes"));
        let h = HardState {
            term,
            voted_for: (vote >= 0).then_some(vote as u64),
        };
        if best.is_none_or(|(s, ..)| seq > s) {
            best = Some((seq, h, slot));
        }
    }
    match best {
        // The next write goes to the other slot, keeping this one intact.
        Some((seq, h, slot)) => (h, seq, 1 - slot),
        None => (HardState::default(), 0, 0),
    }
}

fn read_snapshot<F: Fs>(fs: &F, path: &Path) -> Result<Option<Snapshot>, RaftStoreError> {
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    // The snapshot is replaced atomically, so a bad one is corruption, not a torn write.
    let corrupt = |why: &str| RaftStoreError::Corrupt {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let (payload, _) = unframe(&bytes).ok_or_else(|| corrupt("bad frame or CRC"))?;
    serde_json::from_slice(payload)
        .map(Some)
        .map_err(|e| corrupt(&e.to_string()))
}

/// [`read_log`], with the log file cut back to what recovery keeps: a torn or corrupt tail
/// goes, and so does a log the snapshot covers entirely (a crash between installing a
/// snapshot beyond the log and rewriting the log leaves the old log behind; appends resume
/// right after the snapshot, so no old entry may stay in front of them).
fn recover_log<T: FsFile>(
    log: &T,
    path: &Path,
    snap_index: u64,
) -> Result<(Vec<Entry>, Vec<u64>, u64), RaftStoreError> {
    let (stored, positions, valid_len) = read_log(log, path)?;
    let size = log.size().map_err(io_err(path))?;
    let covered = stored.last().is_some_and(|e| e.index <= snap_index);
    let keep = if covered { 0 } else { valid_len };
    if keep < size {
        if covered {
            warn!(path = %path.display(), snapshot = snap_index, "raft log under the snapshot; emptying");
        } else {
            warn!(path = %path.display(), valid = valid_len, len = size, "torn raft log tail; truncating");
        }
        log.set_len(keep).map_err(io_err(path))?;
        log.sync_all().map_err(io_err(path))?;
    }
    if covered {
        return Ok((Vec::new(), Vec::new(), 0));
    }
    Ok((stored, positions, valid_len))
}

/// Entries, their positions, and the length of the valid prefix.
fn read_log<T: FsFile>(f: &T, path: &Path) -> Result<(Vec<Entry>, Vec<u64>, u64), RaftStoreError> {
    let size = f.size().map_err(io_err(path))?;
    let mut bytes = vec![0u8; size as usize];
    f.read_exact_at(&mut bytes, 0).map_err(io_err(path))?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut positions = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some((payload, len)) = unframe(&bytes[pos..]) else {
            break;
        };
        let Ok(e) = serde_json::from_slice::<Entry>(payload) else {
            break;
        };
        if entries.last().is_some_and(|prev| e.index != prev.index + 1) {
            return Err(RaftStoreError::Corrupt {
                path: path.to_path_buf(),
                why: format!("entry {} follows entry {}", e.index, entries.len()),
            });
        }
        entries.push(e);
        positions.push(pos as u64);
        pos += len;
    }
    Ok((entries, positions, pos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_core::raft::EntryKind;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: format!("e{index}").into_bytes(),
        }
    }

    #[test]
    fn round_trips_hard_state_entries_truncation_and_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("__raft");
        let (mut s, durable) = RaftStore::open(&dir).unwrap();
        assert_eq!(durable, Durable::default());
        let h = HardState {
            term: 3,
            voted_for: Some(2),
        };
        s.apply(&Output::PersistHardState(h)).unwrap();
        s.apply(&Output::AppendEntries(
            (1..=5).map(|i| entry(1, i)).collect(),
        ))
        .unwrap();
        s.apply(&Output::TruncateFrom { index: 4 }).unwrap();
        s.apply(&Output::AppendEntries(vec![entry(3, 4)])).unwrap();
        assert_eq!(s.last(), (3, 4));
        s.sync().unwrap();
        drop(s);
        let (mut s, d1) = RaftStore::open(&dir).unwrap();
        assert_eq!(s.last(), (3, 4));
        assert_eq!(d1.hard_state, h);
        assert_eq!(
            d1.entries,
            vec![entry(1, 1), entry(1, 2), entry(1, 3), entry(3, 4)]
        );
        let snap = Snapshot {
            index: 2,
            term: 1,
            data: b"state".to_vec(),
        };
        s.apply(&Output::PersistSnapshot(snap.clone())).unwrap();
        assert_eq!(s.last(), (3, 4));
        s.apply(&Output::AppendEntries(vec![entry(3, 5)])).unwrap();
        let h2 = HardState {
            term: 4,
            voted_for: None,
        };
        s.apply(&Output::PersistHardState(h2)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, d2) = RaftStore::open(&dir).unwrap();
        assert_eq!(d2.hard_state, h2);
        assert_eq!(d2.snapshot, Some(snap));
        assert_eq!(d2.entries, vec![entry(1, 3), entry(3, 4), entry(3, 5)]);
    }

    #[test]
    fn a_torn_log_tail_and_a_torn_hard_state_slot_fall_back() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("__raft");
        let (mut s, _) = RaftStore::open(&dir).unwrap();
        let h1 = HardState {
            term: 1,
            voted_for: Some(1),
        };
        s.apply(&Output::PersistHardState(h1)).unwrap();
        s.apply(&Output::AppendEntries(
            (1..=3).map(|i| entry(1, i)).collect(),
        ))
        .unwrap();
        s.sync().unwrap();
        s.apply(&Output::PersistHardState(HardState {
            term: 2,
            voted_for: Some(3),
        }))
        .unwrap();
        drop(s);
        // Tear the second slot and the last log frame.
        let hf = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("hardstate"))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&hf, &[0xff; 3], SLOT_BYTES + 10).unwrap();
        let len = std::fs::metadata(dir.join("log")).unwrap().len();
        let lf = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("log"))
            .unwrap();
        lf.set_len(len - 2).unwrap();
        let (mut s, d1) = RaftStore::open(&dir).unwrap();
        assert_eq!(d1.hard_state, h1);
        assert_eq!(d1.entries, vec![entry(1, 1), entry(1, 2)]);
        // Appends continue at the truncated end, and the torn slot is the one reused.
        s.apply(&Output::AppendEntries(vec![entry(2, 3)])).unwrap();
        let h3 = HardState {
            term: 5,
            voted_for: None,
        };
        s.apply(&Output::PersistHardState(h3)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, d2) = RaftStore::open(&dir).unwrap();
        assert_eq!(d2.hard_state, h3);
        assert_eq!(d2.entries, vec![entry(1, 1), entry(1, 2), entry(2, 3)]);
    }

    /// A crash after a snapshot beyond the log was renamed into place but before the log was
    /// rewritten: the old log is all under the snapshot, and appends resume after it.
    #[test]
    fn a_log_left_under_a_newer_snapshot_is_emptied() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("__raft");
        let (mut s, _) = RaftStore::open(&dir).unwrap();
        s.apply(&Output::AppendEntries(
            (1..=4).map(|i| entry(1, i)).collect(),
        ))
        .unwrap();
        s.sync().unwrap();
        let old_log = std::fs::read(dir.join("log")).unwrap();
        let snap = Snapshot {
            index: 6,
            term: 2,
            data: vec![7],
        };
        s.apply(&Output::PersistSnapshot(snap.clone())).unwrap();
        drop(s);
        std::fs::write(dir.join("log"), &old_log).unwrap();
        let (mut s, d1) = RaftStore::open(&dir).unwrap();
        assert_eq!((d1.snapshot, d1.entries), (Some(snap.clone()), vec![]));
        assert_eq!(s.last(), (2, 6));
        s.apply(&Output::AppendEntries(vec![entry(2, 7)])).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, d2) = RaftStore::open(&dir).unwrap();
        assert_eq!((d2.snapshot, d2.entries), (Some(snap), vec![entry(2, 7)]));
    }

    #[test]
    fn truncating_below_the_snapshot_keeps_the_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("__raft");
        let (mut s, _) = RaftStore::open(&dir).unwrap();
        s.apply(&Output::AppendEntries(
            (1..=4).map(|i| entry(1, i)).collect(),
        ))
        .unwrap();
        let snap = Snapshot {
            index: 6,
            term: 2,
            data: vec![1, 2],
        };
        // A follower installing a leader's snapshot beyond its log: everything stored goes.
        s.apply(&Output::PersistSnapshot(snap.clone())).unwrap();
        assert_eq!(s.last(), (2, 6));
        s.apply(&Output::AppendEntries(vec![entry(2, 7)])).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, d1) = RaftStore::open(&dir).unwrap();
        assert_eq!(d1.snapshot, Some(snap));
        assert_eq!(d1.entries, vec![entry(2, 7)]);
    }
}
