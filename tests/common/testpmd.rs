//! dpdk-testpmd in interactive mode, for the DPDK and AF_XDP tests.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::require_root;

/// dpdk-testpmd in interactive mode, driven through its stdin.
pub struct Testpmd {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
}

impl Testpmd {
    pub fn start(vdevs: &[String], extra: &[&str]) -> Testpmd {
        Testpmd::start_in(None, vdevs, extra)
    }

    /// `start` inside network namespace `netns`.
    pub fn start_in(netns: Option<&str>, vdevs: &[String], extra: &[&str]) -> Testpmd {
        require_root();
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "dpdk-testpmd"]);
                c
            }
            None => Command::new("dpdk-testpmd"),
        };
        c.args([
            "-l",
            "0,1",
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--no-shconf",
        ])
        .args(["--file-prefix", &format!("xcap{}", std::process::id())]);
        for v in vdevs {
            c.arg("--vdev").arg(v);
        }
        c.args(["--", "-i", "--total-num-mbufs=4096"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("dpdk-testpmd (scripts/setup installs it)");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let t = Testpmd { child, stdin, out };
        t.wait_for("testpmd> ", 1);
        t
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `text` has appeared `n` times in testpmd's output (a
    /// bound for failures only: in an emulated VM beside other VMs, EAL
    /// start-up alone has taken over 30 s).
    pub fn wait_for(&self, text: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.out.lock().unwrap().matches(text).count() < n {
            assert!(
                Instant::now() < deadline,
                "testpmd never printed {text:?}: {}",
                self.out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cmd(&mut self, c: &str) {
        let n = self.out.lock().unwrap().matches("testpmd> ").count();
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{c}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        if c != "quit" {
            self.wait_for("testpmd> ", n + 1);
        }
    }

    /// Forward everything the pcap file holds, then stop forwarding.
    pub fn forward(&mut self, npackets: usize) {
        self.cmd("start");
        // The net_pcap port reads its file at once; stop after it is done.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.cmd("show port stats 0");
            let text = self.out.lock().unwrap().clone();
            let last = text.rsplit("RX-packets:").next().unwrap_or("");
            let n: usize = last
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if n >= npackets || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.cmd("stop");
    }

    /// `forward`, then quit (which flushes the output pcap). A capture of
    /// testpmd still running sees it exit; stop the capture after
    /// `forward`, before `quit`, to end it yourself.
    pub fn forward_and_quit(mut self, npackets: usize) {
        self.forward(npackets);
        self.quit();
    }

    pub fn quit(mut self) {
        self.cmd("quit");
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("testpmd did not quit");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
