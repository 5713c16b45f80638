#!/bin/bash
# Runs inside the VM (bench/attach.py starts it): time from starting xcap to
# "capturing from" (everything attached), for one function hook, a wildcard
# of about a hundred functions, and every function taking an skb.
# Usage: attach_vm.sh XCAP OUTFILE RUNS
X=$1
OUT=$2
RUNS=${3:-3}
: > "$OUT"
one() { # label, hook...
    local label=$1; shift
    for r in $(seq 1 "$RUNS"); do
        local err=$(mktemp)
        local t0=$(date +%s%N)
        "$X" "$@" -w /dev/null --sink pcap 2>"$err" &
        local p=$!
        while ! grep -q capturing "$err"; do
            kill -0 $p 2>/dev/null || break
            sleep 0.01
        done
        local t1=$(date +%s%N)
        kill -INT $p; wait $p
        local n=$(grep -o '[0-9]* functions taking an skb' "$err" | cut -d' ' -f1)
        echo "$label ${n:-1} $(( (t1 - t0) / 1000000 ))" >> "$OUT"
        grep -v 'capturing\|packets' "$err" | sort -u >> "$OUT.err"
        rm -f "$err"
    done
}
one "fentry:ip_rcv" --hook fentry:ip_rcv
one "kprobe:ip_rcv" --hook kprobe:ip_rcv
one "tcp_*" --hook 'tcp_*'
# About 90 ms per kprobe in the emulated VM without kprobe-multi: once.
RUNS=1 one "*" --hook "*"
echo done >> "$OUT"
