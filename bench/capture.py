#!/usr/bin/env python3
"""Side-by-side capture benchmark: no capture, tcpdump -w, xcap -w.

A veth pair between two network namespaces; iperf3 floods 64-byte UDP from
one to the other for a fixed time while the capture runs on the sender's
veth. Reports, per mode, the median over several interleaved runs of:
packets sent, captured, dropped, capture CPU seconds, CPU per captured
packet and the sender's rate. Run as root:

    sudo python3 bench/capture.py --seconds 5 --runs 3
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import veth

A, B = "xbench-a", "xbench-b"
MODES = ("none", "tcpdump", "xcap", "xcap-pcap")
IP_A, IP_B = "10.98.0.1", "10.98.0.2"


def setup():
    veth.setup(A, B, IP_A, IP_B)


def teardown():
    veth.teardown(A, B)


def start_capture(cmd, ready):
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            return p, lines
    raise RuntimeError(f"capture not ready: {''.join(lines)}")


def stop_capture(p, lines):
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    text = "".join(lines) + rest
    return text, ru.ru_utime + ru.ru_stime


def run_one(mode, seconds, xcap, tmp):
    cap = None
    if mode == "tcpdump":
        f = os.path.join(tmp, "t.pcap")
        cap = start_capture(["ip", "netns", "exec", A, "tcpdump", "-n", "-i", "va", "-w", f],
                            "listening on")
    elif mode.startswith("xcap"):
        # xcap: pcapng with per-packet metadata; xcap-pcap: plain pcap, as tcpdump writes.
        f = os.path.join(tmp, "x.pcap" if mode == "xcap-pcap" else "x.pcapng")
        cap = start_capture([xcap, "--netns", A, "-i", "va", "-w", f], "capturing")
    out = subprocess.run(
        ["ip", "netns", "exec", A, "iperf3", "-c", IP_B, "-u", "-l", "64", "-b", "0",
         "-t", str(seconds), "-J"],
        check=True, capture_output=True, text=True).stdout
    res = json.loads(out)
    s = res["end"]["sum"]
    sent = s["packets"]
    row = {"mode": mode, "sent": sent, "pps": sent / s["seconds"],
           "captured": None, "dropped": None, "cpu": None}
    if cap:
        text, cpu = stop_capture(*cap)
        row["cpu"] = cpu
        m = re.search(r"^(\d+) packets captured", text, re.M)
        row["captured"] = int(m.group(1)) if m else None
        if mode == "tcpdump":
            m = re.search(r"^(\d+) packets dropped by kernel", text, re.M)
        else:
            m = re.search(r"^(\d+) packets dropped", text, re.M)
        row["dropped"] = int(m.group(1)) if m else None
        os.unlink(f)
    return row


def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--xcap", default="target/release/xcap")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    setup()
    srv = subprocess.Popen(["ip", "netns", "exec", B, "iperf3", "-s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.runs):
                for mode in MODES:
                    row = run_one(mode, args.seconds, args.xcap, tmp)
                    row["run"] = r
                    rows.append(row)
                    print(f"# run {r} {mode}: {row}", file=sys.stderr)
                    time.sleep(1)
    finally:
        srv.terminate()
        srv.wait()
        teardown()

    def fmt(v, f="{:,.0f}"):
        return "-" if v is None else f.format(v)

    print(f"64-byte UDP, iperf3 -b 0, {args.seconds} s per run, median of {args.runs} "
          "interleaved runs\n")
    print("| capture | sent | sender kpps | captured | dropped | loss % | CPU s | CPU us/captured pkt | sender rate vs none |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = med([r for r in rows if r["mode"] == "none"], "pps")
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        sent, pps = med(rs, "sent"), med(rs, "pps")
        cap, drop, cpu = med(rs, "captured"), med(rs, "dropped"), med(rs, "cpu")
        per = statistics.median([r["cpu"] / r["captured"] * 1e6 for r in rs
                                 if r["cpu"] is not None and r["captured"]]) if cap else None
        loss = statistics.median([100.0 * r["dropped"] / max(1, r["dropped"] + r["captured"])
                                  for r in rs if r["dropped"] is not None
                                  and r["captured"] is not None]) if cap is not None else None
        print(f"| {mode} | {fmt(sent)} | {fmt(pps / 1000 if pps else None, '{:,.1f}')} | "
              f"{fmt(cap)} | {fmt(drop)} | {fmt(loss, '{:.2f}')} | {fmt(cpu, '{:.2f}')} | "
              f"{fmt(per, '{:.2f}')} | {fmt(pps / base if base else None, '{:.2f}')} |")


if __name__ == "__main__":
    main()
