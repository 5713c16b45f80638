#!/usr/bin/env python3
"""Cost of the DPDK source to the application it probes.

dpdk-testpmd forwards between two net_null ports (io mode, one forwarding
core); its own port counters give the forwarding rate. Cases, interleaved,
each in a fresh testpmd: no xcap; xcap attached with a filter that rejects
every packet ('ip': net_null's packets are all zeros), one that accepts
every packet ('not ip'), and the rejecting filter in the helper process.
The kernel's BPF
statistics give the program's own run time per burst; the drop in
throughput gives the whole cost per burst (uprobe trap, return probe,
program). Median of several runs. Run as root:

    sudo python3 bench/dpdk.py --seconds 3 --runs 3
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

CASES = [
    ("none", None, {}),
    ("rejecting filter 'ip'", ["ip"], {}),
    ("accepting filter 'not ip'", ["not", "ip"], {}),
    ("rejecting filter, helper process", ["--dpdk-helper", "ip"], {}),
]


class Testpmd:
    def __init__(self):
        self.p = subprocess.Popen(
            ["stdbuf", "-o0", "dpdk-testpmd", "-l", "0,1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
             "--file-prefix", f"xbench{os.getpid()}", "--vdev", "net_null0", "--vdev",
             "net_null1", "--", "-i", "--total-num-mbufs=8192", "--forward-mode=io",
             "--port-topology=paired"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf = ""
        self.wait_prompt(1)

    def read(self):
        try:
            chunk = self.p.stdout.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            self.buf += chunk

    def wait_prompt(self, n):
        deadline = time.time() + 30
        while self.buf.count("testpmd> ") < n:
            if time.time() > deadline:
                raise RuntimeError("testpmd: no prompt: " + self.buf[-2000:])
            self.read()
            time.sleep(0.02)

    def cmd(self, c):
        n = self.buf.count("testpmd> ")
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        if c != "quit":
            self.wait_prompt(n + 1)
        return self.buf

    def rx_packets(self):
        text = self.cmd("show port stats all")
        last = text[text.rfind("show port stats all"):]
        return sum(int(v) for v in re.findall(r"RX-packets:\s+(\d+)", last))

    def quit(self):
        try:
            self.cmd("stop")
            self.cmd("quit")
            self.p.wait(timeout=20)
        except Exception:
            self.p.kill()


def prog_stats():
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                         check=True).stdout
    t = c = 0
    for p in json.loads(out):
        if p.get("name", "").startswith("xcap_dpdk_"):
            t += p.get("run_time_ns", 0)
            if p["name"] == "xcap_dpdk_entry":
                c += p.get("run_cnt", 0)
    return t, c


def one(xcap, case, seconds):
    name, args, env = case
    tp = Testpmd()
    cap = None
    try:
        if args is not None:
            cap = subprocess.Popen(
                [xcap, "--source", "dpdk", "--dpdk-pid", str(tp.p.pid), "-w", "/dev/null",
                 "--sink", "pcap"] + args,
                stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
            for line in cap.stderr:
                if "capturing from" in line:
                    break
            else:
                raise RuntimeError(f"xcap did not start ({name})")
        tp.cmd("start")
        time.sleep(1)
        t0, c0 = prog_stats() if cap else (0, 0)
        n0, w0 = tp.rx_packets(), time.monotonic()
        time.sleep(seconds)
        n1, w1 = tp.rx_packets(), time.monotonic()
        t1, c1 = prog_stats() if cap else (0, 0)
        tp.cmd("stop")
        summary = ""
        if cap:
            cap.send_signal(signal.SIGINT)
            summary = cap.stderr.read()
            cap.wait(timeout=30)
        bursts = c1 - c0
        return {
            "pps": (n1 - n0) / (w1 - w0),
            "bpf_ns_per_burst": (t1 - t0) / bursts if bursts else 0,
            "bursts_per_s": bursts / (w1 - w0),
            "summary": summary.strip().replace("\n", " | "),
        }
    finally:
        if cap and cap.poll() is None:
            cap.kill()
        tp.quit()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--xcap", default="target/release/xcap")
    a = ap.parse_args()
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    results = {c[0]: [] for c in CASES}
    for r in range(a.runs):
        for case in CASES:
            res = one(a.xcap, case, a.seconds)
            results[case[0]].append(res)
            print(f"run {r} {case[0]}: {res['pps'] / 1e6:.2f} Mpps, "
                  f"{res['bpf_ns_per_burst']:.0f} ns BPF per burst", file=sys.stderr)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
    base = statistics.median(x["pps"] for x in results["none"])
    print(f"testpmd io forwarding, 2 net_null ports, 1 forwarding core, {a.seconds:g} s per run, "
          f"median of {a.runs} interleaved runs\n")
    print("| case | forwarded Mpps | vs none | BPF ns per entry probe | "
          "whole cost per burst (us) |")
    print("|---|---|---|---|---|")
    for name, _, _ in CASES:
        pps = statistics.median(x["pps"] for x in results[name])
        bpf = statistics.median(x["bpf_ns_per_burst"] for x in results[name])
        # Bursts of 32 packets, split over two rx and two tx calls per
        # forwarded burst pair: the time lost per forwarded burst.
        lost = (32 / pps - 32 / base) * 1e6 if name != "none" else 0
        print(f"| {name} | {pps / 1e6:.2f} | {pps / base:.2f} | "
              f"{'-' if name == 'none' else f'{bpf:.0f}'} | "
              f"{'-' if name == 'none' else f'{lost:.2f}'} |")
    for name, _, _ in CASES[1:]:
        print(f"\n{name}, last run: {results[name][-1]['summary']}")


if __name__ == "__main__":
    main()
