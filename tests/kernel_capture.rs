//! End-to-end tests of the kernel source against tcpdump on the same
//! traffic. Root required (see tests/common).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

/// Multiset of packet bytes.
fn bag(pkts: &[(u16, Vec<u8>, u32)]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for (_, d, _) in pkts {
        *m.entry(d.clone()).or_insert(0) += 1;
    }
    m
}

/// What libpcap selects with `expr` from the packets of `file`, through
/// `tcpdump -r` (its result is kept beside `file` as `NAME.libpcap.pcap`).
fn libpcap_selects(file: &std::path::Path, expr: &str) -> Vec<Pkt> {
    let out = file.with_extension("libpcap.pcap");
    sh(&format!(
        "tcpdump -r {} -w {} '{expr}' 2>/dev/null",
        file.display(),
        out.display()
    ));
    read_packets(&out)
}

#[test]
fn same_packets_as_tcpdump_pcap() {
    let v = VethPair::new();
    let dir = tmpdir("same");
    let (xf, tf) = (dir.join("x.pcap"), dir.join("t.pcap"));
    let td = tcpdump(&v.a, &v.va, &tf, &[]);
    let xc = xcap(&["--netns", &v.a, "-i", &v.va, "-w", xf.to_str().unwrap()]);
    v.exec(&v.a, &format!("ping -c 10 -i 0.05 -s 200 {}", v.ip_b));
    v.exec(&v.a, &format!("ping -c 3 -i 0.05 -s 1400 {}", v.ip_b));
    // 13 requests and 13 replies, in both files before they are stopped.
    wait_until(20, || {
        [&xf, &tf]
            .iter()
            .all(|f| packets_so_far(f).iter().filter(|p| is_icmp(p)).count() >= 26)
    });
    let (code, err) = xc.stop();
    let (tcode, _) = td.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(tcode, 0);
    // The oracle: tcpdump reads our pcap, and it holds what tcpdump captured.
    let out = sh(&format!("tcpdump -nn -r {} 2>/dev/null", xf.display()));
    assert!(out.lines().count() >= 26, "{out}");
    let (xs, ts) = (read_packets(&xf), read_packets(&tf));
    assert!(xs.iter().all(|p| p.0 == 1), "Ethernet link type");
    assert_eq!(
        xs.len(),
        ts.len(),
        "packet count: xcap {} tcpdump {}",
        xs.len(),
        ts.len()
    );
    assert_eq!(bag(&xs), bag(&ts), "same bytes as tcpdump");
    // The report counts what was written, and nothing was lost.
    let counted = format!("{} packets captured", xs.len());
    assert!(err.lines().any(|l| l == counted), "{counted}: {err}");
    assert!(err.lines().any(|l| l == "0 packets dropped"), "{err}");
    // -r with a filter: libpcap's verdicts in userspace, as tcpdump -r.
    let xr = dir.join("xr.pcap");
    let expr = "icmp and len > 300";
    sh(&format!(
        "{XCAP} -r {} -w {} '{expr}' 2>/dev/null",
        xf.display(),
        xr.display()
    ));
    let (a, b) = (read_packets(&xr), libpcap_selects(&xf, expr));
    assert_eq!(a.len(), 6, "3 large pings and their replies");
    assert_eq!(bag(&a), bag(&b));
    // Wall-clock stamps agree with tcpdump's (taken a few microseconds apart).
    let tts = read_packets_ts(&tf);
    for (_, d, _, t) in read_packets_ts(&xf) {
        let near = tts
            .iter()
            .filter(|p| p.1 == d)
            .map(|p| p.3.abs_diff(t))
            .min()
            .unwrap();
        assert!(near < 20_000_000, "timestamp {near} ns away from tcpdump's");
    }
}

/// With a filter, a kept packet is captured whole, and a filter that reads
/// deep into the skb's linear head (here 334 bytes into the frame) sees
/// the right bytes: the verdicts are libpcap's on the same packets. (Guards
/// any change to how much BPF copies before the filter runs.)
#[test]
fn filtered_packets_are_whole_and_deep_loads_read_the_head() {
    let v = VethPair::new();
    let dir = tmpdir("peek");
    let (tf, af, df) = (dir.join("t.pcap"), dir.join("a.pcap"), dir.join("d.pcap"));
    let deep = "icmp[300] = 0x41";
    let td = tcpdump(&v.a, &v.va, &tf, &[]);
    let all = xcap(&[
        "--netns",
        &v.a,
        "-i",
        &v.va,
        "-w",
        af.to_str().unwrap(),
        "icmp",
    ]);
    let dc = xcap(&[
        "--netns",
        &v.a,
        "-i",
        &v.va,
        "-w",
        df.to_str().unwrap(),
        deep,
    ]);
    // 600-byte payloads, filled with 0x41 ('A') or 0x42: 642-byte frames.
    for pat in ["41", "42", "41", "42"] {
        v.exec(
            &v.a,
            &format!("ping -c 2 -i 0.05 -s 600 -p {pat} {}", v.ip_b),
        );
    }
    let icmp = |f: &std::path::Path| packets_so_far(f).iter().filter(|p| is_icmp(p)).count();
    // 8 requests and 8 replies; half of them carry 0x41.
    wait_until(20, || icmp(&tf) >= 16 && icmp(&af) >= 16 && icmp(&df) >= 8);
    let (acode, aerr) = all.stop();
    let (dcode, derr) = dc.stop();
    let _ = td.stop();
    assert_eq!(acode, 0, "{aerr}");
    assert_eq!(dcode, 0, "{derr}");
    let ts: Vec<_> = read_packets(&tf).into_iter().filter(is_icmp).collect();
    let xs = read_packets(&af);
    assert_eq!(ts.len(), 16, "tcpdump saw the 16 pings");
    assert!(xs.iter().all(|p| p.1.len() == 642), "captured whole");
    assert_eq!(bag(&xs), bag(&ts), "'icmp': the bytes tcpdump captured");
    let os = libpcap_selects(&tf, deep);
    assert_eq!(os.len(), 8, "libpcap picks the 0x41 half");
    assert_eq!(
        bag(&read_packets(&df)),
        bag(&os),
        "'{deep}': libpcap's verdicts"
    );
}

/// Inside `ip netns exec`, -i names resolve in that namespace; a closed
/// pipe on stdout ends the capture normally.
#[test]
fn inside_ip_netns_exec_and_closed_pipe() {
    let v = VethPair::new();
    // bash, not sh: PIPESTATUS gives xcap's own exit code.
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!(
        "ip netns exec {} {XCAP} -i {} | head -n 2; echo status=${{PIPESTATUS[0]}}",
        v.a, v.va
    ));
    c.stdout(std::process::Stdio::piped());
    let xc = Capture::start(c, READY);
    v.exec(&v.a, &format!("ping -c 5 -i 0.1 {}", v.ip_b));
    let child_out = xc.wait_output();
    let lines: Vec<&str> = child_out.lines().collect();
    assert_eq!(lines.len(), 3, "{child_out}");
    assert!(lines[0].contains(" va Out "), "{child_out}");
    assert_eq!(
        lines[2], "status=0",
        "xcap exits 0 when its reader goes away"
    );
}

#[test]
fn pcapng_has_names_comments_and_reads_in_tshark() {
    let v = VethPair::new();
    let dir = tmpdir("ng");
    let xf = dir.join("x.pcapng");
    let xc = xcap(&["--netns", &v.a, "-w", xf.to_str().unwrap()]);
    v.exec(&v.a, &format!("ping -c 3 -i 0.05 {}", v.ip_b));
    wait_until(20, || {
        packets_so_far(&xf).iter().filter(|p| is_icmp(p)).count() >= 6
    });
    let (code, err) = xc.stop();
    assert_eq!(code, 0, "{err}");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&xf)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // As root, tshark always warns that it runs as root; nothing else may appear.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\""))
        .collect();
    assert!(
        out.status.success() && warnings.is_empty(),
        "tshark: {stderr}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kernel:net_dev_start_xmit:va"), "{text}");
    assert!(text.contains("kernel:netif_receive_skb:va"), "{text}");
    assert!(text.contains("comm=ping"), "{text}");
    let icmp = sh(&format!("tshark -r {} -Y icmp 2>/dev/null", xf.display()));
    assert_eq!(
        icmp.lines().count(),
        6,
        "3 requests out, 3 replies in: {icmp}"
    );
}

#[test]
fn drops_show_reason_and_stack_where_tcpdump_sees_nothing() {
    let v = VethPair::new();
    let dir = tmpdir("drops");
    let (xf, tf) = (dir.join("x.pcapng"), dir.join("t.pcap"));
    v.exec(&v.a, "iptables -A OUTPUT -p icmp -j DROP");
    let td = tcpdump(&v.a, "any", &tf, &["icmp"]);
    let xc = xcap(&[
        "--netns",
        &v.a,
        "--drops",
        "--stack",
        "-w",
        xf.to_str().unwrap(),
    ]);
    // ping fails: the packets never leave.
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &v.a, "ping", "-c", "3", "-i", "0.1", "-W", "1", &v.ip_b,
        ])
        .output();
    // The three drops reach xcap's file (tcpdump has nothing to wait for).
    wait_until(20, || {
        packets_so_far(&xf).iter().filter(|p| is_icmp(p)).count() >= 3
    });
    let (code, err) = xc.stop();
    let _ = td.stop();
    assert_eq!(code, 0, "{err}");
    let seen = read_packets(&tf);
    assert_eq!(
        seen.len(),
        0,
        "tcpdump cannot see packets dropped in OUTPUT"
    );
    let out = sh(&format!(
        "tshark -r {} -Y icmp -T fields -e frame.interface_name -e frame.comment",
        xf.display()
    ));
    let drops: Vec<&str> = out.lines().filter(|l| l.contains("kfree_skb")).collect();
    assert_eq!(drops.len(), 3, "{out}");
    for d in drops {
        assert!(d.contains("drop=NETFILTER_DROP"), "{d}");
        assert!(d.contains("nf_hook_slow"), "stack names nf_hook_slow: {d}");
    }
    // The stdout sink shows the same.
    let text = sh(&format!("{XCAP} -r {} 2>/dev/null", xf.display()));
    assert!(text.contains("drop=NETFILTER_DROP"), "{text}");
}

/// A 64 KiB TCP write over veth goes out as GSO skbs whose payload is mostly
/// in pages; xcap must capture every byte, as tcpdump does.
#[test]
fn paged_gso_data_captured_whole() {
    let v = VethPair::new();
    let dir = tmpdir("paged");
    let (xf, tf) = (dir.join("x.pcap"), dir.join("t.pcap"));
    let server = format!(
        "ip netns exec {} python3 -c \"import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('{}',5001));s.listen(1);c,_=s.accept();n=0\nwhile True:\n b=c.recv(65536)\n if not b: break\n n+=len(b)\nprint(n)\"",
        v.b, v.ip_b
    );
    let srv = Command::new("sh")
        .arg("-c")
        .arg(&server)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(20, || !v
            .exec(&v.b, "ss -Hltn 'sport = :5001'")
            .trim()
            .is_empty()),
        "the server never listened"
    );
    let td = tcpdump(&v.a, &v.va, &tf, &["tcp"]);
    let xc = xcap(&["--netns", &v.a, "-i", &v.va, "-w", xf.to_str().unwrap()]);
    // A filter that reads 1,000 bytes into the TCP payload: in the pages of
    // the skb, past its linear head (which holds the headers only).
    let deep = "tcp[((tcp[12]&0xf0)>>2) + 1000] < 128";
    let ff = dir.join("f.pcap");
    let fc = xcap(&[
        "--netns",
        &v.a,
        "-i",
        &v.va,
        "-w",
        ff.to_str().unwrap(),
        deep,
    ]);
    // 64 KiB of a known pattern in one write.
    v.exec(
        &v.a,
        &format!(
            "python3 -c \"import socket;s=socket.create_connection(('{}',5001));s.sendall(bytes(i*7%251 for i in range(65536)));s.close()\"",
            v.ip_b
        ),
    );
    let got = srv.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "65536");
    // The connection ends with the client's ACK of the server's FIN: once
    // tcpdump has it, and xcap as many TCP packets, both are complete.
    wait_until(20, || {
        let t = packets_so_far(&tf);
        let fin_acked = t.iter().skip_while(|p| !fin_from(p, 5001)).count() >= 2;
        fin_acked && packets_so_far(&xf).iter().filter(|p| is_tcp(&p.1)).count() >= t.len()
    });
    let (code, err) = xc.stop();
    let _ = td.stop();
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("unreadable paged data"), "{err}");
    // The in-kernel verdicts equal libpcap's on the whole packets; the
    // filtered capture is complete once it has as many as libpcap picks.
    let os = libpcap_selects(&xf, deep);
    wait_until(20, || packets_so_far(&ff).len() >= os.len());
    let (fcode, ferr) = fc.stop();
    assert_eq!(fcode, 0, "{ferr}");
    let fs = read_packets(&ff);
    let data_pkts = xs_len_over(&read_packets(&xf), 1100);
    assert!(
        !os.is_empty() && os.len() < data_pkts,
        "the deep filter matches some data packets, not all: {} of {data_pkts}",
        os.len()
    );
    assert_eq!(
        bag(&fs),
        bag(&os),
        "filter on paged data: same packets as libpcap"
    );
    let xs: Vec<_> = read_packets(&xf)
        .into_iter()
        .filter(|p| is_tcp(&p.1))
        .collect();
    let ts = read_packets(&tf);
    assert!(
        xs.iter().any(|p| p.1.len() > 20000),
        "expected GSO packets larger than the MTU"
    );
    for p in &xs {
        assert_eq!(
            p.1.len() as u32,
            p.2,
            "captured length equals packet length"
        );
    }
    assert_eq!(bag(&xs), bag(&ts), "same bytes as tcpdump");
    // And the payload is the pattern we sent, in order.
    let payload = tcp_payload_to(&xs, 5001);
    let want: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(payload.len(), want.len());
    assert!(payload == want, "payload bytes differ");
}

fn xs_len_over(pkts: &[(u16, Vec<u8>, u32)], n: u32) -> usize {
    pkts.iter().filter(|p| p.2 > n).count()
}

fn is_tcp(d: &[u8]) -> bool {
    d.len() > 34 && d[12..14] == [8, 0] && d[23] == 6
}

/// A TCP FIN sent from `port`.
fn fin_from(p: &Pkt, port: u16) -> bool {
    ipv4(p).is_some_and(|ip| {
        let t = &ip[(ip[0] & 0xf) as usize * 4..];
        ip[9] == 6 && t.len() >= 14 && t[0..2] == port.to_be_bytes() && t[13] & 1 != 0
    })
}

/// The TCP payload sent to `port`, laid out by sequence number.
fn tcp_payload_to(pkts: &[(u16, Vec<u8>, u32)], port: u16) -> Vec<u8> {
    let mut segs = BTreeMap::new();
    for (_, d, _) in pkts {
        let ihl = (d[14] & 0xf) as usize * 4;
        let t = 14 + ihl;
        if u16::from_be_bytes([d[t + 2], d[t + 3]]) != port {
            continue;
        }
        let seq = u32::from_be_bytes([d[t + 4], d[t + 5], d[t + 6], d[t + 7]]);
        let off = ((d[t + 12] >> 4) as usize) * 4;
        let tot = u16::from_be_bytes([d[16], d[17]]) as usize;
        let payload = &d[t + off..14 + tot];
        if !payload.is_empty() {
            segs.insert(seq, payload.to_vec());
        }
    }
    // Laid out by sequence number: a retransmission cut differently from
    // the original (it happens under load) overlaps it, not adds to it.
    let Some(&first) = segs.keys().next() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (seq, p) in segs {
        let at = seq.wrapping_sub(first) as usize;
        if out.len() < at + p.len() {
            out.resize(at + p.len(), 0);
        }
        out[at..at + p.len()].copy_from_slice(&p);
    }
    out
}

#[test]
fn count_and_stdout_lines() {
    let v = VethPair::new();
    let mut c = xcap_cmd(&["--netns", &v.a, "-i", &v.va, "-c", "4"]);
    c.stdout(std::process::Stdio::piped());
    let xc = Capture::start(c, READY);
    v.exec(&v.a, &format!("ping -c 4 -i 0.05 {}", v.ip_b));
    // Eight ICMP packets crossed va: xcap ends by itself after four.
    let (code, out, err) = xc.end(false);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(err.lines().any(|l| l == "4 packets captured"), "{err}");
}

/// A function hook attaches where the kernel allows fentry or kprobes
/// (--list-hooks says which, found by trying) and captures; where it
/// allows neither (this machine: fentry EPERM, no kprobes), xcap says so in
/// one line with the kernel's answers.
#[test]
fn function_hook_attaches_or_names_what_the_kernel_refused() {
    require_root();
    let (said, works) = function_hook_backends();
    if works {
        let v = VethPair::new();
        let xc = xcap(&["--netns", &v.a, "-i", &v.va, "--hook", "ip_rcv", "-c", "1"]);
        v.exec(&v.a, &format!("ping -c 1 {}", v.ip_b));
        // The echo reply reaches ip_rcv: xcap ends by itself.
        let (code, _, err) = xc.end(false);
        assert_eq!(code, 0, "{said}: {err}");
        assert!(err.lines().any(|l| l == "1 packets captured"), "{err}");
        return;
    }
    let out = Command::new("timeout")
        .args(["30", XCAP, "--hook", "ip_rcv", "-c", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("fentry") && err.contains("kprobe"), "{err}");
    assert!(
        err.contains(&said),
        "names the kernel's answers ({said}): {err}"
    );
}

#[test]
fn list_hooks_shows_tracepoints_and_functions() {
    require_root();
    let all = sh(&format!("{XCAP} --list-hooks"));
    assert!(
        all.lines()
            .any(|l| l.contains("netif_receive_skb\tskb=@1\ttp_btf")),
        "{all}"
    );
    assert!(all.contains("# kernel functions with an skb"), "{all}");
    let tcp = sh(&format!("{XCAP} --list-hooks 'tcp_v4_*'"));
    assert!(tcp.lines().any(|l| l == "tcp_v4_rcv\tskb=@1"), "{tcp}");
    assert!(!tcp.contains("udp_"), "{tcp}");
}

/// -d prints libpcap's classic program exactly as tcpdump -d does.
#[test]
fn dump_matches_tcpdump_d() {
    for e in ["tcp port 80", "vlan and icmp6", "ether broadcast"] {
        let ours = sh(&format!("{XCAP} -d '{e}'"));
        let theirs = sh(&format!("tcpdump -d '{e}' 2>/dev/null"));
        assert!(ours.contains(&theirs), "{e}:\n{ours}\n---\n{theirs}");
        assert!(ours.contains("(eBPF"), "{ours}");
    }
}

fn bad(args: &[&str], needle: &str) {
    // Bounded: a bad input that is wrongly accepted would capture forever.
    let out = Command::new("timeout")
        .arg("30")
        .arg(XCAP)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    require_root();
    bad(
        &["--hook", "tp:net:no_such_tracepoint", "-c", "1"],
        "no_such_tracepoint",
    );
    bad(&["--hook", "tp:sched:sched_switch", "-c", "1"], "sk_buff");
    // A function hook refused by the kernel: in the test above, which
    // knows whether this kernel refuses it.
    bad(
        &["--hook", "nosuchfunc", "-c", "1"],
        "no function nosuchfunc",
    );
    bad(&["--hook", "schedule", "-c", "1"], "no struct sk_buff");
    bad(&["--hook", "bogus:x", "-c", "1"], "bad hook");
    bad(&["-i", "nosuchif0", "-c", "1"], "nosuchif0");
    bad(&["--netns", "no-such-ns", "-c", "1"], "no-such-ns");
    bad(
        &["-w", "/nonexistent-dir/x.pcapng", "-c", "1"],
        "/nonexistent-dir/x.pcapng",
    );
    bad(&["-r", "/nonexistent-file.pcap"], "/nonexistent-file.pcap");
    bad(&["--sink", "nosuch"], "nosuch");
    bad(&["--frobnicate"], "frobnicate");
    // libpcap's own message, nothing attached.
    bad(&["tcp", "port", "eighty"], "eighty");
    bad(&["-d"], "-d needs a filter expression");
    assert!(!std::path::Path::new("/nonexistent-dir").exists());
}
