//! One AF_XDP socket with its own UMEM and rings, through the raw UAPI.

use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::uapi::*;
use crate::Fail;

/// The last OS error as the kernel's message, without Rust's "(os error N)".
pub fn strerror(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A syscall's 0-or-minus-1 result as a Result with the errno.
fn check(r: libc::c_int) -> Result<(), i32> {
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn os_fail(what: &str) -> Fail {
    Fail::runtime(format!("{what}: {}", strerror(errno())))
}

/// A single-producer/single-consumer ring shared with the kernel. We are
/// the producer of fill and TX rings and the consumer of RX and completion
/// rings; the other side's index is read with Acquire (so the entries it
/// published are visible), ours is published with Release (so the entries
/// we wrote, or finished reading, are ordered before it).
pub struct Ring<T> {
    area: *mut libc::c_void,
    area_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    size: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    fn map(fd: i32, off: &XdpRingOffset, size: u32, pgoff: u64) -> Result<Self, Fail> {
        let area_len = off.desc as usize + size as usize * size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel
        // checks the offset and length.
        let area = unsafe {
            libc::mmap(
                ptr::null_mut(),
                area_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(os_fail(&format!("mmap the ring at {pgoff:#x}")));
        }
        let at = |o: u64| (area as usize + o as usize) as *mut u8;
        Ok(Ring {
            area,
            area_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            size,
            _t: PhantomData,
        })
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: inside the mapping for as long as self lives; the kernel
        // aligns the indexes.
        unsafe { &*self.producer }
    }

    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as prod().
        unsafe { &*self.consumer }
    }

    /// Producer side: how many entries can be written.
    pub fn free(&self) -> u32 {
        let used = self
            .prod()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.cons().load(Ordering::Acquire));
        self.size - used
    }

    /// Producer side: write entries at the producer index, then publish them.
    pub fn produce(&self, items: &[T]) {
        debug_assert!(items.len() as u32 <= self.free());
        let p = self.prod().load(Ordering::Relaxed);
        for (i, item) in items.iter().enumerate() {
            let slot = p.wrapping_add(i as u32) & (self.size - 1);
            // SAFETY: slot < size, inside the entries array; the consumer
            // does not read it until the Release store below.
            unsafe { self.entries.add(slot as usize).write_volatile(*item) };
        }
        self.prod()
            .store(p.wrapping_add(items.len() as u32), Ordering::Release);
    }

    /// Consumer side: take every entry the kernel published.
    pub fn consume(&self, out: &mut Vec<T>) -> usize {
        let c = self.cons().load(Ordering::Relaxed);
        let n = self.prod().load(Ordering::Acquire).wrapping_sub(c);
        for i in 0..n {
            let slot = c.wrapping_add(i) & (self.size - 1);
            // SAFETY: slot < size; published by the Acquire load above and
            // not reused by the kernel before our Release store below.
            out.push(unsafe { self.entries.add(slot as usize).read_volatile() });
        }
        self.cons().store(c.wrapping_add(n), Ordering::Release);
        n as usize
    }

    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as prod().
        unsafe { &*self.flags }.load(Ordering::Acquire) & XDP_RING_NEED_WAKEUP != 0
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping, not used after this.
        unsafe { libc::munmap(self.area, self.area_len) };
    }
}

pub struct Config {
    pub frame_size: u32,
    pub frames: u32,
    pub rx: bool,
    pub tx: bool,
}

/// The packet buffer area, registered with the socket.
struct Umem {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the kernel keeps its pages pinned for as
        // long as the socket needs them.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub struct Xsk {
    // Dropped in this order: rings unmapped, then the UMEM, then the socket.
    pub fill: Ring<u64>,
    pub comp: Ring<u64>,
    pub rx: Option<Ring<XdpDesc>>,
    pub tx: Option<Ring<XdpDesc>>,
    umem: Umem,
    pub fd: OwnedFd,
}

fn setsockopt<T>(fd: i32, opt: libc::c_int, val: &T) -> Result<(), i32> {
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: val is a plain repr(C) value of the size passed.
    check(unsafe { libc::setsockopt(fd, SOL_XDP, opt, (val as *const T).cast(), len) })
}

fn getsockopt<T: Default>(fd: i32, opt: libc::c_int) -> Result<T, i32> {
    let mut val = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most len bytes into val.
    check(unsafe { libc::getsockopt(fd, SOL_XDP, opt, (&mut val as *mut T).cast(), &mut len) })?;
    Ok(val)
}

impl Xsk {
    /// The socket, its UMEM (frames * frame_size bytes) and rings, not bound.
    pub fn create(cfg: &Config) -> Result<Xsk, Fail> {
        // SAFETY: plain syscall.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_fail("socket(AF_XDP)"));
        }
        // SAFETY: raw is a new fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = cfg.frame_size as usize * cfg.frames as usize;
        // SAFETY: a fresh anonymous mapping; the kernel pins it at UMEM_REG.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_fail("mmap the UMEM"));
        }
        let umem = Umem {
            ptr: ptr.cast(),
            len,
        };
        let reg = XdpUmemReg {
            addr: ptr as u64,
            len: len as u64,
            chunk_size: cfg.frame_size,
            ..Default::default()
        };
        let sfd = fd.as_raw_fd();
        let fail = |what: &str, e| Fail::runtime(format!("{what}: {}", strerror(e)));
        setsockopt(sfd, XDP_UMEM_REG, &reg).map_err(|e| fail("register the UMEM", e))?;
        let ring = cfg.frames.next_power_of_two();
        for (what, opt, wanted) in [
            ("size the fill ring", XDP_UMEM_FILL_RING, true),
            ("size the completion ring", XDP_UMEM_COMPLETION_RING, true),
            ("size the RX ring", XDP_RX_RING, cfg.rx),
            ("size the TX ring", XDP_TX_RING, cfg.tx),
        ] {
            if wanted {
                setsockopt(sfd, opt, &ring).map_err(|e| fail(what, e))?;
            }
        }
        let off: XdpMmapOffsets =
            getsockopt(sfd, XDP_MMAP_OFFSETS).map_err(|e| fail("XDP_MMAP_OFFSETS", e))?;
        Ok(Xsk {
            fill: Ring::map(sfd, &off.fr, ring, XDP_UMEM_PGOFF_FILL_RING)?,
            comp: Ring::map(sfd, &off.cr, ring, XDP_UMEM_PGOFF_COMPLETION_RING)?,
            rx: cfg
                .rx
                .then(|| Ring::map(sfd, &off.rx, ring, XDP_PGOFF_RX_RING))
                .transpose()?,
            tx: cfg
                .tx
                .then(|| Ring::map(sfd, &off.tx, ring, XDP_PGOFF_TX_RING))
                .transpose()?,
            umem,
            fd,
        })
    }

    /// Bind to a device's queue; the errno on failure.
    pub fn bind(&self, ifindex: u32, queue: u32, flags: u16) -> Result<(), i32> {
        let sa = SockaddrXdp {
            sxdp_family: AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let (fd, len) = (self.fd.as_raw_fd(), size_of::<SockaddrXdp>());
        // SAFETY: sa is a complete sockaddr_xdp.
        check(unsafe { libc::bind(fd, (&sa as *const SockaddrXdp).cast(), len as u32) })
    }

    /// Copy bytes into the UMEM at addr (a frame that is ours: not on a
    /// fill or TX ring).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fail> {
        if addr as usize + data.len() > self.umem.len {
            return Err(Fail::runtime(format!("frame {addr:#x} out of the UMEM")));
        }
        // SAFETY: inside the UMEM (checked); the kernel does not touch a
        // frame while the application owns it.
        unsafe {
            ptr::copy_nonoverlapping(data.as_ptr(), self.umem.ptr.add(addr as usize), data.len())
        };
        Ok(())
    }

    /// The socket's inode, as /proc/PID/fd and `ss` show it.
    pub fn inode(&self) -> u64 {
        // SAFETY: st is written by fstat before it is read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and stat buffer.
        match unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } {
            0 => st.st_ino,
            _ => 0,
        }
    }

    /// Whether the bound socket is in zero-copy mode.
    pub fn zerocopy(&self) -> Option<bool> {
        let o: XdpOptions = getsockopt(self.fd.as_raw_fd(), XDP_OPTIONS).ok()?;
        Some(o.flags & XDP_OPTIONS_ZEROCOPY != 0)
    }

    pub fn stats(&self) -> String {
        match getsockopt::<XdpStatistics>(self.fd.as_raw_fd(), XDP_STATISTICS) {
            Ok(s) => format!(
                "rx_dropped={} rx_invalid={} tx_invalid={} rx_ring_full={} fill_empty={} tx_empty={}",
                s.rx_dropped,
                s.rx_invalid_descs,
                s.tx_invalid_descs,
                s.rx_ring_full,
                s.rx_fill_ring_empty_descs,
                s.tx_ring_empty_descs
            ),
            Err(e) => format!("XDP_STATISTICS: {}", strerror(e)),
        }
    }
}
