/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The DPDK source's part of the read-only configuration and of the per-CPU
 * assembly area (see core/bpf/xcap_runtime.h); mirrored in src/config.rs.
 */
#ifndef __XCAP_DPDK_H
#define __XCAP_DPDK_H

/* The first cache line of an rte_mbuf: every field xcap reads but `next`
 * must lie in it; `next` must lie in the first two lines. */
#define XCAP_MBUF_LINE 64
/* Most mbufs one burst is read for (DPDK bursts are 32 to 512). */
#define XCAP_MAX_BURST 1024
/* Most segments of one chained mbuf that are followed. */
#define XCAP_MAX_SEGS 64
/* Hooks (burst functions x direction) one source can attach. */
#define XCAP_DPDK_MAX_HOOKS 256

/*
 * The attach cookie of every probe says what the probed function's
 * arguments are, so one program serves every PMD and hand-named function:
 * bits 0-15 hook index, 16-19 argument holding the mbuf array (or the
 * mbuf), 20-23 argument holding the count (XCAP_ARG_RET: the return value),
 * 24-27 argument holding the queue pointer (XCAP_ARG_NONE: none), bit 28
 * the argument is one mbuf, not an array, bits 32-39 enum xcap_dir.
 */
#define XCAP_ARG_RET 15
#define XCAP_ARG_NONE 15
#define XCAP_CK_SINGLE (1ULL << 28)

struct xcap_src_config {
	/* rte_mbuf field offsets: pointers 8-aligned, u32 4-, u16 2-aligned;
	 * all below XCAP_MBUF_LINE but off_next, below 2 * XCAP_MBUF_LINE */
	__u32 off_buf_addr;
	__u32 off_data_off; /* u16 */
	__u32 off_nb_segs;  /* u16 */
	__u32 off_port;     /* u16 */
	__u32 off_pkt_len;  /* u32 */
	__u32 off_data_len; /* u16 */
	__u32 off_next;
};

struct xcap_src_scratch {
	__u64 ptrs[XCAP_MAX_BURST]; /* the burst's mbuf pointers, read at once */
	__u8 mbuf[XCAP_MBUF_LINE];  /* the first cache line of the mbuf at hand */
};

/* Value of the queue map: which port and queue a PMD queue pointer is. */
struct xcap_dpdk_queue {
	__u16 port;
	__u16 queue;
};

#endif /* __XCAP_DPDK_H */
