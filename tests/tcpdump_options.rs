//! tcpdump's presentation options (-t, -tt, -ttt, -tttt, -ttttt, -X, -XX,
//! -A, -e, --count) against tcpdump itself reading the same file: the
//! parts both print the same way must be byte for byte the same. The
//! generated man page and completions come from the same definition.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn out(cmd: &str, args: &[&str], file: &Path) -> Vec<String> {
    let o = Command::new(cmd)
        .args(args)
        .arg("-r")
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// tcpdump's own file of the fuzz corpus (ICMP echo on loopback).
fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sinks/tests/data/fuzz/tcpdump.pcap")
}

#[test]
fn time_formats_match_tcpdump() {
    let f = sample();
    for t in ["-tt", "-ttt", "-tttt", "-ttttt"] {
        let ours = out(XCAP, &[t], &f);
        let theirs = out("tcpdump", &["-n", t], &f);
        assert_eq!(ours.len(), theirs.len(), "{t}");
        // The time and its separator: one word, two for -tttt, and the
        // deltas' leading sign column.
        let words = match t {
            "-tttt" | "-ttt" | "-ttttt" => 2,
            _ => 1,
        };
        for (a, b) in ours.iter().zip(&theirs) {
            let pre = |l: &str| l.split(' ').take(words).collect::<Vec<_>>().join(" ");
            assert_eq!(pre(a), pre(b), "{t}:\n{a}\n{b}");
        }
    }
    // -t: no time at all; the line starts with the hook.
    let ours = out(XCAP, &["-t"], &f);
    assert!(ours.iter().all(|l| l.starts_with("file ")), "{ours:?}");
}

#[test]
fn byte_dumps_match_tcpdump() {
    let f = sample();
    for opt in ["-X", "-XX"] {
        let dump = |v: Vec<String>| -> Vec<String> {
            v.into_iter().filter(|l| l.starts_with("\t0x")).collect()
        };
        let ours = dump(out(XCAP, &[opt], &f));
        let theirs = dump(out("tcpdump", &["-n", opt], &f));
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs, "{opt}");
    }
    // -A: the payload as text, '.' for what does not print.
    let ours = out(XCAP, &["-A"], &f).join("\n");
    let theirs = out("tcpdump", &["-n", "-A"], &f).join("\n");
    let printable = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains(" > ") && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(printable(&ours), printable(&theirs));
}

#[test]
fn link_header_matches_tcpdump() {
    let f = sample();
    let ours = out(XCAP, &["-e"], &f);
    let theirs = out("tcpdump", &["-n", "-e"], &f);
    for (a, b) in ours.iter().zip(&theirs) {
        // "02:... > 02:..., ethertype IPv4 (0x0800), length 98: "
        let part = |l: &str| {
            let e = l.find(", ethertype").unwrap_or_else(|| panic!("{l}"));
            let gt = l[..e].rfind(" > ").unwrap();
            let end = e + l[e..].find(": ").unwrap() + 2;
            l[gt - 17..end].to_string()
        };
        assert_eq!(part(a), part(b), "\n{a}\n{b}");
    }
}

#[test]
fn count_prints_only_the_number() {
    let f = sample();
    let count = |cmd: &str| {
        let o = Command::new(cmd)
            .args(["--count", "-r"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(count(XCAP), count("tcpdump"));
    assert_eq!(count(XCAP), "4 packets\n");
}

#[test]
fn man_page_and_completions_come_from_the_options() {
    let man = Command::new(XCAP).arg("--generate-man").output().unwrap();
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH xcap"), "{man}");
    // Options of xcap and of its sources are there.
    for o in [
        "\\-w",
        "\\-C",
        "\\-\\-plugin",
        "\\-\\-dpdk\\-pid",
        "\\-\\-hook",
    ] {
        assert!(man.contains(o), "{o} missing from the man page");
    }
    let bash = Command::new(XCAP)
        .args(["--generate-completions", "bash"])
        .output()
        .unwrap();
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.contains("--dpdk-pid") && bash.contains("--plugin-opt"));
    // bash itself accepts the script.
    let st = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A pcap of TCP segments (SYN, data with PSH|ACK, FIN), built by hand.
fn tcp_sample(dir: &Path) -> std::path::PathBuf {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let f = dir.join("tcp.pcap");
    let mut w =
        PcapWriter::with_header(std::fs::File::create(&f).unwrap(), PcapHeader::default()).unwrap();
    for (i, (flags, payload)) in [(0x02u8, 0usize), (0x18, 100), (0x11, 0)]
        .iter()
        .enumerate()
    {
        let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 20 + payload) as u16;
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&80u16.to_be_bytes());
        p.extend_from_slice(&(1000 + i as u32 * 7).to_be_bytes());
        p.extend_from_slice(&5u32.to_be_bytes());
        p.extend_from_slice(&[0x50, *flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend(std::iter::repeat_n(b'a', *payload));
        w.write_packet(&PcapPacket::new(
            std::time::Duration::from_millis(i as u64),
            p.len() as u32,
            &p,
        ))
        .unwrap();
    }
    f
}

#[test]
fn quick_output_matches_tcpdump() {
    let dir = tmpdir("quick");
    let f = tcp_sample(&dir);
    // What follows the hook, interface and direction on our line equals
    // tcpdump's line after its time: "IP 10.0.0.1.40000 > 10.0.0.2.80: tcp 100".
    let ours = out(XCAP, &["-q", "-t"], &f);
    let theirs = out("tcpdump", &["-n", "-q", "-t"], &f);
    assert_eq!(ours.len(), 3);
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(a.ends_with(b.as_str()), "\n{a}\n{b}");
        assert!(b.contains(": tcp "), "{b}");
    }
}
