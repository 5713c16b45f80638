// SPDX-License-Identifier: GPL-2.0-only
/*
 * xsk-app: hand every packet of the socket's queue to the AF_XDP socket
 * in `xsks` at that queue; packets of queues without a socket go on to
 * the stack (the XDP_PASS fallback of bpf_redirect_map).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64); /* resized by xsk-app to queue + 1 */
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

/* The same, allowed to see multi-buffer packets (--sg): a program without
 * frags support gets none, and veth refuses it when the MTU is large. */
SEC("xdp.frags")
int xsk_redirect_frags(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
