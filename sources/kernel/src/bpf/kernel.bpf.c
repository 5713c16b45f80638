// SPDX-License-Identifier: GPL-2.0-only
/*
 * xcap kernel source: skbs at tracepoints and kernel functions (fentry,
 * fexit, kprobe, kretprobe, kprobe-multi). These programs locate the packet
 * in the skb and its metadata; the capture runtime (xcap_runtime.h) filters,
 * copies and emits it.
 *
 * One object is loaded per hook (the attach target of a tp_btf or fentry
 * program is fixed at load time), or per wildcard; all share the first
 * object's ring buffer and tracking maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "xcap_event.h"
#include "kernel.h"
/* skbs are kernel memory: the filter may read them in place. */
#define XCAP_FILTER_IN_PLACE
#include "xcap_runtime.h"

/* The kernel source's configuration (kernel.h). */
#define cfg (xcap_cfg.src)

/*
 * --track: skbs whose packet matched the filter at some hook, so later hooks
 * capture them even when NAT or encapsulation changed the headers. Shared
 * by every hook's object; entries go when the skb is freed (kfree_skb and
 * consume_skb), and LRU bounds what a missed free leaves behind.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} tracked SEC(".maps");

/*
 * Packet ids across a reallocated data buffer (pskb_expand_head, e.g. to
 * unshare a cloned header before writing it, or to make headroom): buffer
 * address -> the packet's id. Every buffer captured at some hook has an
 * entry (its own address); a buffer it is reallocated into gets the same
 * id. Entries go when the buffer is freed (kfree_skb, consume_skb); LRU
 * bounds what a missed free leaves behind. Shared by every hook's object.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} ids SEC(".maps");

/* pskb_expand_head in progress, by thread: the skb and its old buffer. */
struct expanding {
	__u64 skb;
	__u64 head;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct expanding);
} expanding SEC(".maps");

/*
 * fexit/kretprobe hooks: packets captured at entry and not yet returned, by
 * thread. The return program only reports returns of captured calls.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} returns SEC(".maps");

/* Cached values of the kernel's direct-map bases (randomized by KASLR). */
__u64 vmemmap = 0;
__u64 page_offset = 0;

#define MAX_FRAGS 17
#define MAX_FRAG_LIST 8
#define ARPHRD_ETHER 1
#define ARPHRD_LOOPBACK 772

/* --pid and --comm: the task running when the hook fires. */
static __always_inline bool task_selected(void)
{
	if (cfg.pid && (bpf_get_current_pid_tgid() >> 32) != cfg.pid)
		return false;
	if (cfg.comm[0]) {
		char comm[16] __attribute__((aligned(8)));

		xcap_current_comm(comm);
		for (int i = 0; i < 16; i++) {
			if (comm[i] != cfg.comm[i])
				return false;
			if (!comm[i])
				break;
		}
	}
	return true;
}

/* Kernel virtual address of a struct page in the direct map (x86-64). */
static __always_inline __u64 page_addr(__u64 page)
{
	if (!vmemmap) {
		__u64 v = 0xffffea0000000000ULL, p = 0xffff888000000000ULL;

		if (cfg.vmemmap_base)
			bpf_probe_read_kernel(&v, sizeof(v), (void *)cfg.vmemmap_base);
		if (cfg.page_offset_base)
			bpf_probe_read_kernel(&p, sizeof(p), (void *)cfg.page_offset_base);
		vmemmap = v;
		page_offset = p;
	}
	if (page < vmemmap)
		return 0;
	return page_offset + (page - vmemmap) / bpf_core_type_size(struct page) * 4096;
}

struct frag {
	__u64 addr;
	__u32 len;
};

static __always_inline struct frag read_frag(void *f)
{
	struct frag r = {};
	__u64 page = 0;
	__u32 off = 0;

	/* Layout from userspace (cfg.frag); 0 when unknown: not followed. */
	if (!(cfg.frag >> 31))
		return r;
	bpf_probe_read_kernel(&page, sizeof(page), f + (cfg.frag & 0xff));
	if ((cfg.frag >> 24 & 1) && (page & 1)) /* net_iov (device memory): no readable page */
		return r;
	r.addr = page_addr(page);
	bpf_probe_read_kernel(&r.len, sizeof(r.len), f + (cfg.frag >> 8 & 0xff));
	bpf_probe_read_kernel(&off, sizeof(off), f + (cfg.frag >> 16 & 0xff));
	if (r.addr)
		r.addr += off;
	return r;
}

/* State of the copy of the paged part through bpf_loop(). */
struct frag_walk {
	__u64 frags;   /* address of frags[0] of the skb being copied */
	__u64 next;    /* next skb of the frag_list */
	__u32 fsize;   /* sizeof(skb_frag_t) */
	__u32 nr;      /* number of frags */
	__u32 off;     /* bytes copied so far */
	__u32 cap;     /* bytes wanted */
	__u32 cpu;
	__u32 trunc;   /* some data could not be read */
};

/* Copy frag i of the skb. */
static long frag_cb(__u64 i, void *data)
{
	struct frag_walk *w = data;
	struct xcap_scratch *s;
	struct frag f;
	__u32 want, got;

	if (i >= w->nr || w->off >= w->cap)
		return 1;
	s = bpf_map_lookup_elem(&scratch_map, &w->cpu);
	if (!s)
		return 1;
	f = read_frag((void *)(w->frags + i * w->fsize));
	if (!f.addr) {
		w->trunc = 1;
		return 1;
	}
	want = w->cap - w->off;
	if (want > f.len)
		want = f.len;
	got = xcap_copy(s->data, w->off, f.addr, want, false);
	w->off += got;
	if (got != want) {
		w->trunc = 1;
		return 1;
	}
	return 0;
}

/* Copy the linear head of the next frag_list skb (GRO lists). */
static long frag_list_cb(__u64 i, void *data)
{
	struct frag_walk *w = data;
	struct sk_buff *skb = (void *)w->next;
	struct xcap_scratch *s;
	__u32 want, got, len, data_len;

	if (!skb || w->off >= w->cap)
		return 1;
	s = bpf_map_lookup_elem(&scratch_map, &w->cpu);
	if (!s)
		return 1;
	len = BPF_CORE_READ(skb, len);
	data_len = BPF_CORE_READ(skb, data_len);
	want = w->cap - w->off;
	if (want > len - data_len)
		want = len - data_len;
	got = xcap_copy(s->data, w->off, (__u64)BPF_CORE_READ(skb, data), want, false);
	w->off += got;
	if (got != want || (data_len && w->off < w->cap)) {
		/* Paged data inside a frag_list member is not followed. */
		w->trunc = 1;
		return 1;
	}
	w->next = (__u64)BPF_CORE_READ(skb, next);
	return 0;
}

/*
 * The runtime's hook: copy the paged part (frags, then frag_list heads)
 * after what is copied. c->at: the skb and its head.
 */
static __always_inline void xcap_copy_rest(struct xcap_copy *c)
{
	struct sk_buff *skb = (void *)c->at[0];
	__u64 shinfo = c->at[1] + BPF_CORE_READ(skb, end);
	struct frag_walk w = {
		.fsize = bpf_core_type_size(skb_frag_t),
		.off = c->off,
		.cap = c->cap,
		.cpu = c->cpu,
	};
	__u8 nr = 0;

	bpf_probe_read_kernel(&nr, sizeof(nr),
			      (void *)(shinfo + bpf_core_field_offset(struct skb_shared_info, nr_frags)));
	w.nr = nr;
	w.frags = shinfo + bpf_core_field_offset(struct skb_shared_info, frags);
	bpf_loop(MAX_FRAGS, frag_cb, &w, 0);
	if (!w.trunc && w.off < w.cap) {
		w.next = (__u64)BPF_CORE_READ((struct skb_shared_info *)shinfo, frag_list);
		bpf_loop(MAX_FRAG_LIST, frag_list_cb, &w, 0);
	}
	c->off = w.off;
	c->trunc = w.trunc || w.off < w.cap;
}

#define AF_INET 2
#define AF_INET6 10

/*
 * Headers not yet built: on the way out of a socket, before IP has written
 * its header (__ip_queue_xmit, ip6_xmit), the skb starts at the transport
 * header. Write the IPv4 or IPv6 header it will get, from the socket, into
 * s->data; the rest is the packet's own. Returns its length, 0 when the
 * socket is not IPv4/IPv6 or there is no transport header yet (the skb
 * then holds only payload: nothing honest to show in front of it).
 */
static __always_inline __u32 synth_headers(struct xcap_scratch *s, struct sock *sk, __u32 len)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u8 proto = BPF_CORE_READ(sk, sk_protocol);
	__u8 *d = s->data;

	__builtin_memset(d, 0, 40);
	if (family == AF_INET) {
		__u32 tot = len + 20;

		d[0] = 0x45;
		d[2] = tot >> 8;
		d[3] = tot;
		d[6] = 0x40; /* DF */
		d[8] = 64;
		d[9] = proto;
		*(__u32 *)&d[12] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)&d[16] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		return 20;
	}
	if (family == AF_INET6) {
		d[0] = 0x60;
		d[4] = len >> 8;
		d[5] = len;
		d[6] = proto;
		d[7] = 64;
		BPF_CORE_READ_INTO(&d[8], sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&d[24], sk, __sk_common.skc_v6_daddr);
		return 40;
	}
	return 0;
}

/*
 * A field of the skb: a direct load when skb is a BTF pointer (tp_btf and
 * fentry arguments are typed), which costs a fraction of a
 * bpf_probe_read_kernel() call; the helper when it is a plain address
 * (kprobe arguments). `btf` is a constant: the other branch is dropped.
 */
#define SKB(skb, f, btf) ((btf) ? (skb)->f : BPF_CORE_READ((skb), f))

static __always_inline int capture(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason,
				   bool drop, const bool btf, __u32 hook, __u8 dir)
{
	struct net_device *dev = SKB(skb, dev, btf);
	__u32 ifindex = 0, netns = 0;
	__u16 type = 0;
	__u64 ifname = 0; /* address of the device name, when not btf_dev's */
	struct net_device *btf_dev = NULL; /* dev, when its name can be loaded directly */
	struct xcap_scratch *s;
	struct xcap_copy c = {};

	if (dev && !btf) {
		ifindex = BPF_CORE_READ(dev, ifindex);
		netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
		type = BPF_CORE_READ(dev, type);
		ifname = (__u64)dev + bpf_core_field_offset(struct net_device, name);
	} else if (dev) {
		struct net *net = dev->nd_net.net; /* __rcu: must be checked */

		barrier_var(net);
		ifindex = dev->ifindex;
		netns = net ? net->ns.inum : 0;
		type = dev->type;
		btf_dev = dev;
	} else {
		/*
		 * Locally generated packets have no device before routing output
		 * (an OUTPUT-chain drop, say): use the route's device, where the
		 * packet was going; failing that, the socket's namespace.
		 */
		struct dst_entry *dst = (void *)(SKB(skb, _skb_refdst, btf) & ~1UL);
		struct net_device *d = dst ? BPF_CORE_READ(dst, dev) : NULL;

		if (d) {
			ifindex = BPF_CORE_READ(d, ifindex);
			netns = BPF_CORE_READ(d, nd_net.net, ns.inum);
			type = BPF_CORE_READ(d, type);
			ifname = (__u64)d + bpf_core_field_offset(struct net_device, name);
		} else if (!btf) {
			struct sock *sk = BPF_CORE_READ(skb, sk);

			if (sk)
				netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		} else {
			struct sock *sk = skb->sk;

			/* Keep the checked load: the verifier tracks that register. */
			barrier_var(sk);
			if (sk) {
				struct net *net = sk->__sk_common.skc_net.net;

				barrier_var(net);
				netns = net ? net->ns.inum : 0;
			}
		}
	}
	if (!xcap_iface_selected(cfg.nr_ifaces, cfg.ifindex, cfg.netns, ifindex, netns))
		return 0;
	if (!task_selected())
		return 0;
	xcap_count(hook, XCAP_CNT_SEEN, 1);

	s = xcap_scratch(&c.cpu);
	if (!s)
		return 0;

	unsigned char *head = SKB(skb, head, btf);
	unsigned char *data = SKB(skb, data, btf);
	__u16 mac = SKB(skb, mac_header, btf);
	__u16 nh = SKB(skb, network_header, btf);
	__u32 len = SKB(skb, len, btf);
	__u32 data_len = SKB(skb, data_len, btf);
	unsigned char *start;
	__u32 hlen = 0; /* bytes of synthesized headers in front */

	/*
	 * No network header yet (its offset is still 0, as allocated) and no
	 * MAC header: a packet on its way out of a socket before IP wrote its
	 * header. Show it with the headers derived from the socket.
	 */
	s->src.synth_len = 0;
	s->src.synth_flags = 0;
	if (nh == 0 && mac == (__u16)~0U && data == head + SKB(skb, transport_header, btf)) {
		struct sock *sk = BPF_CORE_READ(skb, sk);

		if (sk) {
			s->src.synth_len = synth_headers(s, sk, len);
			if (s->src.synth_len)
				s->src.synth_flags = XCAP_F_SYNTH_L3;
		}
	}
	hlen = *(volatile __u32 *)&s->src.synth_len;
	/*
	 * Start at the MAC header when the skb has a real one; otherwise at the
	 * network header, as raw IP. Never invent a link-layer header. A
	 * network header at offset 0 was never set: an skb built whole by its
	 * sender (AF_XDP copy-mode TX, packet sockets) that eth_type_trans gave
	 * a MAC header, seen before __netif_receive_skb_core sets the rest.
	 */
	if (hlen) {
		start = data;
		c.raw = 1;
	} else if (mac != (__u16)~0U && nh != (__u16)~0U && (nh > mac || nh == 0) &&
		   (type == ARPHRD_ETHER || type == ARPHRD_LOOPBACK)) {
		start = head + mac;
	} else {
		start = nh != (__u16)~0U && nh != 0 ? head + nh : data;
		c.raw = 1;
	}

	/* Bytes of the packet from `start`: linear part first, then pages. */
	__s64 before = data - start; /* > 0 when start precedes skb->data */
	__s64 total = (__s64)len + before;
	__s64 linear = (__s64)(len - data_len) + before;

	if (total < 0 || linear < 0 || total > 0x7fffffff) {
		total = 0;
		linear = 0;
	}
	hlen &= 63;
	total += hlen;
	linear += hlen;
	c.total = total;
	c.cap = total < xcap_cfg.rt.snaplen ? total : xcap_cfg.rt.snaplen;
	c.at[0] = (__u64)skb;
	c.at[1] = (__u64)head;
	__u32 lin = linear < c.cap ? linear : c.cap;

	/* --track: a packet that matched at an earlier hook is kept. */
	__u64 key = (__u64)skb;
	bool kept = cfg.track && bpf_map_lookup_elem(&tracked, &key);

	/* The packet where it lies (not with headers made up in front). */
	if (!hlen && !xcap_filter_in_place(&c, (__u64)start, lin) && !kept)
		return 0;
	c.off = hlen < lin ? hlen + xcap_copy(s->data, hlen, (__u64)start, lin - hlen, false) : hlen;
	c.trunc = c.off != lin;

	if (!xcap_filter_copy(s, &c, hook, kept)) {
		if (!kept)
			return 0;
	} else if (cfg.track && !cfg.untrack) {
		__u8 one = 1;

		bpf_map_update_elem(&tracked, &key, &one, BPF_ANY);
	}

	/*
	 * The packet id: the skb's data buffer. Clones share it and header
	 * pushes and pulls keep it, so one packet keeps one id from hook to
	 * hook (the skb address changes with every clone). A reallocated
	 * buffer (pskb_expand_head) keeps the id through the ids map.
	 */
	__u64 pkt = (__u64)head;

	if (cfg.follow) {
		__u64 *known = bpf_map_lookup_elem(&ids, &pkt);

		if (known)
			pkt = *known;
		else
			bpf_map_update_elem(&ids, &pkt, &pkt, BPF_NOEXIST);
	}
	struct xcap_event *ev = xcap_event_of(s);

	ev->skb = pkt;
	ev->location = location;
	ev->ifindex = ifindex;
	ev->netns = netns;
	ev->drop_reason = reason;
	ev->dir = dir;
	ev->flags = (drop ? XCAP_F_DROP : 0) | *(volatile __u32 *)&s->src.synth_flags;
	ev->queue = XCAP_NO_QUEUE;
	if (btf_dev) {
		/* Two loads instead of a string helper call; Rust reads up to the NUL. */
		((__u64 *)ev->ifname)[0] = *(__u64 *)&btf_dev->name[0];
		((__u64 *)ev->ifname)[1] = *(__u64 *)&btf_dev->name[8];
	} else {
		__builtin_memset(ev->ifname, 0, sizeof(ev->ifname));
		if (ifname)
			bpf_probe_read_kernel_str(ev->ifname, sizeof(ev->ifname), (void *)ifname);
	}

	if (xcap_emit(ctx, s, &c, hook) && cfg.ret) {
		/* Await this call's return (fexit/kretprobe). */
		__u64 id = bpf_get_current_pid_tgid();
		__u32 one = 1, *n = bpf_map_lookup_elem(&returns, &id);

		if (n)
			*n += 1;
		else
			bpf_map_update_elem(&returns, &id, &one, BPF_ANY);
	}
	return 0;
}

/* A function with a captured call returned: report its return value. */
static __always_inline int returned(__u64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 *n = bpf_map_lookup_elem(&returns, &id);
	struct xcap_event ev = {};

	if (!n || !*n)
		return 0;
	if (--*n == 0)
		bpf_map_delete_elem(&returns, &id);
	ev.ts_ns = bpf_ktime_get_ns();
	ev.location = ret;
	ev.hook = xcap_cfg.rt.hook_base;
	ev.pid = id >> 32;
	ev.tid = (__u32)id;
	ev.cpu = bpf_get_smp_processor_id();
	ev.dir = cfg.dir;
	ev.flags = XCAP_F_RET;
	ev.queue = XCAP_NO_QUEUE;
	xcap_emit_bare(&ev, ev.hook);
	return 0;
}

/* fexit: paired with an fentry capture program in the same object. */
SEC("fexit/netif_receive_skb")
int xcap_fexit(__u64 *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return returned(ret);
}

/* kretprobe: paired with a kprobe capture program in the same object. */
SEC("kretprobe/netif_receive_skb")
int xcap_kretprobe(struct pt_regs *ctx)
{
	return returned(PT_REGS_RC(ctx));
}

/*
 * An skb is freed: forget it (--track) and, when this was the last
 * reference to its buffer, the buffer's id, so addresses reused by later
 * packets look neither tracked nor related.
 */
static __always_inline void forget(struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	unsigned char *head = BPF_CORE_READ(skb, head);
	struct skb_shared_info *sh = (void *)(head + BPF_CORE_READ(skb, end));
	int dataref = BPF_CORE_READ(sh, dataref.counter);

	bpf_map_delete_elem(&tracked, &key);
	if ((dataref & 0xffff) <= 1) { /* SKB_DATAREF_MASK */
		key = (__u64)head;
		bpf_map_delete_elem(&ids, &key);
	}
}

/* After capturing at a hook that frees the skb. */
static __always_inline int untrack(__u64 skb)
{
	if ((cfg.track || cfg.follow) && cfg.untrack)
		forget((struct sk_buff *)skb);
	return 0;
}

/* Where no capture program runs at the free tracepoints: only forget. */
SEC("tp_btf/kfree_skb")
int xcap_untrack_kfree(__u64 *ctx)
{
	forget((struct sk_buff *)ctx[0]);
	return 0;
}

SEC("tp_btf/consume_skb")
int xcap_untrack_consume(__u64 *ctx)
{
	forget((struct sk_buff *)ctx[0]);
	return 0;
}

/*
 * pskb_expand_head(skb, ...) moves the packet to a new buffer: at entry,
 * note the old one; at return, give the new one the old one's id, if the
 * old one was captured.
 */
static __always_inline void expand_entry(struct sk_buff *skb)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct expanding e = {
		.skb = (__u64)skb,
		.head = (__u64)BPF_CORE_READ(skb, head),
	};

	bpf_map_update_elem(&expanding, &tid, &e, BPF_ANY);
}

static __always_inline void expand_return(void)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct expanding *e = bpf_map_lookup_elem(&expanding, &tid);
	struct sk_buff *skb;
	__u64 old, now, *id, keep;

	if (!e)
		return;
	skb = (struct sk_buff *)e->skb;
	old = e->head;
	bpf_map_delete_elem(&expanding, &tid);
	now = (__u64)BPF_CORE_READ(skb, head);
	if (now == old)
		return;
	id = bpf_map_lookup_elem(&ids, &old);
	if (!id)
		return;
	keep = *id;
	bpf_map_update_elem(&ids, &now, &keep, BPF_ANY);
}

SEC("fentry/pskb_expand_head")
int xcap_expand_fentry(__u64 *ctx)
{
	expand_entry((struct sk_buff *)ctx[0]);
	return 0;
}

SEC("fexit/pskb_expand_head")
int xcap_expand_fexit(__u64 *ctx)
{
	expand_return();
	return 0;
}

SEC("kprobe/pskb_expand_head")
int xcap_expand_kprobe(struct pt_regs *ctx)
{
	expand_entry((struct sk_buff *)PT_REGS_PARM1(ctx));
	return 0;
}

SEC("kretprobe/pskb_expand_head")
int xcap_expand_kretprobe(struct pt_regs *ctx)
{
	expand_return();
	return 0;
}

/* Generic tracepoint hooks: the skb is argument N of the tracepoint. */
#define TP_ARG(n)                                                                \
	SEC("tp_btf/netif_receive_skb")                                          \
	int xcap_tp_arg##n(__u64 *ctx)                                           \
	{                                                                        \
		capture(ctx, (struct sk_buff *)ctx[n], 0, 0, false, true, xcap_cfg.rt.hook_base, cfg.dir); \
		return untrack(ctx[n]);                                          \
	}
TP_ARG(0)
TP_ARG(1)
TP_ARG(2)
TP_ARG(3)
TP_ARG(4)
TP_ARG(5)

/* tp:skb:kfree_skb: the skb, where it was freed, and why. */
SEC("tp_btf/kfree_skb")
int xcap_kfree_skb(__u64 *ctx)
{
	capture(ctx, (struct sk_buff *)ctx[0], ctx[1], (__u32)ctx[2], true, true, xcap_cfg.rt.hook_base,
		cfg.dir);
	return untrack(ctx[0]);
}

/*
 * Function hooks (fentry): the skb is argument N of the function. The
 * attach target is set at load time; the default only makes the ELF valid.
 */
#define FENTRY_ARG(n)                                                            \
	SEC("fentry/netif_receive_skb")                                          \
	int xcap_fentry_arg##n(__u64 *ctx)                                       \
	{                                                                        \
		return capture(ctx, (struct sk_buff *)ctx[n], 0, 0, false, true, xcap_cfg.rt.hook_base, cfg.dir); \
	}
FENTRY_ARG(0)
FENTRY_ARG(1)
FENTRY_ARG(2)
FENTRY_ARG(3)
FENTRY_ARG(4)
FENTRY_ARG(5)

/* Function hooks (kprobe), where fentry is refused: the skb is register N. */
#define KPROBE_ARG(n, parm)                                                      \
	SEC("kprobe/netif_receive_skb")                                          \
	int xcap_kprobe_arg##n(struct pt_regs *ctx)                              \
	{                                                                        \
		return capture(ctx, (struct sk_buff *)parm(ctx), 0, 0, false, false, xcap_cfg.rt.hook_base, cfg.dir); \
	}
KPROBE_ARG(0, PT_REGS_PARM1)
KPROBE_ARG(1, PT_REGS_PARM2)
KPROBE_ARG(2, PT_REGS_PARM3)
KPROBE_ARG(3, PT_REGS_PARM4)
KPROBE_ARG(4, PT_REGS_PARM5)

/*
 * Many functions, one program: wildcards attach this with kprobe-multi (or
 * kprobe by kprobe where the kernel has no multi-attach), one verification
 * for every function. The attach cookie names the function's hook index
 * (bits 0-31), its skb argument (32-39) and direction (40-47).
 */
static __always_inline int capture_cookie(struct pt_regs *ctx)
{
	__u64 ck = bpf_get_attach_cookie(ctx);
	__u32 n = (ck >> 32) & 0xff;
	__u64 a0 = PT_REGS_PARM1(ctx), a1 = PT_REGS_PARM2(ctx), a2 = PT_REGS_PARM3(ctx);
	__u64 a3 = PT_REGS_PARM4(ctx), a4 = PT_REGS_PARM5(ctx);

	/* The verifier wants constant context offsets: load all, then pick. */
	barrier_var(a0);
	barrier_var(a1);
	barrier_var(a2);
	barrier_var(a3);
	barrier_var(a4);
	__u64 skb = n == 0 ? a0 : n == 1 ? a1 : n == 2 ? a2 : n == 3 ? a3 : a4;

	return capture(ctx, (struct sk_buff *)skb, 0, 0, false, false, (__u32)ck, (ck >> 40) & 0xff);
}

SEC("kprobe.multi")
int xcap_kprobe_multi(struct pt_regs *ctx)
{
	return capture_cookie(ctx);
}

SEC("kprobe/netif_receive_skb")
int xcap_kprobe_each(struct pt_regs *ctx)
{
	return capture_cookie(ctx);
}
