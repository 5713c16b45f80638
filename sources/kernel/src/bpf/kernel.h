/* SPDX-License-Identifier: GPL-2.0-only */
/* Configuration of one hook of the kernel source; mirrored in src/config.rs. */
#ifndef __XCAP_KERNEL_H
#define __XCAP_KERNEL_H

struct xcap_config {
	__u32 hook;           /* index reported in every event (the first, when
			       * the object serves several hooks) */
	__u32 snaplen;        /* <= XCAP_MAX_SNAPLEN */
	__u32 dir;            /* enum xcap_dir of this hook */
	__u32 stack;          /* record kernel stacks */
	__u32 nr_ifaces;      /* 0: every interface */
	__u32 filter;         /* run the spliced filter (xcap_filter.h) */
	__u32 ifindex[XCAP_MAX_IFACES]; /* 0: any interface */
	__u32 netns[XCAP_MAX_IFACES];  /* 0: any namespace */
	__u64 vmemmap_base;   /* address of the kernel variable, 0 if absent */
	__u64 page_offset_base;
	__u32 pid;            /* --pid: only while this process runs (0: any) */
	__u32 track;          /* --track: follow packets once the filter matched */
	__u32 untrack;        /* this hook frees skbs: forget them after capture */
	__u32 ret;            /* fexit/kretprobe: a return record follows */
	__u32 nr_hooks;       /* hooks this object serves, from `hook` on */
	__u32 frag;           /* skb_frag_t layout: see KernelBtf::frag_layout */
	__u32 follow;         /* ids follow reallocated buffers (the ids map) */
	__u32 pad;
	char comm[16];        /* --comm: only while this task name runs ("": any) */
};

#endif /* __XCAP_KERNEL_H */
