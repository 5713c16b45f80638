#!/usr/bin/env python3
"""In-kernel cost of xcap's BPF program per event, with and without filters.

A 64-byte UDP flood over a veth pair; xcap captures at the receiving side's
tp:net:netif_receive_skb with a filter that rejects every packet, one that
accepts every packet, and more complex ones. The kernel's own BPF run-time
statistics (kernel.bpf_stats_enabled) give run time / run count of the
program. The first row is the floor of that measure: an empty program
(bpftrace, `tracepoint:net:netif_receive_skb { }`) on the same tracepoint,
which costs only the kernel's own accounting around it. Median of several
interleaved runs. Run as root:

    sudo python3 bench/filter_cost.py --seconds 3 --runs 3
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import veth

A, B = "xfilt-a", "xfilt-b"
IP_A, IP_B = "10.97.0.1", "10.97.0.2"

FLOOR = "floor: an empty program (bpftrace)"
CASES = [
    (FLOOR, None),
    ("no filter", []),
    ("reject, simple: 'tcp port 9'", ["tcp", "port", "9"]),
    ("reject, complex: 'host 1.2.3.4 and (tcp[tcpflags] & tcp-syn != 0 or udp port 9)'",
     ["host", "1.2.3.4", "and", "(tcp[tcpflags]", "&", "tcp-syn", "!=", "0", "or", "udp",
      "port", "9)"]),
    ("accept, simple: 'udp'", ["udp"]),
    ("accept, complex: 'udp and dst port 5201 and len > 40 and not host 1.2.3.4'",
     ["udp", "and", "dst", "port", "5201", "and", "len", ">", "40", "and", "not", "host",
      "1.2.3.4"]),
]


def setup():
    veth.setup(A, B, IP_A, IP_B)


def teardown():
    veth.teardown(A, B)


def prog_stats(prefix):
    # bpftrace can print its "Attaching" line a moment before the program
    # shows in bpftool: look again for a while before giving up.
    for _ in range(100):
        out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                             check=True).stdout
        for p in json.loads(out):
            if p.get("name", "").startswith(prefix):
                return p.get("run_time_ns", 0), p.get("run_cnt", 0)
        time.sleep(0.05)
    raise RuntimeError(f"program {prefix}* not found")


def run(xcap, args, seconds):
    if args is None:
        cmd, ready, prefix = (["bpftrace", "-e", "tracepoint:net:netif_receive_skb { }"],
                              "Attaching", "netif_receive_s")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stream = p.stdout
    else:
        cmd = [xcap, "--netns", B, "-i", "vb", "--hook", "tp:net:netif_receive_skb",
               "-w", "/dev/null", "--sink", "pcap"] + args
        ready, prefix = "capturing", "xcap_tp_arg"
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        stream = p.stderr
    while ready not in stream.readline():
        if p.poll() is not None:
            raise RuntimeError(f"{cmd[0]} failed")
    t0, c0 = prog_stats(prefix)
    subprocess.run(["ip", "netns", "exec", A, "iperf3", "-c", IP_B, "-u", "-l", "64", "-b", "0",
                    "-t", str(seconds)], check=True, stdout=subprocess.DEVNULL)
    t1, c1 = prog_stats(prefix)
    p.send_signal(signal.SIGINT)
    p.communicate()
    return (t1 - t0) / max(1, c1 - c0), c1 - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--xcap", default="target/release/xcap",
                    help="binary; several, comma-separated, are compared interleaved")
    ap.add_argument("--only", default="",
                    help="run only the cases whose name contains one of these comma-separated words")
    a = ap.parse_args()
    xcaps = a.xcap.split(",")
    words = [w for w in a.only.split(",") if w]
    cases = [(n, c) for n, c in CASES if c is None or not words or any(w in n for w in words)]
    # (label, binary, args): the floor once, every other case once per binary.
    runs = [(n if c is None or len(xcaps) == 1 else f"{n} [{x}]", x, c)
            for n, c in cases for x in (xcaps[:1] if c is None else xcaps)]
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    veth.sh("sysctl -qw kernel.bpf_stats_enabled=1")
    setup()
    srv = subprocess.Popen(["ip", "netns", "exec", B, "iperf3", "-s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    res = {name: [] for name, _, _ in runs}
    try:
        for r in range(a.runs):
            for name, xcap, args in runs:
                ns, n = run(xcap, args, a.seconds)
                res[name].append((ns, n))
                print(f"# run {r} {name}: {ns:.0f} ns/event over {n} events", file=sys.stderr)
    finally:
        srv.terminate()
        srv.wait()
        teardown()
        veth.sh(f"sysctl -qw kernel.bpf_stats_enabled={old}")
    print(f"64-byte UDP flood, tp:net:netif_receive_skb, {a.seconds} s per run, "
          f"median of {a.runs} interleaved runs\n")
    print("| filter | ns per event (BPF run time / run count) | events per run |")
    print("|---|---|---|")
    for name, _, _ in runs:
        ns = statistics.median(x[0] for x in res[name])
        n = statistics.median(x[1] for x in res[name])
        print(f"| {name} | {ns:.0f} | {n:,.0f} |")


if __name__ == "__main__":
    main()
