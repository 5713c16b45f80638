#!/usr/bin/env python3
"""Verifier headroom table for BENCHMARKS.md.

Runs tests/headroom.rs (this machine's kernel, and Debian 12's 6.1 and 6.12
in VMs) with XCAP_HEADROOM_DIR set, so that every program it verifies is
written down, then prints, per program kind and kernel, the most
instructions the verifier processed, over the filter corpus and the long
expressions, with and without --drops --stack --track --pid.

    sudo python3 bench/headroom.py            # runs the tests (about 8 min)
    python3 bench/headroom.py --dir DIR       # only the table, from DIR
"""
import argparse
import collections
import glob
import os
import subprocess
import sys
import tempfile

LIMIT = 1_000_000
BUDGET = LIMIT // 4


def run_tests(out):
    env = dict(os.environ, XCAP_HEADROOM_DIR=out)
    # vng sits next to the python that pip installed it for.
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    subprocess.run(
        ["cargo", "test", "--release", "--locked", "--test", "headroom"],
        env=env,
        check=True,
    )


def table(d):
    files = sorted(glob.glob(os.path.join(d, "headroom-*.tsv")))
    if not files:
        sys.exit(f"no headroom-*.tsv in {d}")
    kernels = []
    best = collections.defaultdict(dict)  # kind -> kernel -> (insns, opts, expr)
    counts = collections.Counter()
    for f in files:
        k = os.path.basename(f)[len("headroom-"):-len(".tsv")]
        kernels.append(k)
        for line in open(f):
            kind, _prog, opts, expr, insns = line.rstrip("\n").split("\t")
            counts[k] += 1
            n = int(insns)
            if n > best[kind].get(k, (-1,))[0]:
                best[kind][k] = (n, opts, expr)
    print("| program kind | " + " | ".join(kernels) + " |")
    print("|---|" + "---|" * len(kernels))
    for kind in sorted(best):
        cells = []
        for k in kernels:
            v = best[kind].get(k)
            cells.append(f"{v[0]:,} ({100 * v[0] / LIMIT:.1f}%)" if v else "-")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print()
    print("programs verified: " + ", ".join(f"{k} {counts[k]}" for k in kernels))
    worst = max(
        ((v[0], kind, k, v[1], v[2]) for kind in best for k, v in best[kind].items()),
        default=None,
    )
    if worst:
        n, kind, k, opts, expr = worst
        if len(expr) > 70:
            expr = expr[:67] + "..."
        print(
            f"most: {n:,} ({kind}, {k}, options '{opts}', filter '{expr or '(none)'}'); "
            f"budget {BUDGET:,}, limit {LIMIT:,}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", help="read TSVs from DIR instead of running the tests")
    a = ap.parse_args()
    if a.dir:
        table(a.dir)
        return
    with tempfile.TemporaryDirectory() as d:
        run_tests(d)
        table(d)


if __name__ == "__main__":
    main()
