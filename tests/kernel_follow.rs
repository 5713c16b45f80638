//! End-to-end tests of following packets in the kernel source: --track
//! through NAT, --latency across hooks, and the --pid/--comm task filters.
//! Root: network namespaces, veth, iptables.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// A TCP SYN to port 80 that DNAT turns into port 8080, where nothing
/// listens: the kernel frees it (NO_SOCKET) with the new port. --track
/// keeps it once 'tcp dst port 80' matched at netif_receive_skb.
#[test]
fn track_follows_a_packet_through_nat() {
    let v = VethPair::new();
    v.exec(
        &v.b,
        "iptables -t nat -A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 8080",
    );
    let dir = tmpdir("track");
    let mut results = Vec::new();
    for track in [true, false] {
        let f = dir.join(format!("t{track}.pcapng"));
        let mut args = vec!["--netns", &v.b, "--drops", "-w", f.to_str().unwrap()];
        if track {
            args.push("--track");
        }
        args.extend(["tcp", "dst", "port", "80"]);
        let cap = xcap(&args);
        // Three connection attempts (SYN retries are not needed: RST comes back).
        for _ in 0..3 {
            let _ = Command::new("ip")
                .args(["netns", "exec", &v.a, "timeout", "2", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{}/80", v.ip_b))
                .stderr(Stdio::null())
                .status();
        }
        // The three SYNs as they arrived, and with --track as they were
        // freed after NAT, are in the file.
        wait_until(20, || {
            let ports: Vec<_> = packets_so_far(&f).iter().filter_map(tcp_dport).collect();
            let n = |port| ports.iter().filter(|p| **p == port).count();
            n(80) >= 3 && (!track || n(8080) >= 3)
        });
        let (code, err) = cap.stop();
        assert_eq!(code, 0, "{err}");
        let out = sh(&format!(
            "tshark -r {} -T fields -e frame.interface_name -e tcp.dstport -e frame.comment",
            f.display()
        ));
        results.push(out);
    }
    let (with, without) = (&results[0], &results[1]);
    let freed: Vec<&str> = with.lines().filter(|l| l.contains("kfree_skb")).collect();
    assert!(freed.len() >= 3, "{with}");
    for l in &freed {
        assert!(l.contains("\t8080\t"), "freed with the NATed port: {l}");
        assert!(l.contains("drop=NO_SOCKET"), "{l}");
    }
    assert!(
        with.lines().filter(|l| l.contains("\t80\t")).count() >= 3,
        "{with}"
    );
    assert!(
        !without.contains("kfree_skb"),
        "without --track the filter stops matching after NAT: {without}"
    );
}

/// Pings cross the veth pair: queued and sent in namespace a, then
/// netif_rx and netif_receive_skb in b, one skb all the way; every packet
/// shows the time from the first hook to each later one, and the summary
/// has min/median/p99 per hop.
#[test]
fn latency_across_hooks() {
    let v = VethPair::new();
    let filter = format!("icmp[icmptype] == icmp-echo and src host {}", v.ip_a);
    let hooks = [
        "tp:net:net_dev_queue",
        "tp:net:net_dev_start_xmit",
        "tp:net:netif_rx",
        "tp:net:netif_receive_skb",
    ];
    let mut args = vec!["--latency"];
    for h in &hooks {
        args.extend(["--hook", h]);
    }
    args.push(&filter);
    let mut c = xcap_cmd(&args);
    c.stdout(Stdio::piped());
    let cap = Capture::start(c, READY);
    v.exec(&v.a, &format!("ping -c 5 -i 0.1 {}", v.ip_b));
    // Each request at its first hook and at three later ones.
    wait_until(20, || {
        let out = cap.stdout_so_far();
        out.lines()
            .filter(|l| l.contains(" tp:net:net_dev_queue va "))
            .count()
            >= 5
            && out.matches("  +").count() >= 15
    });
    let (code, out, err) = cap.end(true);
    assert_eq!(code, 0, "{err}");
    let firsts = out
        .lines()
        .filter(|l| l.contains(" tp:net:net_dev_queue va "))
        .count();
    assert_eq!(firsts, 5, "{out}");
    assert_eq!(
        out.matches("  +").count(),
        15,
        "three later hooks per packet: {out}"
    );
    for later in &hooks[1..] {
        let hop = format!("tp:net:net_dev_queue -> {later}: ");
        let line = out
            .lines()
            .find(|l| l.contains(&hop))
            .unwrap_or_else(|| panic!("no summary for {hop}: {out}"));
        assert!(line.contains(": 5 packets, min "), "{line}");
        assert!(
            line.contains(" median ") && line.contains(" p99 "),
            "{line}"
        );
    }
}

/// Two senders at once; --comm and --pid keep the one named.
#[test]
fn pid_and_comm_select_the_sending_task() {
    let v = VethPair::new();
    let dir = tmpdir("task");
    let udp = format!(
        "ip netns exec {} python3 -c \"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(60):\n s.sendto(b'x',('{}',9)); time.sleep(0.05)\"",
        v.a, v.ip_b
    );
    for mode in ["comm", "pid"] {
        let f = dir.join(format!("{mode}.pcapng"));
        let mut ping = Command::new("ip")
            .args([
                "netns", "exec", &v.a, "ping", "-c", "20", "-i", "0.1", &v.ip_b,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut sender = Command::new("sh").arg("-c").arg(&udp).spawn().unwrap();
        let pid = ping.id().to_string();
        let mut args = vec![
            "--netns",
            &v.a,
            "--hook",
            "tp:net:net_dev_start_xmit",
            "-w",
            f.to_str().unwrap(),
        ];
        if mode == "comm" {
            args.extend(["--comm", "ping"]);
        } else {
            args.extend(["--pid", &pid]);
        }
        let cap = xcap(&args);
        // Capture until ping's requests show, with the UDP sender still
        // sending: it started first, so the filter had its packets to reject.
        wait_until(20, || {
            packets_so_far(&f).iter().filter(|p| is_icmp(p)).count() >= 3
        });
        let sending = sender.try_wait().unwrap().is_none();
        let (code, err) = cap.stop();
        assert!(
            sending,
            "{mode}: the UDP sender ended before the capture did"
        );
        let _ = ping.kill();
        let _ = ping.wait();
        let _ = sender.wait();
        assert_eq!(code, 0, "{err}");
        let out = sh(&format!(
            "tshark -r {} -T fields -e ip.proto -e frame.comment",
            f.display()
        ));
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines.iter().filter(|l| l.starts_with("1\t")).count() >= 3,
            "{mode}: echo requests captured: {out}"
        );
        for l in &lines {
            assert!(l.starts_with("1\t"), "{mode}: only ICMP from ping: {l}");
            assert!(l.contains("comm=ping"), "{mode}: {l}");
            if mode == "pid" {
                assert!(l.contains(&format!("pid={pid}")), "{l}");
            }
        }
    }
    for (args, needle) in [
        (vec!["--pid", "999999999"], "no such process"),
        (vec!["--comm", "a-name-longer-than-15"], "1 to 15 bytes"),
        (vec!["--track"], "give a filter expression"),
    ] {
        let out = Command::new(XCAP).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
