//! A global allocator that keeps a hostile length prefix from aborting the broker.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)` with `n` read from the
//! wire before checking that the frame holds `n` elements. A 30-byte frame can therefore ask for
//! hundreds of gigabytes; the allocation fails and Rust aborts the process — every client's
//! connection with it. Stable Rust offers no way to turn that abort into an error.
//!
//! Invariant kept: any request of [`HUGE_BYTES`] or more is served by an anonymous
//! `MAP_NORESERVE` mapping, which reserves address space but commits memory only for pages that
//! are written. Decoding writes at most one element per byte of the frame (frames are capped by
//! `socket.request.max.bytes`), fails at the end of the frame, and the mapping is released. All
//! other requests go to the system allocator unchanged. No legitimate allocation in skein comes
//! near this size.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are served by lazily committed mappings.
pub const HUGE_BYTES: usize = 1 << 30;

/// The allocator; install with `#[global_allocator]` in the binary.
pub struct GuardedAlloc;

fn huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= 4096
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from `map`
// (and returned with munmap of the same size, which `Layout` carries back to us).
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if huge(&layout) {
            // Fresh anonymous pages are already zero.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if huge(&layout) {
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !huge(&layout) && !huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocation_is_lazy_and_usable() {
        let a = GuardedAlloc;
        // 256 GiB: far beyond this machine's memory, fine as reserved address space.
        let layout = Layout::from_size_align(256 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            *p.add((256 << 30) - 1) = 9;
            assert_eq!(*p, 7);
            let q = a.realloc(p, layout, 64);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(64, 8).unwrap());
            let small = Layout::from_size_align(64, 8).unwrap();
            let s = a.alloc(small);
            let s2 = a.realloc(s, small, HUGE_BYTES);
            assert!(!s2.is_null());
            a.dealloc(s2, Layout::from_size_align(HUGE_BYTES, 8).unwrap());
        }
    }
}
