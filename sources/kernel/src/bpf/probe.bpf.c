// SPDX-License-Identifier: GPL-2.0-only
/*
 * Tiny programs that find out which function-hook backends this kernel
 * allows: xcap tries to load and attach them instead of guessing from
 * version numbers or config files (fentry is tried without an object, see
 * backends.rs).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("kprobe/netif_receive_skb")
int xcap_probe_kprobe(void *ctx)
{
	return 0;
}

SEC("kprobe.multi")
int xcap_probe_kprobe_multi(void *ctx)
{
	return 0;
}
