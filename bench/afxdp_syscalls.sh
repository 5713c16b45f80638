#!/usr/bin/env bash
# What the AF_XDP source costs every other process: it hooks the sys_enter
# and sys_exit tracepoints (bind/close, the poll and, before 6.3, send
# families), so each system call of the machine runs a few instructions of
# xcap's while it captures. Measured with `perf bench syscall basic`
# (getppid in a loop), without and with `xcap --source afxdp` running,
# interleaved, ROUNDS times; the median of each, and the difference.
#   sudo bash bench/afxdp_syscalls.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
XCAP=${XCAP:-target/release/xcap}
[ -x "$XCAP" ] || cargo build --release --locked --bin xcap
op() { perf bench syscall basic 2>/dev/null | awk '/usecs\/op/ {print $1 * 1000}'; }
without=(); with=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for r in $(seq "$ROUNDS"); do
    without+=("$(op)")
    "$XCAP" --source afxdp -w /dev/null 2>"$log" &
    pid=$!
    until grep -q "capturing from" "$log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
        sleep 0.05
    done
    with+=("$(op)")
    kill -INT "$pid"
    wait "$pid" || true
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m0=$(median "${without[@]}"); m1=$(median "${with[@]}")
echo "ns per getppid(), $ROUNDS interleaved rounds: without ${without[*]}; with ${with[*]}"
echo "median without $m0 ns, with xcap --source afxdp $m1 ns: +$(awk -v a="$m0" -v b="$m1" 'BEGIN {printf "%.1f", b - a}') ns per system call"
