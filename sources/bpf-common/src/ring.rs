//! A BPF ring buffer read in batches, in place.
//!
//! libbpf's reader (ring_buffer__poll) hands each record to a callback and
//! gives its memory back to the kernel as the callback returns, so a record
//! must be copied out to live longer. This reader takes every committed
//! record in one go, leaves them where the kernel wrote them while the
//! caller puts them in time order and writes them, and gives the space back
//! once (one store to the consumer position per batch, not per record).
//! The layout is the kernel's uapi (include/uapi/linux/bpf.h, kernel/bpf/
//! ringbuf.c): a consumer page, a producer page, then the data area mapped
//! twice in a row so that a record that wraps is contiguous.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: u64 = 8;

pub struct Ring<'a> {
    fd: BorrowedFd<'a>,
    /// The consumer page (read-write).
    cons: *mut u8,
    /// The producer page and the data area twice (read-only).
    prod: *mut u8,
    prod_len: usize,
    page: usize,
    mask: u64,
    /// Where the records taken but not yet given back end.
    taken: u64,
}

// SAFETY: the mappings belong to this value alone; the kernel side is
// synchronised through the acquire/release positions.
unsafe impl Send for Ring<'_> {}

impl<'a> Ring<'a> {
    /// Map the ring buffer `map` (a BPF_MAP_TYPE_RINGBUF of `size` bytes).
    pub fn new(map: &'a libbpf_rs::MapHandle) -> io::Result<Self> {
        use libbpf_rs::MapCore;
        let size = map.max_entries() as usize;
        if !size.is_power_of_two() {
            return Err(io::Error::other(format!(
                "ring buffer size {size} is not a power of two"
            )));
        }
        let fd = map.as_fd();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map_at = |len: usize, prot: i32, off: usize| {
            // SAFETY: a fresh shared mapping of the map's fd; the kernel
            // checks the offsets and permissions.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    off as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                Err(io::Error::last_os_error())
            } else {
                Ok(p as *mut u8)
            }
        };
        let cons = map_at(page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let prod_len = page + 2 * size;
        let prod = match map_at(prod_len, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: mapped just above with this length.
                unsafe { libc::munmap(cons as *mut libc::c_void, page) };
                return Err(e);
            }
        };
        let mut ring = Ring {
            fd,
            cons,
            prod,
            prod_len,
            page,
            mask: size as u64 - 1,
            taken: 0,
        };
        ring.taken = ring.consumer().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped for the life of self, the position is
        // its first 8 bytes, aligned.
        unsafe { &*(self.cons as *const AtomicU64) }
    }

    fn producer(&self) -> &AtomicU64 {
        // SAFETY: as for consumer(), in the producer page.
        unsafe { &*(self.prod as *const AtomicU64) }
    }

    /// Wait up to `timeout` for records. Returns false on a timeout or a
    /// signal.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(n > 0)
    }

    /// Hand every committed record after those already taken to `f`, in
    /// the ring's order, up to the first one still being written. The
    /// memory of a record stays valid, in place, until [`Ring::give_back`]
    /// (the slice itself lives only for the call: a caller that keeps a
    /// pointer to it answers for not using it later). Returns how many
    /// there were.
    pub fn take(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        let prod = self.producer().load(Ordering::Acquire);
        let mut n = 0;
        // SAFETY: the data area follows the producer page.
        let data = unsafe { self.prod.add(self.page) };
        while self.taken < prod {
            let at = (self.taken & self.mask) as usize;
            // SAFETY: `at` is within the first copy of the data area, the
            // header is 8-byte aligned (records are rounded up to 8).
            let len = unsafe { &*(data.add(at) as *const AtomicU32) }.load(Ordering::Acquire);
            if len & BUSY != 0 {
                break;
            }
            let size = (len & !(BUSY | DISCARD)) as u64;
            if len & DISCARD == 0 {
                // SAFETY: a committed record of `size` bytes after its
                // header; the second mapping makes a wrapping one
                // contiguous. It is not written again before give_back:
                // the kernel reuses space only behind the consumer
                // position.
                f(unsafe {
                    std::slice::from_raw_parts(data.add(at + HDR as usize), size as usize)
                });
                n += 1;
            }
            self.taken += (size + HDR + 7) & !7;
        }
        n
    }

    /// Give the space of every record taken back to the kernel. A record
    /// handed out by `take` must not be used after this.
    pub fn give_back(&mut self) {
        self.consumer().store(self.taken, Ordering::Release);
    }
}

impl Drop for Ring<'_> {
    fn drop(&mut self) {
        // SAFETY: both mapped in new() with these lengths.
        unsafe {
            libc::munmap(self.cons as *mut libc::c_void, self.page);
            libc::munmap(self.prod as *mut libc::c_void, self.prod_len);
        }
    }
}
