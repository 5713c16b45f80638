/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The read-only configuration of an xcap BPF object: the runtime's part
 * (xcap_runtime.h), then the source's (struct xcap_src_config, defined by
 * the source before including this). Mirrored in xcap_bpf_common::runtime;
 * each source's tests compare the layouts.
 */
#ifndef __XCAP_CONFIG_H
#define __XCAP_CONFIG_H

struct xcap_rt_config {
	__u32 snaplen;   /* bytes to copy per packet, <= XCAP_MAX_SNAPLEN */
	__u32 filter;    /* run the spliced filter */
	__u32 stack;     /* record kernel stacks */
	__u32 hook_base; /* hook index of this object's first counter slot */
};

struct xcap_rodata {
	struct xcap_rt_config rt;
	struct xcap_src_config src;
};

#endif /* __XCAP_CONFIG_H */
