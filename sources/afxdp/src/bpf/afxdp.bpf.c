// SPDX-License-Identifier: GPL-2.0-only
/*
 * xcap AF_XDP source: the packets the kernel delivers to AF_XDP sockets.
 *
 * RX: tp_btf/xdp_redirect with an XSKMAP target and no error fires right
 * after the kernel wrote the packet's descriptor to the socket's RX ring,
 * at cached_prod - 1 (the application sees it only at the flush that ends
 * the NAPI poll, so nobody can have consumed it yet). The bytes are in the
 * UMEM at the descriptor's address, which the kernel maps at pool->addrs.
 * This holds for copy and zero-copy mode, native and generic XDP. A
 * multi-buffer packet's earlier descriptors precede it on the ring, marked
 * XDP_PKT_CONTD.
 *
 * RX drops: tp_btf/xdp_redirect_err with an XSKMAP target: the packet never
 * reached the ring (RX ring full, fill ring empty, wrong queue, socket not
 * bound, frame too large). The tracepoint gives no packet, so drops are
 * counted per socket and error, not captured.
 *
 * Both run in the context of whoever delivered the packet (softirq, or the
 * sender), so the socket's inode is recorded and the owning process found
 * in userspace, as `ss -p` does.
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

static __always_inline bool iface_selected(__u32 ifindex, __u32 netns)
{
	if (cfg.nr_ifaces == 0)
		return true;
	for (int i = 0; i < XCAP_MAX_IFACES; i++) {
		if (i >= cfg.nr_ifaces)
			break;
		if ((cfg.ifindex[i] == 0 || cfg.ifindex[i] == ifindex) &&
		    (cfg.netns[i] == 0 || cfg.netns[i] == netns))
			return true;
	}
	return false;
}

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

SEC("tp_btf/xdp_redirect")
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
	if (!iface_selected(ifindex, netns))
		return 0;
	xcap_count(0, XCAP_CNT_SEEN, 1);
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
	if (!xcap_filter_copy(s, &c, 0, false))
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
	xcap_emit(ctx, s, &c, 0);
	return 0;
}

SEC("tp_btf/xdp_redirect_err")
int BPF_PROG(xcap_xsk_drop, const struct net_device *dev, const struct bpf_prog *xdp,
	     const void *tgt, int err, enum bpf_map_type type, __u32 map_id, __u32 index)
{
	struct xcap_xsk_drop_key k = {};
	__u64 one = 1, *n;

	if (type != BPF_MAP_TYPE_XSKMAP || !err)
		return 0;
	k.ifindex = BPF_CORE_READ(dev, ifindex);
	if (!iface_selected(k.ifindex, BPF_CORE_READ(dev, nd_net.net, ns.inum)))
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
