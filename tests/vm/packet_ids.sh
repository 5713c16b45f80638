#!/bin/bash
# Runs inside the VM: is a packet's id the same at every hook it passes,
# run after run? Namespaces a and b on a veth pair; in b, xcap follows
# echo requests at a tracepoint and at fentry, fexit, kprobe and kretprobe
# hooks of the receive path (with --track: packets followed once matched,
# freed buffers forgotten, reallocated ones followed), ten times over, each
# in a fresh xcap. Each run
# leaves run-N.pcapng and run-N.err ("xcap exit N" last).
# Usage: packet_ids.sh XCAP OUTDIR
set -u
X=$1
O=$2
ip netns add a && ip netns add b
for ns in a b; do ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
ip link add va netns a type veth peer name vb netns b
ip -n a addr add 10.0.0.1/24 dev va && ip -n a link set va up
ip -n b addr add 10.0.0.2/24 dev vb && ip -n b link set vb up
ip netns exec a ping -c 1 -W 5 10.0.0.2 >/dev/null 2>&1 # ARP settled
for n in $(seq 1 10); do
    "$X" --netns b -i vb --track --hook tp:net:netif_receive_skb --hook fentry:ip_rcv \
        --hook fexit:ip_local_deliver --hook kprobe:ip_protocol_deliver_rcu@2 \
        --hook kretprobe:icmp_rcv -w "$O/run-$n.pcapng" 'icmp[icmptype] = icmp-echo' \
        2>"$O/run-$n.err" &
    P=$!
    for i in $(seq 1 600); do
        grep -q "capturing from" "$O/run-$n.err" && break
        kill -0 $P 2>/dev/null || break
        sleep 0.2
    done
    ip netns exec a ping -c 3 -i 0.2 -W 2 10.0.0.2 >/dev/null 2>&1
    # Stop once xcap has written the 3 echo requests at the 5 hooks.
    for i in $(seq 1 100); do
        [ "$("$X" -r "$O/run-$n.pcapng" 2>/dev/null | wc -l)" -ge 15 ] && break
        sleep 0.2
    done
    kill -INT $P
    wait $P
    echo "xcap exit $?" >>"$O/run-$n.err"
done
echo ok >"$O/done"
