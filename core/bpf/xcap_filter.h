/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The placeholder where xcap splices a tcpdump filter, translated to eBPF
 * (core/src/filter/ebpf.rs), before the program is loaded.
 *
 * The placeholder is a block of XCAP_FILTER_INSNS instructions: a marker
 * (a 64-bit load of XCAP_FILTER_MARKER into r0) followed by `r0 = 1`
 * padding. The loader replaces the whole block with a block of the same
 * length, so no other instruction, relocation or line record moves.
 * Unpatched, the block accepts everything; sources only run it when a filter
 * is set.
 */
#ifndef __XCAP_FILTER_H
#define __XCAP_FILTER_H

#define XCAP_FILTER_INSNS 4096
#define XCAP_FILTER_MARKER 0x78636170 /* "xcap" */

#define XCAP_FILTER_MISS 0
#define XCAP_FILTER_MATCH 1
#define XCAP_FILTER_NEED_MORE 2 /* a load went past `buflen`: copy more, run again */

#define __xcap_str(x) #x
#define __xcap_xstr(x) __xcap_str(x)

/*
 * Run the filter on `buflen` bytes at `data` of a packet `wirelen` long;
 * `raw` is 0 when data starts at the Ethernet header, 1 at the IP header.
 * `mem` is the classic program's scratch memory (16 words).
 */
static __always_inline __u32 xcap_filter(void *data, __u32 buflen, __u32 wirelen, __u32 raw,
					 __u32 *mem)
{
	register __u64 r0 asm("r0");
	register __u64 r1 asm("r1") = (__u64)data;
	register __u64 r2 asm("r2") = buflen;
	register __u64 r3 asm("r3") = wirelen;
	register __u64 r4 asm("r4") = (__u64)mem;
	register __u64 r5 asm("r5") = raw;

	asm volatile("r0 = " __xcap_xstr(XCAP_FILTER_MARKER) " ll\n"
		     ".rept " __xcap_xstr(XCAP_FILTER_INSNS) " - 2\n"
		     "r0 = 1\n"
		     ".endr\n"
		     : "=r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4), "+r"(r5)
		     :
		     : "r6", "r7", "r8", "r9", "memory");
	return r0;
}

#endif /* __XCAP_FILTER_H */
