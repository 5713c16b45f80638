// SPDX-License-Identifier: GPL-2.0-only
/*
 * xcap AF_XDP source: the packets the kernel delivers to AF_XDP sockets.
 *
 * RX: the xdp_redirect tracepoint with an XSKMAP target and no error fires right
 * after the kernel wrote the packet's descriptor to the socket's RX ring,
 * at cached_prod - 1 (the application sees it only at the flush that ends
 * the NAPI poll, so nobody can have consumed it yet). The bytes are in the
 * UMEM at the descriptor's address, which the kernel maps at pool->addrs.
 * This holds for copy and zero-copy mode, native and generic XDP. A
 * multi-buffer packet's earlier descriptors precede it on the ring, marked
 * XDP_PKT_CONTD.
 *
 * RX drops: xdp_redirect_err with an XSKMAP target: the packet never
 * reached the ring (RX ring full, fill ring empty, wrong queue, socket not
 * bound, frame too large). The tracepoint gives no packet, so drops are
 * counted per socket and error, not captured.
 *
 * Both run in the context of whoever delivered the packet (softirq, or the
 * sender), so the socket's inode is recorded and the owning process found
 * in userspace, as `ss -p` does.
 *
 * TX (copy mode): sock:sock_send_length (6.3+) fires as a send on the
 * socket returns. The kernel consumed the TX ring's descriptors up to
 * cached_cons; xcap captures those from where it stopped the last time
 * (tx_seen), so descriptors a poll() sent are caught up at the next send.
 * Sockets that exist when xcap starts are seeded by a task_file iterator;
 * one not seeded is new, and its ring starts at 0. This runs in the
 * sending thread, whose pid and comm are the application's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "xcap_event.h"
#include "afxdp.h"
#include "xcap_runtime.h"

#define cfg (xcap_cfg.src)

/* include/uapi/linux/if_xdp.h (macros are not in BTF). */
#define XCAP_XDP_PKT_CONTD (1 << 0)
#define XCAP_XSK_UNALIGNED_SHIFT 48

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct xcap_xsk_drop_key);
	__type(value, __u64);
} drops SEC(".maps");

/* Per socket (struct xdp_sock address): TX descriptors captured so far. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} tx_seen SEC(".maps");

#define XCAP_AF_XDP 44

/* Offset in the UMEM of a descriptor's address: in unaligned mode the top
 * 16 bits hold an offset to add (as libxdp's xsk_umem__add_offset_to_addr);
 * in aligned mode they are 0. */
static __always_inline __u64 umem_off(__u64 addr)
{
	return (addr & ((1ULL << XCAP_XSK_UNALIGNED_SHIFT) - 1)) +
	       (addr >> XCAP_XSK_UNALIGNED_SHIFT);
}

static __always_inline int read_desc(__u64 descs, __u32 mask, __u32 idx, struct xdp_desc *d)
{
	return bpf_probe_read_kernel(d, sizeof(*d),
				     (void *)(descs + (__u64)(idx & mask) * sizeof(*d)));
}

/* The socket's inode number, as /proc/PID/fd shows it ("socket:[N]"). */
static __always_inline __u32 sock_ino(struct xdp_sock *xs)
{
	/* struct socket is the first member of struct socket_alloc. */
	struct socket_alloc *a = (void *)BPF_CORE_READ(xs, sk.sk_socket);

	return a ? BPF_CORE_READ(a, vfs_inode.i_ino) : 0;
}

/* Walking back from a packet's last descriptor to its first (bpf_loop). */
struct walk {
	__u64 descs;
	__u32 mask;
	__u32 idx;   /* the earliest descriptor of the packet found so far */
	__u32 nr;
	__u32 total; /* bytes in them */
};

static long back_cb(__u64 i, void *data)
{
	struct walk *w = data;
	struct xdp_desc d;

	if (read_desc(w->descs, w->mask, w->idx - 1, &d) || !(d.options & XCAP_XDP_PKT_CONTD))
		return 1;
	w->idx--;
	w->nr++;
	w->total += d.len;
	return 0;
}

/* Copying the descriptors after the first (bpf_loop). */
struct frags {
	__u64 descs;
	__u64 addrs;
	__u32 mask;
	__u32 idx;   /* next descriptor */
	__u32 left;  /* descriptors left */
	__u32 off;   /* bytes copied so far */
	__u32 cap;
	__u32 cpu;
	__u32 trunc;
};

static long frag_cb(__u64 i, void *data)
{
	struct frags *f = data;
	struct xcap_scratch *s;
	struct xdp_desc d;
	__u32 want, got;

	if (!f->left || f->off >= f->cap)
		return 1;
	s = bpf_map_lookup_elem(&scratch_map, &f->cpu);
	if (!s || read_desc(f->descs, f->mask, f->idx, &d)) {
		f->trunc = 1;
		return 1;
	}
	want = f->cap - f->off;
	if (want > d.len)
		want = d.len;
	got = xcap_copy(s->data, f->off, f->addrs + umem_off(d.addr), want, false);
	f->off += got;
	if (got != want) {
		f->trunc = 1;
		return 1;
	}
	f->idx++;
	f->left--;
	return 0;
}

/* The runtime's hook: copy the packet's next descriptors. */
static __always_inline void xcap_copy_rest(struct xcap_copy *c)
{
	struct xcap_scratch *s = bpf_map_lookup_elem(&scratch_map, &c->cpu);
	struct frags f = { .off = c->off, .cap = c->cap, .cpu = c->cpu };

	if (!s)
		return;
	f.descs = s->src.descs;
	f.addrs = s->src.addrs;
	f.mask = s->src.mask;
	f.idx = s->src.first + 1;
	f.left = s->src.nr - 1;
	bpf_loop(XCAP_XSK_MAX_FRAGS, frag_cb, &f, 0);
	c->off = f.off;
	c->trunc = f.trunc;
}

/*
 * raw_tp, not tp_btf: the target argument is a `const void *`, which the
 * verifier of 6.1 and 6.12 refuses to read from a tp_btf context ("arg2
 * type UNKNOWN is not a struct"). Every pointer is read with CO-RE.
 */
SEC("raw_tp/xdp_redirect")
int BPF_PROG(xcap_xsk_rx, const struct net_device *dev, const struct bpf_prog *xdp,
	     const void *tgt, int err, enum bpf_map_type type, __u32 map_id, __u32 index)
{
	struct xdp_sock *xs = (void *)tgt;
	struct xcap_scratch *s;
	struct xcap_copy c = {};
	struct xsk_queue *rx;
	struct xdp_desc d;
	__u32 ifindex, netns, first;
	bool sg = false;

	if (type != BPF_MAP_TYPE_XSKMAP || err || !xs)
		return 0;
	ifindex = BPF_CORE_READ(dev, ifindex);
	netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if (!xcap_iface_selected(cfg.nr_ifaces, cfg.ifindex, cfg.netns, ifindex, netns))
		return 0;
	xcap_count(XCAP_XSK_HOOK_RX, XCAP_CNT_SEEN, 1);
	s = xcap_scratch(&c.cpu);
	rx = BPF_CORE_READ(xs, rx);
	if (!s || !rx)
		return 0;

	struct walk w = {
		.descs = (__u64)BPF_CORE_READ(rx, ring) +
			 bpf_core_field_offset(struct xdp_rxtx_ring, desc),
		.mask = BPF_CORE_READ(rx, ring_mask),
		.idx = BPF_CORE_READ(rx, cached_prod) - 1,
		.nr = 1,
	};
	__u64 addrs = (__u64)BPF_CORE_READ(xs, pool, addrs);

	if (read_desc(w.descs, w.mask, w.idx, &d))
		return 0;
	w.total = d.len;
	/* Multi-buffer sockets (6.6 and later) only: one more read per packet. */
	if (bpf_core_field_exists(xs->sg))
		sg = BPF_CORE_READ(xs, sg);
	if (sg) {
		bpf_loop(XCAP_XSK_MAX_FRAGS - 1, back_cb, &w, 0);
		if (w.nr > 1 && read_desc(w.descs, w.mask, w.idx, &d))
			return 0;
	}
	s->src.descs = w.descs;
	s->src.addrs = addrs;
	s->src.mask = w.mask;
	s->src.first = w.idx;
	s->src.nr = w.nr;

	c.total = w.total;
	c.cap = c.total < xcap_cfg.rt.snaplen ? c.total : xcap_cfg.rt.snaplen;
	first = d.len < c.cap ? d.len : c.cap;
	c.off = xcap_copy(s->data, 0, addrs + umem_off(d.addr), first, false);
	c.trunc = c.off != first;
	if (!xcap_filter_copy(s, &c, XCAP_XSK_HOOK_RX, false))
		return 0;

	struct xcap_event *ev = xcap_event_of(s);

	/* The packet's kernel address in the UMEM: unique while it is there. */
	ev->skb = addrs + umem_off(d.addr);
	/* No drop location here: the socket and the XDP program. */
	ev->location = sock_ino(xs) | (__u64)BPF_CORE_READ(xdp, aux, id) << 32;
	ev->ifindex = ifindex;
	ev->netns = netns;
	ev->drop_reason = 0;
	ev->dir = XCAP_DIR_IN;
	ev->flags = BPF_CORE_READ(xs, zc) ? XCAP_F_XSK_ZC : 0;
	ev->queue = BPF_CORE_READ(xs, queue_id);
	BPF_CORE_READ_STR_INTO(&ev->ifname, dev, name);
	xcap_emit(ctx, s, &c, XCAP_XSK_HOOK_RX);
	return 0;
}

/* One TX packet: `nr` descriptors from ring index `first`, `total` bytes
 * (s->src holds the ring and the socket's metadata). A global function:
 * verified once, not per state of the loop over the send's descriptors. */
__attribute__((noinline)) int xcap_xsk_tx_pkt(__u32 cpu, __u32 first, __u32 nr, __u32 total)
{
	__u32 key = cpu;
	struct xcap_scratch *s = bpf_map_lookup_elem(&scratch_map, &key);
	struct xcap_copy c = { .cpu = cpu };
	struct xdp_desc d;
	__u32 len;

	if (!s || read_desc(s->src.descs, s->src.mask, first, &d))
		return 0;
	s->src.first = first;
	s->src.nr = nr;
	c.total = total;
	c.cap = c.total < xcap_cfg.rt.snaplen ? c.total : xcap_cfg.rt.snaplen;
	len = d.len < c.cap ? d.len : c.cap;
	c.off = xcap_copy(s->data, 0, s->src.addrs + umem_off(d.addr), len, false);
	c.trunc = c.off != len;
	if (!xcap_filter_copy(s, &c, XCAP_XSK_HOOK_TX, false))
		return 0;

	struct xcap_event *ev = xcap_event_of(s);

	ev->skb = s->src.addrs + umem_off(d.addr);
	ev->location = s->src.tx_location;
	ev->ifindex = s->src.tx_ifindex;
	ev->netns = s->src.tx_netns;
	ev->drop_reason = 0;
	ev->dir = XCAP_DIR_OUT;
	ev->flags = s->src.tx_flags;
	ev->queue = s->src.tx_queue;
	__builtin_memcpy(ev->ifname, s->src.tx_ifname, sizeof(ev->ifname));
	/* No stack: stacks are the kernel source's option. */
	xcap_emit(NULL, s, &c, XCAP_XSK_HOOK_TX);
	return 0;
}

/* Going through a send's descriptors (bpf_loop). */
struct send {
	__u64 descs;
	__u32 mask;
	__u32 idx;   /* next descriptor */
	__u32 end;   /* one past the last */
	__u32 first; /* the packet being gathered: its first descriptor */
	__u32 nr;
	__u32 total;
	__u32 cpu;
};

static long tx_cb(__u64 i, void *data)
{
	struct send *t = data;
	struct xdp_desc d;

	if (t->idx == t->end || read_desc(t->descs, t->mask, t->idx, &d))
		return 1;
	if (!t->nr)
		t->first = t->idx;
	t->nr++;
	t->total += d.len;
	t->idx++;
	/* A multi-buffer packet goes on in the next descriptor. */
	if ((d.options & XCAP_XDP_PKT_CONTD) && t->nr < XCAP_XSK_MAX_FRAGS)
		return 0;
	xcap_xsk_tx_pkt(t->cpu, t->first, t->nr, t->total);
	t->nr = 0;
	t->total = 0;
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(xcap_xsk_tx, struct sock *sk, int ret, int flags)
{
	struct xdp_sock *xs = (void *)sk;
	struct xcap_scratch *s;
	struct xsk_queue *tx;
	struct net_device *dev;
	__u32 cpu, cons, from = 0, n, size, *seen;
	__u64 key = (__u64)sk;

	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != XCAP_AF_XDP)
		return 0;
	tx = BPF_CORE_READ(xs, tx);
	if (!tx)
		return 0;
	cons = BPF_CORE_READ(tx, cached_cons);
	seen = bpf_map_lookup_elem(&tx_seen, &key);
	if (seen)
		from = *seen;
	if (cons == from)
		return 0;
	bpf_map_update_elem(&tx_seen, &key, &cons, BPF_ANY);

	dev = BPF_CORE_READ(xs, dev);
	__u32 ifindex = BPF_CORE_READ(dev, ifindex);
	__u32 netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);

	if (!xcap_iface_selected(cfg.nr_ifaces, cfg.ifindex, cfg.netns, ifindex, netns))
		return 0;
	n = cons - from;
	size = BPF_CORE_READ(tx, nentries);
	if (n > size) {
		/* A socket at the address of a closed one, starting over; or
		 * more sent than the ring holds since the last look: the
		 * oldest descriptors are overwritten, counted lost. */
		if (cons <= size) {
			from = 0;
		} else {
			xcap_count(XCAP_XSK_HOOK_TX, XCAP_CNT_LOST, n - size);
			from = cons - size;
		}
		n = cons - from;
	}
	if (n > XCAP_XSK_MAX_TX) {
		xcap_count(XCAP_XSK_HOOK_TX, XCAP_CNT_LOST, n - XCAP_XSK_MAX_TX);
		from = cons - XCAP_XSK_MAX_TX;
		n = XCAP_XSK_MAX_TX;
	}
	xcap_count(XCAP_XSK_HOOK_TX, XCAP_CNT_SEEN, n);
	s = xcap_scratch(&cpu);
	if (!s)
		return 0;

	struct send t = {
		.descs = (__u64)BPF_CORE_READ(tx, ring) +
			 bpf_core_field_offset(struct xdp_rxtx_ring, desc),
		.mask = BPF_CORE_READ(tx, ring_mask),
		.idx = from,
		.end = cons,
		.cpu = cpu,
	};

	s->src.descs = t.descs;
	s->src.addrs = (__u64)BPF_CORE_READ(xs, pool, addrs);
	s->src.mask = t.mask;
	s->src.tx_ifindex = ifindex;
	s->src.tx_netns = netns;
	s->src.tx_queue = BPF_CORE_READ(xs, queue_id);
	s->src.tx_flags = BPF_CORE_READ(xs, zc) ? XCAP_F_XSK_ZC : 0;
	s->src.tx_location = sock_ino(xs);
	BPF_CORE_READ_STR_INTO(&s->src.tx_ifname, dev, name);
	bpf_loop(XCAP_XSK_MAX_TX, tx_cb, &t, 0);
	return 0;
}

/*
 * Run once before xcap attaches the rest: every AF_XDP socket open now gets
 * its TX ring's consumer index in tx_seen, so only what it sends from here
 * on is captured.
 */
SEC("iter/task_file")
int xcap_xsk_seed(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct socket *sock;
	struct sock *sk;
	struct xsk_queue *tx;
	__u64 key;
	__u32 cons;

	if (!file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	/* A socket's file and its struct socket point at each other; any
	 * other file's private_data is something else. */
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != XCAP_AF_XDP)
		return 0;
	tx = BPF_CORE_READ((struct xdp_sock *)sk, tx);
	if (!tx)
		return 0;
	cons = BPF_CORE_READ(tx, cached_cons);
	key = (__u64)sk;
	bpf_map_update_elem(&tx_seen, &key, &cons, BPF_NOEXIST);
	return 0;
}

SEC("raw_tp/xdp_redirect_err")
int BPF_PROG(xcap_xsk_drop, const struct net_device *dev, const struct bpf_prog *xdp,
	     const void *tgt, int err, enum bpf_map_type type, __u32 map_id, __u32 index)
{
	struct xcap_xsk_drop_key k = {};
	__u64 one = 1, *n;

	if (type != BPF_MAP_TYPE_XSKMAP || !err)
		return 0;
	k.ifindex = BPF_CORE_READ(dev, ifindex);
	if (!xcap_iface_selected(cfg.nr_ifaces, cfg.ifindex, cfg.netns, k.ifindex,
				 BPF_CORE_READ(dev, nd_net.net, ns.inum)))
		return 0;
	k.sock_ino = tgt ? sock_ino((void *)tgt) : 0;
	k.err = -err;
	k.index = index;
	n = bpf_map_lookup_elem(&drops, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else if (bpf_map_update_elem(&drops, &k, &one, BPF_NOEXIST)) {
		/* Another CPU made the entry first. */
		n = bpf_map_lookup_elem(&drops, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}
