//! skein-sys: the operating-system boundary of skein's shell — files, directory syncs, wall-clock
//! time, blocking work, TCP and the guarded global allocator ([`alloc`]). The storage, client,
//! broker and CLI crates reach the OS only through here.
//!
//! Normally each item is a thin wrapper over std or tokio. Built with the `turmoil` feature, and
//! only while running inside a turmoil simulation, the same items use turmoil's simulated file
//! system (which loses unsynced writes and unsynced directory entries on a crash), network and
//! clock, and run blocking work inline. That is how skein-tests' turmoil tests run this very shell
//! — the real Kafka server, storage and recovery — deterministically.
//!
//! Invariants: outside a simulation the `turmoil` feature changes nothing (a test binary built
//! with it still uses the real OS); inside one, nothing here touches the real OS.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use skein_core::rng::SplitMix64;

pub mod alloc;

/// Whether this call runs inside a turmoil simulation.
#[inline]
pub fn simulated() -> bool {
    #[cfg(feature = "turmoil")]
    {
        turmoil::in_simulation()
    }
    #[cfg(not(feature = "turmoil"))]
    {
        false
    }
}

/// The wall-clock time (the simulated one inside a simulation).
pub fn now() -> SystemTime {
    #[cfg(feature = "turmoil")]
    if simulated() {
        return SystemTime::UNIX_EPOCH + turmoil::since_epoch().unwrap_or_default();
    }
    SystemTime::now()
}

/// Runs blocking work off the async threads (inline inside a simulation, where there is one
/// thread and the simulated file system lives in it).
pub async fn blocking<F, R>(f: F) -> io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if simulated() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
}

/// A fresh random UUID (inside a simulation, drawn from a stream seeded by [`seed_uuids`], so a
/// run's topic and cluster ids repeat with its seed).
pub fn uuid() -> uuid::Uuid {
    if simulated() {
        let (hi, lo) = SIM_UUIDS.with(|s| {
            let mut s = s.borrow_mut();
            (s.next_u64(), s.next_u64())
        });
        return uuid::Builder::from_random_bytes(
            ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes(),
        )
        .into_uuid();
    }
    uuid::Uuid::new_v4()
}

/// Seeds the UUIDs handed out inside simulations on this thread.
pub fn seed_uuids(seed: u64) {
    SIM_UUIDS.with(|s| *s.borrow_mut() = SplitMix64::new(seed));
}

thread_local! {
    static SIM_UUIDS: std::cell::RefCell<SplitMix64> =
        std::cell::RefCell::new(SplitMix64::new(0));
}

/// Files and directories.
pub mod fs {
    use super::*;
    use std::ffi::OsString;
    use std::path::PathBuf;

    #[cfg(feature = "turmoil")]
    use turmoil::fs::shim::std::fs as tfs;

    /// Runs `$os` on the real OS, or `$sim` inside a simulation.
    macro_rules! either {
        ($os:expr, $sim:expr) => {{
            #[cfg(feature = "turmoil")]
            {
                if simulated() {
                    $sim
                } else {
                    $os
                }
            }
            #[cfg(not(feature = "turmoil"))]
            {
                $os
            }
        }};
    }

    /// A read or write syscall's return: `Some(bytes)` when some moved, `None` to retry after
    /// EINTR, the OS error, or `zero` when nothing moved.
    fn io_len(n: isize, zero: io::ErrorKind) -> io::Result<Option<usize>> {
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Err(zero.into());
        }
        Ok(Some(n as usize))
    }

    /// An open file.
    #[derive(Debug)]
    pub enum File {
        /// A real file.
        Os(std::fs::File),
        /// A file in turmoil's simulated file system.
        #[cfg(feature = "turmoil")]
        Sim(tfs::File),
    }

    /// Runs `$body` with `$f` bound to the inner file of either variant.
    macro_rules! inner {
        ($file:expr, $f:ident => $body:expr) => {
            match $file {
                File::Os($f) => $body,
                #[cfg(feature = "turmoil")]
                File::Sim($f) => $body,
            }
        };
    }

    impl File {
        /// Opens a file for reading.
        pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
            OpenOptions::new().read(true).open(path)
        }

        /// Creates (or truncates) a file for writing.
        pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
        }

        /// Truncates or extends the file.
        pub fn set_len(&self, len: u64) -> io::Result<()> {
            inner!(self, f => f.set_len(len))
        }

        /// fsync.
        pub fn sync_all(&self) -> io::Result<()> {
            inner!(self, f => f.sync_all())
        }

        /// fdatasync.
        pub fn sync_data(&self) -> io::Result<()> {
            inner!(self, f => f.sync_data())
        }

        /// Sets the last-modification time (turmoil's file system keeps none: a no-op there).
        pub fn set_modified(&self, t: std::time::SystemTime) -> io::Result<()> {
            match self {
                File::Os(f) => f.set_modified(t),
                #[cfg(feature = "turmoil")]
                File::Sim(_) => Ok(()),
            }
        }

        /// The file's current length.
        pub fn size(&self) -> io::Result<u64> {
            inner!(self, f => f.metadata().map(|m| m.len()))
        }

        /// Writes `head` then `tail` at `offset`, both whole (one `pwritev` on Linux).
        pub fn write_all_at2(&self, head: &[u8], tail: &[u8], offset: u64) -> io::Result<()> {
            #[cfg(target_os = "linux")]
            #[allow(irrefutable_let_patterns)]
            if let File::Os(f) = self {
                use std::os::fd::AsRawFd;
                let (mut head, mut tail, mut at) = (head, tail, offset);
                while !head.is_empty() || !tail.is_empty() {
                    let iov = [
                        libc::iovec {
                            iov_base: head.as_ptr() as *mut libc::c_void,
                            iov_len: head.len(),
                        },
                        libc::iovec {
                            iov_base: tail.as_ptr() as *mut libc::c_void,
                            iov_len: tail.len(),
                        },
                    ];
                    // SAFETY: both iovecs point into live slices of their stated lengths,
                    // which pwritev only reads.
                    let n =
                        unsafe { libc::pwritev(f.as_raw_fd(), iov.as_ptr(), 2, at as libc::off_t) };
                    let Some(n) = io_len(n, io::ErrorKind::WriteZero)? else {
                        continue;
                    };
                    at += n as u64;
                    let from_head = n.min(head.len());
                    head = &head[from_head..];
                    tail = &tail[n - from_head..];
                }
                return Ok(());
            }
            use std::os::unix::fs::FileExt;
            self.write_all_at(head, offset)?;
            self.write_all_at(tail, offset + head.len() as u64)
        }

        /// Reads exactly `len` bytes at `offset` into a new buffer (not zero-filled first).
        pub fn read_vec_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
            match self {
                File::Os(f) => {
                    use std::os::fd::AsRawFd;
                    let mut buf: Vec<u8> = Vec::with_capacity(len);
                    while buf.len() < len {
                        let done = buf.len();
                        // SAFETY: pread writes at most `len - done` bytes at `done`, inside the
                        // capacity the Vec owns; `set_len` then covers only bytes it wrote.
                        let n = unsafe {
                            libc::pread(
                                f.as_raw_fd(),
                                buf.as_mut_ptr().add(done).cast(),
                                len - done,
                                (offset + done as u64) as libc::off_t,
                            )
                        };
                        let Some(n) = io_len(n, io::ErrorKind::UnexpectedEof)? else {
                            continue;
                        };
                        // SAFETY: the `n` bytes after `done` were just written by pread.
                        unsafe { buf.set_len(done + n) };
                    }
                    Ok(buf)
                }
                #[cfg(feature = "turmoil")]
                File::Sim(_) => {
                    let mut buf = vec![0u8; len];
                    std::os::unix::fs::FileExt::read_exact_at(self, &mut buf, offset)?;
                    Ok(buf)
                }
            }
        }

        /// Starts writing `[offset, offset + len)` back to disk without waiting for it (Linux
        /// `sync_file_range`); a hint, so a no-op elsewhere and in simulations.
        pub fn start_writeback(&self, offset: u64, len: u64) {
            self.page_cache_hint(offset, len, false);
        }

        /// Waits for `[offset, offset + len)` to be written back, then drops its pages from the
        /// page cache (Linux); a hint, so a no-op elsewhere and in simulations.
        pub fn drop_cached(&self, offset: u64, len: u64) {
            self.page_cache_hint(offset, len, true);
        }

        /// Starts write-back of a range and, if `drop`, waits for it and drops its pages.
        fn page_cache_hint(&self, offset: u64, len: u64, drop: bool) {
            #[cfg(target_os = "linux")]
            #[allow(irrefutable_let_patterns)]
            if let File::Os(f) = self {
                use std::os::fd::AsRawFd;
                let (fd, at, n) = (f.as_raw_fd(), offset as libc::off64_t, len as libc::off64_t);
                let flags = if drop {
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER
                } else {
                    libc::SYNC_FILE_RANGE_WRITE
                };
                // SAFETY: plain syscalls on a descriptor this `File` owns; no memory is passed.
                unsafe {
                    libc::sync_file_range(fd, at, n, flags);
                    if drop {
                        libc::posix_fadvise(fd, at, n, libc::POSIX_FADV_DONTNEED);
                    }
                }
            }
            let _ = (offset, len, drop);
        }
    }

    impl std::os::unix::fs::FileExt for File {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            inner!(self, f => f.read_at(buf, offset))
        }

        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            inner!(self, f => f.write_at(buf, offset))
        }
    }

    impl io::Write for File {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            inner!(self, f => f.write(buf))
        }

        fn flush(&mut self) -> io::Result<()> {
            inner!(self, f => f.flush())
        }
    }

    impl io::Read for File {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            inner!(self, f => f.read(buf))
        }
    }

    /// How to open a file (the subset of `std::fs::OpenOptions` skein uses).
    #[derive(Debug, Clone, Default)]
    pub struct OpenOptions {
        read: bool,
        write: bool,
        append: bool,
        create: bool,
        truncate: bool,
    }

    impl OpenOptions {
        /// No access, no creation.
        pub fn new() -> Self {
            Self::default()
        }

        /// Open for reading.
        pub fn read(&mut self, v: bool) -> &mut Self {
            self.read = v;
            self
        }

        /// Open for writing.
        pub fn write(&mut self, v: bool) -> &mut Self {
            self.write = v;
            self
        }

        /// Open for appending.
        pub fn append(&mut self, v: bool) -> &mut Self {
            self.append = v;
            self
        }

        /// Create the file if missing.
        pub fn create(&mut self, v: bool) -> &mut Self {
            self.create = v;
            self
        }

        /// Truncate the file on open.
        pub fn truncate(&mut self, v: bool) -> &mut Self {
            self.truncate = v;
            self
        }

        /// Opens `path` with these options.
        pub fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
            let path = path.as_ref();
            either!(
                std::fs::OpenOptions::new()
                    .read(self.read)
                    .write(self.write)
                    .append(self.append)
                    .create(self.create)
                    .truncate(self.truncate)
                    .open(path)
                    .map(File::Os),
                tfs::OpenOptions::new()
                    .read(self.read)
                    .write(self.write)
                    .append(self.append)
                    .create(self.create)
                    .truncate(self.truncate)
                    .open(path)
                    .map(File::Sim)
            )
        }
    }

    /// What `metadata` tells.
    #[derive(Debug, Clone, Copy)]
    pub struct Metadata {
        /// Length in bytes.
        pub len: u64,
        /// A regular file (not a directory).
        pub is_file: bool,
        /// Last modification time, where known.
        pub modified: Option<SystemTime>,
    }

    /// One directory entry.
    #[derive(Debug, Clone)]
    pub struct DirEntry {
        /// The entry's name.
        pub name: OsString,
        /// The entry's full path.
        pub path: PathBuf,
        /// A regular file (not a directory).
        pub is_file: bool,
    }

    /// Metadata of `path`.
    pub fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
        let path = path.as_ref();
        either!(
            std::fs::metadata(path).map(|m| Metadata {
                len: m.len(),
                is_file: m.is_file(),
                modified: m.modified().ok(),
            }),
            tfs::metadata(path).map(|m| Metadata {
                len: m.len(),
                is_file: m.is_file(),
                modified: m.modified().ok(),
            })
        )
    }

    /// The entries of directory `path`, sorted by name.
    pub fn read_dir(path: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
        let path = path.as_ref();
        let mut out = Vec::new();
        either!(
            for e in std::fs::read_dir(path)? {
                let e = e?;
                let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
                out.push(DirEntry {
                    name: e.file_name(),
                    path: e.path(),
                    is_file,
                });
            },
            for e in tfs::read_dir(path)? {
                let e = e?;
                let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
                out.push(DirEntry {
                    name: e.file_name(),
                    path: e.path(),
                    is_file,
                });
            }
        );
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates `path` and its missing parents.
    pub fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        either!(std::fs::create_dir_all(path), tfs::create_dir_all(path))
    }

    /// Reads a whole file.
    pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let path = path.as_ref();
        either!(std::fs::read(path), tfs::read(path))
    }

    /// Reads a whole file as UTF-8.
    pub fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
        let path = path.as_ref();
        either!(std::fs::read_to_string(path), tfs::read_to_string(path))
    }

    /// Creates or replaces a file with `bytes` (not synced).
    pub fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        let (path, bytes) = (path.as_ref(), bytes.as_ref());
        either!(std::fs::write(path, bytes), tfs::write(path, bytes))
    }

    /// Removes a file.
    pub fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        either!(std::fs::remove_file(path), tfs::remove_file(path))
    }

    /// Removes a directory and everything under it.
    pub fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        either!(std::fs::remove_dir_all(path), tfs::remove_dir_all(path))
    }

    /// Renames a file or directory.
    pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        either!(std::fs::rename(from, to), tfs::rename(from, to))
    }

    /// Makes the entries of directory `path` (creations, renames, removals) durable.
    pub fn sync_dir(path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        either!(std::fs::File::open(path)?.sync_all(), tfs::sync_dir(path))
    }
}

/// TCP.
pub mod net {
    use super::*;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// Runs `$body` with `$s` bound to the inner value of either variant of `$ty`.
    macro_rules! inner {
        ($ty:ident, $val:expr, $s:ident => $body:expr) => {
            match $val {
                $ty::Os($s) => $body,
                #[cfg(feature = "turmoil")]
                $ty::Sim($s) => $body,
            }
        };
    }

    /// A listening socket.
    pub enum Listener {
        /// A real socket.
        Os(tokio::net::TcpListener),
        /// A socket on turmoil's simulated network.
        #[cfg(feature = "turmoil")]
        Sim(turmoil::net::TcpListener),
    }

    impl Listener {
        /// Binds `addr`.
        pub async fn bind(addr: SocketAddr) -> io::Result<Listener> {
            #[cfg(feature = "turmoil")]
            if simulated() {
                return turmoil::net::TcpListener::bind(addr)
                    .await
                    .map(Listener::Sim);
            }
            tokio::net::TcpListener::bind(addr).await.map(Listener::Os)
        }

        /// Waits for the next connection.
        pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
            match self {
                Listener::Os(l) => l.accept().await.map(|(s, a)| (Stream::Os(s), a)),
                #[cfg(feature = "turmoil")]
                Listener::Sim(l) => l.accept().await.map(|(s, a)| (Stream::Sim(s), a)),
            }
        }

        /// The bound address.
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            inner!(Listener, self, l => l.local_addr())
        }
    }

    /// A connected TCP stream.
    #[derive(Debug)]
    pub enum Stream {
        /// A real socket.
        Os(tokio::net::TcpStream),
        /// A socket on turmoil's simulated network.
        #[cfg(feature = "turmoil")]
        Sim(turmoil::net::TcpStream),
    }

    impl Stream {
        /// Connects to `addr` (`host:port`; inside a simulation, host names resolve through
        /// turmoil).
        pub async fn connect(addr: &str) -> io::Result<Stream> {
            #[cfg(feature = "turmoil")]
            if simulated() {
                return turmoil::net::TcpStream::connect(addr)
                    .await
                    .map(Stream::Sim);
            }
            tokio::net::TcpStream::connect(addr).await.map(Stream::Os)
        }

        /// Turns Nagle's algorithm off (or on).
        pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
            inner!(Stream, self, s => s.set_nodelay(on))
        }

        /// Splits into halves that can be used from different tasks.
        pub fn into_split(self) -> (ReadHalf, WriteHalf) {
            match self {
                Stream::Os(s) => {
                    let (r, w) = s.into_split();
                    (ReadHalf::Os(r), WriteHalf::Os(w))
                }
                #[cfg(feature = "turmoil")]
                Stream::Sim(s) => {
                    let (r, w) = s.into_split();
                    (ReadHalf::Sim(r), WriteHalf::Sim(w))
                }
            }
        }
    }

    /// The read half of a [`Stream`].
    #[derive(Debug)]
    pub enum ReadHalf {
        /// A real socket's.
        Os(tokio::net::tcp::OwnedReadHalf),
        /// A simulated socket's.
        #[cfg(feature = "turmoil")]
        Sim(turmoil::net::tcp::OwnedReadHalf),
    }

    /// The write half of a [`Stream`].
    #[derive(Debug)]
    pub enum WriteHalf {
        /// A real socket's.
        Os(tokio::net::tcp::OwnedWriteHalf),
        /// A simulated socket's.
        #[cfg(feature = "turmoil")]
        Sim(turmoil::net::tcp::OwnedWriteHalf),
    }

    macro_rules! async_read {
        ($ty:ident) => {
            impl AsyncRead for $ty {
                fn poll_read(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &mut ReadBuf<'_>,
                ) -> Poll<io::Result<()>> {
                    inner!($ty, self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
                }
            }
        };
    }

    macro_rules! async_write {
        ($ty:ident) => {
            impl AsyncWrite for $ty {
                fn poll_write(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &[u8],
                ) -> Poll<io::Result<usize>> {
                    inner!($ty, self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
                }

                fn poll_write_vectored(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    bufs: &[io::IoSlice<'_>],
                ) -> Poll<io::Result<usize>> {
                    inner!($ty, self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
                }

                fn is_write_vectored(&self) -> bool {
                    inner!($ty, self, s => s.is_write_vectored())
                }

                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    inner!($ty, self.get_mut(), s => Pin::new(s).poll_flush(cx))
                }

                fn poll_shutdown(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<io::Result<()>> {
                    inner!($ty, self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
                }
            }
        };
    }

    async_read!(Stream);
    async_write!(Stream);
    async_read!(ReadHalf);
    async_write!(WriteHalf);
}

#[cfg(test)]
mod tests {
    use super::fs;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn write_all_at2_writes_both_parts() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(dir.path().join("v"))
            .unwrap();
        f.write_all_at2(b"head", b"", 0).unwrap();
        f.write_all_at2(b"", b"tail", 4).unwrap();
        let big = vec![7u8; 3 << 20];
        f.write_all_at2(b"--", &big, 8).unwrap();
        let back = f.read_vec_at(10 + big.len(), 0).unwrap();
        assert_eq!(&back[..10], b"headtail--");
        assert_eq!(&back[10..], &big[..]);
    }

    #[test]
    fn os_files_round_trip_outside_a_simulation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(&p)
            .unwrap();
        f.write_all(b"hello").unwrap();
        f.write_all_at(b"J", 0).unwrap();
        f.sync_data().unwrap();
        let mut buf = [0u8; 5];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"Jello");
        assert_eq!(f.size().unwrap(), 5);
        fs::sync_dir(dir.path()).unwrap();
        let entries = fs::read_dir(dir.path()).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].is_file);
        assert_eq!(fs::metadata(&p).unwrap().len, 5);
    }
}
