//! `-i NAME` resolved to (ifindex, netns inode), in the namespace named by
//! `--netns` or in the current one (so `ip netns exec NS xcap -i eth0` works).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use xcap_core::{Error, Result};

/// Path of a namespace given by name (`ip netns` convention) or path.
pub fn netns_path(spec: &str) -> PathBuf {
    if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        PathBuf::from("/var/run/netns").join(spec)
    }
}

/// Run `f` with the calling thread moved into the namespace at `path`.
/// A fresh thread is used so the caller's namespace never changes.
fn in_netns<T: Send>(path: &PathBuf, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = File::open(path)
        .map_err(|e| Error::input(format!("network namespace {}: {e}", path.display())))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on a valid namespace fd affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::input(format!(
                    "cannot enter network namespace {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                )));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| Error::runtime("namespace thread panicked"))?
    })
}

fn current_netns_inode() -> Result<u32> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino() as u32)
        .map_err(|e| Error::runtime(format!("cannot read /proc/thread-self/ns/net: {e}")))
}

fn lookup(names: &[String]) -> Result<(u32, Vec<u32>)> {
    let ns = current_netns_inode()?;
    let mut idx = Vec::new();
    for n in names {
        let c = CString::new(n.as_str())
            .map_err(|_| Error::input(format!("bad interface name {n:?}")))?;
        // SAFETY: c is a valid NUL-terminated string.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if i == 0 {
            return Err(Error::input(format!("no such interface: {n}")));
        }
        idx.push(i);
    }
    Ok((ns, idx))
}

/// Resolve interfaces; returns (ifindex, netns inode) pairs. `any` selects
/// every interface, as in tcpdump.
pub fn resolve(names: &[String], netns: Option<&str>) -> Result<Vec<(u32, u32)>> {
    let names: Vec<String> = names.iter().filter(|n| *n != "any").cloned().collect();
    let (ns, idx) = match netns {
        Some(spec) => {
            let path = netns_path(spec);
            let names2 = names.clone();
            in_netns(&path, move || lookup(&names2))??
        }
        None => lookup(&names)?,
    };
    Ok(idx.into_iter().map(|i| (i, ns)).collect())
}

/// Inode of the namespace named by `--netns` (to match all of its interfaces).
pub fn netns_inode(spec: &str) -> Result<u32> {
    let path = netns_path(spec);
    std::fs::metadata(&path)
        .map(|m| m.ino() as u32)
        .map_err(|e| Error::input(format!("network namespace {}: {e}", path.display())))
}
