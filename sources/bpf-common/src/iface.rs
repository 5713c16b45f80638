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

/// What a BPF source matches packets against for `-i` and `--netns`:
/// (ifindex, netns inode) pairs, ifindex 0 for every interface of a
/// namespace; empty for everything. At most `MAX_IFACES` (the BPF side's
/// table).
pub fn selection(names: &[String], netns: Option<&str>) -> Result<Vec<(u32, u32)>> {
    let mut ifaces = resolve(names, netns)?;
    if ifaces.is_empty() {
        if let Some(ns) = netns {
            ifaces.push((0, netns_inode(ns)?));
        }
    }
    let max = xcap_core::event::MAX_IFACES;
    if ifaces.len() > max {
        return Err(Error::input(format!(
            "too many interfaces: at most {max} -i options"
        )));
    }
    Ok(ifaces)
}

/// Inode of the namespace named by `--netns` (to match all of its interfaces).
pub fn netns_inode(spec: &str) -> Result<u32> {
    let path = netns_path(spec);
    std::fs::metadata(&path)
        .map(|m| m.ino() as u32)
        .map_err(|e| Error::input(format!("network namespace {}: {e}", path.display())))
}

/// Watches the `-i` interfaces for as long as the capture runs: a thread
/// that lives in their namespace (entered once, while xcap still may) and
/// checks every quarter second that each index still carries its name. An
/// interface deleted (or its index taken by another) ends the capture, as
/// in tcpdump.
pub struct Watch {
    gone: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watch {
    pub fn start(names: &[String], netns: Option<&str>) -> Result<Option<Watch>> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let names: Vec<String> = names.iter().filter(|n| *n != "any").cloned().collect();
        if names.is_empty() {
            return Ok(None);
        }
        let file = match netns {
            Some(spec) => {
                let path = netns_path(spec);
                Some(File::open(&path).map_err(|e| {
                    Error::input(format!("network namespace {}: {e}", path.display()))
                })?)
            }
            None => None,
        };
        let gone = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (gone.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("xcap-ifwatch".into())
            .spawn(move || {
                // SAFETY: setns on a valid namespace fd affects only this thread.
                if let Some(f) = &file {
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let _ = tx.send(Err(std::io::Error::last_os_error()));
                        return;
                    }
                }
                let idx: Vec<(String, u32)> =
                    names.iter().map(|n| (n.clone(), index_of(n))).collect();
                let _ = tx.send(Ok(()));
                while !s.load(Ordering::Relaxed) {
                    if let Some((n, _)) =
                        idx.iter().find(|(n, i)| name_of(*i).as_deref() != Some(n))
                    {
                        *g.lock().unwrap_or_else(|e| e.into_inner()) = Some(n.clone());
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            })
            .map_err(|e| Error::runtime(format!("cannot start the interface watch: {e}")))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(Some(Watch { gone, stop })),
            Ok(Err(e)) => Err(Error::input(format!("cannot enter network namespace: {e}"))),
            Err(_) => Err(Error::runtime("the interface watch did not start")),
        }
    }

    /// The name of an interface that went away, if one did.
    pub fn gone(&self) -> Option<String> {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn index_of(name: &str) -> u32 {
    CString::new(name).map_or(0, |c| {
        // SAFETY: c is a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    })
}

fn name_of(idx: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(idx, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}
