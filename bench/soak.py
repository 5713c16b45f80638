#!/usr/bin/env python3
"""Soak: xcap writing pcapng with metadata for a long time at a high rate,
its memory (RSS) sampled, its losses counted.

A veth pair between two namespaces; iperf3 floods 64-byte UDP from one to
the other (the highest rate it reaches, or --rate packets per second) for
--minutes while xcap captures on the sender's veth into a ring of files
(-C 100 -W 3, so the disk holds at most about 300 MB and rotation runs all
along). Every 10 s: xcap's RSS (VmRSS). At the end: RSS after the first
minute against the largest and smallest later, packets sent, captured and
lost, and the files' validity (tshark reads each). Run as root:

    sudo python3 bench/soak.py --minutes 10
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import veth

A, B = "xsoak-a", "xsoak-b"
IP_A, IP_B = "10.97.0.1", "10.97.0.2"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=0, help="packets/s (0: as fast as iperf3 goes)")
    ap.add_argument("--xcap", default=os.path.join(os.path.dirname(__file__), "..",
                                                   "target", "release", "xcap"))
    args = ap.parse_args()
    veth.setup(A, B, IP_A, IP_B)
    tmp = tempfile.mkdtemp(prefix="xcap-soak-")
    server = subprocess.Popen(["ip", "netns", "exec", B, "iperf3", "-s"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = os.path.join(tmp, "soak.pcapng")
        cap = subprocess.Popen([args.xcap, "--netns", A, "-i", "va", "-C", "100", "-W", "3",
                                "-w", base], stderr=subprocess.PIPE, text=True)
        first = cap.stderr.readline()
        if "capturing from" not in first:
            sys.exit(f"xcap did not start: {first}{cap.stderr.read()}")
        # iperf3's server takes a moment; retry the client until it connects.
        seconds = int(args.minutes * 60)
        bw = str(args.rate * 64 * 8)
        samples = []
        done = threading.Event()

        def sample():
            t0 = time.time()
            while not done.wait(10):
                samples.append((time.time() - t0, rss_kib(cap.pid)))

        th = threading.Thread(target=sample)
        th.start()
        for _ in range(50):
            r = subprocess.run(["ip", "netns", "exec", A, "iperf3", "-c", IP_B, "-u", "-l", "64",
                                "-b", bw, "-t", str(seconds), "-J"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        done.set()
        th.join()
        cap.send_signal(signal.SIGINT)
        rest = cap.stderr.read()
        cap.wait()
        res = json.loads(r.stdout)["end"]["sum"]
        sent = res["packets"]
        captured = int(re.search(r"^(\d+) packets captured", rest, re.M).group(1))
        lost = int(re.search(r"^(\d+) packets dropped", rest, re.M).group(1))
        files = sorted(f for f in os.listdir(tmp))
        valid = []
        for f in files:
            t = subprocess.run(["capinfos", "-c", "-M", os.path.join(tmp, f)],
                               capture_output=True, text=True)
            m = re.search(r"Number of packets:\s+(\d+)", t.stdout)
            valid.append(f"{f}: {m.group(1) if m and t.returncode == 0 else 'INVALID'} packets")
        after1 = [kib for t, kib in samples if t >= 60]
        print(f"xcap exit {cap.returncode}; {args.minutes:g} min, iperf3 64-byte UDP")
        print(f"sent {sent:,} ({sent / res['seconds']:,.0f} pkt/s); captured {captured:,}; "
              f"lost {lost:,} ({100 * lost / max(captured + lost, 1):.2f}%)")
        if after1:
            ref = after1[0]
            print(f"RSS: {samples[0][1]:,} KiB at {samples[0][0]:.0f} s; after 1 min {ref:,} KiB, "
                  f"then min {min(after1):,} max {max(after1):,} KiB "
                  f"({100 * (max(after1) - ref) / ref:+.1f}% / {100 * (min(after1) - ref) / ref:+.1f}% "
                  f"of the 1-min value), {len(samples)} samples")
        print("RSS samples (s, KiB): " + ", ".join(f"{t:.0f}:{k}" for t, k in samples))
        print("files: " + "; ".join(valid))
        if cap.returncode != 0:
            print(rest)
    finally:
        server.kill()
        veth.teardown(A, B)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
