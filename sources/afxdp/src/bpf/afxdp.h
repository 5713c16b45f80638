/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The AF_XDP source's part of the read-only configuration and of the
 * per-CPU assembly area (see core/bpf/xcap_runtime.h); mirrored in
 * src/config.rs.
 */
#ifndef __XCAP_AFXDP_H
#define __XCAP_AFXDP_H

/* Most descriptors of one multi-buffer packet that are followed (the
 * kernel's MAX_SKB_FRAGS + 1 is 18). */
#define XCAP_XSK_MAX_FRAGS 32

struct xcap_src_config {
	__u32 nr_ifaces;                /* 0: every interface */
	__u32 ifindex[XCAP_MAX_IFACES]; /* 0: any interface */
	__u32 netns[XCAP_MAX_IFACES];   /* 0: any namespace */
};

/* Most descriptors one send is read for; beyond, they are counted lost. */
#define XCAP_XSK_MAX_TX 1024

/* Hooks: counter slots and the hook field of records. */
#define XCAP_XSK_HOOK_RX 0
#define XCAP_XSK_HOOK_TX 1

/*
 * The packet's descriptors on the socket's RX or TX ring, for
 * xcap_copy_rest, and for TX the socket's metadata, the same for every
 * packet of one send.
 */
struct xcap_src_scratch {
	__u64 descs;  /* kernel address of the ring's descriptor array */
	__u64 addrs;  /* kernel address of the UMEM */
	__u32 mask;   /* ring size - 1 */
	__u32 first;  /* ring index of the packet's first descriptor */
	__u32 nr;     /* its descriptors */
	__u32 tx_ifindex;
	__u64 tx_location; /* as the event's location: socket inode, program id */
	__u32 tx_netns;
	__u32 tx_queue;
	__u32 tx_flags;
	__u32 pad;
	char tx_ifname[16];
};

/* Drops counted per socket and error (map `drops`). */
struct xcap_xsk_drop_key {
	__u32 sock_ino; /* inode of the socket, as in /proc/PID/fd */
	__u32 err;      /* the kernel's errno, positive */
	__u32 ifindex;
	__u32 index;    /* the XSKMAP key: the queue, by convention */
};

#endif /* __XCAP_AFXDP_H */
