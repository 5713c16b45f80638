//! End-to-end tests of the AF_XDP source against a real AF_XDP
//! application: dpdk-testpmd with the net_af_xdp driver on one end of a
//! veth pair, forwarding what it receives back out (macswap). The oracles
//! are tcpdump on the peer (the bytes that were sent to the socket) and
//! the kernel's own XDP_STATISTICS of testpmd's socket. A second real
//! application, kxdpgun (knot-dnsutils), sends DNS queries from its own
//! AF_XDP socket. The workspace's own tools/xsk-app covers what those two
//! do not: TX kicked by poll() or by a process that did not bind the
//! socket, and multi-buffer packets. Needs root, dpdk-testpmd with
//! librte-net-af-xdp23 and kxdpgun (scripts/setup installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::testpmd::Testpmd;
use common::*;

/// A veth pair with dpdk-testpmd on an AF_XDP socket at `va` (copy mode:
/// veth has no zero-copy), ready to forward once told `start`.
/// Fields drop in order: testpmd ends before its namespace goes.
struct Rig {
    testpmd: Testpmd,
    v: VethPair,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// testpmd busy-polls a core; on a 2-core machine the tests take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Rig {
    fn new() -> Rig {
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let v = VethPair::new();
        // testpmd's XDP program takes every packet of queue 0, ARP too, and
        // answers nothing: the peer needs a static neighbour.
        let mac = v.exec(&v.a, &format!("cat /sys/class/net/{}/address", v.va));
        v.exec(
            &v.b,
            &format!(
                "ip neigh replace {} lladdr {} dev {}",
                v.ip_a,
                mac.trim(),
                v.vb
            ),
        );
        let testpmd = Testpmd::start_in(
            Some(&v.a),
            &[format!(
                "net_af_xdp0,iface={},start_queue=0,queue_count=1",
                v.va
            )],
            &["--forward-mode=macswap"],
        );
        Rig {
            testpmd,
            v,
            _turn: turn,
        }
    }

    /// Send one UDP datagram per payload from the peer to `port`, paced
    /// so that veth's own queue (256 frames) never overflows: every packet
    /// sent reaches XDP.
    fn send(&self, port: u16, payloads: &[String]) {
        let script = format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for i,p in enumerate({payloads:?}):\n \
             s.sendto(p.encode(),('{}',{port}))\n \
             if i%64==63: time.sleep(0.002)\n",
            self.v.ip_a
        );
        let st = Command::new("ip")
            .args(["netns", "exec", &self.v.b, "python3", "-c", &script])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// `xcap --source afxdp` in namespace `ns` on `dev`, writing `f`.
fn afxdp_capture(ns: &str, dev: &str, f: &Path, filter: &str) -> Capture {
    xcap(&[
        "--source",
        "afxdp",
        "--netns",
        ns,
        "-i",
        dev,
        "-w",
        f.to_str().unwrap(),
        filter,
    ])
}

fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<String> {
    let lua = format!(
        "lua_script:{}/contrib/wireshark/xcap.lua",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = Command::new("tshark");
    c.args(["-X", &lua, "-r"]).arg(file).args(["-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// testpmd forwards five packets back out of its AF_XDP socket: xcap holds
/// exactly five RX copies (what the peer sent) and five TX copies (what
/// came back to the peer), with direction and testpmd's pid and comm.
#[test]
fn testpmd_forwarding_rx_and_tx_equal_the_peer_capture() {
    let mut rig = Rig::new();
    rig.testpmd.cmd("start");
    let dir = tmpdir("afxdp-fwd");
    let (xf, tf) = (dir.join("x.pcapng"), dir.join("peer.pcap"));
    let t = tcpdump(&rig.v.b, &rig.v.vb, &tf, &["udp"]);
    // Forwarded before xcap starts: its socket's TX ring has moved on, and
    // none of these may show up as sent while xcap captures.
    rig.send(
        4001,
        &["early 1".into(), "early 2".into(), "early 3".into()],
    );
    assert!(wait_until(20, || packets_so_far(&tf).len() >= 6));
    let x = afxdp_capture(&rig.v.a, &rig.v.va, &xf, "udp port 4001");
    // Five to the port the filter selects, three beside them it rejects.
    // Longer than the headers a filter reads: a kept packet is captured
    // whole, past them.
    let wanted: Vec<String> = (0..5)
        .map(|i| format!("wanted {i:03} {}", "z".repeat(300)))
        .collect();
    rig.send(4002, &["other 1".into(), "other 2".into()]);
    rig.send(4001, &wanted);
    rig.send(4002, &["other 3".into()]);
    assert!(
        wait_until(20, || packets_so_far(&xf).len() >= 10),
        "xcap saw {} packets",
        packets_so_far(&xf).len()
    );
    assert!(wait_until(20, || packets_so_far(&tf).len() >= 22));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();

    // The peer's capture, split by who sent each frame.
    let vb_mac = rig.v.exec(
        &rig.v.b,
        &format!("cat /sys/class/net/{}/address", rig.v.vb),
    );
    let vb_mac: Vec<u8> = vb_mac
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let peer: Vec<Pkt> = read_packets(&tf)
        .into_iter()
        .filter(|p| udp_dport(p) == Some(4001) && p.1.windows(6).any(|w| w == b"wanted"))
        .collect();
    let sent: Vec<&Vec<u8>> = peer
        .iter()
        .filter(|p| p.1[6..12] == vb_mac[..])
        .map(|p| &p.1)
        .collect();
    let back: Vec<&Vec<u8>> = peer
        .iter()
        .filter(|p| p.1[6..12] != vb_mac[..])
        .map(|p| &p.1)
        .collect();
    assert_eq!((sent.len(), back.len()), (5, 5));

    let got = read_packets(&xf);
    let fields = tshark_fields(
        &xf,
        &[
            "xcap.source",
            "xcap.hook",
            "xcap.pid",
            "xcap.comm",
            "frame.comment",
        ],
    );
    assert_eq!(got.len(), 10, "{err}");
    let pid = rig.testpmd.pid().to_string();
    let (mut rx, mut tx) = (Vec::new(), Vec::new());
    for (p, line) in got.iter().zip(&fields) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(&f[..3], ["afxdp", f[1], &pid], "{line}");
        assert!(f[4].contains("x.xsk_mode=copy"), "{line}");
        match f[1] {
            // Received: the socket's owner.
            "xsk_rx" => {
                assert_eq!(f[3], "dpdk-testpmd", "{line}");
                assert!(f[4].contains("dir=In"), "{line}");
                rx.push(&p.1);
            }
            // Sent: the thread that sent it, one of testpmd's.
            "xsk_tx" => {
                assert!(f[4].contains("dir=Out"), "{line}");
                assert!(f[4].contains("x.xsk_tx=send"), "{line}");
                assert!(
                    sh(&format!("ls /proc/{pid}/task"))
                        .lines()
                        .any(|t| f[4].contains(&format!("tid={t}"))),
                    "{line}"
                );
                tx.push(&p.1);
            }
            h => panic!("hook {h}: {line}"),
        }
    }
    assert_eq!(rx, sent, "RX: the bytes the peer sent");
    assert_eq!(tx, back, "TX: the bytes that came back to the peer");
    assert!(err.contains("10 packets captured"), "{err}");
}

/// kxdpgun in namespace a for one second, one query at a time, asking for
/// two names in turn; `args`: the interface and addresses. Its output, or
/// None where the kernel refuses kxdpgun's own XDP program (this machine's
/// 6.18 build refuses its bpf_xdp_adjust_meta call): nothing of xcap's to
/// test then, said on stderr. The VM that must run it sets
/// XCAP_NEED_KXDPGUN, and there a refusal fails.
fn kxdpgun(v: &VethPair, dir: &Path, args: &str) -> Option<String> {
    let qf = dir.join("queries");
    std::fs::write(&qf, "example.com. A\nexample.org. AAAA\n").unwrap();
    let out = v.exec(
        &v.a,
        &format!("kxdpgun -t 1 -Q 20 -b 1 -i {} {args} 2>&1", qf.display()),
    );
    if out.contains("failed to initialize XDP socket")
        && out.contains("program not loaded")
        && std::env::var_os("XCAP_NEED_KXDPGUN").is_none()
    {
        eprintln!(
            "NOT RUN: this kernel ({}) refuses kxdpgun's own XDP program; \
             the test runs in the 6.12 VM: {}",
            sh("uname -r").trim(),
            out.lines()
                .find(|l| l.contains("cannot use helper"))
                .unwrap_or("")
        );
        return None;
    }
    Some(out)
}

/// A total kxdpgun printed (`what`: e.g. "total queries:").
fn kxdpgun_count(out: &str, what: &str) -> usize {
    out.lines()
        .find_map(|l| l.strip_prefix(what))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("kxdpgun: {out}"))
}

/// kxdpgun, a DNS load generator of its own (no DPDK), sends queries from
/// an AF_XDP socket on the veth: xcap's xsk_tx copies are the queries the
/// peer received, packet for packet, sent by kxdpgun. It exits before xcap
/// does: its socket's statistics are said to be unreadable, not invented.
#[test]
fn kxdpgun_queries_equal_the_peer_capture() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let v = VethPair::new();
    let dir = tmpdir("afxdp-kxdpgun");
    let (xf, tf) = (dir.join("x.pcapng"), dir.join("peer.pcap"));
    let x = afxdp_capture(&v.a, &v.va, &xf, "udp dst port 53");
    let t = tcpdump(&v.b, &v.vb, &tf, &["udp dst port 53"]);
    let Some(out) = kxdpgun(&v, &dir, &format!("-I {} {}", v.va, v.ip_b)) else {
        return;
    };
    let sent = kxdpgun_count(&out, "total queries:");
    assert!(sent > 0, "{out}");
    assert!(wait_until(20, || packets_so_far(&tf).len() >= sent));
    assert!(wait_until(20, || packets_so_far(&xf).len() >= sent));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();

    let ours: Vec<Vec<u8>> = read_packets(&xf).into_iter().map(|p| p.1).collect();
    let peer: Vec<Vec<u8>> = read_packets(&tf).into_iter().map(|p| p.1).collect();
    assert_eq!(ours.len(), sent, "{err}");
    assert_eq!(ours, peer, "what the socket sent is what the peer got");
    for line in tshark_fields(&xf, &["xcap.hook", "xcap.dir", "xcap.comm"]) {
        assert_eq!(line, "xsk_tx\tOut\tkxdpgun");
    }
    assert!(
        err.lines()
            .any(|l| l.starts_with("xcap: afxdp: AF_XDP socket ")
                && l.ends_with("kernel statistics not read: the socket closed")),
        "{err}"
    );
}

/// Generic XDP, both directions: kxdpgun on a macvlan over the veth
/// (macvlan has no XDP of its own, so the kernel runs kxdpgun's program in
/// generic mode, on the skb) sends queries that a responder on the peer
/// answers. xcap's xsk_tx copies are the queries the peer received and its
/// xsk_rx copies the answers the peer sent, packet for packet, and as many
/// as kxdpgun counted. (dpdk-testpmd's net_af_xdp of Debian 12 asks for
/// native mode only, so it cannot run here.)
#[test]
fn kxdpgun_under_generic_xdp_rx_and_tx_equal_the_peer_capture() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let v = VethPair::new();
    let dir = tmpdir("afxdp-generic");
    let (xf, tf) = (dir.join("x.pcapng"), dir.join("peer.pcap"));
    // The macvlan gets an address of its own, which the peer reaches
    // through the macvlan's MAC.
    let mv = "mva";
    let ip_mv = format!("{}3", v.ip_a.trim_end_matches('1'));
    v.exec(
        &v.a,
        &format!("ip link add {mv} link {} type macvlan mode bridge", v.va),
    );
    v.exec(&v.a, &format!("ip addr add {ip_mv}/32 dev {mv}"));
    v.exec(&v.a, &format!("ip link set {mv} up"));
    let mac = |ns: &str, dev: &str| {
        v.exec(ns, &format!("cat /sys/class/net/{dev}/address"))
            .trim()
            .to_string()
    };
    let (mv_mac, vb_mac) = (mac(&v.a, mv), mac(&v.b, &v.vb));
    v.exec(
        &v.b,
        &format!("ip neigh replace {ip_mv} lladdr {mv_mac} dev {}", v.vb),
    );
    // The responder: every query back with the QR bit set, until killed.
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('{}',53))\nprint('ready',flush=True)\n\
         while True:\n d,a=s.recvfrom(2048)\n s.sendto(d[:2]+bytes([d[2]|0x80])+d[3:],a)\n",
        v.ip_b
    );
    let mut responder = std::process::Command::new("ip")
        .args(["netns", "exec", &v.b, "python3", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(responder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");

    let x = afxdp_capture(&v.a, mv, &xf, "udp port 53");
    let t = tcpdump(&v.b, &v.vb, &tf, &["udp port 53"]);
    let out = kxdpgun(
        &v,
        &dir,
        &format!("-I {mv} -l {ip_mv} -L {mv_mac} -R {vb_mac} {}", v.ip_b),
    );
    let _ = responder.kill();
    let _ = responder.wait();
    let Some(out) = out else {
        return;
    };
    let (sent, replies) = (
        kxdpgun_count(&out, "total queries:"),
        kxdpgun_count(&out, "total replies:"),
    );
    assert!(out.contains("emulated mode"), "generic XDP: {out}");
    assert!(sent > 0 && replies > 0, "{out}");
    assert!(wait_until(20, || packets_so_far(&tf).len() >= sent + replies));
    assert!(wait_until(20, || packets_so_far(&xf).len() >= sent + replies));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();

    let ours = read_packets(&xf);
    let fields = tshark_fields(&xf, &["xcap.hook", "xcap.dir", "xcap.comm"]);
    assert_eq!(ours.len(), fields.len());
    let (mut rx, mut tx) = (Vec::new(), Vec::new());
    for (p, f) in ours.iter().zip(&fields) {
        match f.as_str() {
            "xsk_tx\tOut\tkxdpgun" => tx.push(p.1.clone()),
            "xsk_rx\tIn\tkxdpgun" => rx.push(p.1.clone()),
            other => panic!("{other}"),
        }
    }
    let peer = read_packets(&tf);
    let queries: Vec<Vec<u8>> = peer
        .iter()
        .filter(|p| udp_dport(p) == Some(53))
        .map(|p| p.1.clone())
        .collect();
    let answers: Vec<Vec<u8>> = peer
        .iter()
        .filter(|p| udp_dport(p) != Some(53))
        .map(|p| p.1.clone())
        .collect();
    assert_eq!((tx.len(), rx.len()), (sent, replies), "{out}\n{err}");
    assert_eq!(tx, queries, "what the socket sent is what the peer got");
    assert_eq!(rx, answers, "what the socket got is what the peer sent");
}

#[test]
fn fill_ring_drops_are_counted_with_their_reason_as_the_kernel_counts() {
    // Not forwarding: testpmd's fill ring runs out and the kernel drops.
    let rig = Rig::new();
    let dir = tmpdir("afxdp-drops");
    let xf = dir.join("x.pcapng");
    let x = xcap(&[
        "--source",
        "afxdp",
        "--netns",
        &rig.v.a,
        "-w",
        xf.to_str().unwrap(),
    ]);
    let n = 6000;
    let payloads: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    // veth drops what its queue cannot hold before XDP runs: counted apart.
    let veth_drops = || -> u64 {
        let f = format!("/sys/class/net/{}/statistics/tx_dropped", rig.v.vb);
        rig.v
            .exec(&rig.v.b, &format!("cat {f}"))
            .trim()
            .parse()
            .unwrap()
    };
    let before = veth_drops();
    rig.send(4001, &payloads);
    let (code, err) = x.stop();
    let lost_in_veth = veth_drops() - before;
    assert_eq!(code, 0, "{err}");

    let captured = read_packets(&xf).len();
    let line = err
        .lines()
        .find(|l| l.contains("dropped by the kernel before AF_XDP socket"))
        .unwrap_or_else(|| panic!("no drop line: {err}"));
    assert!(line.contains("fill ring empty"), "{line}");
    assert!(
        line.contains(&format!("[pid {} (dpdk-testpmd)]", rig.testpmd.pid())),
        "{line}"
    );
    let dropped: u64 = line
        .strip_prefix("xcap: afxdp: ")
        .and_then(|l| l.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(
        captured as u64 + dropped + lost_in_veth,
        n,
        "every packet sent is captured or counted as dropped: {err}"
    );
    let ino: u32 = line
        .split("AF_XDP socket ")
        .nth(1)
        .and_then(|l| l.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let stats = xdp_statistics(rig.testpmd.pid(), ino);
    // struct xdp_statistics: rx_dropped counts the frames the kernel had
    // no fill-ring buffer for.
    assert_eq!(stats[0], dropped, "XDP_STATISTICS {stats:?}");

    // xcap reports the socket's own statistics, as the kernel keeps them,
    // in its summary and in the statistics blocks of the socket's device.
    let names = [
        "rx_dropped",
        "rx_invalid_descs",
        "tx_invalid_descs",
        "rx_ring_full",
        "rx_fill_ring_empty_descs",
        "tx_ring_empty_descs",
    ];
    let want = names
        .iter()
        .zip(stats)
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let want = format!(
        "AF_XDP socket {ino} [pid {} (dpdk-testpmd)]: kernel statistics since it opened: {want}",
        rig.testpmd.pid()
    );
    assert!(
        err.lines().any(|l| l == format!("xcap: afxdp: {want}")),
        "{want}\n{err}"
    );
    assert!(captured > 0, "{err}");
    let o = Command::new("tshark")
        .args(["-X", "read_format:MIME Files Format", "-r"])
        .arg(&xf)
        .args(["-T", "fields", "-e", "pcapng.options.option.data.comment"])
        .output()
        .unwrap();
    let blocks = String::from_utf8_lossy(&o.stdout);
    assert!(blocks.contains(&want), "{want}\n{blocks}");
}

/// The kernel's XDP_STATISTICS of socket inode `ino` of process `pid`,
/// read from a copy of its descriptor (pidfd_getfd).
fn xdp_statistics(pid: u32, ino: u32) -> [u64; 6] {
    use std::os::unix::fs::MetadataExt;
    let fd: i32 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .find(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == ino as u64))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .expect("the socket among testpmd's descriptors");
    let mut stats = [0u64; 6];
    // SAFETY: plain syscalls on descriptors this function owns; stats has
    // the size passed.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(pidfd >= 0, "pidfd_open");
        let sock = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        assert!(sock >= 0, "pidfd_getfd");
        let mut len = std::mem::size_of_val(&stats) as libc::socklen_t;
        // SOL_XDP 283, XDP_STATISTICS 7 (linux/if_xdp.h).
        let r = libc::getsockopt(sock, 283, 7, stats.as_mut_ptr().cast(), &mut len);
        assert_eq!(r, 0, "XDP_STATISTICS");
        libc::close(sock);
        libc::close(pidfd);
    }
    stats
}

fn udp_dport(p: &Pkt) -> Option<u16> {
    let ip = ipv4(p)?;
    let ihl = (ip[0] & 0xf) as usize * 4;
    (ip[9] == 17).then(|| u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]))
}

#[test]
fn dry_run_verifies_both_programs() {
    let o = run_xcap(&["--source", "afxdp", "--dry-run", "udp port 4001"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    for p in ["xcap_xsk_rx", "xcap_xsk_drop"] {
        assert!(out.contains(p), "{out}");
    }
}

/// The peer sends, the AF_XDP socket receives, testpmd (a DPDK application
/// on net_af_xdp) takes it from the socket and sends it back: the kernel
/// source sees both ends on the peer's interface, the AF_XDP source the
/// socket's RX and TX, the DPDK source testpmd's bursts, all in one file in
/// time order; each copy equals the next one's, and the kernel's copies
/// equal tcpdump's on the peer. (The return is an skb that AF_XDP built
/// whole, a case the kernel source once read from the wrong header.)
#[test]
fn kernel_afxdp_and_dpdk_in_one_timeline() {
    let mut rig = Rig::new();
    rig.testpmd.cmd("start");
    let dir = tmpdir("afxdp-mixed");
    let (xf, tf) = (dir.join("x.pcapng"), dir.join("peer.pcap"));
    let pid = rig.testpmd.pid().to_string();
    let x = xcap(&[
        "--source",
        "kernel,afxdp,dpdk",
        "--dpdk-pid",
        &pid,
        "-w",
        xf.to_str().unwrap(),
        "udp port 4001",
    ]);
    let t = tcpdump(&rig.v.b, &rig.v.vb, &tf, &["udp port 4001"]);
    let n = 3;
    rig.send(
        4001,
        &(0..n).map(|i| format!("mixed {i}")).collect::<Vec<_>>(),
    );
    assert!(wait_until(20, || packets_so_far(&xf).len() >= 6 * n));
    assert!(wait_until(20, || packets_so_far(&tf).len() >= 2 * n));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();

    let pkts = read_packets_ts(&xf);
    let fields = tshark_fields(&xf, &["xcap.source", "xcap.hook"]);
    if let Some(i) = pkts.windows(2).position(|w| w[0].3 > w[1].3) {
        let show = |j: usize| format!("{} ns {}", pkts[j].3, fields[j]);
        let all: Vec<String> = (0..pkts.len()).map(show).collect();
        panic!(
            "one timeline, in time order: packet {i} ({}) before {} ({})\n{}",
            show(i),
            i + 1,
            show(i + 1),
            all.join("\n")
        );
    }
    let path: Vec<&str> = fields.iter().map(|l| l.as_str()).collect();
    assert_eq!(path.len(), 6 * n, "{err}");
    // Each packet's own path, in time order (the three may interleave: the
    // socket can take all of them before testpmd sends any back).
    let one = [
        "kernel\ttp:net:net_dev_start_xmit",
        "afxdp\txsk_rx",
        "dpdk\trx_burst",
        "dpdk\ttx_burst",
        "afxdp\txsk_tx",
        "kernel\ttp:net:netif_receive_skb",
    ];
    for i in 0..n {
        let tag = format!("mixed {i}");
        let mine: Vec<&str> = pkts
            .iter()
            .zip(&path)
            .filter(|(p, _)| p.1.ends_with(tag.as_bytes()))
            .map(|(_, h)| *h)
            .collect();
        // xsk_tx is stamped as the send returns; on a veth the peer has
        // often received the packet by then (README: the AF_XDP source).
        let swapped = [one[0], one[1], one[2], one[3], one[5], one[4]];
        let ok = mine == one || mine == swapped;
        assert!(ok, "{tag}: {mine:?} in {path:?}");
    }
    let of = |want: &str| -> Vec<Vec<u8>> {
        pkts.iter()
            .zip(&path)
            .filter(|(_, h)| **h == want)
            .map(|(p, _)| p.1.clone())
            .collect()
    };
    let [out, rx, app_rx, app_tx, tx, back] = one.map(of);
    assert_eq!(rx, out, "the socket got what the peer sent");
    assert_eq!(app_rx, rx, "testpmd got what the socket got");
    assert_eq!(tx, app_tx, "the socket sent what testpmd sent");
    assert_eq!(back, tx, "the peer got what the socket sent");
    // The kernel's copies equal tcpdump's on the peer (as sets: the two
    // stamp a send and a return that cross at slightly different points).
    let mut peer: Vec<Vec<u8>> = read_packets(&tf).into_iter().map(|p| p.1).collect();
    let mut ours: Vec<Vec<u8>> = out.into_iter().chain(back).collect();
    peer.sort();
    ours.sort();
    assert_eq!(
        ours, peer,
        "the kernel's copies equal tcpdump's on the peer"
    );
}

/// Before Linux 6.3 there is no sock:sock_send_length tracepoint: xcap
/// says in one line that it reads what is sent at the send syscalls of the
/// sockets' owners instead, and captures both directions on every kernel.
#[test]
fn transmit_is_captured_with_or_without_the_send_tracepoint() {
    let release = sh("uname -r");
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    let has_tp = (major, minor) >= (6, 3);
    let mut rig = Rig::new();
    rig.testpmd.cmd("start");
    let dir = tmpdir("afxdp-txless");
    let xf = dir.join("x.pcapng");
    let x = xcap(&[
        "--source",
        "afxdp",
        "--netns",
        &rig.v.a,
        "-w",
        xf.to_str().unwrap(),
        "udp port 4001",
    ]);
    rig.send(4001, &["one".into(), "two".into()]);
    assert!(wait_until(20, || packets_so_far(&xf).len() >= 4));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    let said = err.contains("this kernel has no sock:sock_send_length tracepoint");
    assert_eq!(said, !has_tp, "{release}: {err}");
    let f = tshark_fields(&xf, &["xcap.hook", "frame.comment"]);
    let rx = f.iter().filter(|h| h.starts_with("xsk_rx")).count();
    let tx: Vec<&String> = f.iter().filter(|h| h.starts_with("xsk_tx")).collect();
    assert_eq!((rx, tx.len()), (2, 2), "{release}: {err}");
    // testpmd kicks with send(): seen as each returned, in its thread.
    let pid = format!("pid={} ", rig.testpmd.pid());
    for l in tx {
        assert!(l.contains("x.xsk_tx=send") && l.contains(&pid), "{l}");
    }
}

/// The workspace's AF_XDP application (tools/xsk-app), built once; inside
/// a VM the host built it and says where (XCAP_XSK_APP).
fn xsk_app() -> PathBuf {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    APP.get_or_init(|| {
        if let Some(p) = std::env::var_os("XCAP_XSK_APP") {
            return p.into();
        }
        build_member("xcap-xsk-app", "xsk-app")
    })
    .clone()
}

/// xsk-app sending `count` UDP packets of `len` bytes from `v.va` to the
/// peer's `dport`, kicked as `kick` says (and the tx options after it),
/// with `opts` before the mode; its
/// pid, once it ended well.
fn xsk_app_tx(v: &VethPair, opts: &str, kick: &str, len: usize, dport: u16) -> u32 {
    let o = Command::new("ip")
        .args(["netns", "exec", &v.a])
        .arg(xsk_app())
        .args(["--dev", &v.va])
        .args(opts.split_whitespace())
        .args(["tx", "--count", "5", "--len", &len.to_string(), "--kick"])
        .args(kick.split_whitespace())
        .args(["--src-ip", &v.ip_a, "--dst-ip", &v.ip_b])
        .args(["--dport", &dport.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "xsk-app {opts} tx {kick}: {err}");
    err.split("pid=")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("xsk-app said no pid: {err}"))
}

/// What xcap holds per UDP destination port: (comment, bytes).
fn by_dport(xf: &Path) -> std::collections::BTreeMap<u16, Vec<(String, Vec<u8>)>> {
    let comments = tshark_fields(xf, &["frame.comment"]);
    let mut m = std::collections::BTreeMap::<u16, Vec<(String, Vec<u8>)>>::new();
    for (p, c) in read_packets(xf).into_iter().zip(comments) {
        m.entry(udp_dport(&p).unwrap_or(0))
            .or_default()
            .push((c, p.1));
    }
    m
}

/// The peer's capture of UDP to `dport`, bytes in order.
fn peer_bytes(tf: &Path, dport: u16) -> Vec<Vec<u8>> {
    read_packets(tf)
        .into_iter()
        .filter(|p| udp_dport(p) == Some(dport))
        .map(|p| p.1)
        .collect()
}

/// Copy mode sends what is on the TX ring in the syscall that asks for it:
/// a send, or a poll() on a socket bound with need_wakeup. xsk-app sends
/// five packets each way: kicked by sendto (`x.xsk_tx=send`), by poll()
/// alone (`poll`), and by poll() in a child that did not bind the socket,
/// which xcap does not watch, so they are caught up as the owner closes
/// the socket or, when it exits with the socket open, as it exits (`late`). Every one is captured once, with the owner's pid,
/// and equals the peer's capture. Before 6.3 the sends are read at the
/// owner's send syscalls (the 6.1 VM runs this too).
#[test]
fn transmit_kicked_by_send_poll_or_another_process_is_captured_once() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let v = VethPair::new();
    let dir = tmpdir("afxdp-kicks");
    let (xf, tf) = (dir.join("x.pcapng"), dir.join("peer.pcap"));
    let x = afxdp_capture(&v.a, &v.va, &xf, "udp");
    let t = tcpdump(&v.b, &v.vb, &tf, &["udp"]);
    let cases = [
        ("sendto", 9001, "send"),
        ("poll", 9002, "poll"),
        ("poll-child", 9003, "late"),
        ("poll-child --exit-open", 9006, "late"),
    ];
    let pids: Vec<u32> = cases
        .iter()
        .map(|(kick, port, _)| xsk_app_tx(&v, "", kick, 100, *port))
        .collect();
    assert!(wait_until(20, || packets_so_far(&tf).len() >= 20));
    assert!(wait_until(20, || packets_so_far(&xf).len() >= 20));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();
    let got = by_dport(&xf);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 20, "{err}");
    for ((kick, port, mark), pid) in cases.iter().zip(pids) {
        let ours = &got[port];
        let peer = peer_bytes(&tf, *port);
        assert_eq!(peer.len(), 5, "{kick}: the peer's capture");
        assert_eq!(
            ours.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            peer,
            "{kick}: what was sent is what the peer got"
        );
        for (c, _) in ours {
            assert!(
                c.contains(&format!("x.xsk_tx={mark}"))
                    && c.contains(&format!("pid={pid} "))
                    && c.contains("dir=Out"),
                "{kick}: {c}"
            );
        }
    }
}

/// Multi-buffer AF_XDP (XDP_USE_SG, Linux 6.6): 6000-byte packets over
/// 4096-byte UMEM frames, two descriptors each, on a veth of MTU 9000.
/// xcap captures each whole, sent (xsk-app tx) and received (xsk-app rx
/// behind an xdp.frags program), equal to the other end's tcpdump.
#[test]
fn multi_buffer_packets_are_captured_whole_both_ways() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let v = VethPair::new();
    for (ns, dev) in [(&v.a, &v.va), (&v.b, &v.vb)] {
        v.exec(ns, &format!("ip link set {dev} mtu 9000"));
    }
    let dir = tmpdir("afxdp-sg");

    // Sent: va's socket to the peer.
    let (xf, tf) = (dir.join("tx.pcapng"), dir.join("tx-peer.pcap"));
    let x = afxdp_capture(&v.a, &v.va, &xf, "udp");
    let t = tcpdump(&v.b, &v.vb, &tf, &["udp"]);
    let pid = xsk_app_tx(&v, "--sg --frame-size 4096", "sendto", 6000, 9004);
    assert!(wait_until(20, || packets_so_far(&tf).len() >= 5));
    assert!(wait_until(20, || packets_so_far(&xf).len() >= 5));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();
    let got = by_dport(&xf);
    let peer = peer_bytes(&tf, 9004);
    assert_eq!(peer.len(), 5);
    assert!(peer.iter().all(|p| p.len() == 6000));
    assert_eq!(
        got[&9004]
            .iter()
            .map(|(_, b)| b.clone())
            .collect::<Vec<_>>(),
        peer
    );
    assert!(
        got[&9004]
            .iter()
            .all(|(c, _)| c.contains(&format!("pid={pid} "))),
        "{got:?}"
    );

    // Received: the peer sends to vb's socket; its XDP program takes ARP
    // too, so the sender gets a static neighbour.
    let (xf, tf) = (dir.join("rx.pcapng"), dir.join("rx-sender.pcap"));
    let mac = v.exec(&v.b, &format!("cat /sys/class/net/{}/address", v.vb));
    v.exec(
        &v.a,
        &format!(
            "ip neigh replace {} lladdr {} dev {}",
            v.ip_b,
            mac.trim(),
            v.va
        ),
    );
    let x = afxdp_capture(&v.b, &v.vb, &xf, "udp");
    let t = tcpdump(&v.a, &v.va, &tf, &["udp"]);
    let mut app = Command::new("ip");
    app.args(["netns", "exec", &v.b])
        .arg(xsk_app())
        .args(["--dev", &v.vb, "--sg", "--frame-size", "4096"])
        .args(["rx", "--count", "5", "--timeout-ms", "20000"])
        .stdout(Stdio::piped());
    let app = Capture::start(app, "xsk-app: ready");
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(5):\n s.sendto(bytes([i])*5958,('{}',9005))\n",
        v.ip_b
    );
    v.exec(&v.a, &format!("python3 -c \"{script}\""));
    let (rc, out, aerr) = app.end(false);
    assert_eq!(rc, 0, "xsk-app rx: {aerr}");
    assert_eq!(
        out.lines().filter(|l| *l == "rx len=6000 descs=2").count(),
        5,
        "{out}"
    );
    assert!(wait_until(20, || packets_so_far(&tf).len() >= 5));
    assert!(wait_until(20, || packets_so_far(&xf).len() >= 5));
    let (code, err) = x.stop();
    assert_eq!(code, 0, "{err}");
    t.stop();
    let got = by_dport(&xf);
    let sent = peer_bytes(&tf, 9005);
    assert_eq!(sent.len(), 5);
    assert_eq!(
        got[&9005]
            .iter()
            .map(|(_, b)| b.clone())
            .collect::<Vec<_>>(),
        sent
    );
    for (c, _) in &got[&9005] {
        assert!(c.contains("dir=In") && c.contains("comm=xsk-app"), "{c}");
    }
}

/// The tests again inside VMs running Debian 12's stock kernels (their
/// tracepoints and verifiers, not this machine's): this test binary runs
/// itself there with `--exact`. 6.1 has no sock_send_length tracepoint: its
/// sends are read at the owners' syscalls.
fn in_vm(series: &str, env: &str, tests: &[&str]) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let args = format!("--exact {} --test-threads 1", tests.join(" "));
    let env = format!("XCAP_XSK_APP={} {env}", xsk_app().display());
    let (_, out, rc) = vm_self(
        &stock_kernel(series),
        &format!("afxdp-vm{series}"),
        &env,
        &args,
        900,
    );
    assert_eq!(rc, 0, "AF_XDP tests in the {series} VM: {out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("test result: ok. {} passed", tests.len()))),
        "{out}"
    );
}

#[test]
fn afxdp_in_debian_6_1_vm() {
    in_vm(
        "6.1.",
        "",
        &[
            "dry_run_verifies_both_programs",
            "testpmd_forwarding_rx_and_tx_equal_the_peer_capture",
            "fill_ring_drops_are_counted_with_their_reason_as_the_kernel_counts",
            "transmit_is_captured_with_or_without_the_send_tracepoint",
            "transmit_kicked_by_send_poll_or_another_process_is_captured_once",
        ],
    );
}

#[test]
fn afxdp_in_debian_6_12_vm() {
    in_vm(
        "6.12",
        "XCAP_NEED_KXDPGUN=1",
        &[
            "testpmd_forwarding_rx_and_tx_equal_the_peer_capture",
            "fill_ring_drops_are_counted_with_their_reason_as_the_kernel_counts",
            "kxdpgun_queries_equal_the_peer_capture",
            "kxdpgun_under_generic_xdp_rx_and_tx_equal_the_peer_capture",
            "kernel_afxdp_and_dpdk_in_one_timeline",
            "transmit_kicked_by_send_poll_or_another_process_is_captured_once",
            "multi_buffer_packets_are_captured_whole_both_ways",
        ],
    );
}
