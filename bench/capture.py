#!/usr/bin/env python3
"""Side-by-side capture benchmark: no capture, tcpdump -w, and xcap writing
pcapng with metadata, plain pcap, and text to /dev/null.

A veth pair between two network namespaces; iperf3 floods 64-byte UDP from
one to the other for a fixed time while the capture runs on the sender's
veth. Modes are interleaved (none, tcpdump, xcap..., then again) and the
table gives the median over the runs, per mode:

- sent, sender rate, and the sender's rate relative to no capture;
- captured, dropped (tcpdump's "dropped by kernel", xcap's losses), loss %;
- CPU per captured packet: the capture process's user+system time while
  the flood runs (from /proc/PID/stat just before and after it), divided
  by the packets it captured; also the whole process's time (start-up
  included, from wait4), which is what a short capture pays;
- the ratio of that CPU per packet to tcpdump's in the same round.

Also the file's bytes per captured packet. On these machines (Firecracker
guests with free page reporting) writing memory the host took back costs
about ten times a write to memory in use (dd: 1 GiB in 3.4 s after 10 s
idle, 0.28 s right after a delete), and a capture file's page cache is
always new memory, so file bytes weigh far more here than on bare metal.
--null writes every file to /dev/null instead: the tools' own cost.

BPF program time is charged to the sender (as tcpdump's AF_PACKET copy is),
so it shows in the sender's rate, not in the capture's CPU.

With --max-rate, instead: for tcpdump and xcap (pcapng), the highest
iperf3 rate (packets per second, 64-byte UDP) at which the capture lost
nothing, found by bisection. Run as root:

    sudo python3 bench/capture.py --seconds 5 --runs 3
    sudo python3 bench/capture.py --max-rate --seconds 3
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
MODES = ("none", "tcpdump", "xcap-pcapng", "xcap-pcap", "xcap-text")
IP_A, IP_B = "10.98.0.1", "10.98.0.2"
TICK = os.sysconf("SC_CLK_TCK")


def setup():
    veth.setup(A, B, IP_A, IP_B)


def teardown():
    veth.teardown(A, B)


def start_capture(cmd, ready, stdout=subprocess.DEVNULL):
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=stdout, text=True)
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


def cpu_now(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def stop_capture(p, lines):
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    text = "".join(lines) + rest
    if p.returncode != 0:
        raise RuntimeError(f"capture exited {p.returncode}: {text}")
    return text, ru.ru_utime + ru.ru_stime


def capture_cmd(mode, xcap, tmp, null=False):
    """(command, ready line, output file or None)."""
    if null:
        tmp = None
    if mode == "tcpdump":
        f = os.path.join(tmp, "t.pcap") if tmp else "/dev/null"
        return (["ip", "netns", "exec", A, "tcpdump", "-n", "-i", "va", "-w", f],
                "listening on", f)
    base = [xcap, "--netns", A, "-i", "va"]
    if mode == "xcap-pcapng":
        f = os.path.join(tmp, "x.pcapng") if tmp else "/dev/null"
        return base + ["-w", f], "capturing", f
    if mode == "xcap-pcap":
        f = os.path.join(tmp, "x.pcap") if tmp else "/dev/null"
        return base + ["-w", f], "capturing", f
    if mode == "xcap-text":
        return base, "capturing", None
    raise ValueError(mode)


def run_one(mode, seconds, xcap, tmp, rate=None, null=False):
    cap, f = None, None
    if mode != "none":
        cmd, ready, f = capture_cmd(mode, xcap, tmp, null)
        cap = start_capture(cmd, ready)
        cpu0 = cpu_now(cap[0].pid)
    bw = "0" if rate is None else str(int(rate * 64 * 8))
    out = subprocess.run(
        ["ip", "netns", "exec", A, "iperf3", "-c", IP_B, "-u", "-l", "64", "-b", bw,
         "-t", str(seconds), "-J"],
        check=True, capture_output=True, text=True).stdout
    res = json.loads(out)
    s = res["end"]["sum"]
    sent = s["packets"]
    row = {"mode": mode, "sent": sent, "pps": sent / s["seconds"],
           "captured": None, "dropped": None, "cpu": None, "cpu_total": None,
           "bytes": None}
    if cap:
        # The flood is over; what the capture still does is drain and exit.
        cpu1 = cpu_now(cap[0].pid)
        text, total = stop_capture(*cap)
        row["cpu"] = cpu1 - cpu0
        row["cpu_total"] = total
        m = re.search(r"^(\d+) packets captured", text, re.M)
        row["captured"] = int(m.group(1)) if m else None
        if mode == "tcpdump":
            m = re.search(r"^(\d+) packets dropped by kernel", text, re.M)
        else:
            m = re.search(r"^(\d+) packets dropped", text, re.M)
        row["dropped"] = int(m.group(1)) if m else None
        if f and f != "/dev/null":
            row["bytes"] = os.path.getsize(f)
            os.unlink(f)
    return row


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, f="{:,.0f}"):
    return "-" if v is None else f.format(v)


def table(rows, runs, seconds, modes):
    print(f"64-byte UDP, iperf3 -b 0, {seconds} s per run, median of {runs} "
          "interleaved runs\n")
    print("| capture | sent | sender kpps | sender vs none | captured | dropped | loss % "
          "| file bytes/pkt | CPU us/pkt while flooding | ratio to tcpdump "
          "| CPU us/pkt whole run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    per = {}
    for r in rows:
        if r["cpu"] is not None and r["captured"]:
            r["us"] = r["cpu"] / r["captured"] * 1e6
            r["us_total"] = r["cpu_total"] / r["captured"] * 1e6
            if r["bytes"] is not None:
                r["bpp"] = r["bytes"] / r["captured"]
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        per[mode] = rs
    for mode in modes:
        rs = per[mode]
        base = {r["run"]: r["pps"] for r in per["none"]}
        td = {r["run"]: r.get("us") for r in per["tcpdump"]}
        vs_none = med([r["pps"] / base[r["run"]] for r in rs if r["run"] in base])
        ratio = med([r["us"] / td[r["run"]] for r in rs
                     if r.get("us") is not None and td.get(r["run"])])
        loss = med([100.0 * r["dropped"] / max(1, r["dropped"] + r["captured"])
                    for r in rs if r["dropped"] is not None and r["captured"] is not None])
        pps = med([r["pps"] for r in rs])
        print(f"| {mode} | {fmt(med([r['sent'] for r in rs]))} | "
              f"{fmt(pps / 1000 if pps else None, '{:,.1f}')} | {fmt(vs_none, '{:.2f}')} | "
              f"{fmt(med([r['captured'] for r in rs]))} | "
              f"{fmt(med([r['dropped'] for r in rs]))} | {fmt(loss, '{:.3f}')} | "
              f"{fmt(med([r.get('bpp') for r in rs]))} | "
              f"{fmt(med([r.get('us') for r in rs]), '{:.3f}')} | "
              f"{fmt(ratio, '{:.2f}')} | "
              f"{fmt(med([r.get('us_total') for r in rs]), '{:.3f}')} |")


def max_rate(xcap, tmp, seconds):
    """Per capture, the highest packet rate with no loss (bisection)."""
    print(f"Highest 64-byte UDP rate without loss, {seconds} s per try\n")
    print("| capture | highest rate without loss (kpps asked) | sender reached (kpps) |")
    print("|---|---|---|")
    # What the sender reaches with nothing capturing bounds the search.
    top = run_one("none", seconds, xcap, tmp)["pps"]
    for mode in ("tcpdump", "xcap-pcapng"):
        lo, hi, best, lost = 0.0, top * 1.2, None, False
        for _ in range(6):
            mid = (lo + hi) / 2
            r = run_one(mode, seconds, xcap, tmp, rate=mid)
            print(f"# {mode} at {mid / 1000:.0f} kpps: {r}", file=sys.stderr)
            if r["dropped"] == 0:
                lo, best = mid, r
            else:
                hi, lost = mid, True
        # Asking more than the sender can do only proves the sender's limit.
        asked = fmt(lo / 1000, '{:,.0f}') if lost else \
            f"no loss at any rate (sender's most: {top / 1000:,.0f})"
        print(f"| {mode} | {asked} | "
              f"{fmt(best['pps'] / 1000 if best else None, '{:,.1f}')} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--xcap", default="target/release/xcap")
    ap.add_argument("--max-rate", action="store_true")
    ap.add_argument("--null", action="store_true",
                    help="write the capture files to /dev/null")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated subset of: " + ", ".join(MODES))
    args = ap.parse_args()
    modes = args.modes.split(",")
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    setup()
    srv = subprocess.Popen(["ip", "netns", "exec", B, "iperf3", "-s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # iperf3 -s has no ready line; a client that connects says it is up.
    deadline = time.time() + 10
    while subprocess.run(["ip", "netns", "exec", A, "iperf3", "-c", IP_B, "-k", "1", "-u",
                          "-b", "1M"], capture_output=True).returncode != 0:
        if time.time() > deadline:
            sys.exit("iperf3 server did not start")
        time.sleep(0.1)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.max_rate:
                max_rate(args.xcap, tmp, args.seconds)
                return
            for r in range(args.runs):
                for mode in modes:
                    row = run_one(mode, args.seconds, args.xcap, tmp, null=args.null)
                    row["run"] = r
                    rows.append(row)
                    print(f"# run {r} {mode}: {row}", file=sys.stderr)
    finally:
        srv.terminate()
        srv.wait()
        teardown()
    table(rows, args.runs, args.seconds, modes)


if __name__ == "__main__":
    main()
