//! Live filter test (root): mixed traffic replayed onto a veth pair while
//! xcap and tcpdump capture with the same expression in the same run; the
//! same packets must pass in both, for every expression, and tcpdump must
//! see what libpcap selects from the same traffic offline.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use xcap_core::filter::testset::{self, packet, Rng};

fn bag(pkts: &[(u16, Vec<u8>, u32)]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for (_, d, _) in pkts {
        *m.entry(d.clone()).or_insert(0) += 1;
    }
    m
}

/// 2,000 structured random Ethernet frames (the differential test's kind)
/// written as pcap for tcpreplay. Without VLAN tags: the kernel strips them
/// before tcpdump's in-kernel filter runs (libpcap re-inserts them later),
/// so live tcpdump matches `icmp6` on a tagged frame where libpcap on the
/// frame's bytes (and xcap, which filters the bytes it captures) does not.
fn traffic(path: &std::path::Path) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::with_header(
        f,
        PcapHeader {
            datalink: pcap_file::DataLink::ETHERNET,
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng(42);
    let mut i = 0u32;
    while i < 2000 {
        let (frame, _) = packet(&mut rng);
        if frame[12..14] == [0x81, 0x00] {
            continue;
        }
        i += 1;
        let ts = std::time::Duration::from_micros(i as u64 * 100);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .unwrap();
    }
}

#[test]
fn same_verdicts_as_tcpdump_live() {
    let v = VethPair::new();
    let dir = tmpdir("filter-live");
    let pcap = dir.join("traffic.pcap");
    traffic(&pcap);
    // Every fifth expression of the hand-written list: 30 and more, of
    // every kind (hosts, ports, flags, arithmetic, vlan, ip6, combinations).
    let exprs: Vec<String> = testset::base().into_iter().step_by(5).collect();
    assert!(exprs.len() >= 30, "{}", exprs.len());
    let mut failures = Vec::new();
    // Expressions that select some of the traffic.
    let mut matched = 0;
    for group in exprs.chunks(8) {
        let mut caps = Vec::new();
        // What libpcap selects from the traffic: how many packets each
        // capture waits for before it is stopped.
        let mut want = Vec::new();
        for (i, e) in group.iter().enumerate() {
            let of = dir.join(format!("o{i}.pcap"));
            sh(&format!(
                "tcpdump -r {} -w {} '{e}' 2>/dev/null",
                pcap.display(),
                of.display()
            ));
            want.push(read_packets(&of).len());
            let tf = dir.join(format!("t{i}.pcap"));
            let xf = dir.join(format!("x{i}.pcap"));
            let td = tcpdump(&v.b, &v.vb, &tf, &["-Q", "in", e]);
            let xc = xcap(&[
                "--netns",
                &v.b,
                "-i",
                &v.vb,
                "--hook",
                "tp:net:netif_receive_skb",
                "-B",
                "2048",
                "-w",
                xf.to_str().unwrap(),
                e,
            ]);
            caps.push((e.clone(), td, xc, tf, xf));
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &v.a, "tcpreplay", "-q", "-t", "-i", &v.va])
            .arg(&pcap)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One deadline for the group; a capture that falls short is
        // reported by the comparison below.
        wait_until(30, || {
            caps.iter().zip(&want).all(|((_, _, _, tf, xf), n)| {
                packets_so_far(tf).len() >= *n && packets_so_far(xf).len() >= *n
            })
        });
        for ((e, td, xc, tf, xf), n) in caps.into_iter().zip(want) {
            let (code, err) = xc.stop();
            let _ = td.stop();
            assert_eq!(code, 0, "{e}: {err}");
            let (xs, ts) = (read_packets(&xf), read_packets(&tf));
            // tcpdump, the oracle, saw the traffic: all that libpcap picks.
            if ts.len() != n {
                failures.push(format!("{e:?}: tcpdump {} packets, libpcap {n}", ts.len()));
            }
            matched += usize::from(!ts.is_empty());
            if bag(&xs) != bag(&ts) {
                failures.push(format!(
                    "{e:?}: xcap {} packets, tcpdump {}",
                    xs.len(),
                    ts.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Two empty captures agree without testing anything: most expressions
    // must pick packets (all but those on VLAN tags or past every packet's
    // end).
    assert!(
        matched * 4 >= exprs.len() * 3,
        "only {matched} of {} expressions match the traffic",
        exprs.len()
    );
}
