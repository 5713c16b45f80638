/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The capture runtime every xcap BPF source builds on. It owns the ring
 * buffer, the per-hook counters, the per-CPU assembly area, the filter and
 * the filter -> copy -> emit sequence; a source's programs only locate the
 * packet and its metadata. Its Rust half is xcap_bpf_common::runtime.
 *
 * A source defines, before including this header:
 *   struct xcap_src_config   its part of the read-only configuration
 *   struct xcap_src_scratch  its part of the per-CPU assembly area
 *   XCAP_FILTER_IN_PLACE     (optional) its packets lie in kernel memory
 *                            and it calls xcap_filter_in_place()
 * and, after including it, the function the runtime calls to copy the part
 * of a packet that does not follow the first bytes (paged skb data, chained
 * mbufs):
 *   static __always_inline void xcap_copy_rest(struct xcap_copy *c);
 *
 * A capture then goes:
 *   if (!xcap_filter_in_place(&c, addr, n))    kernel memory: filter
 *           return 0;                          before any copy
 *   s = xcap_scratch(&c.cpu);                  the assembly area
 *   c.off = xcap_copy(s->data, 0, addr, n, u); the first bytes
 *   if (!xcap_filter_copy(s, &c, hook, false)) filter, then the rest
 *           return 0;                          up to the snap length
 *   ev = xcap_event_of(s); ev->... = ...;      the source's metadata
 *   xcap_emit(ctx, s, &c, hook);               common fields, stack, output
 *
 * Verifier cost: the filter is a global function, verified once per
 * program whatever calls it and however often (its result is an unknown
 * number to the caller, so it does not multiply the caller's states). Copy
 * loops run in bpf_loop callbacks, verified once each.
 */
#ifndef __XCAP_RUNTIME_H
#define __XCAP_RUNTIME_H

#include <bpf/bpf_core_read.h>
#include "xcap_event.h"
#include "xcap_filter.h"
#include "xcap_copy.h"
#include "xcap_config.h"

char LICENSE[] SEC("license") = "GPL";

/* Written by the loader before load: constants to the verifier. */
const volatile struct xcap_rodata xcap_cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16); /* sized by the loader (-B) */
} events SEC(".maps");

/* Per hook: XCAP_CNT_MAX counters at (hook - hook_base) * XCAP_CNT_MAX. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XCAP_CNT_MAX); /* sized by the loader */
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * Record assembly area. Packet data always sits at `data`; the event header
 * is written right before the stack area when stacks are recorded, or right
 * before the data when not, so header, stack and data go out contiguous.
 * The data region is twice the largest snap length: the verifier bounds the
 * write offset and the length separately, so their sum may reach twice it.
 */
#define XCAP_STACK_BYTES (XCAP_MAX_STACK * 8)
#define XCAP_HDR_BYTES ((__u32)sizeof(struct xcap_event))

struct xcap_scratch {
	struct xcap_src_scratch src;
	__u8 hdr[XCAP_HDR_BYTES + XCAP_STACK_BYTES];
	__u8 data[2 * XCAP_MAX_SNAPLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* resized to the number of CPUs by the loader */
	__type(key, __u32);
	__type(value, struct xcap_scratch);
} scratch_map SEC(".maps");

static __always_inline void xcap_count(__u32 hook, __u32 idx, __u64 n)
{
	__u32 key = (hook - xcap_cfg.rt.hook_base) * XCAP_CNT_MAX + idx;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += n;
}

/*
 * -i/--netns: whether the device (ifindex in namespace netns) is one of the
 * `nr` selected in a source's configuration (an ifindex or netns of 0
 * matches any; nr 0 selects every device). Filled by the loader from
 * xcap_bpf_common::iface::selection.
 */
static __always_inline bool xcap_iface_selected(__u32 nr, const volatile __u32 *ifx,
						const volatile __u32 *ns, __u32 ifindex,
						__u32 netns)
{
	if (nr == 0)
		return true;
	for (int i = 0; i < XCAP_MAX_IFACES; i++) {
		if (i >= nr)
			break;
		if ((ifx[i] == 0 || ifx[i] == ifindex) && (ns[i] == 0 || ns[i] == netns))
			return true;
	}
	return false;
}

/*
 * This CPU's assembly area; *cpu gets the CPU. A program does not nest with
 * itself on one CPU, and uprobe programs run with migration disabled, so
 * the area needs no lock.
 */
static __always_inline struct xcap_scratch *xcap_scratch(__u32 *cpu)
{
	*cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&scratch_map, cpu);
}

/* A packet being copied into the data area. */
struct xcap_copy {
	__u64 at[2]; /* the source's: where the rest of the packet is */
	__u64 place; /* where the first bytes lie, for the filter in place */
	__u32 off;   /* bytes copied so far */
	__u32 cap;   /* bytes wanted: the packet, up to the snap length */
	__u32 total; /* the packet's length */
	__u32 cpu;
	__u8 raw;    /* starts at the IP header, not the Ethernet header */
	__u8 trunc;  /* some bytes could not be read */
	__u8 ran;    /* the filter already ran in place ... */
	__u8 verdict; /* ... and said this */
};

/* Copies what follows the first bytes; defined by the source. */
static __always_inline void xcap_copy_rest(struct xcap_copy *c);

/* What the filter reads: the data area, as the verifier sizes it. */
struct xcap_filter_data {
	__u8 b[XCAP_MAX_SNAPLEN];
};

/*
 * Loads at any kernel address, checked by the kernel at run time rather
 * than by the verifier (a void * cast by bpf_rdonly_cast, declared by
 * libbpf's bpf_core_read.h: 6.17 and later), for a source whose packets
 * lie in kernel memory and that defines XCAP_FILTER_IN_PLACE. libbpf
 * resolves the feature check when loading: 0 on older kernels, where the
 * code that casts is never reached and the weak kfunc stays unresolved.
 */
#ifdef XCAP_FILTER_IN_PLACE
#define xcap_can_read_in_place()                                                            \
	bpf_core_enum_value_exists(enum bpf_features, BPF_FEAT_RDONLY_CAST_TO_VOID)
#else
#define xcap_can_read_in_place() 0
#endif

/*
 * The filter, verified once per program (a global function: the verifier
 * checks it on its own, not at each call and state of the caller). It
 * reads `buflen` bytes of the data area `d`, or, when d is NULL, of kernel
 * memory at c->place where the packet lies (only where
 * xcap_can_read_in_place(); elsewhere it answers NEED_MORE). The address
 * comes through memory because on 6.17 and later an address loaded from a
 * typed kernel struct (skb->head at a tp_btf hook) is a pointer to the
 * verifier, which it refuses as a number argument; read back here, it is
 * a number.
 */
__attribute__((noinline)) int xcap_run_filter(struct xcap_filter_data *d, struct xcap_copy *c,
					      __u32 buflen)
{
	__u32 mem[16] = {};
	const void *b;

	if (!c)
		return XCAP_FILTER_MISS;
	if (d)
		b = d->b;
#ifdef XCAP_FILTER_IN_PLACE
	else if (xcap_can_read_in_place())
		b = bpf_rdonly_cast((void *)c->place, 0);
#endif
	else
		return XCAP_FILTER_NEED_MORE;
	return xcap_filter((void *)b, buflen, c->total, c->raw, mem);
}

/*
 * Before anything is copied: run the filter on the packet's first `len`
 * bytes (the ones the first copy would take) where they lie in kernel
 * memory, so that a packet it rejects costs no copy at all: the copy was
 * most of a rejection's cost. Returns false when the filter rejects it.
 * c->total and c->raw must be set. Without a filter, or on a kernel that
 * does not allow such loads, it does nothing and xcap_filter_copy()
 * filters the copy, with the same verdicts.
 */
static __always_inline bool xcap_filter_in_place(struct xcap_copy *c, __u64 addr, __u32 len)
{
	if (!xcap_cfg.rt.filter || !xcap_can_read_in_place())
		return true;
	c->place = addr;
	c->verdict = xcap_run_filter(NULL, c, len);
	c->ran = 1;
	return c->verdict != XCAP_FILTER_MISS;
}

/*
 * Run the filter (if there is one and it did not run in place) and copy
 * the rest of the packet when it is to be captured: it matched, or `keep`
 * (the source wants it anyway). When the filter reads past the first
 * bytes, it runs again on the whole copy. Returns whether it matched (true
 * without a filter). The rest is copied at this one place: each call site
 * of a bpf_loop is verified on its own.
 */
static __always_inline bool xcap_filter_copy(struct xcap_scratch *s, struct xcap_copy *c,
					     __u32 hook, bool keep)
{
	int r = XCAP_FILTER_MATCH;

	if (xcap_cfg.rt.filter) {
		r = c->ran ? c->verdict : xcap_run_filter((void *)s->data, c, c->off);
		if (r == XCAP_FILTER_MISS && !keep)
			return false;
	}
	if (!c->trunc && c->off < c->cap)
		xcap_copy_rest(c);
	if (r == XCAP_FILTER_NEED_MORE)
		r = xcap_run_filter((void *)s->data, c, c->off);
	if ((r == XCAP_FILTER_MATCH || keep) && (c->trunc || c->off < c->cap))
		xcap_count(hook, XCAP_CNT_TRUNC, 1);
	return r == XCAP_FILTER_MATCH;
}

/*
 * The current task's name, as bpf_get_current_comm() gives it but with two
 * direct loads from the task (a BTF pointer) instead of a helper call that
 * copies and pads byte by byte: about a tenth of a record's cost. Rust
 * reads up to the first NUL. A source whose programs may run outside the
 * kernel (DPDK under bpftime, which has no task_struct) defines
 * XCAP_COMM_BY_HELPER.
 */
static __always_inline void xcap_current_comm(char *comm)
{
#ifdef XCAP_COMM_BY_HELPER
	bpf_get_current_comm(comm, XCAP_COMM_LEN);
#else
	struct task_struct *t = bpf_get_current_task_btf();

	((__u64 *)comm)[0] = *(__u64 *)&t->comm[0];
	((__u64 *)comm)[1] = *(__u64 *)&t->comm[8];
#endif
}

/* The event header in the assembly area (see struct xcap_scratch). */
static __always_inline struct xcap_event *xcap_event_of(struct xcap_scratch *s)
{
	__u32 off = xcap_cfg.rt.stack ? 0 : XCAP_STACK_BYTES;

	return (void *)&s->hdr[off & XCAP_STACK_BYTES];
}

/*
 * Fill the fields every source has, record the stack (ctx: the program's
 * context; only read when stacks are on) and send the record. The source
 * has set its own fields: skb, location, ifindex, netns, drop_reason, dir,
 * flags, queue, ifname. Returns whether the record went out.
 */
static __always_inline bool xcap_emit(void *ctx, struct xcap_scratch *s, struct xcap_copy *c,
				      __u32 hook)
{
	struct xcap_event *ev = xcap_event_of(s);
	__u64 id = bpf_get_current_pid_tgid();
	__u32 off = c->off;

	ev->ts_ns = bpf_ktime_get_ns();
	ev->hook = hook;
	ev->cap_len = off;
	ev->orig_len = c->total;
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->cpu = c->cpu;
	ev->link = c->raw ? XCAP_LINK_RAW : XCAP_LINK_ETHERNET;
	xcap_current_comm(ev->comm);
#ifdef XCAP_SRC_WHO
	/* A source that knows better whose packet it is (AF_XDP: the
	 * socket's owner, not whoever ran the hook). */
	XCAP_SRC_WHO(ev, s);
#endif
	ev->nr_stack = 0;
	if (xcap_cfg.rt.stack) {
		long n = bpf_get_stack(ctx, &s->hdr[XCAP_HDR_BYTES], XCAP_STACK_BYTES, 0);

		if (n > 0)
			ev->nr_stack = n / 8;
		ev->flags |= XCAP_F_STACK;
	}
	/* Tell the verifier what it cannot derive through the copy loops. */
	barrier_var(off);
	if (off > XCAP_MAX_SNAPLEN)
		return false;
	if (bpf_ringbuf_output(&events, ev,
			       XCAP_HDR_BYTES + (xcap_cfg.rt.stack ? XCAP_STACK_BYTES : 0) + off, 0)) {
		xcap_count(hook, XCAP_CNT_LOST, 1);
		return false;
	}
	return true;
}

/* A record with no packet data (e.g. a function's return). */
static __always_inline void xcap_emit_bare(struct xcap_event *ev, __u32 hook)
{
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), 0))
		xcap_count(hook, XCAP_CNT_LOST, 1);
}

#endif /* __XCAP_RUNTIME_H */
