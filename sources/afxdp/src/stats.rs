//! The kernel's own statistics of an AF_XDP socket (getsockopt
//! XDP_STATISTICS), read from a copy of its owner's descriptor
//! (pidfd_getfd), as no interface gives them for another process's socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::owners::Owner;

/// `struct xdp_statistics` (linux/if_xdp.h, 5.9 and later).
pub const NAMES: [&str; 6] = [
    "rx_dropped",
    "rx_invalid_descs",
    "tx_invalid_descs",
    "rx_ring_full",
    "rx_fill_ring_empty_descs",
    "tx_ring_empty_descs",
];
const SOL_XDP: libc::c_int = 283;
const XDP_STATISTICS: libc::c_int = 7;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The statistics of socket `ino`, held by `owner`; an error when the
/// process or the socket is gone (or its descriptor now holds another).
pub fn read(owner: &Owner, ino: u32) -> io::Result<[u64; 6]> {
    // SAFETY: plain system calls; each descriptor returned is owned once.
    let pidfd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, owner.pid, 0) })?;
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let fd =
        check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), owner.fd, 0) })?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let st = std::fs::File::from(fd.try_clone()?).metadata()?;
    if st.ino() != u64::from(ino) {
        return Err(io::Error::other("descriptor reused"));
    }
    let mut v = [0u64; 6];
    let mut len = std::mem::size_of_val(&v) as libc::socklen_t;
    // SAFETY: `v` is writable for `len` bytes, which the kernel updates.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            XDP_STATISTICS,
            v.as_mut_ptr().cast(),
            &mut len,
        )
    } as libc::c_long)?;
    Ok(v)
}

/// `name=value` for each statistic, as the kernel names them.
pub fn format(v: &[u64; 6]) -> String {
    NAMES
        .iter()
        .zip(v)
        .map(|(n, x)| format!("{n}={x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
