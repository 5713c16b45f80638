#!/bin/bash
# A/B of capture CPU per packet: several capture binaries (and `tcpdump`)
# interleaved, three rounds, on the benchmarks' veth pair with a 64-byte UDP
# flood (iperf3 -b 0, 4 s). CPU is the capture process's task-clock (perf
# stat) from its "capturing"/"listening" line until 0.5 s after the flood,
# divided by the packets it says it captured. For comparing builds of xcap
# step by step; bench/capture.py is the full side-by-side table.
#
#   sudo bash bench/ab_cpu.sh pcapng tcpdump /tmp/xcap-before target/release/xcap
#
# NULL=1 writes to /dev/null instead of files, which leaves out the page
# cache (its cost swings by 10x on these machines, see BENCHMARKS.md).
set -e
cd "$(dirname "$0")/.."
MODE=$1
shift
python3 -c 'import sys; sys.path.insert(0,"bench"); import veth; veth.setup("xbench-a","xbench-b","10.98.0.1","10.98.0.2")'
trap 'python3 -c "import sys; sys.path.insert(0,\"bench\"); import veth; veth.teardown(\"xbench-a\",\"xbench-b\")"' EXIT
err=$(mktemp)
if [ -n "$NULL" ]; then
	tcp_out=/dev/null xcap_out=/dev/null
else
	tcp_out=/tmp/ab.pcap xcap_out="/tmp/ab.$MODE"
fi
for round in 1 2 3; do
	for bin in "$@"; do
		ip netns exec xbench-b iperf3 -s -D -1 >/dev/null
		sleep 0.3
		: >"$err"
		if [ "$bin" = tcpdump ]; then
			ip netns exec xbench-a tcpdump -n -i va -w "$tcp_out" 2>"$err" &
			pid=$!
			ready=listening
		else
			"$bin" --netns xbench-a -i va -w "$xcap_out" --sink "$MODE" 2>"$err" &
			pid=$!
			ready=capturing
		fi
		until grep -q "$ready" "$err"; do sleep 0.05; done
		perf stat -x, -e task-clock -p "$pid" -o /tmp/ab.stat -- sleep 4.5 &
		stat=$!
		ip netns exec xbench-a iperf3 -c 10.98.0.2 -u -l 64 -b 0 -t 4 >/dev/null
		wait "$stat"
		kill -INT "$pid"
		wait "$pid" || true
		n=$(grep -o '^[0-9]* packets captured' "$err" | cut -d' ' -f1)
		ms=$(grep task-clock /tmp/ab.stat | cut -d, -f1)
		echo "round $round $bin: $n packets, $(python3 -c "print(f'{$ms * 1000 / $n:.3f}')") us CPU per packet"
	done
done
rm -f "$err" /tmp/ab.stat /tmp/ab.pcap "/tmp/ab.$MODE"
