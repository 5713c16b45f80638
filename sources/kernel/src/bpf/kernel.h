/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel source's part of the read-only configuration and of the
 * per-CPU assembly area (see core/bpf/xcap_runtime.h); mirrored in
 * src/config.rs.
 */
#ifndef __XCAP_KERNEL_H
#define __XCAP_KERNEL_H

struct xcap_src_config {
	__u32 dir;            /* enum xcap_dir of this hook */
	__u32 nr_ifaces;      /* 0: every interface */
	__u32 ifindex[XCAP_MAX_IFACES]; /* 0: any interface */
	__u32 netns[XCAP_MAX_IFACES];  /* 0: any namespace */
	__u64 vmemmap_base;   /* address of the kernel variable, 0 if absent */
	__u64 page_offset_base;
	__u32 pid;            /* --pid: only while this process runs (0: any) */
	__u32 track;          /* --track: follow packets once the filter matched */
	__u32 untrack;        /* this hook frees skbs: forget them after capture */
	__u32 ret;            /* fexit/kretprobe: a return record follows */
	__u32 frag;           /* skb_frag_t layout: see KernelBtf::frag_layout */
	__u32 follow;         /* ids follow reallocated buffers (the ids map) */
	char comm[16];        /* --comm: only while this task name runs ("": any) */
};

struct xcap_src_scratch {
	/*
	 * Values kept in memory on purpose: the verifier then sees them as
	 * unknown numbers, not as one of a few constants that would split
	 * the rest of the program into as many states (synth_headers).
	 */
	__u32 synth_len;
	__u32 synth_flags;
};

#endif /* __XCAP_KERNEL_H */
