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

/* Syscalls at whose return a process's AF_XDP sockets are looked at for
 * what the kernel took from their TX rings. */
#define XCAP_XSK_POLL_CALLS 8
#define XCAP_XSK_SEND_CALLS 4
/* Sockets of one process looked at so. */
#define XCAP_XSK_MAX_OWNED 16
#define XCAP_XSK_NO_CALL 0xffffffff

struct xcap_src_config {
	__u32 nr_ifaces;                /* 0: every interface */
	__u32 ifindex[XCAP_MAX_IFACES]; /* 0: any interface */
	__u32 netns[XCAP_MAX_IFACES];   /* 0: any namespace */
	/* This architecture's syscall numbers, XCAP_XSK_NO_CALL for none:
	 * bind (a new socket), close (its last TX caught up), the poll family (copy mode sends from poll()
	 * with need_wakeup), the send family (only before 6.3, where
	 * sock_send_length is missing). */
	__u32 sys_bind;
	__u32 sys_close;
	__u32 sys_poll[XCAP_XSK_POLL_CALLS];
	__u32 sys_send[XCAP_XSK_SEND_CALLS];
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
	__u32 who;       /* the socket's owner, to name instead of the current
			  * task (RX, late TX); 0: the current task */
	char tx_ifname[16];
	char who_comm[16];
};

/* How a TX packet was seen (XCAP_XSK_TX_*): as a send returned, as a
 * poll() returned, or caught up when xcap stopped. */
#define XCAP_XSK_TX_SEND 0
#define XCAP_XSK_TX_POLL 1
#define XCAP_XSK_TX_LATE 2

/* Per socket (struct xdp_sock address, map `xsks`). */
struct xcap_xsk {
	__u32 seen;  /* TX ring index up to which descriptors were captured */
	__u32 ino;   /* the socket's inode: another socket at the same address
		      * starts over */
	__u32 owner; /* tgid of the process that bound it (or held it when
		      * xcap started), 0: unknown */
	__u32 pad;
	char comm[16]; /* that process's name */
};

/* Per process (tgid): its AF_XDP sockets, by address and inode. */
struct xcap_xsk_owned {
	__u64 xs[XCAP_XSK_MAX_OWNED];
	__u32 ino[XCAP_XSK_MAX_OWNED];
	__u32 n;
};

/* Drops counted per socket and error (map `drops`). */
struct xcap_xsk_drop_key {
	__u32 sock_ino; /* inode of the socket, as in /proc/PID/fd */
	__u32 err;      /* the kernel's errno, positive */
	__u32 ifindex;
	__u32 index;    /* the XSKMAP key: the queue, by convention */
};

#endif /* __XCAP_AFXDP_H */
