#!/usr/bin/env python3
"""Time from start to capturing, for 1, about 100 and every (about 1,500)
function hook, in a VM running Debian's stock kernel (this machine's kernel
refuses fentry and has no kprobes), side by side with bpftrace attaching
kprobes to the same functions. virtme-ng boots it under qemu without KVM,
so absolute times are slower than on hardware; pwru's published figure for
1,500 kprobes is 4 to 5 s. Run as root after scripts/setup:

    sudo python3 bench/attach.py --runs 3
"""

import argparse
import glob
import os
import statistics
import subprocess
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--xcap", default="target/release/xcap")
    ap.add_argument("--kernel", action="append",
                    help="kernel series in /boot (default: 6.1. and 6.12, Debian 12's two)")
    a = ap.parse_args()
    for series in a.kernel or ["6.1.", "6.12"]:
        found = sorted(glob.glob(f"/boot/vmlinuz-{series}*"))
        if found:
            one_kernel(found[-1], a)
        else:
            print(f"no /boot/vmlinuz-{series}*: skipped\n")


def one_kernel(kernel, a):
    d = tempfile.mkdtemp(prefix="xcap-attach-")
    out = os.path.join(d, "times")
    script = os.path.abspath("bench/attach_vm.sh")
    subprocess.run(["timeout", "3000", "vng", "--run", kernel, "--disable-kvm", "--memory",
                    "2G", "--cpus", "2", "--rwdir", d, "--exec",
                    f"{script} {os.path.abspath(a.xcap)} {out} {a.runs}"],
                   check=False, capture_output=True)
    rows = {}
    calib = None
    for line in open(out):
        parts = line.split()
        if parts[:2] == ["calibration", "python"]:
            calib = int(parts[2])
        elif len(parts) == 4:
            tool, label, n, ms = parts
            rows.setdefault(label, {}).setdefault(tool, []).append((int(n), int(ms)))
    print(f"VM: {os.path.basename(kernel)}, qemu without KVM, 2 vCPUs; median of {a.runs} runs "
          "(one run for every function)")
    if calib:
        t0 = time.monotonic()
        subprocess.run(["python3", "-c", "sum(range(3 * 10**6))"], check=True)
        host = (time.monotonic() - t0) * 1000
        print(f"A fixed piece of Python: {calib} ms in the VM, {host:.0f} ms on the host "
              f"(the emulated CPU is {calib / host:.0f}x slower)")
    print()
    print("| hooks | functions | xcap (s) | bpftrace, same functions (s) | xcap / bpftrace |")
    print("|---|---|---|---|---|")
    for label, tools in rows.items():
        med = {t: statistics.median(x[1] for x in v) / 1000 for t, v in tools.items()}
        n = tools.get("xcap", tools.get("bpftrace"))[0][0]
        x, b = med.get("xcap"), med.get("bpftrace")
        ratio = f"{x / b:.2f}" if x and b else "-"
        print(f"| `{label}` | {n} | {fmt(x)} | {fmt(b)} | {ratio} |")
    errs = out + ".err"
    if os.path.exists(errs):
        text = open(errs).read().strip()
        if text:
            print("\nstderr:\n" + text[:2000])
    print()


def fmt(v):
    return "-" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    main()
