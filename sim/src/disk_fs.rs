//! [`SimFs`]: skein-storage's file-system trait over a node's [`SimDisk`], so the simulator
//! runs the real `PartitionStore` and `RaftStore` on a disk that loses unsynced writes, tears
//! the last one, forgets unsynced directory entries and fills up.
//!
//! Mapping: a path is the disk's flat file name (`dir/file`, UTF-8); directories exist
//! implicitly while they hold a file, so creating one does nothing. An open file is a name:
//! it reads what the disk holds under that name now (a removed file reads as empty).
//!
//! Invariant: every call is one or more whole SimDisk operations, so the disk's crash
//! countdown and failure model apply to the real stores exactly as to any other driver.

use std::cell::{Ref, RefCell, RefMut};
use std::io;
use std::path::Path;
use std::rc::Rc;

use skein_storage::fs::{Fs, FsFile, Metadata, OpenMode};

use crate::disk::{NoSpace, SimDisk};

/// errno EBADF: a write through a file opened read-only.
const EBADF: i32 = 9;
/// errno ENOSPC: the disk is full.
const ENOSPC: i32 = 28;

/// A shared handle on one node's [`SimDisk`], usable as skein-storage's [`Fs`].
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    disk: Rc<RefCell<SimDisk>>,
}

impl SimFs {
    /// A file system over `disk`.
    pub fn new(disk: SimDisk) -> Self {
        SimFs {
            disk: Rc::new(RefCell::new(disk)),
        }
    }

    /// The disk, to inspect.
    pub fn disk(&self) -> Ref<'_, SimDisk> {
        self.disk.borrow()
    }

    /// The disk, to inject faults into or crash.
    pub fn disk_mut(&self) -> RefMut<'_, SimDisk> {
        self.disk.borrow_mut()
    }
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
pub struct SimFsFile {
    disk: Rc<RefCell<SimDisk>>,
    name: String,
    writable: bool,
}

impl SimFsFile {
    /// The disk's name of this file (`dir/file`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The disk's name for `path`.
fn name_of(path: &Path) -> io::Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "SimFs paths are UTF-8"))?;
    Ok(s.trim_end_matches('/').to_string())
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

fn no_space(_: NoSpace) -> io::Error {
    io::Error::from_raw_os_error(ENOSPC)
}

impl FsFile for SimFsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let bytes = self
            .disk
            .borrow()
            .read(&self.name, offset, buf.len() as u64);
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(EBADF));
        }
        self.disk
            .borrow_mut()
            .write(&self.name, offset, buf)
            .map_err(no_space)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(EBADF));
        }
        self.disk.borrow_mut().set_len(&self.name, len);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.disk.borrow().len(&self.name))
    }

    fn sync_all(&self) -> io::Result<()> {
        self.disk.borrow_mut().fsync(&self.name);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync_all()
    }
}

impl Fs for SimFs {
    type File = SimFsFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFsFile> {
        let name = name_of(path)?;
        let exists = self.disk().exists(&name);
        match mode {
            OpenMode::Read | OpenMode::Write if !exists => return Err(not_found(&name)),
            OpenMode::Create if !exists => self.disk_mut().create(&name),
            OpenMode::Truncate => self.disk_mut().create(&name),
            _ => {}
        }
        Ok(SimFsFile {
            disk: self.disk.clone(),
            name,
            writable: mode != OpenMode::Read,
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        name_of(path).map(|_| ())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let dir = name_of(path)?;
        let prefix = format!("{dir}/");
        let mut out: Vec<String> = self
            .disk()
            .files_in(&dir)
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        out.dedup();
        Ok(out)
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let name = name_of(path)?;
        let disk = self.disk();
        if let Some(len) = disk.len_if_exists(&name) {
            return Ok(Metadata {
                len,
                modified: None,
            });
        }
        if disk.files_in(&name).is_empty() {
            return Err(not_found(&name));
        }
        Ok(Metadata {
            len: 0,
            modified: None,
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let name = name_of(path)?;
        self.disk().read_all(&name).ok_or_else(|| not_found(&name))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let name = name_of(path)?;
        self.disk_mut().write_file(&name, bytes).map_err(no_space)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let name = name_of(path)?;
        if !self.disk().exists(&name) {
            return Err(not_found(&name));
        }
        self.disk_mut().remove(&name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (name_of(from)?, name_of(to)?);
        if !self.disk().exists(&from) {
            return Err(not_found(&from));
        }
        self.disk_mut().rename(&from, &to);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let dir = name_of(path)?;
        self.disk_mut().sync_dir(&dir);
        Ok(())
    }
}
