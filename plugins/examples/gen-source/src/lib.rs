//! Example plugin: source `gen` emits synthetic Ethernet/IPv4/UDP packets
//! with metadata, at a set count and rate. Built as libxcap_gen_source.so:
//!
//! `xcap --plugin target/release/libxcap_gen_source.so --source gen -c 10 -w g.pcapng`
//!
//! Options (`--plugin-opt gen.KEY=VALUE`): count (packets, 0 = until
//! stopped; default 0), rate (packets per second, 0 = as fast as possible;
//! default 1000), size (UDP payload bytes, 8-1472; default 32), and for
//! tests: lost=N (report N packets lost before the first, as a source that
//! fell behind would), fail_after=N and panic_after=N.

use std::ffi::CStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xcap_plugin_sdk::{export_plugin, Config, Direction, Host, Packet, SourcePlugin};

struct Gen {
    count: u64,
    rate: u64,
    size: usize,
    lost: u64,
    fail_after: Option<u64>,
    panic_after: Option<u64>,
    /// How long to take to stop once done (a source slow to detach).
    linger: Duration,
}

fn num(v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| "not a number".to_string())
}

/// Ethernet/IPv4/UDP from 10.0.0.1:4000 to 10.0.0.2:5000, with `seq` as
/// the payload's first 8 bytes. The IPv4 checksum is right, so Wireshark
/// and tcpdump decode it as they would a real one.
fn frame(seq: u64, payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload) as u16;
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    let mut body = vec![0u8; payload];
    body[..8].copy_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&body);
    f
}

impl SourcePlugin for Gen {
    const NAME: &'static CStr = c"gen";
    const HELP: &'static CStr = c"synthetic UDP packets (example plugin)";

    fn open(cfg: &Config, _host: &Host) -> Result<Self, String> {
        let mut g = Gen {
            count: 0,
            rate: 1000,
            size: 32,
            lost: 0,
            fail_after: None,
            panic_after: None,
            linger: Duration::ZERO,
        };
        cfg.parse_opts(|k, v| {
            Some(match k {
                "count" => num(v).map(|n| g.count = n),
                "rate" => num(v).map(|n| g.rate = n),
                "size" => num(v).and_then(|n| {
                    if (8..=1472).contains(&n) {
                        g.size = n as usize;
                        Ok(())
                    } else {
                        Err("must be 8 to 1472".into())
                    }
                }),
                "lost" => num(v).map(|n| g.lost = n),
                "fail_after" => num(v).map(|n| g.fail_after = Some(n)),
                "panic_after" => num(v).map(|n| g.panic_after = Some(n)),
                "linger_ms" => num(v).map(|n| g.linger = Duration::from_millis(n)),
                _ => return None,
            })
        })?;
        Ok(g)
    }

    fn run(&mut self, host: &Host) -> Result<(), String> {
        let r = self.generate(host);
        std::thread::sleep(self.linger);
        r
    }
}

impl Gen {
    fn generate(&mut self, host: &Host) -> Result<(), String> {
        let start = Instant::now();
        let pid = std::process::id();
        let mut seq = 0u64;
        if self.lost > 0 {
            host.lost(self.lost);
        }
        while self.count == 0 || seq < self.count {
            if self.fail_after == Some(seq) {
                return Err(format!("failing after {seq} packets, as asked"));
            }
            if self.panic_after == Some(seq) {
                panic!("panicking after {seq} packets, as asked");
            }
            // Pace to the rate (none for 0), but answer `stopping` at
            // least every 50 ms.
            if let Some(ns) = (seq * 1_000_000_000).checked_div(self.rate) {
                let due = start + Duration::from_nanos(ns);
                loop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    if host.stopping() {
                        return Ok(());
                    }
                    std::thread::sleep((due - now).min(Duration::from_millis(50)));
                }
            }
            let data = frame(seq, self.size);
            let ts_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let seq_text = seq.to_string();
            let p = Packet {
                ts_ns,
                link_type: 1,
                direction: Direction::Out,
                data: &data,
                orig_len: data.len() as u32,
                ifname: Some("gen0"),
                pid: Some(pid),
                comm: Some("xcap-gen"),
                hook: Some("gen:udp"),
                meta: vec![("gen.seq", &seq_text)],
                ..Default::default()
            };
            if !host.emit(&p) {
                return Ok(());
            }
            seq += 1;
        }
        Ok(())
    }
}

export_plugin!(
    name: c"gen-source",
    version: c"0.1.0",
    description: c"synthetic packets for trying and testing xcap",
    sources: [Gen],
    sinks: [],
);
