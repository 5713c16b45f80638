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
/* bpftime may run these programs in userspace, where there is no task. */
#define XCAP_COMM_BY_HELPER
#include "xcap_runtime.h"

/* The DPDK source's configuration (dpdk.h). */
#define cfg (xcap_cfg.src)

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

/* rte_mbuf fields of the first cache line, from the copy in s->src.mbuf. */
#define MB64(s, off) (*(__u64 *)&(s)->src.mbuf[(off) & (XCAP_MBUF_LINE - 8)])
#define MB32(s, off) (*(__u32 *)&(s)->src.mbuf[(off) & (XCAP_MBUF_LINE - 4)])
#define MB16(s, off) (*(__u16 *)&(s)->src.mbuf[(off) & (XCAP_MBUF_LINE - 2)])

struct seg {
	__u64 addr;
	__u64 next;
	__u32 len;
};

/*
 * Read the mbuf at `m` into s->src.mbuf; its data address, length and next.
 * Only the first cache line is read (every field but `next` is there);
 * `next` sits in the second, which a driver often has not touched: reading
 * it costs a cache miss, so it is read only for chained mbufs.
 */
static __always_inline int read_mbuf(struct xcap_scratch *s, __u64 m, struct seg *g, bool chained)
{
	if (bpf_probe_read_user(s->src.mbuf, XCAP_MBUF_LINE, (void *)m))
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
	struct xcap_scratch *s;
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
	got = xcap_copy(s->data, c->off, g.addr, want, true);
	c->off += got;
	if (got != want) {
		c->trunc = 1;
		return 1;
	}
	c->next = g.next;
	return 0;
}

/* The runtime's hook: copy the next segments. c->at[0]: the next mbuf. */
static __always_inline void xcap_copy_rest(struct xcap_copy *c)
{
	struct chain ch = { .next = c->at[0], .off = c->off, .cap = c->cap, .cpu = c->cpu };

	bpf_loop(XCAP_MAX_SEGS, seg_cb, &ch, 0);
	c->off = ch.off;
	c->trunc = ch.trunc;
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

/*
 * Capture the mbuf at `m`. A global function: the verifier checks it once,
 * not once per state of the burst loop around it (with the chain loop
 * inside, that multiplied past the verifier's limit). `pq`: port (bits
 * 0-15) and queue (16-31), `how`: bit 0 port/queue are known, bits 8-15
 * the direction.
 */
__attribute__((noinline)) int xcap_dpdk_mbuf(__u64 m, __u32 hook, __u32 pq, __u32 how)
{
	struct xcap_scratch *s;
	struct xcap_copy c = {};
	struct seg g;

	s = xcap_scratch(&c.cpu);
	if (!s || !m || read_mbuf(s, m, &g, false))
		return 0;

	__u16 nsegs = MB16(s, cfg.off_nb_segs);
	bool known = how & 1;

	c.total = MB32(s, cfg.off_pkt_len);
	c.cap = c.total < xcap_cfg.rt.snaplen ? c.total : xcap_cfg.rt.snaplen;
	c.at[0] = g.next;
	__u32 first = g.len < c.cap ? g.len : c.cap;

	c.off = xcap_copy(s->data, 0, g.addr, first, true);
	c.trunc = c.off != first;
	if (!xcap_filter_copy(s, &c, hook, false))
		return 0;

	struct xcap_event *ev = xcap_event_of(s);

	ev->skb = m;
	ev->location = nsegs; /* no drop location here: the segment count */
	ev->ifindex = known ? (pq & 0xffff) : MB16(s, cfg.off_port);
	ev->netns = 0;
	ev->drop_reason = 0;
	ev->dir = how >> 8;
	ev->flags = 0;
	ev->queue = known ? pq >> 16 : XCAP_NO_QUEUE;
	ev->ifname[0] = 0;
	/* No stack for uprobes into an application: no context needed. */
	xcap_emit(NULL, s, &c, hook);
	return 0;
}

static long mbuf_cb(__u64 i, void *data)
{
	struct burst *b = data;
	__u64 m = b->arr;

	if (i >= b->n)
		return 1;
	if (!b->single) {
		struct xcap_scratch *s = bpf_map_lookup_elem(&scratch_map, &b->cpu);

		if (!s)
			return 1;
		m = s->src.ptrs[i & (XCAP_MAX_BURST - 1)];
	}
	xcap_dpdk_mbuf(m, b->hook, b->port | (__u32)b->queue << 16, b->known | (__u32)b->dir << 8);
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
		struct xcap_scratch *s = bpf_map_lookup_elem(&scratch_map, &b.cpu);
		__u32 bytes = b.n * 8;

		if (!s)
			return;
		/* One test on the register passed (b.n is not 0): clang turns a
		 * range test into one on a copy, which kernels before 6.13 do not
		 * carry over. */
		barrier_var(bytes);
		if (bytes > sizeof(s->src.ptrs))
			return;
		if (bpf_probe_read_user(s->src.ptrs, bytes, (void *)arr))
			return;
	}
	/* Counted per burst: one map update instead of one per packet. */
	xcap_count(b.hook, XCAP_CNT_SEEN, b.n);
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
