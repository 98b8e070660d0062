//! The file system the stores run on: [`Fs`] and its open files, [`FsFile`].
//!
//! The stores ([`crate::partition::PartitionStore`], [`crate::raft_store::RaftStore`]) are
//! generic over it, so the broker runs them on real files ([`OsFs`], through skein-sys, which
//! also switches to turmoil's simulated file system inside a turmoil run) and the simulator
//! runs the very same code on its crash-losing disk.
//!
//! Contract every implementation keeps (it is what the stores rely on for durability):
//! - written bytes are visible to reads at once, but survive a crash only after
//!   [`FsFile::sync_all`] or [`FsFile::sync_data`] of that file;
//! - a created, renamed or removed directory entry survives a crash only after [`Fs::sync_dir`]
//!   of its directory; [`Fs::rename`] replaces its target atomically;
//! - every operation is synchronous and reports failure as an `io::Error`, never by panicking.

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// How a file is opened; every mode can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Read and write; created empty if absent.
    Create,
    /// Read and write; created if absent, emptied if present.
    Truncate,
}

/// What [`Fs::metadata`] tells.
#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    /// Length in bytes.
    pub len: u64,
    /// Last modification time, where the file system keeps one.
    pub modified: Option<SystemTime>,
}

/// An open file: positioned reads and writes, length changes and syncs.
pub trait FsFile {
    /// Reads at most `buf.len()` bytes at `offset`; 0 at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], offset + done as u64)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }

    /// Reads exactly `len` bytes at `offset` into a new buffer.
    fn read_vec_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Writes `head` then `tail` at `offset`, both whole.
    fn write_all_at2(&self, head: &[u8], tail: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(head, offset)?;
        self.write_all_at(tail, offset + head.len() as u64)
    }

    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The file's current length.
    fn size(&self) -> io::Result<u64>;

    /// Makes the file's contents and metadata durable (fsync).
    fn sync_all(&self) -> io::Result<()>;

    /// Makes the file's contents durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;

    /// Sets the last-modification time; no effect by default (a file system without mtimes).
    fn set_modified(&self, t: SystemTime) -> io::Result<()> {
        let _ = t;
        Ok(())
    }

    /// Hint: start writing `[offset, offset + len)` back to disk; no effect by default.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }

    /// Hint: write `[offset, offset + len)` back and drop it from the cache; no effect by default.
    fn drop_cached(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

/// A file system: opens files and changes directory entries.
pub trait Fs: Clone {
    /// An open file of this file system.
    type File: FsFile;

    /// Opens `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;

    /// Creates directory `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Names of the entries of directory `path`, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Metadata of a file or directory; `NotFound` if absent.
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;

    /// A whole file's contents.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Creates or replaces a file with `bytes` (not synced).
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the entries of directory `path` (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// True when `path` exists.
    fn exists(&self, path: &Path) -> bool {
        self.metadata(path).is_ok()
    }
}

/// The operating system's file system, through skein-sys (turmoil's inside a turmoil run).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl FsFile for skein_sys::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    fn read_vec_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        skein_sys::fs::File::read_vec_at(self, len, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }

    fn write_all_at2(&self, head: &[u8], tail: &[u8], offset: u64) -> io::Result<()> {
        skein_sys::fs::File::write_all_at2(self, head, tail, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        skein_sys::fs::File::set_len(self, len)
    }

    fn size(&self) -> io::Result<u64> {
        skein_sys::fs::File::size(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        skein_sys::fs::File::sync_all(self)
    }

    fn sync_data(&self) -> io::Result<()> {
        skein_sys::fs::File::sync_data(self)
    }

    fn set_modified(&self, t: SystemTime) -> io::Result<()> {
        skein_sys::fs::File::set_modified(self, t)
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        skein_sys::fs::File::start_writeback(self, offset, len)
    }

    fn drop_cached(&self, offset: u64, len: u64) {
        skein_sys::fs::File::drop_cached(self, offset, len)
    }
}

impl Fs for OsFs {
    type File = skein_sys::fs::File;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File> {
        let mut o = skein_sys::fs::OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::Write => {
                o.write(true);
            }
            OpenMode::Create => {
                o.write(true).create(true);
            }
            OpenMode::Truncate => {
                o.write(true).create(true).truncate(true);
            }
        }
        o.open(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        skein_sys::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let entries = skein_sys::fs::read_dir(path)?;
        Ok(entries
            .into_iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect())
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let m = skein_sys::fs::metadata(path)?;
        Ok(Metadata {
            len: m.len,
            modified: m.modified,
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        skein_sys::fs::read(path)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        skein_sys::fs::write(path, bytes)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        skein_sys::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        skein_sys::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        skein_sys::fs::sync_dir(path)
    }
}
