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
 * TX (copy mode): the kernel takes descriptors from the TX ring inside the
 * syscall that asks it to send, up to the ring's cached_cons. xcap captures
 * those from where it stopped the last time (xsks: seen) as such a call
 * returns: sock:sock_send_length (6.3+) for any process's send; the poll
 * family (need_wakeup sockets send from poll()) and, before 6.3, the send
 * family, for the sockets of the calling process (`owned`: found by a
 * task_file iterator at start, and at bind()). What neither saw is caught
 * up, marked late, at the owner's close() and exit and when xcap stops.
 * The calls run in the sending thread, whose pid and comm are the
 * application's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "xcap_event.h"
#include "afxdp.h"

struct xcap_scratch;
static __always_inline void xcap_xsk_who(struct xcap_event *ev, struct xcap_scratch *s);
#define XCAP_SRC_WHO xcap_xsk_who
/* UMEM frames are kernel memory (vmapped): the filter may read them in place. */
#define XCAP_FILTER_IN_PLACE
#include "xcap_runtime.h"

/* The packet's process: the socket's owner when the source set one. */
static __always_inline void xcap_xsk_who(struct xcap_event *ev, struct xcap_scratch *s)
{
	if (!s->src.who)
		return;
	ev->pid = s->src.who;
	ev->tid = 0;
	__builtin_memcpy(ev->comm, s->src.who_comm, sizeof(ev->comm));
	ev->flags |= XCAP_F_OWNER;
}

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

/* Per socket: where its TX ring was read to, and its owner. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct xcap_xsk);
} xsks SEC(".maps");

/* An empty entry to insert from: too large for the stack. */
struct xcap_xsk xcap_xsk_new;

/* Name the socket's owner as the packet's process, if it is known. */
static __always_inline void who_owns(struct xcap_scratch *s, __u64 xs)
{
	struct xcap_xsk *k = bpf_map_lookup_elem(&xsks, &xs);

	s->src.who = k ? k->owner : 0;
	if (k)
		__builtin_memcpy(s->src.who_comm, k->comm, sizeof(s->src.who_comm));
}

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
	if (!xcap_filter_in_place(&c, addrs + umem_off(d.addr), first))
		return 0;
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
	/* This runs in softirq or the sender's context: name the owner. */
	who_owns(s, (__u64)xs);
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
	if (!xcap_filter_in_place(&c, s->src.addrs + umem_off(d.addr), len))
		return 0;
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

/* The AF_XDP socket behind a file, or NULL. */
static __always_inline struct xdp_sock *file_xsk(struct file *file)
{
	struct socket *sock;
	struct sock *sk;

	if (!file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	/* A socket's file and its struct socket point at each other; any
	 * other file's private_data is something else. */
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != XCAP_AF_XDP)
		return NULL;
	return (struct xdp_sock *)sk;
}

/*
 * Capture what the kernel took from a socket's TX ring since the last look:
 * descriptors from `seen` (map xsks) up to its consumer index. Whoever
 * moves `seen` (a compare-and-swap) captures the range, so a send and a
 * poll() of two threads never capture a descriptor twice. `ino` 0: the socket comes from
 * a tracepoint that vouches for it; else it was stored, and is still that
 * socket only if its family and inode say so. A global function: verified
 * once, whatever calls it.
 */
__attribute__((noinline)) int xcap_xsk_tx_sock(__u64 sk, __u32 ino, __u32 how)
{
	struct xdp_sock *xs = (void *)sk;
	struct xcap_xsk *t;
	struct xcap_scratch *s;
	struct xsk_queue *tx;
	struct net_device *dev;
	__u32 cpu, cons, from, n, size, now;

	if (!sk || BPF_CORE_READ(&xs->sk, __sk_common.skc_family) != XCAP_AF_XDP)
		return 0;
	now = sock_ino(xs);
	if (ino && ino != now)
		return 0;
	tx = BPF_CORE_READ(xs, tx);
	if (!tx)
		return 0;
	cons = BPF_CORE_READ(tx, cached_cons);
	t = bpf_map_lookup_elem(&xsks, &sk);
	if (!t) {
		/* Not seeded nor bound while xcap looked: new, from 0, its
		 * owner unknown. */
		bpf_map_update_elem(&xsks, &sk, &xcap_xsk_new, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&xsks, &sk);
		if (!t)
			return 0;
	}
	if (t->ino != now) {
		/* A socket at the address of a closed one: from its start. */
		t->ino = now;
		t->seen = 0;
		t->owner = 0;
	}
	from = t->seen;
	if (cons == from || __sync_val_compare_and_swap(&t->seen, from, cons) != from)
		return 0;

	dev = BPF_CORE_READ(xs, dev);
	__u32 ifindex = BPF_CORE_READ(dev, ifindex);
	__u32 netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);

	if (!xcap_iface_selected(cfg.nr_ifaces, cfg.ifindex, cfg.netns, ifindex, netns))
		return 0;
	n = cons - from;
	size = BPF_CORE_READ(tx, nentries);
	if (n > size) {
		/* More sent than the ring holds since the last look: the
		 * oldest descriptors are overwritten, counted lost. */
		xcap_count(XCAP_XSK_HOOK_TX, XCAP_CNT_LOST, n - size);
		from = cons - size;
		n = size;
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

	struct send st = {
		.descs = (__u64)BPF_CORE_READ(tx, ring) +
			 bpf_core_field_offset(struct xdp_rxtx_ring, desc),
		.mask = BPF_CORE_READ(tx, ring_mask),
		.idx = from,
		.end = cons,
		.cpu = cpu,
	};

	s->src.descs = st.descs;
	s->src.addrs = (__u64)BPF_CORE_READ(xs, pool, addrs);
	s->src.mask = st.mask;
	s->src.tx_ifindex = ifindex;
	s->src.tx_netns = netns;
	s->src.tx_queue = BPF_CORE_READ(xs, queue_id);
	s->src.tx_flags = (BPF_CORE_READ(xs, zc) ? XCAP_F_XSK_ZC : 0) |
			  (how == XCAP_XSK_TX_POLL ? XCAP_F_XSK_POLL : 0) |
			  (how == XCAP_XSK_TX_LATE ? XCAP_F_XSK_LATE : 0);
	s->src.tx_location = now;
	BPF_CORE_READ_STR_INTO(&s->src.tx_ifname, dev, name);
	/* Sent: the sending thread's, unless caught up outside it. */
	s->src.who = 0;
	if (how == XCAP_XSK_TX_LATE)
		who_owns(s, sk);
	bpf_loop(XCAP_XSK_MAX_TX, tx_cb, &st, 0);
	return 0;
}

/* 6.3 and later: every send on any AF_XDP socket, as it returns. raw_tp:
 * the socket is a number to pass on, not a pointer the verifier follows. */
SEC("raw_tp/sock_send_length")
int BPF_PROG(xcap_xsk_tx, struct sock *sk, int ret, int flags)
{
	if (sk && BPF_CORE_READ(sk, __sk_common.skc_family) == XCAP_AF_XDP)
		xcap_xsk_tx_sock((__u64)sk, 0, XCAP_XSK_TX_SEND);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct xcap_xsk_owned);
} owned SEC(".maps");

/* An empty entry to insert from: too large for the stack. */
struct xcap_xsk_owned xcap_xsk_none;

/* Socket `key` (in xsks) is process `task`'s, its TX ring read up to
 * `seen`: its owner is named for its RX and late TX, and the process's
 * poll() (and, before 6.3, its sends) look at it. */
static __always_inline void remember(__u64 key, struct task_struct *task, __u32 seen)
{
	struct xdp_sock *xs = (void *)key;
	struct xcap_xsk_owned *o;
	struct xcap_xsk *k;
	__u32 tgid = BPF_CORE_READ(task, tgid), ino = sock_ino(xs), i, n;

	k = bpf_map_lookup_elem(&xsks, &key);
	if (!k)
		return;
	k->seen = seen;
	k->ino = ino;
	k->owner = tgid;
	BPF_CORE_READ_STR_INTO(&k->comm, task, group_leader, comm);

	o = bpf_map_lookup_elem(&owned, &tgid);
	if (!o) {
		bpf_map_update_elem(&owned, &tgid, &xcap_xsk_none, BPF_NOEXIST);
		o = bpf_map_lookup_elem(&owned, &tgid);
		if (!o)
			return;
	}
	n = o->n;
	for (i = 0; i < XCAP_XSK_MAX_OWNED; i++) {
		if (i >= n)
			break;
		if (o->xs[i] == key) {
			o->ino[i] = ino;
			return;
		}
	}
	i = __sync_fetch_and_add(&o->n, 1);
	if (i < XCAP_XSK_MAX_OWNED) {
		o->xs[i] = key;
		o->ino[i] = ino;
	} else {
		/* Full: this one is caught up at its sends (6.3+), its
		 * owner's close() and exit, and when xcap stops. */
		__sync_fetch_and_add(&o->n, -1);
	}
}

/* The AF_XDP socket behind descriptor `fd` of the current task, or NULL:
 * looked up as the kernel would. */
static __always_inline struct xdp_sock *fd_xsk(__u32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file **fds, *file;

	if (fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return NULL;
	return file_xsk(file);
}

/*
 * A syscall starts. bind(): a socket being bound is new (its TX ring starts
 * at 0) and its process's. close() by an owner: what the socket's TX ring
 * gave since the last look is caught up (late) while the socket is still
 * there to read.
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(xcap_xsk_sys_enter, struct pt_regs *regs, long id)
{
	struct sockaddr_xdp sa;
	struct xdp_sock *xs;
	__u32 tgid;
	__u64 key;

	if (id == cfg.sys_close) {
		tgid = bpf_get_current_pid_tgid() >> 32;
		if (!bpf_map_lookup_elem(&owned, &tgid))
			return 0;
		/* The x86-64 argument registers: close(fd). */
		xs = fd_xsk(regs->di);
		if (xs)
			xcap_xsk_tx_sock((__u64)xs, 0, XCAP_XSK_TX_LATE);
		return 0;
	}
	if (id != cfg.sys_bind)
		return 0;
	/* bind(fd, addr, len) */
	if (bpf_probe_read_user(&sa.sxdp_family, sizeof(sa.sxdp_family), (void *)regs->si) ||
	    sa.sxdp_family != XCAP_AF_XDP)
		return 0;
	xs = fd_xsk(regs->di);
	if (!xs)
		return 0;
	key = (__u64)xs;
	bpf_map_update_elem(&xsks, &key, &xcap_xsk_new, BPF_ANY);
	remember(key, bpf_get_current_task_btf(), 0);
	return 0;
}

/* Look at the sockets of process `tgid`; whether it has any. A global
 * function: its caller's stack frame stays small (6.1 allows 512 bytes for
 * the whole chain down to the filter, each frame rounded up to 32). */
__attribute__((noinline)) int xcap_xsk_look(__u32 tgid, __u32 how)
{
	struct xcap_xsk_owned *o = bpf_map_lookup_elem(&owned, &tgid);
	__u32 i, n;

	if (!o)
		return 0;
	n = o->n;
	for (i = 0; i < XCAP_XSK_MAX_OWNED; i++) {
		if (i >= n)
			break;
		xcap_xsk_tx_sock(o->xs[i], o->ino[i], how);
	}
	return 1;
}

/*
 * A syscall returns: if it is one of the poll family (copy mode sends from
 * poll() when the socket asks for wakeups) or, before 6.3, of the send
 * family, the calling process's AF_XDP sockets are looked at.
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(xcap_xsk_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 id = regs->orig_ax, i, how = XCAP_XSK_TX_SEND;
	bool hit = false;

	if (id == XCAP_XSK_NO_CALL)
		return 0;
	for (i = 0; i < XCAP_XSK_POLL_CALLS; i++)
		if (id == cfg.sys_poll[i]) {
			hit = true;
			how = XCAP_XSK_TX_POLL;
		}
	for (i = 0; i < XCAP_XSK_SEND_CALLS; i++)
		if (id == cfg.sys_send[i])
			hit = true;
	if (!hit)
		return 0;
	xcap_xsk_look(bpf_get_current_pid_tgid() >> 32, how);
	return 0;
}

/*
 * A process that owns AF_XDP sockets ends (its last thread): before its
 * files are closed, what their TX rings gave since the last look is caught
 * up (late). raw_tp: the second argument is new in 6.12, unused here.
 */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(xcap_xsk_exit, struct task_struct *p)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (BPF_CORE_READ(p, signal, live.counter))
		return 0;
	if (xcap_xsk_look(tgid, XCAP_XSK_TX_LATE))
		bpf_map_delete_elem(&owned, &tgid);
	return 0;
}

/*
 * Run once before xcap attaches the rest: every AF_XDP socket open now gets
 * its TX ring's consumer index and its owner in xsks, so only what it sends
 * from here on is captured, and its packets are named its owner's.
 */
SEC("iter/task_file")
int xcap_xsk_seed(struct bpf_iter__task_file *ctx)
{
	struct xdp_sock *xs = file_xsk(ctx->file);
	struct task_struct *task = ctx->task;
	struct xsk_queue *tx;
	__u64 key;

	if (!xs || !task)
		return 0;
	key = (__u64)xs;
	/* A socket in several processes: the first one found owns it. */
	if (bpf_map_update_elem(&xsks, &key, &xcap_xsk_new, BPF_NOEXIST))
		return 0;
	tx = BPF_CORE_READ(xs, tx);
	remember(key, task, tx ? BPF_CORE_READ(tx, cached_cons) : 0);
	return 0;
}

/*
 * Run as xcap stops, after the rest is detached: what any socket's TX ring
 * gave the kernel since the last look (a send or poll() not seen, a socket
 * of a process that did not bind it) is captured now, marked late.
 */
SEC("iter/task_file")
int xcap_xsk_flush(struct bpf_iter__task_file *ctx)
{
	struct xdp_sock *xs = file_xsk(ctx->file);

	if (xs)
		xcap_xsk_tx_sock((__u64)xs, 0, XCAP_XSK_TX_LATE);
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
