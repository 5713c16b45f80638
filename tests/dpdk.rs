//! End-to-end tests of the DPDK source against real DPDK: dpdk-testpmd
//! with the net_pcap driver reads in.pcap and writes out.pcap, which is
//! DPDK's own record of what it sent: the oracle for the TX side. Needs
//! root and dpdk-testpmd (scripts/setup installs both).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::testpmd::Testpmd;
use common::*;

/// testpmd busy-polls a core; on a 2-core machine the tests take turns.
static DPDK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    DPDK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ethernet + IPv4 + UDP (or TCP) frames of varied sizes; bytes that say
/// which packet they are, so a mix-up cannot go unnoticed.
fn frames(n: usize, max: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = 60 + (i * 97) % (max - 60);
            let tcp = i % 3 == 2;
            let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
            let ip_len = (len - 14) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&ip_len.to_be_bytes());
            f.extend_from_slice(&(i as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 64, if tcp { 6 } else { 17 }, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            f.extend_from_slice(&(1000 + i as u16).to_be_bytes());
            f.extend_from_slice(&2000u16.to_be_bytes());
            if tcp {
                f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            } else {
                f.extend_from_slice(&(ip_len - 20).to_be_bytes());
                f.extend_from_slice(&[0, 0]);
            }
            while f.len() < len {
                f.push((f.len() * 7 + i) as u8);
            }
            f
        })
        .collect()
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::with_header(f, PcapHeader::default()).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(i as u64),
            fr.len() as u32,
            fr,
        ))
        .unwrap();
    }
}

/// The net_pcap port of the fixture: reads DIR/in.pcap, writes DIR/out.pcap.
fn pcap_vdev(dir: &Path) -> String {
    format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        dir.join("in.pcap").display(),
        dir.join("out.pcap").display()
    )
}

/// What xcap recorded per packet: (hook, ifname, dir, queue, extra).
fn metadata(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(XCAP)
        .arg("-r")
        .arg(file)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Run {
    dir: PathBuf,
    input: Vec<Vec<u8>>,
    stderr: String,
    file: PathBuf,
}

/// The net_pcap fixture with xcap attached: xcap ends by itself when the
/// application exits.
fn pcap_fixture(name: &str, nframes: usize, max: usize, testpmd: &[&str], xcap: &[&str]) -> Run {
    let _g = lock();
    let dir = tmpdir(name);
    let input = frames(nframes, max);
    write_pcap(&dir.join("in.pcap"), &input);
    let vdev = pcap_vdev(&dir);
    let mut args = vec!["--no-flush-rx", "--forward-mode=io", "--port-topology=loop"];
    args.extend_from_slice(testpmd);
    let mut t = Testpmd::start(&[vdev], &args);
    let file = dir.join("x.pcapng");
    let pid = t.pid().to_string();
    let mut a = vec!["--source", "dpdk", "--dpdk-pid", &pid, "-w"];
    let f = file.to_str().unwrap().to_string();
    a.push(&f);
    a.extend_from_slice(xcap);
    let cap = Capture::start(xcap_cmd(&a), "capturing from");
    // xcap stopped before testpmd quits: else it may see the exit first
    // and end by itself (exit 1), as it should.
    t.forward(nframes);
    let (code, stderr) = cap.stop();
    t.quit();
    assert_eq!(code, 0, "{stderr}");
    Run {
        dir,
        input,
        stderr,
        file,
    }
}

fn split_by_dir(run: &Run) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let pkts = read_packets(&run.file);
    let meta = metadata(&run.file);
    assert_eq!(pkts.len(), meta.len());
    let (mut rx, mut tx) = (Vec::new(), Vec::new());
    for (p, m) in pkts.iter().zip(&meta) {
        assert_eq!(p.0, 1, "Ethernet");
        assert_eq!(p.1.len() as u32, p.2, "captured whole");
        match m["dir"].as_str() {
            Some("In") => rx.push(p.1.clone()),
            Some("Out") => tx.push(p.1.clone()),
            d => panic!("direction {d:?}"),
        }
    }
    (rx, tx, meta)
}

#[test]
fn net_pcap_rx_and_tx_equal_dpdk_files() {
    let run = pcap_fixture("dpdk-pcap", 40, 1500, &[], &[]);
    let (rx, tx, meta) = split_by_dir(&run);
    assert_eq!(rx, run.input, "RX = the packets of in.pcap, in order");
    let oracle: Vec<Vec<u8>> = read_packets(&run.dir.join("out.pcap"))
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(oracle.len(), 40);
    assert_eq!(tx, oracle, "TX = DPDK's own out.pcap");
    for m in &meta {
        assert_eq!(m["source"], "dpdk");
        assert_eq!(m["ifname"], "net_pcap0", "port name from DPDK");
        assert_eq!(m["ifindex"], 0, "port");
        assert_eq!(m["queue"], 0);
        let hook = if m["dir"] == "In" {
            "rx_burst"
        } else {
            "tx_burst"
        };
        assert_eq!(m["hook"], hook);
        assert!(m["packet_id"].as_str().unwrap().starts_with("0x"));
    }
    // Each packet is received before it is sent: rx of packet i precedes
    // its tx in the merged timeline.
    let order: Vec<(bool, Vec<u8>)> = read_packets(&run.file)
        .into_iter()
        .zip(&meta)
        .map(|(p, m)| (m["dir"] == "In", p.1))
        .collect();
    for f in &run.input {
        let r = order.iter().position(|(i, d)| *i && d == f).unwrap();
        let t = order.iter().position(|(i, d)| !*i && d == f).unwrap();
        assert!(r < t);
    }
    assert!(run.stderr.contains("port 0 net_pcap0"), "{}", run.stderr);
}

/// Both ways of running the probes: in xcap, and in its helper process.
const MODES: [&[&str]; 2] = [&[], &["--dpdk-helper"]];

#[test]
fn filter_lets_only_the_matching_packet_through() {
    for mode in MODES {
        let mut args = mode.to_vec();
        args.push("udp and src port 1004");
        let run = pcap_fixture("dpdk-filter", 30, 1500, &[], &args);
        let (rx, tx, _) = split_by_dir(&run);
        let want = vec![run.input[4].clone()];
        assert_eq!(rx, want, "{mode:?}");
        assert_eq!(tx, want, "{mode:?}");
    }
}

#[test]
fn chained_mbufs_are_captured_whole() {
    // 512-byte mbufs hold 384 bytes of data: large packets span segments.
    for mode in MODES {
        let run = pcap_fixture("dpdk-segs", 20, 1500, &["--mbuf-size=512"], mode);
        let (rx, tx, meta) = split_by_dir(&run);
        assert_eq!(rx, run.input, "{mode:?}");
        assert_eq!(tx, run.input, "{mode:?}");
        let max_segs = meta
            .iter()
            .filter_map(|m| m["extra"]["segs"].as_str()?.parse::<u32>().ok())
            .max()
            .unwrap_or(1);
        assert!(max_segs >= 3, "largest packet spans {max_segs} segments");
    }
}

#[test]
fn helper_process_captures_the_same() {
    let run = pcap_fixture("dpdk-helper", 25, 1500, &[], &["--dpdk-helper"]);
    let (rx, tx, _) = split_by_dir(&run);
    assert_eq!(rx, run.input);
    let oracle: Vec<Vec<u8>> = read_packets(&run.dir.join("out.pcap"))
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(tx, oracle);
    assert!(
        !sh("ps -eo args").contains("--xcap-helper"),
        "helper left behind"
    );
}

#[test]
fn hand_named_hooks_by_library_offset() {
    // Learn where the burst functions are, then name them by hand.
    let first = pcap_fixture("dpdk-hook1", 5, 600, &[], &[]);
    let line = first
        .stderr
        .lines()
        .find(|l| l.contains("port 0 net_pcap0"))
        .unwrap()
        .to_string();
    let loc = |what: &str| {
        let s = line.split(what).nth(1).unwrap();
        s.split([',', ';']).next().unwrap().trim().to_string()
    };
    let (rx, tx) = (loc(", rx "), loc(", tx "));
    let hooks = [format!("rx:{rx}@2@ret"), format!("{tx}@2@3")];
    let run = pcap_fixture(
        "dpdk-hook2",
        12,
        1500,
        &[],
        &["--dpdk-hook", &hooks[0], "--dpdk-hook", &hooks[1]],
    );
    let (rxp, txp, meta) = split_by_dir(&run);
    assert_eq!(rxp, run.input);
    assert_eq!(txp, run.input);
    assert!(meta.iter().any(|m| m["hook"] == hooks[0].as_str()));
    assert!(meta.iter().all(|m| m["queue"] == 0));
}

#[test]
fn waits_for_an_application_started_later() {
    let _g = lock();
    let dir = tmpdir("dpdk-wait");
    let input = frames(10, 800);
    write_pcap(&dir.join("in.pcap"), &input);
    let file = dir.join("x.pcapng");
    let exe = sh("command -v dpdk-testpmd").trim().to_string();
    let cap = Capture::start(
        xcap_cmd(&[
            "--source",
            "dpdk",
            "--dpdk-pid",
            &exe,
            "-w",
            file.to_str().unwrap(),
        ]),
        "waiting for a process",
    );
    let vdev = pcap_vdev(&dir);
    let mut t = Testpmd::start(
        &[vdev],
        &["--no-flush-rx", "--forward-mode=io", "--port-topology=loop"],
    );
    // Attached within a few of xcap's 100 ms looks.
    std::thread::sleep(Duration::from_millis(1500));
    t.forward(10);
    let (code, stderr) = cap.stop();
    t.quit();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("port 0 net_pcap0"), "{stderr}");
    assert_eq!(read_packets(&file).len(), 20, "{stderr}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    require_root();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--source", "dpdk"], "needs --dpdk-pid"),
        (
            vec!["--source", "dpdk", "--dpdk-pid", "999999999"],
            "no process",
        ),
        (
            vec!["--source", "dpdk", "--dpdk-pid", &pid],
            "not a DPDK application",
        ),
        (
            vec!["--source", "dpdk", "--dpdk-pid", &pid, "--dpdk-helper"],
            "not a DPDK application",
        ),
        (
            vec!["--source", "dpdk", "--dpdk-pid", "/no/such/app"],
            "neither a pid nor an executable",
        ),
        (
            vec!["--source", "dpdk", "--dpdk-pid", &pid, "--dpdk-hook", "f@9"],
            "not an argument number",
        ),
        (
            vec![
                "--source",
                "dpdk",
                "--dpdk-pid",
                &pid,
                "--dpdk-mbuf",
                "next=3",
            ],
            "must be a multiple of 8",
        ),
        (
            vec!["--source", "dpdk", "--dpdk-pid", &pid, "--bpftime", "/tmp"],
            "no libbpftime-syscall-server.so",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(XCAP).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // A DPDK application whose ports are not started.
    let _g = lock();
    let t = Testpmd::start(&["net_null0".to_string()], &["--disable-device-start"]);
    let pid = t.pid().to_string();
    for mode in MODES {
        let out = Command::new(XCAP)
            .args(["--source", "dpdk", "--dpdk-pid", &pid])
            .args(mode)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("has no started DPDK ports"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    t.quit();
}

#[test]
fn dpdk_tx_then_kernel_rx_in_one_timeline() {
    for mode in MODES {
        mixed(mode);
    }
}

fn mixed(mode: &[&str]) {
    let _g = lock();
    let v = VethPair::new();
    let dir = tmpdir("dpdk-mixed");
    let input = frames(30, 1400);
    write_pcap(&dir.join("in.pcap"), &input);
    // Port 0 reads in.pcap, port 1 sends on the veth (net_af_packet):
    // paired io forwarding puts every packet of the file on the wire.
    let pcap = pcap_vdev(&dir);
    let afp = format!("net_af_packet0,iface={}", v.va);
    // testpmd runs inside namespace a, where the veth end va lives.
    let mut t = {
        let _ns = NetnsGuard::enter(&v.a);
        Testpmd::start(
            &[pcap, afp],
            &[
                "--no-flush-rx",
                "--forward-mode=io",
                "--port-topology=paired",
            ],
        )
    };
    let file = dir.join("mixed.pcapng");
    let pid = t.pid().to_string();
    let mut args = vec![
        "--source",
        "kernel,dpdk",
        "--dpdk-pid",
        &pid,
        "--netns",
        &v.b,
        "-i",
        &v.vb,
        "-w",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(mode);
    args.push("ip");
    let cap = Capture::start(xcap_cmd(&args), "capturing from");
    t.forward(30);
    let (code, stderr) = cap.stop();
    t.quit();
    assert_eq!(code, 0, "{stderr}");
    let pkts = read_packets_ts(&file);
    let meta = metadata(&file);
    assert_eq!(pkts.len(), meta.len());
    assert!(
        pkts.windows(2).all(|w| w[0].3 <= w[1].3),
        "one timeline, in time order"
    );
    for f in &input {
        let at = |src: &str, hook: &str| {
            pkts.iter()
                .zip(&meta)
                .position(|(p, m)| p.1 == *f && m["source"] == src && m["hook"] == hook)
        };
        let tx = at("dpdk", "tx_burst").unwrap_or_else(|| panic!("not sent {mode:?}: {stderr}"));
        let rx = at("kernel", "tp:net:netif_receive_skb").expect("not received by the kernel");
        assert!(tx < rx, "DPDK sends before the peer receives");
        assert_eq!(meta[tx]["ifname"], "net_af_packet0");
        assert_eq!(meta[tx]["ifindex"], 1, "port 1");
        assert_eq!(meta[rx]["ifname"], v.vb.as_str());
    }
}

/// Enter a network namespace on this thread for the guard's lifetime
/// (children started meanwhile live in it).
struct NetnsGuard {
    orig: std::fs::File,
}

impl NetnsGuard {
    fn enter(name: &str) -> NetnsGuard {
        use std::os::fd::AsRawFd;
        let orig = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        let ns = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
        // SAFETY: setns on fds we own; affects this thread only.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        NetnsGuard { orig }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in enter.
        unsafe { libc::setns(self.orig.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

#[test]
fn follows_a_port_attached_while_capturing() {
    let _g = lock();
    let dir = tmpdir("dpdk-hotplug");
    write_pcap(&dir.join("in.pcap"), &frames(5, 300));
    let vdev = pcap_vdev(&dir);
    let mut t = Testpmd::start(
        &[vdev],
        &["--no-flush-rx", "--forward-mode=io", "--port-topology=loop"],
    );
    let file = dir.join("x.pcapng");
    let pid = t.pid().to_string();
    // net_null's packets are all zeros: `not ip` keeps only them.
    let cap = Capture::start(
        xcap_cmd(&[
            "--source",
            "dpdk",
            "--dpdk-pid",
            &pid,
            "-c",
            "50",
            "-w",
            file.to_str().unwrap(),
            "not",
            "ip",
        ]),
        "capturing from",
    );
    t.cmd("port attach net_null0");
    t.cmd("port start 1");
    t.cmd("start");
    std::thread::sleep(Duration::from_millis(1500));
    t.cmd("stop");
    let (code, stderr) = cap.stop();
    t.quit();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("port 1 net_null0"), "{stderr}");
    let meta = metadata(&file);
    assert_eq!(meta.len(), 50, "{stderr}");
    assert!(meta
        .iter()
        .all(|m| m["ifname"] == "net_null0" && m["ifindex"] == 1));
}

/// The executable pages of the PMD library, as the application sees them.
fn pmd_text(pid: u32) -> Vec<u8> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let line = maps
        .lines()
        .find(|l| l.contains("librte_net_pcap") && l.split_whitespace().nth(1) == Some("r-xp"))
        .expect("net_pcap text mapping");
    let (a, b) = line
        .split_whitespace()
        .next()
        .unwrap()
        .split_once('-')
        .unwrap();
    let (a, b) = (
        u64::from_str_radix(a, 16).unwrap(),
        u64::from_str_radix(b, 16).unwrap(),
    );
    let mut buf = vec![0u8; (b - a) as usize];
    use std::os::unix::fs::FileExt;
    std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap()
        .read_exact_at(&mut buf, a)
        .unwrap();
    buf
}

#[test]
fn detaching_leaves_the_application_as_it_was() {
    let _g = lock();
    let dir = tmpdir("dpdk-detach");
    let input = frames(8, 400);
    write_pcap(&dir.join("in.pcap"), &input);
    let vdev = pcap_vdev(&dir);
    let t = Testpmd::start(
        &[vdev],
        &["--no-flush-rx", "--forward-mode=io", "--port-topology=loop"],
    );
    let before = pmd_text(t.pid());
    let pid = t.pid().to_string();
    for mode in [&[][..], &["--dpdk-helper"][..]] {
        let mut args = vec!["--source", "dpdk", "--dpdk-pid", &pid, "-w", "/dev/null"];
        args.extend_from_slice(mode);
        let cap = Capture::start(xcap_cmd(&args), "capturing from");
        let during = pmd_text(t.pid());
        // Breakpoints (int3) sit in the burst functions while attached.
        let changed: Vec<u8> = before
            .iter()
            .zip(&during)
            .filter(|(a, b)| a != b)
            .map(|(_, b)| *b)
            .collect();
        assert_eq!(changed, vec![0xcc, 0xcc], "{mode:?}");
        let (code, stderr) = cap.stop();
        assert_eq!(code, 0, "{stderr}");
        assert!(pmd_text(t.pid()) == before, "code restored after {mode:?}");
    }
    // SIGKILL, no chance to clean up: the kernel removes the uprobes with
    // xcap's last descriptor, and a helper sees its stdin close and
    // detaches by itself.
    for mode in [&[][..], &["--dpdk-helper"][..]] {
        let mut args = vec!["--source", "dpdk", "--dpdk-pid", &pid, "-w", "/dev/null"];
        args.extend_from_slice(mode);
        let cap = Capture::start(xcap_cmd(&args), "capturing from");
        assert!(pmd_text(t.pid()) != before, "{mode:?}: attached");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(cap.pid() as i32, libc::SIGKILL) };
        let (code, _) = cap.stop();
        assert_eq!(code, -1, "killed");
        assert!(
            wait_until(20, || pmd_text(t.pid()) == before),
            "code not restored after SIGKILL of {mode:?}"
        );
        let helpers = sh("pgrep -f -- '--xcap[-]helper' || true");
        assert!(helpers.trim().is_empty(), "helper left running: {helpers}");
    }
    // And the application still works: every packet forwarded.
    t.forward_and_quit(8);
    let out: Vec<Vec<u8>> = read_packets(&dir.join("out.pcap"))
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(out, input);
}

/// The application exits while xcap captures it: the capture ends by
/// itself, says so in one line, exits 1 (as tcpdump does when its
/// interface goes away), and the file holds every packet seen before.
#[test]
fn an_application_that_exits_ends_the_capture() {
    let _g = lock();
    for (i, mode) in [&[][..], &["--dpdk-helper"][..]].into_iter().enumerate() {
        let dir = tmpdir(&format!("dpdk-exit{i}"));
        let input = frames(6, 300);
        write_pcap(&dir.join("in.pcap"), &input);
        let t = Testpmd::start(
            &[pcap_vdev(&dir)],
            &["--no-flush-rx", "--forward-mode=io", "--port-topology=loop"],
        );
        let pid = t.pid().to_string();
        let f = dir.join("x.pcapng");
        let mut args = vec!["--source", "dpdk", "--dpdk-pid", &pid];
        args.extend_from_slice(mode);
        args.extend_from_slice(&["-w", f.to_str().unwrap()]);
        let cap = Capture::start(xcap_cmd(&args), "capturing from");
        t.forward_and_quit(6);
        let (code, _, err) = cap.end(false);
        assert_eq!(code, 1, "{mode:?}: {err}");
        let last = err.lines().rfind(|l| l.starts_with("xcap: "));
        assert_eq!(
            last,
            Some(format!("xcap: dpdk: the application exited (pid {pid} (dpdk-testpmd))").as_str()),
            "{mode:?}: {err}"
        );
        // Counted and written: 6 received, 6 sent, in a whole file.
        assert!(err.contains("dpdk: 12 packets captured"), "{mode:?}: {err}");
        assert_eq!(read_packets(&f).len(), 12, "{mode:?}");
    }
}

/// The filter, chain and timeline tests again inside VMs running Debian
/// 12's stock kernels (their uprobes and verifiers, not this machine's):
/// this test binary runs itself there with `--exact`.
fn in_vm(series: &str) {
    // testpmd and an emulated CPU: not beside the other DPDK tests.
    let _g = lock();
    let tests = [
        "net_pcap_rx_and_tx_equal_dpdk_files",
        "filter_lets_only_the_matching_packet_through",
        "chained_mbufs_are_captured_whole",
        "dpdk_tx_then_kernel_rx_in_one_timeline",
    ];
    let args = format!("--exact {} --test-threads 1", tests.join(" "));
    let (_, out, rc) = vm_self(
        &stock_kernel(series),
        &format!("dpdk-vm{series}"),
        "",
        &args,
        900,
    );
    assert_eq!(rc, 0, "DPDK tests in the {series} VM: {out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("test result: ok. {} passed", tests.len()))),
        "{out}"
    );
}

#[test]
fn dpdk_in_debian_6_1_vm() {
    in_vm("6.1.");
}

#[test]
fn dpdk_in_debian_6_12_vm() {
    in_vm("6.12");
}
