//! `SimDisk`: an in-memory file system with the failure model of a real disk under a page cache.
//!
//! Model (each rule is something a correct broker must survive):
//! - A file's contents are what reads see (the page cache); its *durable image* is what survives
//!   a crash. `fsync` copies the contents to the durable image. `truncate` is modelled as
//!   `set_len` + `fsync` in one step, which is how the shell always does it.
//! - Writes since the last fsync are kept in order. A crash persists a random prefix of them;
//!   the first write not persisted may be torn at a 512-byte sector boundary, and a torn write may
//!   leave the file long with the lost sectors reading as zeros (size metadata persisted, data not).
//! - Directory entries are durable only after `sync_dir` of their directory: a crash may lose a
//!   file created since, and may bring back (with its durable image) a file deleted since.
//! - A full disk (`set_full`) refuses writes that need new space with ENOSPC, after writing what
//!   fits in the file's last sector (as a real `write` does: a short write, then the error).
//!   `set_len` is volatile like a write: a crash may or may not keep it.
//! - A countdown (`die_after_ops`) kills the disk in the middle of a storage operation: later
//!   mutations are silently dropped, and the driver crashes the node after the current event.
//!
//! Sector corruption and misdirected writes are injected by the node driver
//! ([`SimDisk::flip_bit`], [`SimDisk::clobber`]), which knows which
//! bytes a correct system may lose; see `node/faults.rs`.

use std::collections::{BTreeMap, BTreeSet};

use crate::rng::Rng;
use crate::swarm::Swarm;

/// Bytes per sector: the unit a torn write is cut at.
pub const SECTOR: u64 = 512;

#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Unsynced operations in order; written bytes are in `data`.
    pending: Vec<Pending>,
}

/// An unsynced change to a file.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// `len` bytes written at `pos`.
    Write(u64, usize),
    /// The file was cut (or extended) to this length.
    SetLen(u64),
    /// The whole file was replaced by `len` bytes (`fs::write`).
    Replace(usize),
}

/// ENOSPC: the disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSpace;

impl std::fmt::Display for NoSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("No space left on device (ENOSPC)")
    }
}

/// What a crash did to the disk, for the trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced writes lost.
    pub writes_lost: usize,
    /// Writes torn at a sector boundary.
    pub torn: usize,
    /// Torn writes whose lost sectors read back as zeros.
    pub zero_filled: usize,
    /// Files lost because their directory was not synced.
    pub files_lost: usize,
    /// Deleted files that came back.
    pub files_resurrected: usize,
}

/// What a crash may keep and break: the crash-related rates of a [`Swarm`], for drivers
/// without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashFaults {
    /// Each file keeps a random prefix of its unsynced writes (else none of them).
    pub keep_unsynced: bool,
    /// Per file with a lost write: chance the first lost write is torn at a sector.
    pub torn_write_ppm: u32,
    /// Per torn write: chance the lost sectors read back as zeros.
    pub zero_fill_ppm: u32,
    /// Per unsynced directory change: chance a crash loses it.
    pub lose_new_file_ppm: u32,
}

impl From<&Swarm> for CrashFaults {
    fn from(s: &Swarm) -> Self {
        CrashFaults {
            keep_unsynced: true,
            torn_write_ppm: s.torn_write_ppm,
            zero_fill_ppm: s.zero_fill_ppm,
            lose_new_file_ppm: s.lose_new_file_ppm,
        }
    }
}

/// The simulated disk of one node.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    files: BTreeMap<String, SimFile>,
    dir_durable: BTreeSet<String>,
    graveyard: BTreeMap<String, Vec<u8>>,
    die_after_ops: Option<u32>,
    dead: bool,
    full: bool,
    /// Mutating operations carried out, for statistics.
    pub ops: u64,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms the mid-operation crash: the disk dies at the `n`-th next mutation (0: the next).
    pub fn die_after(&mut self, n: u32) {
        self.die_after_ops = Some(n);
    }

    /// Disarms a pending mid-operation crash.
    pub fn disarm(&mut self) {
        self.die_after_ops = None;
    }

    /// Fills (or frees) the disk: while full, writes needing new space fail with ENOSPC.
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }

    /// True while the disk is full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// True once the countdown ran out: the node must crash now.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// True when a mutation may proceed; counts down the armed crash.
    fn tick(&mut self) -> bool {
        if self.dead {
            return false;
        }
        match self.die_after_ops {
            Some(0) => {
                self.dead = true;
                self.die_after_ops = None;
                false
            }
            Some(n) => {
                self.die_after_ops = Some(n - 1);
                self.ops += 1;
                true
            }
            None => {
                self.ops += 1;
                true
            }
        }
    }

    /// True when the file exists.
    pub fn exists(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// Length of a file, `None` if absent.
    pub fn len_if_exists(&self, name: &str) -> Option<u64> {
        self.files.get(name).map(|f| f.data.len() as u64)
    }

    /// Length of a file (0 if absent).
    pub fn len(&self, name: &str) -> u64 {
        self.files.get(name).map_or(0, |f| f.data.len() as u64)
    }

    /// Reads up to `len` bytes at `pos` (fewer at the end of the file).
    pub fn read(&self, name: &str, pos: u64, len: u64) -> Vec<u8> {
        let Some(f) = self.files.get(name) else {
            return Vec::new();
        };
        let start = (pos as usize).min(f.data.len());
        let end = (pos.saturating_add(len) as usize).min(f.data.len());
        f.data[start..end].to_vec()
    }

    /// A whole file, or `None` if absent.
    pub fn read_all(&self, name: &str) -> Option<Vec<u8>> {
        self.files.get(name).map(|f| f.data.clone())
    }

    /// Base offsets of files `<dir>/<20 digits>.<ext>`, sorted.
    pub fn list(&self, dir: &str, ext: &str) -> Vec<i64> {
        let prefix = format!("{dir}/");
        let suffix = format!(".{ext}");
        let mut out: Vec<i64> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(n, _)| n.starts_with(&prefix))
            .filter_map(|(n, _)| n[prefix.len()..].strip_suffix(&suffix)?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// Creates an empty file, or empties an existing one (`O_CREAT|O_TRUNC`; the truncation is
    /// treated as durable, the new entry as not until `sync_dir`).
    pub fn create(&mut self, name: &str) {
        if !self.tick() {
            return;
        }
        self.files.insert(name.to_string(), SimFile::default());
    }

    /// Writes `bytes` at `pos` (volatile until fsync); creates the file if absent. On a full
    /// disk only the bytes that fit in the file's last allocated sector land, then ENOSPC.
    pub fn write(&mut self, name: &str, pos: u64, bytes: &[u8]) -> Result<(), NoSpace> {
        if !self.tick() {
            return Ok(());
        }
        let full = self.full;
        let f = self.files.entry(name.to_string()).or_default();
        let mut n = bytes.len();
        if full {
            let room = (f.data.len() as u64).div_ceil(SECTOR) * SECTOR;
            n = n.min(room.saturating_sub(pos) as usize);
        }
        let pos_usize = pos as usize;
        if n > 0 {
            if f.data.len() < pos_usize + n {
                f.data.resize(pos_usize + n, 0);
            }
            f.data[pos_usize..pos_usize + n].copy_from_slice(&bytes[..n]);
            f.pending.push(Pending::Write(pos, n));
        }
        if n < bytes.len() {
            return Err(NoSpace);
        }
        Ok(())
    }

    /// `fs::write`: replaces a file's contents (volatile until fsync); on a full disk the file
    /// is left empty (its old blocks were freed by the truncation, the new ones do not fit).
    pub fn write_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), NoSpace> {
        if !self.tick() {
            return Ok(());
        }
        let full = self.full;
        let f = self.files.entry(name.to_string()).or_default();
        if full && !bytes.is_empty() {
            f.data.clear();
            f.pending.push(Pending::SetLen(0));
            return Err(NoSpace);
        }
        f.data = bytes.to_vec();
        f.pending.push(Pending::Replace(bytes.len()));
        Ok(())
    }

    /// `set_len` without an fsync: volatile, like a write.
    pub fn set_len(&mut self, name: &str, len: u64) {
        if !self.tick() {
            return;
        }
        if let Some(f) = self.files.get_mut(name) {
            f.data.resize(len as usize, 0);
            f.pending.push(Pending::SetLen(len));
        }
    }

    /// Appends `bytes` at the end of the file (`O_APPEND`), volatile until fsync.
    pub fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), NoSpace> {
        let end = self.len(name);
        self.write(name, end, bytes)
    }

    /// fsync: the file's contents become its durable image.
    pub fn fsync(&mut self, name: &str) {
        if !self.tick() {
            return;
        }
        if let Some(f) = self.files.get_mut(name) {
            f.durable = f.data.clone();
            f.pending.clear();
        }
    }

    /// `set_len` followed by fsync.
    pub fn truncate(&mut self, name: &str, len: u64) {
        if !self.tick() {
            return;
        }
        if let Some(f) = self.files.get_mut(name) {
            f.data.truncate(len as usize);
            f.durable = f.data.clone();
            f.pending.clear();
        }
    }

    /// Removes a file (the removal is durable only after `sync_dir`).
    pub fn remove(&mut self, name: &str) {
        if !self.tick() {
            return;
        }
        if let Some(f) = self.files.remove(name) {
            if self.dir_durable.contains(name) {
                self.graveyard.insert(name.to_string(), f.durable);
            }
        }
    }

    /// Renames `from` to `to`, replacing `to`, contents and unsynced writes included. Durable
    /// only after `sync_dir`: a crash before it may bring back `from`, and finds `to` either
    /// old or new (a `to` that was durable is never lost; a new one may be).
    pub fn rename(&mut self, from: &str, to: &str) {
        if !self.tick() {
            return;
        }
        let Some(f) = self.files.remove(from) else {
            return;
        };
        if self.dir_durable.contains(from) {
            self.graveyard.insert(from.to_string(), f.durable.clone());
        }
        if let Some(old) = self.files.insert(to.to_string(), f) {
            if self.dir_durable.contains(to) {
                self.graveyard.insert(to.to_string(), old.durable);
            }
        }
    }

    /// fsync of a directory: its current entries become durable.
    pub fn sync_dir(&mut self, dir: &str) {
        if !self.tick() {
            return;
        }
        // Only the directory's own entries, found by range (a disk holds many directories).
        let prefix = format!("{dir}/");
        let in_dir = |n: &&String| n.starts_with(&prefix);
        let old: Vec<String> = self
            .dir_durable
            .range(prefix.clone()..)
            .take_while(in_dir)
            .cloned()
            .collect();
        for n in old {
            self.dir_durable.remove(&n);
        }
        let buried: Vec<String> = self
            .graveyard
            .range(prefix.clone()..)
            .map(|(n, _)| n)
            .take_while(in_dir)
            .cloned()
            .collect();
        for n in buried {
            self.graveyard.remove(&n);
        }
        for n in self
            .files
            .range(prefix.clone()..)
            .map(|(n, _)| n)
            .take_while(in_dir)
        {
            self.dir_durable.insert(n.clone());
        }
    }

    /// Flips one bit of a file in both its contents and durable image (bit rot on media).
    pub fn flip_bit(&mut self, name: &str, pos: u64, bit: u8) {
        if let Some(f) = self.files.get_mut(name) {
            if let Some(b) = f.durable.get_mut(pos as usize) {
                *b ^= 1 << bit;
            }
            if let Some(b) = f.data.get_mut(pos as usize) {
                *b ^= 1 << bit;
            }
        }
    }

    /// A misdirected write: `bytes` land at `pos` of `name` (both its contents and its durable
    /// image) though they were meant for somewhere else; only inside the file's current length.
    pub fn clobber(&mut self, name: &str, pos: u64, bytes: &[u8]) {
        if let Some(f) = self.files.get_mut(name) {
            for img in [&mut f.durable, &mut f.data] {
                let end = (pos as usize + bytes.len()).min(img.len());
                if (pos as usize) < end {
                    img[pos as usize..end].copy_from_slice(&bytes[..end - pos as usize]);
                }
            }
        }
    }

    /// Names of the directories holding at least one file (`<dir>/<file>`), sorted.
    pub fn dirs(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .keys()
            .filter_map(|n| n.split_once('/').map(|(d, _)| d.to_string()))
            .collect();
        out.dedup();
        out
    }

    /// Names of every file in `dir`.
    pub fn files_in(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.files
            .range(prefix.clone()..)
            .take_while(|(n, _)| n.starts_with(&prefix))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Power loss: every file falls back to its durable image plus a random prefix of its unsynced
    /// writes; unsynced directory changes may be lost. The disk works again afterwards.
    pub fn crash(&mut self, r: &mut Rng, swarm: &Swarm) -> CrashReport {
        self.crash_with(r, &CrashFaults::from(swarm))
    }

    /// [`Self::crash`] with the fault rates of `faults` (with `keep_unsynced` off, every file
    /// falls back to its durable image exactly).
    pub fn crash_with(&mut self, r: &mut Rng, faults: &CrashFaults) -> CrashReport {
        let mut rep = CrashReport::default();
        let names: Vec<String> = self.files.keys().cloned().collect();
        for name in names {
            let f = self.files.get_mut(&name).expect("listed");
            let mut img = f.durable.clone();
            let n = f.pending.len();
            let keep = if n == 0 || !faults.keep_unsynced {
                0
            } else {
                r.below(n as u64 + 1) as usize
            };
            let apply = |img: &mut Vec<u8>, data: &[u8], pos: u64, end: u64| {
                let (p, e) = (pos as usize, (end as usize).min(data.len()));
                if p >= e {
                    return;
                }
                if img.len() < e {
                    img.resize(e, 0);
                }
                img[p..e].copy_from_slice(&data[p..e]);
            };
            for op in &f.pending[..keep] {
                match *op {
                    Pending::Write(pos, len) => apply(&mut img, &f.data, pos, pos + len as u64),
                    Pending::SetLen(len) => img.resize(len as usize, 0),
                    Pending::Replace(len) => {
                        img.clear();
                        apply(&mut img, &f.data, 0, len as u64);
                    }
                }
            }
            rep.writes_lost += n - keep;
            let torn = match f.pending.get(keep) {
                Some(Pending::Write(pos, len)) => Some((*pos, *len)),
                Some(Pending::Replace(len)) => Some((0, *len)),
                _ => None,
            };
            if let (true, Some((pos, len))) = (keep < n && r.chance(faults.torn_write_ppm), torn) {
                let end = pos + len as u64;
                let first = pos.div_ceil(SECTOR) * SECTOR;
                if first < end {
                    let sectors = (end - first).div_ceil(SECTOR);
                    let cut = (first + r.below(sectors) * SECTOR).min(end);
                    apply(&mut img, &f.data, pos, cut);
                    rep.torn += 1;
                    if r.chance(faults.zero_fill_ppm) && (img.len() as u64) < end {
                        img.resize(end as usize, 0);
                        rep.zero_filled += 1;
                    }
                }
            }
            f.data = img.clone();
            f.durable = img;
            f.pending.clear();
        }
        // Directory entries.
        let created: Vec<String> = self
            .files
            .keys()
            .filter(|n| !self.dir_durable.contains(*n))
            .cloned()
            .collect();
        for n in created {
            if r.chance(faults.lose_new_file_ppm) {
                self.files.remove(&n);
                rep.files_lost += 1;
            }
        }
        for (n, img) in std::mem::take(&mut self.graveyard) {
            if r.chance(faults.lose_new_file_ppm) {
                self.files.insert(
                    n,
                    SimFile {
                        data: img.clone(),
                        durable: img,
                        pending: Vec::new(),
                    },
                );
                rep.files_resurrected += 1;
            }
        }
        self.dir_durable = self.files.keys().cloned().collect();
        self.dead = false;
        self.die_after_ops = None;
        rep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Swarm {
        let mut s = Swarm::draw(&mut Rng::new(0));
        s.torn_write_ppm = 1_000_000;
        s.lose_new_file_ppm = 0;
        s
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_may_not() {
        let mut d = SimDisk::new();
        d.create("p0/a.log");
        d.sync_dir("p0");
        d.write("p0/a.log", 0, &[1; 1000]).unwrap();
        d.fsync("p0/a.log");
        d.write("p0/a.log", 1000, &[2; 2000]).unwrap();
        let mut r = Rng::new(3);
        d.crash(&mut r, &hostile());
        let got = d.read_all("p0/a.log").unwrap();
        assert!(got.len() >= 1000 && got.len() <= 3000);
        assert!(got[..1000].iter().all(|b| *b == 1));
        assert!(got[1000..].iter().all(|b| *b == 2 || *b == 0));
    }

    /// A rename over a durable file, not yet made durable by `sync_dir`: after a crash the
    /// target holds the old or the new contents, never neither; after `sync_dir`, the new.
    #[test]
    fn a_rename_replaces_its_target_atomically() {
        let mut s = hostile();
        s.lose_new_file_ppm = 500_000;
        let (mut old, mut new) = (0, 0);
        for seed in 0..64 {
            let mut d = SimDisk::new();
            d.write_file("p/cp", b"old").unwrap();
            d.fsync("p/cp");
            d.sync_dir("p");
            d.write_file("p/cp.tmp", b"new").unwrap();
            d.fsync("p/cp.tmp");
            d.rename("p/cp.tmp", "p/cp");
            assert_eq!(d.read_all("p/cp").unwrap(), b"new");
            assert!(!d.exists("p/cp.tmp"));
            d.crash(&mut Rng::new(seed), &s);
            match d.read_all("p/cp").expect("the target survives").as_slice() {
                b"old" => old += 1,
                b"new" => new += 1,
                other => panic!("seed {seed}: target holds {other:?}"),
            }
        }
        assert!(old > 0 && new > 0, "old {old}, new {new}");
        let mut d = SimDisk::new();
        d.write_file("p/a", b"x").unwrap();
        d.fsync("p/a");
        d.rename("p/a", "p/b");
        d.sync_dir("p");
        d.crash(&mut Rng::new(1), &s);
        assert_eq!(
            (d.exists("p/a"), d.read_all("p/b")),
            (false, Some(b"x".to_vec()))
        );
    }

    #[test]
    fn dead_disk_drops_mutations() {
        let mut d = SimDisk::new();
        d.die_after(1);
        d.create("x/a");
        d.write("x/a", 0, b"hi").unwrap();
        assert!(d.is_dead());
        assert_eq!(d.len("x/a"), 0);
    }

    #[test]
    fn a_full_disk_writes_what_fits_then_refuses() {
        let mut d = SimDisk::new();
        d.write("x/a", 0, &[1; 100]).unwrap();
        d.set_full(true);
        assert_eq!(d.write("x/a", 100, &[2; 1000]), Err(NoSpace));
        assert_eq!(d.len("x/a"), SECTOR);
        d.set_len("x/a", 100);
        assert_eq!(d.len("x/a"), 100);
        assert_eq!(d.write_file("x/b", b"abc"), Err(NoSpace));
        assert_eq!(d.len("x/b"), 0);
        d.set_full(false);
        d.write("x/a", 100, &[2; 1000]).unwrap();
        assert_eq!(d.len("x/a"), 1100);
    }
}
