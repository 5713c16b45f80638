//! The `stdout` sink's text and JSON lines.

mod common;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;
use xcap_core::{Error, Packet, Sink, SinkConfig};
use xcap_sinks::{summary, TextSink};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn render(packets: &[Packet], cfg: &SinkConfig) -> String {
    let buf = Buf::default();
    let mut s = TextSink::new(Box::new(buf.clone()), cfg);
    for p in packets {
        s.write(&p.as_ref()).unwrap();
    }
    s.finish(&[]).unwrap();
    let v = buf.0.lock().unwrap().clone();
    String::from_utf8(v).unwrap()
}

/// Local time of a Unix second as `date` prints it: the oracle for the
/// time zone handling.
fn date_hms(secs: u64) -> String {
    let o = run("date", &["-d", &format!("@{secs}"), "+%H:%M:%S"]);
    stdout(&o).trim().to_string()
}

#[test]
fn one_line_per_packet_like_tcpdump() {
    let packets = packets();
    let out = render(&packets, &SinkConfig::default());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), packets.len(), "{out}");
    for (p, l) in packets.iter().zip(&lines) {
        let (time, rest) = l.split_once(' ').unwrap();
        let secs = p.ts_ns / 1_000_000_000;
        let micros = p.ts_ns % 1_000_000_000 / 1000;
        assert_eq!(time, format!("{}.{micros:06}", date_hms(secs)));
        assert!(rest.contains(&summary(&p.as_ref())), "{l}");
    }
    let rest = |i: usize| lines[i].split_once(' ').unwrap().1;
    assert_eq!(
        rest(0),
        "netif_receive_skb veth0 In IP 10.0.0.1.5000 > 10.0.0.2.80: Flags [S], seq 1, \
         win 65535, length 0 curl/4242"
    );
    assert_eq!(
        rest(2),
        "kfree_skb if5 ? IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 2, length 64 \
         drop=NETFILTER_DROP at nf_hook_slow+0x8c"
    );
    assert_eq!(
        rest(4),
        "net_dev_queue veth0 Out ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28"
    );
}

#[test]
fn verbose_adds_metadata_lines() {
    let packets = packets();
    let cfg = SinkConfig {
        verbose: 1,
        ..Default::default()
    };
    let out = render(&packets[..3], &cfg);
    let lines: Vec<&str> = out.lines().collect();
    // Every line after a packet line is indented.
    assert_eq!(lines.iter().filter(|l| !l.starts_with(' ')).count(), 3);
    assert_eq!(
        lines[1],
        "    source kernel hook tp:net:netif_receive_skb ifindex 3 netns 4026531840 cpu 1 \
         caplen 54 len 54"
    );
    assert_eq!(
        lines[2],
        "    pid 4242 tid 4243 comm \"curl\" id 0xffff88810a2b3c00"
    );
    assert!(out.contains("    pid 7 comm \"my proc \\\\ x\" id 0xffff88810a2b3c00 queue 2\n"));
    assert!(out.contains("    ret -1\n"));
    assert!(out.contains("    skb_len=\"98\" note=\"a b=c\"\n"));
    assert!(out.contains(
        "    stack:\n      kfree_skb_reason+0x0\n      nf_hook_slow+0x8c [nf_tables]\n      \
         ip_local_deliver+0x4f\n"
    ));
}

#[test]
fn json_lines_carry_every_field() {
    let packets = packets();
    for verbose in [0, 1] {
        let cfg = SinkConfig {
            json: true,
            verbose,
            ..Default::default()
        };
        let out = render(&packets, &cfg);
        let objs: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objs.len(), packets.len());
        for (p, o) in packets.iter().zip(&objs) {
            assert_eq!(o["ts_ns"], p.ts_ns);
            let ts = o["ts"].as_f64().unwrap();
            assert!((ts - p.ts_ns as f64 / 1e9).abs() < 1e-6);
            assert_eq!(o["summary"], summary(&p.as_ref()));
            assert_eq!(o["len"], p.orig_len);
            assert_eq!(o["caplen"], p.data.len());
            assert_eq!(o["source"], &*p.meta.source);
            assert_eq!(o["hook"], &*p.meta.hook);
            assert_eq!(o["linktype"], p.link.pcap());
            assert_eq!(o.get("data").is_some(), verbose > 0);
        }
        let o = &objs[0];
        assert_eq!(o["packet_id"], "0xffff88810a2b3c00");
        assert_eq!(o["dir"], "In");
        assert_eq!(o["comm"], "curl");
        assert_eq!(o["pid"], 4242);
        assert_eq!(o["queue"], Value::Null);
        let o = &objs[2];
        assert_eq!(o["dir"], Value::Null);
        assert_eq!(o["drop_reason"], "NETFILTER_DROP");
        assert_eq!(o["drop_location"], "nf_hook_slow+0x8c");
        assert_eq!(o["retval"], -1);
        assert_eq!(o["stack"][1], "nf_hook_slow+0x8c [nf_tables]");
        assert_eq!(o["extra"]["note"], "a b=c");
        if verbose > 0 {
            let hex: String = packets[2].data.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(o["data"], hex);
        }
    }
}

struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn closed_output_is_a_normal_stop() {
    let mut s = TextSink::new(Box::new(ClosedPipe), &SinkConfig::default());
    // Buffered: the error shows when the buffer goes out.
    s.write(&packets()[0].as_ref()).unwrap();
    assert!(matches!(s.flush(), Err(Error::Closed)));
}
