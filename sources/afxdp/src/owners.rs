//! Socket inode -> owning process, found the way `ss -p` does: the
//! /proc/PID/fd links that read "socket:[INODE]". The BPF side runs in
//! whatever context delivered the packet (softirq, the sender), so the task
//! it sees is not the application's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often /proc is searched again for a socket not found yet.
const RESCAN: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Owner {
    pub pid: u32,
    pub comm: Arc<str>,
    /// The socket's descriptor in that process.
    pub fd: i32,
}

#[derive(Default)]
pub struct Owners {
    known: HashMap<u32, Owner>,
    /// Sockets looked for and not found (closed, or not yet visible).
    missed: std::collections::HashSet<u32>,
    last_scan: Option<Instant>,
}

impl Owners {
    /// The process holding socket `ino`, if one does.
    pub fn get(&mut self, ino: u32) -> Option<Owner> {
        if ino == 0 {
            return None;
        }
        if let Some(o) = self.known.get(&ino) {
            return Some(o.clone());
        }
        // A socket not looked for yet is looked for at once (an application
        // started while capturing); one already missed, at most every RESCAN.
        if self.missed.contains(&ino) && self.last_scan.is_some_and(|t| t.elapsed() < RESCAN) {
            return None;
        }
        self.scan();
        let found = self.known.get(&ino).cloned();
        if found.is_none() && self.missed.len() < 4096 {
            self.missed.insert(ino);
        }
        found
    }

    /// Every socket of every process. A socket shared by several processes
    /// (a fork) goes to the lowest pid, as stable as any choice.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut pids: Vec<u32> = procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        let mut found = HashMap::new();
        for pid in pids {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            let mut comm: Option<Arc<str>> = None;
            for fd in fds.flatten() {
                let Some(num) = fd.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(ino) = socket_inode(&link.to_string_lossy()) else {
                    continue;
                };
                let comm = comm.get_or_insert_with(|| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_default()
                        .into()
                });
                found.entry(ino).or_insert(Owner {
                    pid,
                    comm: comm.clone(),
                    fd: num,
                });
            }
        }
        self.missed.retain(|i| !found.contains_key(i));
        self.known = found;
    }
}

fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_socket() {
        use std::os::unix::fs::MetadataExt;
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&s));
        let ino = std::fs::metadata(path).unwrap().ino() as u32;
        let o = Owners::default().get(ino).expect("own socket found");
        assert_eq!(o.pid, std::process::id());
        assert_eq!(o.fd, std::os::fd::AsRawFd::as_raw_fd(&s));
        assert_eq!(socket_inode("socket:[42]"), Some(42));
        assert_eq!(socket_inode("pipe:[42]"), None);
    }
}
