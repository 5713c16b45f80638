//! The pcapng writer alone: nanoseconds per 106-byte packet with a
//! kernel-source packet's metadata, written to /dev/null (no page cache,
//! only the writer's own work and its write(2) calls).
//!
//!     cargo run --release -p xcap-sinks --example pcapng_write

use std::sync::Arc;

use xcap_core::{Direction, LinkType, Meta, Packet, Sink as _, SinkConfig};

fn main() {
    let cfg = SinkConfig {
        path: Some("/dev/null".into()),
        snaplen: 262_144,
        ..Default::default()
    };
    let mut sink = xcap_sinks::PcapNgSink::open(&cfg).expect("open /dev/null");
    let mut p = Packet {
        ts_ns: 0,
        data: vec![7; 106],
        orig_len: 106,
        link: LinkType::Ethernet,
        meta: Meta {
            source: Arc::from("kernel"),
            hook: Arc::from("tp:net:netif_receive_skb"),
            ifname: Arc::from("va"),
            ifindex: 2,
            netns: 4_026_532_174,
            dir: Direction::In,
            cpu: Some(1),
            pid: Some(4695),
            tid: Some(4695),
            comm: Some(Arc::from("iperf3")),
            ..Default::default()
        },
    };
    let n = 5_000_000u64;
    let t = std::time::Instant::now();
    for i in 0..n {
        p.ts_ns = i;
        p.meta.packet_id = Some(0xffff_8881_3eae_e000 + (i & 0xff) * 256);
        sink.write(&p.as_ref()).expect("write");
    }
    sink.flush().expect("flush");
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{ns:.1} ns per packet ({n} packets)");
}
