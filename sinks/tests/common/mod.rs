//! Packets and helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use etherparse::PacketBuilder;
use xcap_core::registry::{sink, source, HookStats};
use xcap_core::{
    BusOptions, CaptureConfig, Direction, LinkType, Meta, Packet, PacketRef, Result, Sink,
    SinkConfig, SourceReport,
};

pub const T0: u64 = 1_700_000_000_123_456_789;
pub const SNAPLEN: u32 = 262_144;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(MAC_A, MAC_B)
}

fn kernel(hook: &str, ifname: &str, ifindex: u32, dir: Direction) -> Meta {
    Meta {
        source: "kernel".into(),
        hook: hook.into(),
        dir,
        ifindex,
        ifname: ifname.into(),
        netns: 4026531840,
        ..Default::default()
    }
}

fn packet(i: u64, data: Vec<u8>, link: LinkType, meta: Meta) -> Packet {
    Packet {
        // Distinct nanosecond digits so any loss of precision shows.
        ts_ns: T0 + i * 1_000_001_003,
        orig_len: data.len() as u32,
        data,
        link,
        meta,
    }
}

/// Ethernet/IPv4/TCP, UDP, ICMP; IPv6/TCP, ICMPv6; ARP; a raw IPv4 packet;
/// a packet cut short by the capture, with a variety of metadata.
pub fn packets() -> Vec<Packet> {
    let mut v = Vec::new();

    let mut b = Vec::new();
    eth()
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(5000, 80, 1, 65535)
        .syn()
        .write(&mut b, &[])
        .unwrap();
    let mut m = kernel("tp:net:netif_receive_skb", "veth0", 3, Direction::In);
    m.cpu = Some(1);
    m.pid = Some(4242);
    m.tid = Some(4243);
    m.comm = Some("curl".into());
    m.packet_id = Some(0xffff_8881_0a2b_3c00);
    v.push(packet(0, b, LinkType::Ethernet, m));

    let mut b = Vec::new();
    eth()
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 40001)
        .write(&mut b, &[7; 64])
        .unwrap();
    let mut m = kernel("tp:net:net_dev_queue", "veth0", 3, Direction::Out);
    m.comm = Some(r"my proc \ x".into());
    m.pid = Some(7);
    m.queue = Some(2);
    m.packet_id = Some(0xffff_8881_0a2b_3c00);
    v.push(packet(1, b, LinkType::Ethernet, m));

    let mut b = Vec::new();
    eth()
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(1, 2)
        .write(&mut b, &[0x55; 56])
        .unwrap();
    let mut m = kernel("tp:skb:kfree_skb", "", 5, Direction::Unknown);
    m.drop_reason = Some("NETFILTER_DROP".into());
    m.drop_location = Some("nf_hook_slow+0x8c".into());
    m.stack = vec![
        "kfree_skb_reason+0x0".into(),
        "nf_hook_slow+0x8c [nf_tables]".into(),
        "ip_local_deliver+0x4f".into(),
    ];
    m.extra = vec![
        ("skb_len".into(), "98".into()),
        ("note".into(), "a b=c".into()),
    ];
    m.retval = Some(-1);
    v.push(packet(2, b, LinkType::Ethernet, m));

    let src6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut b = Vec::new();
    eth()
        .ipv6(src6, dst6, 64)
        .tcp(443, 51000, 1000, 501)
        .ack(2000)
        .psh()
        .write(&mut b, b"0123456789")
        .unwrap();
    let m = Meta {
        source: "afxdp".into(),
        hook: "xsk:rx".into(),
        dir: Direction::In,
        ifindex: 4,
        ifname: "veth1".into(),
        queue: Some(0),
        ..Default::default()
    };
    v.push(packet(3, b, LinkType::Ethernet, m));

    // ARP request, by hand so that the bytes are plain to see.
    let mut b = Vec::new();
    b.extend_from_slice(&[0xff; 6]);
    b.extend_from_slice(&MAC_A);
    b.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    b.extend_from_slice(&MAC_A);
    b.extend_from_slice(&[10, 0, 0, 1]);
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(&[10, 0, 0, 2]);
    v.push(packet(
        4,
        b,
        LinkType::Ethernet,
        kernel("tp:net:net_dev_queue", "veth0", 3, Direction::Out),
    ));

    let mut b = Vec::new();
    eth()
        .ipv6(src6, dst6, 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut b, &[1; 32])
        .unwrap();
    v.push(packet(
        5,
        b,
        LinkType::Ethernet,
        kernel("tp:net:netif_receive_skb", "veth0", 3, Direction::In),
    ));

    let mut b = Vec::new();
    PacketBuilder::ipv4([192, 168, 1, 1], [192, 168, 1, 2], 64)
        .udp(40002, 40003)
        .write(&mut b, &[3; 20])
        .unwrap();
    v.push(packet(
        6,
        b,
        LinkType::RawIp,
        kernel("tp:net:netif_receive_skb", "tun0", 9, Direction::In),
    ));

    // A long TCP segment of which the hook captured only the first 80 bytes.
    let mut b = Vec::new();
    eth()
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .tcp(5001, 5000, 100, 512)
        .ack(2)
        .psh()
        .write(&mut b, &[0x42; 1400])
        .unwrap();
    let mut p = packet(
        7,
        b,
        LinkType::Ethernet,
        kernel("tp:net:netif_receive_skb", "veth0", 3, Direction::In),
    );
    p.data.truncate(80);
    v.push(p);
    v
}

/// A fresh directory for one test.
pub fn tmpdir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xcap-sinks-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run an oracle tool; fail clearly if it is not installed.
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {tool} ({e}): install it with \
             `apt-get install -y --no-install-recommends tshark tcpdump`"
        )
    })
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Write packets through the registered sink `name` and finish it.
pub fn write_with(name: &str, path: &Path, packets: &[Packet], reports: &[SourceReport]) {
    let f = sink(name).unwrap_or_else(|| panic!("sink {name} is not registered"));
    let cfg = SinkConfig {
        path: Some(path.to_path_buf()),
        snaplen: SNAPLEN,
        ..Default::default()
    };
    let mut s = (f.open)(&cfg).unwrap();
    for p in packets {
        s.write(&p.as_ref()).unwrap();
    }
    s.flush().unwrap();
    s.finish(reports).unwrap();
}

pub fn kernel_report(lost: u64) -> Vec<SourceReport> {
    vec![SourceReport {
        name: "kernel".into(),
        delivered: 7,
        dropped: lost,
        hooks: vec![
            HookStats {
                hook: "tp:net:netif_receive_skb".into(),
                seen: 10,
                lost,
                truncated: 0,
            },
            HookStats {
                hook: "tp:net:net_dev_queue".into(),
                seen: 3,
                lost: 0,
                truncated: 0,
            },
        ],
        failure: None,
        // For the statistics blocks of the kernel's interfaces on ifindex 3.
        notes: vec![(3, "socket 7: rx_dropped=2".into())],
    }]
}

struct Collect(Arc<Mutex<Vec<Packet>>>);

impl Sink for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn write(&mut self, p: &PacketRef) -> Result<()> {
        self.0.lock().unwrap().push(p.to_packet());
        Ok(())
    }
    fn finish(&mut self, _: &[SourceReport]) -> Result<()> {
        Ok(())
    }
}

/// Read a file back through the registered `file` source and the bus.
pub fn read_back(path: &Path) -> (Vec<Packet>, Vec<SourceReport>) {
    let (v, reports, error) = read_back_until_error(path);
    assert!(error.is_none(), "{error:?}");
    (v, reports)
}

/// As `read_back`, for a damaged file: what was read, and the error.
pub fn read_back_until_error(
    path: &Path,
) -> (Vec<Packet>, Vec<SourceReport>, Option<xcap_core::Error>) {
    let f = source("file").expect("source file is not registered");
    let cfg = CaptureConfig {
        read_file: Some(path.to_path_buf()),
        ..Default::default()
    };
    // A file refused at its header: nothing read.
    let src = match (f.open)(&cfg, &Default::default()) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Vec::new(), Some(e)),
    };
    let got = Arc::new(Mutex::new(Vec::new()));
    let report = xcap_core::run_bus(
        vec![src],
        vec![Box::new(Collect(got.clone()))],
        &BusOptions::default(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let v = got.lock().unwrap().clone();
    (v, report.sources, report.error)
}
