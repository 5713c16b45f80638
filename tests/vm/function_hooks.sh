#!/bin/bash
# Runs inside the VM (Debian's stock kernel, where fentry loads): TCP from
# namespace a to b over a veth pair, with one write large enough to travel
# as a paged GSO packet, captured in b by tcpdump (inbound) and by xcap at
# ip_rcv, ip_local_deliver and tcp_v4_rcv with each of fentry, fexit, kprobe
# and kretprobe, and at kprobe:ip_protocol_deliver_rcu@2 (the skb named as
# the second argument); meanwhile a second xcap prints --latency from
# fentry:ip_rcv to tcp_v4_rcv, and a third hooks every tcp_* function that
# takes an skb (kprobe-multi where the kernel has it, as 6.12; 6.1 has not).
# Usage: function_hooks.sh XCAP OUTDIR
set -u
X=$1
O=$2
# ready PATTERN FILE...: wait until each FILE has a line with PATTERN
# (xcap's "capturing from", tcpdump's "listening on"); at most 2 minutes
# (the VM runs without KVM: slow), else stop here: no "done" file, so the
# test fails and shows this message.
ready() {
    local pat=$1 i f missing
    shift
    for i in $(seq 1 240); do
        missing=
        for f in "$@"; do grep -q "$pat" "$f" 2>/dev/null || missing="$missing $f"; done
        [ -z "$missing" ] && return 0
        sleep 0.5
    done
    echo "no '$pat' after 2 minutes in:$missing" >&2
    exit 1
}
sizes() {
    local f
    for f in "$@"; do stat -c %s "$f" 2>/dev/null || echo 0; done | tr '\n' ' '
}
# settle BEFORE FILE...: wait until every FILE is larger than in BEFORE
# (`sizes` of them before the traffic) and none changed for a second: the
# captures have written the last packets. At most 2 minutes; then go on,
# and the test's checks of the files say what is missing.
settle() {
    local before=($1) prev= now k grown i quiet=0
    shift
    for i in $(seq 1 600); do
        now=$(sizes "$@")
        if [ "$now" = "$prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        prev=$now
        now=($now)
        grown=1
        for k in "${!before[@]}"; do [ "${now[$k]}" -gt "${before[$k]}" ] || grown=0; done
        [ $grown = 1 ] && [ $quiet -ge 5 ] && return 0
        sleep 0.2
    done
    echo "captures empty or still growing after 2 minutes: $*" >&2
}
ip netns add a && ip netns add b
for ns in a b; do ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
ip link add va netns a type veth peer name vb netns b
ip -n a addr add 10.0.0.1/24 dev va && ip -n a link set va up
ip -n b addr add 10.0.0.2/24 dev vb && ip -n b link set vb up
ip netns exec b python3 -c "
import socket
s = socket.socket(); s.bind(('10.0.0.2', 5001)); s.listen(1)
c, _ = s.accept()
while c.recv(65536): pass
" &
S=$!
ip netns exec b tcpdump -U -n -Q in -i vb -w "$O/t.pcap" tcp 2>"$O/t.err" &
T=$!
H=()
for k in fentry fexit kprobe kretprobe; do
    for f in ip_rcv ip_local_deliver tcp_v4_rcv; do H+=(--hook $k:$f); done
done
"$X" --netns b "${H[@]}" --hook kprobe:ip_protocol_deliver_rcu@2 \
    -w "$O/x.pcapng" tcp 2>"$O/x.err" &
P=$!
"$X" --netns b --latency --hook fentry:ip_rcv --hook fentry:tcp_v4_rcv tcp >"$O/lat.txt" 2>"$O/lat.err" &
L=$!
"$X" --netns b --hook 'tcp_*' -w "$O/w.pcapng" tcp 2>"$O/w.err" &
W=$!
# The sending side, before IP wrote its header: synthesized from the
# socket, filtered on; tcpdump -Q out on va is the oracle.
"$X" --netns a --hook fentry:__ip_queue_xmit -w "$O/s.pcapng" tcp dst port 5001 2>"$O/s.err" &
Y=$!
ip netns exec a tcpdump -U -n -Q out -i va -w "$O/to.pcap" tcp dst port 5001 2>"$O/to.err" &
TO=$!
ready "capturing from" "$O/x.err" "$O/lat.err" "$O/w.err" "$O/s.err"
ready "listening on" "$O/t.err" "$O/to.err"
OUT=("$O/x.pcapng" "$O/lat.txt" "$O/w.pcapng" "$O/s.pcapng" "$O/t.pcap" "$O/to.pcap")
B=$(sizes "${OUT[@]}")
ip netns exec a python3 -c "
import socket, time
s = socket.create_connection(('10.0.0.2', 5001))
for i in range(5):
    s.sendall(bytes([65 + i]) * (100 * (i + 1))); time.sleep(0.1)
s.sendall(bytes(range(256)) * 160); time.sleep(0.2)
s.close()
"
settle "$B" "${OUT[@]}"
kill -INT $P $T $L $W $Y $TO
wait $P
echo "xcap exit $?" >> "$O/x.err"
wait $L
echo "xcap exit $?" >> "$O/lat.err"
wait $W
echo "xcap exit $?" >> "$O/w.err"
wait $Y
echo "xcap exit $?" >> "$O/s.err"
wait $TO
wait $T
kill $S 2>/dev/null
# The iptables case: pings dropped in OUTPUT, found by function hooks: seen
# at __ip_local_out, nf_hook_slow returns -EPERM, never at ip_output.
ip netns exec a iptables -A OUTPUT -p icmp -j DROP
"$X" --netns a --hook fentry:__ip_local_out --hook fexit:nf_hook_slow --hook ip_output \
    -w "$O/d.pcapng" icmp 2>"$O/d.err" &
D=$!
ready "capturing from" "$O/d.err"
B=$(sizes "$O/d.pcapng")
ip netns exec a ping -c 3 -i 0.2 -W 1 10.0.0.2 >/dev/null 2>&1
settle "$B" "$O/d.pcapng"
kill -INT $D
wait $D
echo "xcap exit $?" >> "$O/d.err"
# A packet moved to a new buffer: tc on vb's ingress mirrors each packet
# to a veth (a clone waits in its backlog) and then edits the header with
# pedit, which unclones it by pskb_expand_head, between the
# netif_receive_skb tracepoint and ip_rcv. xcap with both hooks keeps one
# id (f); ip_rcv alone (g) shows the new buffer's address.
ip -n b link add vc type veth peer name vd
ip -n b link set vc up && ip -n b link set vd up
ip netns exec b tc qdisc add dev vb ingress
ip netns exec b tc filter add dev vb ingress protocol ip matchall \
    action mirred egress mirror dev vc pipe action pedit ex munge ip ttl set 64
"$X" --netns b --hook tp:net:netif_receive_skb --hook fentry:ip_rcv -i vb \
    -w "$O/f.pcapng" icmp 2>"$O/f.err" &
F=$!
"$X" --netns b --hook fentry:ip_rcv -i vb -w "$O/g.pcapng" icmp 2>"$O/g.err" &
G=$!
ready "capturing from" "$O/f.err" "$O/g.err"
B=$(sizes "$O/f.pcapng" "$O/g.pcapng")
ip netns exec a iptables -F OUTPUT
ip netns exec a ping -c 3 -i 0.2 -W 1 10.0.0.2 >/dev/null 2>&1
settle "$B" "$O/f.pcapng" "$O/g.pcapng"
kill -INT $F $G
wait $F
echo "xcap exit $?" >> "$O/f.err"
wait $G
echo "xcap exit $?" >> "$O/g.err"
echo ok > "$O/done"
