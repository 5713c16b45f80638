//! Shared fixtures for the end-to-end tests. They need root: they create
//! network namespaces and veth pairs, load BPF and run tcpdump. Everything
//! they create is removed on drop, also when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const XCAP: &str = env!("CARGO_BIN_EXE_xcap");

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load BPF and create network namespaces: run them as root"
    );
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "command failed: {cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair: `a` (10.X.Y.1 on `va`) and `b`
/// (10.X.Y.2 on `vb`), IPv6 off so only the test's traffic flows.
pub struct VethPair {
    pub a: String,
    pub b: String,
    pub va: String,
    pub vb: String,
    pub ip_a: String,
    pub ip_b: String,
}

impl VethPair {
    pub fn new() -> Self {
        require_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100000, n);
        let (a, b) = (format!("xa{tag}"), format!("xb{tag}"));
        let third = (pid % 250) as u8;
        let v = VethPair {
            va: "va".into(),
            vb: "vb".into(),
            ip_a: format!("10.{}.{}.1", 100 + n, third),
            ip_b: format!("10.{}.{}.2", 100 + n, third),
            a,
            b,
        };
        let _ = Command::new("ip").args(["netns", "del", &v.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &v.b]).output();
        sh(&format!("ip netns add {}", v.a));
        sh(&format!("ip netns add {}", v.b));
        for ns in [&v.a, &v.b] {
            sh(&format!(
                "ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; ip link set lo up'"
            ));
        }
        sh(&format!(
            "ip link add {va} netns {a} type veth peer name {vb} netns {b}",
            va = v.va,
            vb = v.vb,
            a = v.a,
            b = v.b
        ));
        sh(&format!(
            "ip -n {} addr add {}/24 dev {} && ip -n {} link set {} up",
            v.a, v.ip_a, v.va, v.a, v.va
        ));
        sh(&format!(
            "ip -n {} addr add {}/24 dev {} && ip -n {} link set {} up",
            v.b, v.ip_b, v.vb, v.b, v.vb
        ));
        v
    }

    /// Run a command inside namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &str) -> String {
        sh(&format!("ip netns exec {ns} {cmd}"))
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// A background capture process that is ready once it printed `ready` on
/// stderr; stopped with SIGINT.
pub struct Capture {
    child: Option<Child>,
    stderr_lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Capture {
    pub fn start(mut cmd: Command, ready: &str) -> Self {
        cmd.stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("start capture process");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Capture {
            child: Some(child),
            stderr_lines: rx,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match c.stderr_lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(ready);
                    c.seen.push(l);
                    if hit {
                        break;
                    }
                }
                Err(_) => panic!("capture never became ready; stderr: {:?}", c.seen),
            }
        }
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Wait for the process to end by itself; its stdout (must be piped).
    pub fn wait_output(mut self) -> String {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGINT, wait, and return (exit code, all of stderr).
    pub fn stop(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        // Let the last packets reach the capture.
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("capture did not stop on SIGINT; stderr: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn xcap_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(XCAP);
    c.args(args);
    c
}

/// tcpdump inside namespace `ns` on `iface`, writing `file`.
pub fn tcpdump(ns: &str, iface: &str, file: &Path, extra: &[&str]) -> Capture {
    let mut c = Command::new("ip");
    c.args([
        "netns", "exec", ns, "tcpdump", "-U", "-n", "-i", iface, "-w",
    ])
    .arg(file)
    .args(extra);
    Capture::start(c, "listening on")
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xcap-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Packets of a pcap or pcapng file: (link type, bytes, original length).
pub fn read_packets(path: &Path) -> Vec<(u16, Vec<u8>, u32)> {
    read_packets_ts(path)
        .into_iter()
        .map(|(l, d, o, _)| (l, d, o))
        .collect()
}

/// As `read_packets`, with each packet's timestamp in ns since the epoch.
pub fn read_packets_ts(path: &Path) -> Vec<(u16, Vec<u8>, u32, u64)> {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let f = std::fs::File::open(path).unwrap();
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open(path).unwrap(), &mut magic).unwrap();
    let mut out = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(f).unwrap();
        let mut links = Vec::new();
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(i) => links.push(u32::from(i.linktype) as u16),
                Block::EnhancedPacket(p) => out.push((
                    links[p.interface_id as usize],
                    p.data.into_owned(),
                    p.original_len,
                    p.timestamp.as_nanos() as u64,
                )),
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(f).unwrap();
        let link = u32::from(r.header().datalink) as u16;
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            out.push((
                link,
                p.data.into_owned(),
                p.orig_len,
                p.timestamp.as_nanos() as u64,
            ));
        }
    }
    out
}
