"""The benchmarks' test network: two namespaces joined by a veth pair,
va (in a) and vb (in b), IPv6 off so only the benchmark's traffic flows."""

import subprocess


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)


def setup(a, b, ip_a, ip_b):
    teardown(a, b)
    sh(f"ip netns add {a} && ip netns add {b}")
    for ns in (a, b):
        sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
    sh(f"ip link add va netns {a} type veth peer name vb netns {b}")
    sh(f"ip -n {a} addr add {ip_a}/24 dev va && ip -n {a} link set va up")
    sh(f"ip -n {b} addr add {ip_b}/24 dev vb && ip -n {b} link set vb up")


def teardown(a, b):
    for ns in (a, b):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
