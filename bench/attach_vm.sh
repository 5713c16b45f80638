#!/bin/bash
# Runs inside the VM (bench/attach.py starts it): time from starting a tool
# to the moment everything is attached, for one function hook, a wildcard
# of about a hundred functions, and every function taking an skb. xcap is
# timed to its "capturing from" line; bpftrace, on the same functions, to
# the moment ftrace lists all those functions as enabled (its BEGIN probe
# fires before it attaches the others, so it cannot tell).
# Usage: attach_vm.sh XCAP OUTFILE RUNS
X=$1
OUT=$2
RUNS=${3:-3}
: > "$OUT"
# One file descriptor per kprobe (no kprobe-multi here): both tools need more
# than the default 1,024 for every function.
ulimit -n 65536
# bpftrace refuses more than 512 probes unless told.
export BPFTRACE_MAX_PROBES=4096
# How fast this emulated CPU runs a fixed piece of userspace work; attach.py
# times the same on the host.
t0=$(date +%s%N); python3 -c 'sum(range(3 * 10**6))'; t1=$(date +%s%N)
echo "calibration python $(( (t1 - t0) / 1000000 ))" >> "$OUT"
TF=/sys/kernel/tracing
[ -e $TF/available_filter_functions ] || mount -t tracefs nodev $TF
awk '{print $1}' $TF/available_filter_functions | sort -u > /tmp/traceable
# Functions ftrace calls out of (kprobes, kprobe-multi and fentry alike).
traced() { wc -l < $TF/enabled_functions; }
# What a wildcard attaches: functions taking an skb as argument 1-5 that
# ftrace can probe.
funcs() {
    "$X" --list-hooks "$1" | awk -F'\t' '$2 ~ /^skb=@[1-5]$/ {print $1}' | sort -u |
        comm -12 - /tmp/traceable
}
wait_for() { # file, word, pid
    while ! grep -q "$2" "$1"; do
        kill -0 "$3" 2>/dev/null || break
        sleep 0.01
    done
}
xcap() { # label, hook
    for r in $(seq 1 "$RUNS"); do
        local err=$(mktemp)
        local t0=$(date +%s%N)
        "$X" --hook "$2" -w /dev/null --sink pcap 2>"$err" &
        local p=$!
        wait_for "$err" capturing $p
        local t1=$(date +%s%N)
        kill -INT $p; wait $p
        local n=$(grep -o '[0-9]* functions taking an skb' "$err" | cut -d' ' -f1)
        echo "xcap $1 ${n:-1} $(( (t1 - t0) / 1000000 ))" >> "$OUT"
        grep -v 'capturing\|packets' "$err" | sort -u >> "$OUT.err"
        rm -f "$err"
    done
}
bpftrace_() { # label, pattern
    local list=$(funcs "$2")
    local n=$(echo "$list" | wc -l)
    local prog="$(echo "$list" | sed 's/^/kprobe:/' | paste -sd,) { }"
    for r in $(seq 1 "$RUNS"); do
        local o=$(mktemp)
        local base=$(traced)
        local t0=$(date +%s%N)
        bpftrace -e "$prog" >"$o" 2>&1 &
        local p=$!
        local t=0
        while [ $(( $(traced) - base )) -lt "$n" ] && [ $t -lt 12000 ]; do
            kill -0 $p 2>/dev/null || break
            t=$((t + 1))
            sleep 0.05
        done
        local t1=$(date +%s%N)
        local got=$(( $(traced) - base ))
        kill -INT $p; wait $p
        echo "bpftrace $1 $got $(( (t1 - t0) / 1000000 ))" >> "$OUT"
        grep -v 'Attaching' "$o" | sort -u | head -5 >> "$OUT.err"
        rm -f "$o"
        # Wait until its kprobes are gone before the next run.
        for i in $(seq 600); do [ "$(traced)" -gt "$base" ] || break; sleep 0.1; done
    done
}
xcap kprobe:ip_rcv kprobe:ip_rcv
bpftrace_ kprobe:ip_rcv ip_rcv
xcap fentry:ip_rcv fentry:ip_rcv
xcap 'tcp_*' 'tcp_*'
bpftrace_ 'tcp_*' 'tcp_*'
# Tens of milliseconds per kprobe in the emulated VM: once each.
RUNS=1 xcap '*' '*'
# bpftrace 0.17 on every function: not attached after 24 minutes on 6.1
# (one program per probe); only on request.
[ -n "${BPFTRACE_ALL:-}" ] && RUNS=1 bpftrace_ '*' '*'
echo done >> "$OUT"
