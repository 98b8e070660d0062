//! [`SimFs`]: skein-storage's file-system trait over a node's [`SimDisk`], so the simulator
//! runs the real `PartitionStore` and `RaftStore` on a disk that loses unsynced writes, tears
//! the last one, forgets unsynced directory entries and fills up.
//!
//! Mapping: a path is the disk's flat file name (`dir/file`, UTF-8); directories exist
//! implicitly while they hold a file, so creating one does nothing. An open file is a name
//! that follows the file as a POSIX file descriptor follows its inode: a rename moves every
//! handle open on the old name to the new one (skein-storage installs a cleaned segment
//! through a handle opened on `<base>.log.swap`, then renames the file to `<base>.log`), and
//! unlinking a file (removing it, or renaming another file over it) detaches its handles: they
//! keep reading the bytes it held when it was unlinked, and their writes and fsyncs reach no
//! file, as on Linux (the disk forgets the unlinked file's bytes at once).
//!
//! Invariant: every call is one or more whole SimDisk operations, so the disk's crash
//! countdown and failure model apply to the real stores exactly as to any other driver.

use std::cell::{Ref, RefCell, RefMut};
use std::io;
use std::path::Path;
use std::rc::{Rc, Weak};

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
    /// What every handle opened through this file system (or a clone of it) refers to, so a
    /// rename or an unlink can move or detach them.
    handles: Rc<RefCell<Vec<Weak<RefCell<Target>>>>>,
}

/// What an open handle refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The file the disk holds under this name.
    Named(String),
    /// A file unlinked while the handle was open: the bytes it held then.
    Unlinked(Vec<u8>),
}

impl SimFs {
    /// A file system over `disk`.
    pub fn new(disk: SimDisk) -> Self {
        SimFs {
            disk: Rc::new(RefCell::new(disk)),
            handles: Rc::default(),
        }
    }

    /// Remembers a new handle's target (and forgets handles dropped since the list last grew
    /// to twice what was live).
    fn register(&self, target: &Rc<RefCell<Target>>) {
        let mut hs = self.handles.borrow_mut();
        if hs.len() >= 64 && hs.len().is_power_of_two() {
            hs.retain(|w| w.strong_count() > 0);
        }
        hs.push(Rc::downgrade(target));
    }

    /// The live handles on `name`.
    fn handles_on(&self, name: &str) -> Vec<Rc<RefCell<Target>>> {
        self.handles
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|t| matches!(&*t.borrow(), Target::Named(n) if n == name))
            .collect()
    }

    /// Every live handle on `name` is detached: it keeps the bytes the file holds now.
    fn unlink_handles(&self, name: &str) {
        let hs = self.handles_on(name);
        if hs.is_empty() {
            return;
        }
        let bytes = self.disk().read_all(name).unwrap_or_default();
        for t in hs {
            *t.borrow_mut() = Target::Unlinked(bytes.clone());
        }
    }

    /// Every live handle on `from` now refers to `to`.
    fn move_handles(&self, from: &str, to: &str) {
        for t in self.handles_on(from) {
            *t.borrow_mut() = Target::Named(to.to_string());
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
    target: Rc<RefCell<Target>>,
    writable: bool,
}

impl SimFsFile {
    /// The disk's name of this file (`dir/file`) now, or `(unlinked)` once it was unlinked.
    pub fn name(&self) -> Ref<'_, str> {
        Ref::map(self.target.borrow(), |t| match t {
            Target::Named(n) => n.as_str(),
            Target::Unlinked(_) => "(unlinked)",
        })
    }

    /// The disk's name of this file, `None` once it was unlinked.
    fn named(&self) -> Option<Ref<'_, str>> {
        Ref::filter_map(self.target.borrow(), |t| match t {
            Target::Named(n) => Some(n.as_str()),
            Target::Unlinked(_) => None,
        })
        .ok()
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
        let bytes = match &*self.target.borrow() {
            Target::Named(name) => self.disk.borrow().read(name, offset, buf.len() as u64),
            Target::Unlinked(data) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(buf.len()).min(data.len());
                data[start..end].to_vec()
            }
        };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(EBADF));
        }
        let Some(name) = self.named() else {
            return Ok(());
        };
        self.disk
            .borrow_mut()
            .write(&name, offset, buf)
            .map_err(no_space)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(EBADF));
        }
        if let Some(name) = self.named() {
            self.disk.borrow_mut().set_len(&name, len);
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(match &*self.target.borrow() {
            Target::Named(name) => self.disk.borrow().len(name),
            Target::Unlinked(data) => data.len() as u64,
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        if let Some(name) = self.named() {
            self.disk.borrow_mut().fsync(&name);
        }
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
        let target = Rc::new(RefCell::new(Target::Named(name)));
        self.register(&target);
        Ok(SimFsFile {
            disk: self.disk.clone(),
            target,
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
        self.unlink_handles(&name);
        self.disk_mut().remove(&name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (name_of(from)?, name_of(to)?);
        if !self.disk().exists(&from) {
            return Err(not_found(&from));
        }
        if from == to {
            return Ok(());
        }
        self.unlink_handles(&to);
        self.move_handles(&from, &to);
        self.disk_mut().rename(&from, &to);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let dir = name_of(path)?;
        self.disk_mut().sync_dir(&dir);
        Ok(())
    }
}
