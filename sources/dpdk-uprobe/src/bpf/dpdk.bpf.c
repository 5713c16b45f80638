// SPDX-License-Identifier: GPL-2.0-only
/*
 * xcap DPDK source: packets of a DPDK application, read from the mbufs its
 * poll-mode driver's burst functions receive and transmit.
 *
 * One uprobe per burst (never per packet: a uprobe hit costs microseconds).
 * Receive: the entry probe keeps the mbuf array, the return probe reads the
 * mbufs the driver filled (their count is the return value). Transmit: the
 * entry probe reads the mbufs before the driver owns them. The attach
 * cookie describes the arguments (dpdk.h), so one program serves every
 * driver; the queue map turns the driver's queue pointer into port/queue.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "xcap_event.h"
#include "dpdk.h"
#include "xcap_filter.h"
#include "xcap_copy.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct xcap_dpdk_config cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* Per hook: XCAP_CNT_MAX counters at hook * XCAP_CNT_MAX. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XCAP_DPDK_MAX_HOOKS * XCAP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* PMD queue pointer -> port and queue; written by xcap as ports change. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct xcap_dpdk_queue);
} queues SEC(".maps");

/* Receive bursts between entry and return, by thread. */
struct rx_call {
	__u64 arr;
	__u64 queue;
	__u64 cookie;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct rx_call);
} calls SEC(".maps");

#define STACK_BYTES (XCAP_MAX_STACK * 8)
#define HDR_BYTES ((__u32)sizeof(struct xcap_event))
#define SCRATCH_DATA (2 * XCAP_MAX_SNAPLEN)
/* Same record layout as the kernel source; DPDK records carry no stack. */
struct scratch {
	__u64 ptrs[XCAP_MAX_BURST]; /* the burst's mbuf pointers, read at once */
	__u8 mbuf[XCAP_MBUF_LINE];
	__u8 hdr[HDR_BYTES];
	__u8 data[SCRATCH_DATA];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* resized to the number of CPUs at load */
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

static __always_inline void count_n(__u32 hook, __u32 idx, __u64 n)
{
	__u32 key = hook * XCAP_CNT_MAX + idx;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += n;
}

static __always_inline void count(__u32 hook, __u32 idx)
{
	count_n(hook, idx, 1);
}

/* rte_mbuf fields of the first cache line, from the copy in s->mbuf. */
#define MB64(s, off) (*(__u64 *)&(s)->mbuf[(off) & (XCAP_MBUF_LINE - 8)])
#define MB32(s, off) (*(__u32 *)&(s)->mbuf[(off) & (XCAP_MBUF_LINE - 4)])
#define MB16(s, off) (*(__u16 *)&(s)->mbuf[(off) & (XCAP_MBUF_LINE - 2)])

struct seg {
	__u64 addr;
	__u64 next;
	__u32 len;
};

/*
 * Read the mbuf at `m` into s->mbuf; its data address, length and next.
 * Only the first cache line is read (every field but `next` is there);
 * `next` sits in the second, which a driver often has not touched: reading
 * it costs a cache miss, so it is read only for chained mbufs.
 */
static __always_inline int read_mbuf(struct scratch *s, __u64 m, struct seg *g, bool chained)
{
	if (bpf_probe_read_user(s->mbuf, XCAP_MBUF_LINE, (void *)m))
		return -1;
	g->addr = MB64(s, cfg.off_buf_addr) + MB16(s, cfg.off_data_off);
	g->len = MB16(s, cfg.off_data_len);
	g->next = 0;
	/* nb_segs counts the chain in its first mbuf only; inside a chain,
	 * read next always. */
	if ((chained || MB16(s, cfg.off_nb_segs) > 1) &&
	    bpf_probe_read_user(&g->next, sizeof(g->next), (void *)(m + cfg.off_next)))
		return -1;
	return 0;
}

/* Copy len bytes of the application's memory at src to s->data[off]. */
static __always_inline __u32 copy_out(struct scratch *s, __u32 off, __u64 src, __u32 len)
{
	return xcap_copy(s->data, off, src, len, true);
}

/* Following a chain of segments (bpf_loop state). */
struct chain {
	__u64 next;  /* next segment's mbuf */
	__u32 off;   /* bytes copied so far */
	__u32 cap;   /* bytes wanted */
	__u32 cpu;
	__u32 trunc; /* a segment could not be read */
};

static long seg_cb(__u64 i, void *data)
{
	struct chain *c = data;
	struct scratch *s;
	struct seg g;
	__u32 want, got;

	if (!c->next || c->off >= c->cap)
		return 1;
	s = bpf_map_lookup_elem(&scratch_map, &c->cpu);
	if (!s || read_mbuf(s, c->next, &g, true)) {
		c->trunc = 1;
		return 1;
	}
	want = c->cap - c->off;
	if (want > g.len)
		want = g.len;
	got = copy_out(s, c->off, g.addr, want);
	c->off += got;
	if (got != want) {
		c->trunc = 1;
		return 1;
	}
	c->next = g.next;
	return 0;
}

/* One burst being read (bpf_loop state). */
struct burst {
	__u64 arr;    /* the mbuf array, or the one mbuf */
	__u32 n;
	__u32 hook;
	__u32 cpu;
	__u16 port;
	__u16 queue;
	__u8 known;   /* port/queue come from the queue map */
	__u8 single;
	__u8 dir;
};

static long mbuf_cb(__u64 i, void *data)
{
	struct burst *b = data;
	struct scratch *s;
	struct seg g;
	__u64 m = b->arr;

	if (i >= b->n)
		return 1;
	s = bpf_map_lookup_elem(&scratch_map, &b->cpu);
	if (!s)
		return 1;
	if (!b->single)
		m = s->ptrs[i & (XCAP_MAX_BURST - 1)];
	if (!m || read_mbuf(s, m, &g, false))
		return 0;

	__u32 total = MB32(s, cfg.off_pkt_len);
	__u16 port = b->known ? b->port : MB16(s, cfg.off_port);
	__u16 nsegs = MB16(s, cfg.off_nb_segs);
	__u32 cap = total < cfg.snaplen ? total : cfg.snaplen;
	__u32 first = g.len < cap ? g.len : cap;
	struct chain c = { .next = g.next, .cap = cap, .cpu = b->cpu };

	c.off = copy_out(s, 0, g.addr, first);
	c.trunc = c.off != first;
	bool rest = false;

	if (cfg.filter) {
		__u32 mem[16] = {};
		__u32 r = xcap_filter(s->data, c.off, total, 0, mem);

		if (r == XCAP_FILTER_NEED_MORE && !c.trunc && c.off < cap) {
			bpf_loop(XCAP_MAX_SEGS, seg_cb, &c, 0);
			rest = true;
			r = xcap_filter(s->data, c.off, total, 0, mem);
		}
		if (r != XCAP_FILTER_MATCH)
			return 0;
		count(b->hook, XCAP_CNT_MATCHED);
	}
	if (!rest && !c.trunc && c.off < cap)
		bpf_loop(XCAP_MAX_SEGS, seg_cb, &c, 0);
	if (c.trunc || c.off < cap)
		count(b->hook, XCAP_CNT_TRUNC);

	struct xcap_event *ev = (void *)s->hdr;
	__u64 id = bpf_get_current_pid_tgid();

	ev->ts_ns = bpf_ktime_get_ns();
	ev->skb = m;
	ev->location = nsegs; /* no drop location here: the segment count */
	ev->hook = b->hook;
	ev->cap_len = c.off;
	ev->orig_len = total;
	ev->ifindex = port;
	ev->netns = 0;
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->cpu = b->cpu;
	ev->drop_reason = 0;
	ev->protocol = 0;
	ev->link = XCAP_LINK_ETHERNET;
	ev->dir = b->dir;
	ev->nr_stack = 0;
	ev->flags = 0;
	ev->queue = b->known ? b->queue : XCAP_NO_QUEUE;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	__builtin_memset(ev->ifname, 0, sizeof(ev->ifname));

	__u32 off = c.off;

	barrier_var(off);
	if (off > XCAP_MAX_SNAPLEN)
		return 0;
	/* hdr and data are contiguous in struct scratch. */
	if (bpf_ringbuf_output(&events, s->hdr, HDR_BYTES + off, 0))
		count(b->hook, XCAP_CNT_LOST);
	return 0;
}

/* Argument n (0-based). The verifier only allows constant offsets into the
 * context, so load every argument register and pick among the values. */
static __always_inline __u64 arg(struct pt_regs *ctx, __u32 n)
{
	__u64 a0 = PT_REGS_PARM1(ctx), a1 = PT_REGS_PARM2(ctx), a2 = PT_REGS_PARM3(ctx);
	__u64 a3 = PT_REGS_PARM4(ctx), a4 = PT_REGS_PARM5(ctx), a5 = PT_REGS_PARM6(ctx);

	barrier_var(a0);
	barrier_var(a1);
	barrier_var(a2);
	barrier_var(a3);
	barrier_var(a4);
	barrier_var(a5);
	return n == 0 ? a0 : n == 1 ? a1 : n == 2 ? a2 : n == 3 ? a3 : n == 4 ? a4 : n == 5 ? a5 : 0;
}

static __always_inline void read_burst(__u64 cookie, __u64 arr, __u64 queue, __u32 n)
{
	struct burst b = {
		.arr = arr,
		.n = n > XCAP_MAX_BURST ? XCAP_MAX_BURST : n,
		.hook = (cookie & 0xffff) % XCAP_DPDK_MAX_HOOKS,
		.cpu = bpf_get_smp_processor_id(),
		.single = !!(cookie & XCAP_CK_SINGLE),
		.dir = (cookie >> 32) & 0xff,
	};

	if (queue) {
		struct xcap_dpdk_queue *q = bpf_map_lookup_elem(&queues, &queue);

		if (q) {
			b.port = q->port;
			b.queue = q->queue;
			b.known = 1;
		}
	}
	if (!b.n)
		return;
	if (!b.single) {
		/* One read for the whole array instead of one per mbuf. */
		struct scratch *s = bpf_map_lookup_elem(&scratch_map, &b.cpu);
		__u32 bytes = b.n * 8;

		if (!s)
			return;
		barrier_var(bytes);
		if (bytes > sizeof(s->ptrs) || bytes == 0)
			return;
		if (bpf_probe_read_user(s->ptrs, bytes, (void *)arr))
			return;
	}
	/* Counted per burst: one map update instead of one per packet. */
	count_n(b.hook, XCAP_CNT_SEEN, b.n);
	bpf_loop(XCAP_MAX_BURST, mbuf_cb, &b, 0);
}

SEC("uprobe")
int xcap_dpdk_entry(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 arr_arg = (cookie >> 16) & 0xf, cnt_arg = (cookie >> 20) & 0xf;
	__u32 q_arg = (cookie >> 24) & 0xf;
	__u64 queue = q_arg == XCAP_ARG_NONE ? 0 : arg(ctx, q_arg);
	__u64 arr = arg(ctx, arr_arg);

	if (cnt_arg == XCAP_ARG_RET) {
		/* The driver fills the array: read it when the function returns. */
		struct rx_call call = {
			.arr = arr,
			.queue = queue,
			.cookie = cookie,
		};
		__u64 tid = bpf_get_current_pid_tgid();

		bpf_map_update_elem(&calls, &tid, &call, BPF_ANY);
		return 0;
	}
	__u32 n = cookie & XCAP_CK_SINGLE ? 1 : (__u16)arg(ctx, cnt_arg);

	read_burst(cookie, arr, queue, n);
	return 0;
}

SEC("uretprobe")
int xcap_dpdk_return(struct pt_regs *ctx)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct rx_call *c = bpf_map_lookup_elem(&calls, &tid);

	if (!c)
		return 0;
	struct rx_call call = *c;

	bpf_map_delete_elem(&calls, &tid);
	/* Burst functions return uint16_t: only the low 16 bits are the count. */
	read_burst(call.cookie, call.arr, call.queue, (__u16)PT_REGS_RC(ctx));
	return 0;
}
