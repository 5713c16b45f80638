/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The event record every xcap BPF source writes to its ring buffer.
 * Rust mirrors it in core/src/event.rs; a test compiles this header and
 * compares every offset, so the two cannot drift apart.
 *
 * Record layout: struct xcap_event; then, when XCAP_F_STACK is set, a stack
 * area of XCAP_MAX_STACK __u64 kernel addresses of which the first nr_stack
 * are valid; then cap_len bytes of packet data.
 */
#ifndef __XCAP_EVENT_H
#define __XCAP_EVENT_H

#define XCAP_COMM_LEN 16
#define XCAP_IFNAME_LEN 16
#define XCAP_MAX_STACK 32
/* Largest snap length a BPF program copies (tcpdump's default). */
#define XCAP_MAX_SNAPLEN 262144
#define XCAP_MAX_IFACES 16
#define XCAP_NO_QUEUE 0xffffffffU

enum xcap_link {
	XCAP_LINK_ETHERNET = 0, /* starts at the MAC header */
	XCAP_LINK_RAW = 1,      /* starts at the IPv4/IPv6 header */
};

enum xcap_dir {
	XCAP_DIR_UNKNOWN = 0,
	XCAP_DIR_IN = 1,
	XCAP_DIR_OUT = 2,
};

enum xcap_flags {
	XCAP_F_DROP = 1 << 0,  /* drop_reason and location are valid */
	XCAP_F_STACK = 1 << 1, /* a stack area of XCAP_MAX_STACK slots follows */
	XCAP_F_RET = 1 << 2,   /* a function returned: location is its return
				* value, no packet data; it completes the last
				* packet this thread captured at the hook */
	XCAP_F_SYNTH_L3 = 1 << 3, /* the IP header was made up from the socket */
	XCAP_F_XSK_ZC = 1 << 4,   /* AF_XDP: the socket is in zero-copy mode */
	XCAP_F_XSK_POLL = 1 << 5, /* AF_XDP TX: seen as the application's poll()
				   * returned, not a send */
	XCAP_F_XSK_LATE = 1 << 6, /* AF_XDP TX: caught up when xcap stopped, after
				   * the call that sent it; the time is the
				   * catch-up's, the bytes the frame's by then */
	XCAP_F_OWNER = 1 << 7,    /* pid and comm are the owner's of the socket
				   * the packet went through, tid none: it was
				   * not captured in that process's context */
};

struct xcap_event {
	__u64 ts_ns;      /* CLOCK_MONOTONIC, bpf_ktime_get_ns() */
	__u64 skb;        /* packet id: skb->head (kernel), mbuf address (DPDK) */
	__u64 location;   /* drop location (kernel text address) */
	__u32 hook;       /* index into the source's hook table */
	__u32 cap_len;    /* bytes of packet data that follow */
	__u32 orig_len;   /* packet length from the first captured byte */
	__u32 ifindex;    /* kernel ifindex; DPDK port id */
	__u32 netns;      /* inode of the device's network namespace */
	__u32 pid;        /* tgid of the current task */
	__u32 tid;
	__u32 cpu;
	__u32 drop_reason;
	__u32 queue;      /* rx/tx queue, XCAP_NO_QUEUE when unknown */
	__u16 nr_stack;   /* valid entries of the stack area */
	__u16 flags;      /* enum xcap_flags */
	__u8 link;        /* enum xcap_link */
	__u8 dir;         /* enum xcap_dir */
	__u8 pad[2];
	char comm[XCAP_COMM_LEN];
	char ifname[XCAP_IFNAME_LEN];
};

/* Per-hook counters, a per-CPU array indexed by enum xcap_counter. */
enum xcap_counter {
	XCAP_CNT_SEEN = 0,     /* hook ran and the packet passed -i */
	XCAP_CNT_LOST = 1,     /* ring buffer full: record lost */
	XCAP_CNT_TRUNC = 2,    /* captured short: data that could not be read */
	XCAP_CNT_MAX = 3,
};

#endif /* __XCAP_EVENT_H */
