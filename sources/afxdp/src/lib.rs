//! xcap's AF_XDP source: the packets the kernel delivers to AF_XDP
//! sockets, which tcpdump cannot see (they leave the stack at XDP, before
//! its capture point), and the packets AF_XDP applications send. Read from
//! the socket's RX ring at the xdp_redirect tracepoint, and from its TX
//! ring as a send returns (sock_send_length, 6.3+) (bpf/afxdp.bpf.c);
//! drops before the RX ring are counted per socket and reason at
//! xdp_redirect_err. The shared capture runtime (xcap_bpf_common::runtime)
//! filters, copies and delivers.
//!
//! TX is read from the ring the kernel took it from: as a send returns
//! (sock_send_length, 6.3 and later; before, the send syscalls of the
//! processes that own AF_XDP sockets), as such a process's poll() returns
//! (copy mode sends from poll() for need_wakeup sockets); what neither saw
//! is caught up, marked late, at the owner's close() and exit and when
//! xcap stops.

mod config;
mod owners;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use libbpf_rs::{Link, MapCore, MapFlags, Object};
use xcap_bpf_common::runtime::{self, Rodata, RtConfig};
use xcap_bpf_common::{iface, Interned};
use xcap_core::event::{self, F_OWNER, F_XSK_LATE, F_XSK_POLL, F_XSK_ZC};
use xcap_core::registry::{HookStats, ProgramStat, SourceArgs};
use xcap_core::{CaptureConfig, Error, Result, Source, SourceCtx, SourceFactory, SourceReport};

use crate::config::{AfxdpConfig, DropKey};
use crate::owners::Owners;

const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/afxdp.bpf.o"));
/// The hooks, by the index in records (XCAP_XSK_HOOK_*): packets written
/// to an AF_XDP socket's RX ring, and taken from its TX ring.
const HOOKS: [&str; 2] = ["xsk_rx", "xsk_tx"];
/// The programs of the RX side, and of the TX side: the iterators that
/// seed and flush (run, not attached), the syscall hooks (owners' sockets),
/// and where the kernel has it, the send tracepoint.
const RX_PROGS: [&str; 2] = ["xcap_xsk_rx", "xcap_xsk_drop"];
const SEED: &str = "xcap_xsk_seed";
const FLUSH: &str = "xcap_xsk_flush";
const SYSCALL_PROGS: [&str; 3] = ["xcap_xsk_sys_enter", "xcap_xsk_sys_exit", "xcap_xsk_exit"];
const SEND_PROG: &str = "xcap_xsk_tx";
/// The tracepoint of every send (Linux 6.3 and later); without it the send
/// syscalls of the sockets' owners are watched instead.
const SEND_TRACEPOINT: &str = "btf_trace_sock_send_length";

inventory::submit! {
    SourceFactory {
        name: "afxdp",
        help: "packets of AF_XDP sockets: received (copy and zero-copy) and sent, with the owning process; drops before the RX ring counted per socket",
        args: Vec::new,
        open: |cfg, m| open(cfg, m),
        list_hooks: None,
        verify: Some(|cfg, _| verify(cfg)),
    }
}

fn open(cfg: &CaptureConfig, _m: &SourceArgs) -> Result<Box<dyn Source>> {
    let send_tp = send_tracepoint();
    if !send_tp {
        eprintln!(
            "xcap: afxdp: this kernel has no sock:sock_send_length tracepoint (Linux 6.3): \
             packets are captured as they are sent only from the processes that own the \
             sockets; others' are caught up (late) when the owner closes the socket or exits, \
             or when xcap stops"
        );
    }
    let (obj, _) = load(cfg, send_tp)?;
    let watch = iface::Watch::start(&cfg.interfaces, cfg.netns.as_deref())?;
    // Where each open socket's TX ring stands now, and whose it is, before
    // the TX programs run: only what is sent from here on is captured.
    run_iter(&obj, SEED)?;
    let mut links = Vec::new();
    if send_tp {
        links.push(attach(&obj, SEND_PROG)?);
    }
    for name in SYSCALL_PROGS.iter().chain(&RX_PROGS) {
        links.push(attach(&obj, name)?);
    }
    Ok(Box::new(AfxdpSource { obj, links, watch }))
}

/// Attach program `name` where its section says.
fn attach(obj: &Object, name: &str) -> Result<Link> {
    let prog = obj
        .progs_mut()
        .find(|p| p.name() == name)
        .ok_or_else(|| Error::runtime(format!("program {name} missing")))?;
    prog.attach()
        .map_err(|e| xcap_bpf_common::libbpf_error(&format!("attach {name} (AF_XDP source)"), e))
}

/// Run a task_file iterator program to its end.
fn run_iter(obj: &Object, name: &str) -> Result<()> {
    let link = attach(obj, name)?;
    let mut it = libbpf_rs::Iter::new(&link)
        .map_err(|e| xcap_bpf_common::libbpf_error("run the AF_XDP socket iterator", e))?;
    std::io::copy(&mut it, &mut std::io::sink())
        .map_err(|e| Error::runtime(format!("AF_XDP socket iterator: {e}")))?;
    Ok(())
}

/// Whether the running kernel has the tracepoint of every send.
fn send_tracepoint() -> bool {
    libbpf_rs::btf::Btf::from_vmlinux().is_ok_and(|b| {
        b.type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(SEND_TRACEPOINT)
            .is_some()
    })
}

/// `--dry-run`: load (and so verify) the programs, attach nothing; what the
/// verifier did.
pub fn verify(cfg: &CaptureConfig) -> Result<Vec<ProgramStat>> {
    Ok(load(cfg, send_tracepoint())?.1)
}

/// Load (and so verify) the programs, the send tracepoint's with
/// `send_tp`, else the send syscalls watched; nothing attached.
fn load(cfg: &CaptureConfig, send_tp: bool) -> Result<(Object, Vec<ProgramStat>)> {
    let snaplen = runtime::snaplen(cfg.snaplen, "afxdp")?;
    let ifaces = iface::selection(&cfg.interfaces, cfg.netns.as_deref())?;
    let mut src = AfxdpConfig::new(!send_tp);
    src.nr_ifaces = ifaces.len() as u32;
    for (i, (idx, ns)) in ifaces.iter().enumerate() {
        src.ifindex[i] = *idx;
        src.netns[i] = *ns;
    }
    let rodata = Rodata {
        rt: RtConfig {
            snaplen,
            filter: cfg.filter.is_some() as u32,
            stack: 0,
            hook_base: 0,
        },
        src,
    };
    let image = runtime::image(BPF_OBJECT, cfg.filter.as_deref())?;
    let mut progs: Vec<(&str, Option<&str>)> = RX_PROGS
        .iter()
        .chain(&SYSCALL_PROGS)
        .chain(&[SEED, FLUSH])
        .map(|p| (*p, None))
        .collect();
    if send_tp {
        progs.push((SEND_PROG, None));
    }
    runtime::load(&runtime::LoadSpec {
        what: "the AF_XDP programs",
        image: &image,
        progs,
        rodata: rodata.as_bytes(),
        hooks: HOOKS.len() as u32,
        ring: runtime::Ring::Own(runtime::ring_bytes(cfg.buffer_kib)),
        shared_maps: &[],
        sizes: &[],
    })
}

pub struct AfxdpSource {
    obj: Object,
    links: Vec<Link>,
    watch: Option<iface::Watch>,
}

// SAFETY: libbpf objects and links are plain handles (fds and heap memory)
// with no thread affinity; the source is moved to its thread once.
unsafe impl Send for AfxdpSource {}

impl Source for AfxdpSource {
    fn name(&self) -> &str {
        "afxdp"
    }

    fn filters(&self) -> bool {
        true
    }

    fn run(mut self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
        let wall = xcap_core::time::mono_to_wall_offset();
        let ring = runtime::ring_handle(&self.obj)?;
        let mut failure = None;
        let mut decoder = Decoder::new(wall);
        let (delivered, bad) = {
            let decoder = std::cell::RefCell::new(&mut decoder);
            let watch = &self.watch;
            let obj = &self.obj;
            let links = &mut self.links;
            let failure = &mut failure;
            let delivered = runtime::deliver(
                &ctx,
                &ring,
                wall,
                &mut |rec, out| decoder.borrow_mut().decode(rec, out),
                &mut || match watch.as_ref().and_then(|w| w.gone()) {
                    // An -i interface deleted ends the capture (exit 1).
                    Some(n) => {
                        *failure = Some(format!("interface {n} went away"));
                        Ok(false)
                    }
                    None => Ok(true),
                },
                &mut || {
                    links.clear();
                    // What the TX rings gave since the last look, as late.
                    if let Err(e) = run_iter(obj, FLUSH) {
                        eprintln!("xcap: afxdp: {e}");
                    }
                },
                &mut Vec::new,
            )?;
            let bad = decoder.borrow().bad;
            (delivered, bad)
        };
        let mut socks = std::mem::take(&mut decoder.socks);
        report_drops(&self.obj, &mut decoder.owners, &mut socks);
        let notes = socket_statistics(&mut decoder.owners, &socks);
        let hooks: Vec<HookStats> = HOOKS
            .iter()
            .enumerate()
            .map(|(i, h)| runtime::hook_stats(&self.obj, i as u32, h))
            .collect();
        let dropped = hooks.iter().map(|h| h.lost).sum::<u64>() + bad;
        Ok(SourceReport {
            name: "afxdp".into(),
            delivered,
            dropped,
            hooks,
            failure,
            notes,
        })
    }
}

/// What the kernel's errno at xdp_redirect_err means for an AF_XDP socket
/// (net/xdp/xsk.c).
fn drop_reason(err: u32) -> String {
    let what = match err as i32 {
        libc::ENOBUFS => "RX ring full (ENOBUFS)",
        libc::ENOMEM => "fill ring empty: no UMEM frame to copy into (ENOMEM)",
        libc::ENXIO => "socket not bound (ENXIO)",
        libc::EINVAL => "socket bound to another device or queue (EINVAL)",
        libc::ENOSPC => "packet larger than a UMEM frame (ENOSPC)",
        _ => return format!("error {err}"),
    };
    what.to_string()
}

/// One line per socket and reason for the packets the kernel dropped
/// before they reached a socket's RX ring (not filtered: the tracepoint has
/// no packet to filter).
fn report_drops(obj: &Object, owners: &mut Owners, socks: &mut HashMap<u32, u32>) {
    let Some(m) = obj.maps().find(|m| m.name() == "drops") else {
        return;
    };
    let mut lines = Vec::new();
    for k in m.keys() {
        let (Some(key), Ok(Some(v))) = (DropKey::from_bytes(&k), m.lookup(&k, MapFlags::ANY))
        else {
            continue;
        };
        let n = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .unwrap_or(0);
        socks.entry(key.sock_ino).or_insert(key.ifindex);
        let who = match owners.get(key.sock_ino) {
            Some(o) => format!("pid {} ({})", o.pid, o.comm),
            None => "no process".to_string(),
        };
        lines.push(format!(
            "xcap: afxdp: {n} packets dropped by the kernel before AF_XDP socket {} [{who}] on ifindex {} queue {}: {}",
            key.sock_ino,
            key.ifindex,
            key.index,
            drop_reason(key.err)
        ));
    }
    lines.sort();
    for l in lines {
        eprintln!("{l}");
    }
}

/// The kernel's XDP_STATISTICS of each socket that received, sent or
/// dropped, printed and returned for the statistics blocks of its device.
/// They count since the socket opened, not since xcap started; a socket
/// closed by now has none to read, which is said.
fn socket_statistics(owners: &mut Owners, socks: &HashMap<u32, u32>) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, u32)> = socks.iter().map(|(&s, &i)| (s, i)).collect();
    v.sort_unstable();
    let mut notes = Vec::new();
    for (ino, ifindex) in v {
        if ino == 0 {
            continue;
        }
        let got = owners.get(ino).map(|o| (stats::read(&o, ino), o));
        let note = match got {
            Some((Ok(st), o)) => format!(
                "AF_XDP socket {ino} [pid {} ({})]: kernel statistics since it opened: {}",
                o.pid,
                o.comm,
                stats::format(&st)
            ),
            Some((Err(e), _)) => {
                format!("AF_XDP socket {ino}: kernel statistics not read: {e}")
            }
            None => format!("AF_XDP socket {ino}: kernel statistics not read: the socket closed"),
        };
        eprintln!("xcap: afxdp: {note}");
        notes.push((ifindex, note));
    }
    notes
}

/// Ring buffer records to packets.
struct Decoder {
    owners: Owners,
    ifnames: Interned<(u32, u32, [u8; event::IFNAME_LEN])>,
    comms: Interned<[u8; event::COMM_LEN]>,
    /// Source-specific metadata values, made once each.
    texts: HashMap<(u32, u32, u16), Vec<(String, String)>>,
    /// Sockets that received or sent, and their device.
    socks: HashMap<u32, u32>,
    source: Arc<str>,
    hooks: [Arc<str>; 2],
    wall_offset: u64,
    bad: u64,
}

impl Decoder {
    fn new(wall_offset: u64) -> Decoder {
        Decoder {
            owners: Owners::default(),
            ifnames: Interned::default(),
            comms: Interned::default(),
            texts: HashMap::new(),
            socks: HashMap::new(),
            source: Arc::from("afxdp"),
            hooks: HOOKS.map(Arc::from),
            wall_offset,
            bad: 0,
        }
    }

    fn decode(&mut self, buf: &[u8], out: &mut runtime::Slots) {
        let Some(r) = event::parse(buf) else {
            self.bad += 1;
            return;
        };
        let h = r.hdr;
        let Some(hook) = self.hooks.get(h.hook as usize) else {
            self.bad += 1;
            return;
        };
        // `location` carries the socket's inode and the XDP program's id.
        let sock = h.location as u32;
        let prog = (h.location >> 32) as u32;
        let kind = h.flags & (F_XSK_ZC | F_XSK_POLL | F_XSK_LATE);
        let late = h.flags & F_XSK_LATE != 0;
        let ifname = self
            .ifnames
            .get((h.ifindex, h.netns, h.ifname), |k| event::cstr(&k.2).into());
        let comm = self.comms.get(h.comm, |k| event::cstr(k).into());
        let socks = &mut self.socks;
        let out_dir = h.dir == event::DIR_OUT;
        let extra = self.texts.entry((sock, prog, kind)).or_insert_with(|| {
            socks.insert(sock, h.ifindex);
            let mut v = vec![
                ("xsk".into(), sock.to_string()),
                ("xdp_prog".into(), prog.to_string()),
                (
                    "xsk_mode".into(),
                    if kind & F_XSK_ZC != 0 {
                        "zerocopy"
                    } else {
                        "copy"
                    }
                    .into(),
                ),
            ];
            // Sent: seen as a send returned, as a poll() returned, or
            // caught up as xcap stopped (its time is then not the send's).
            if out_dir {
                let how = if kind & F_XSK_LATE != 0 {
                    "late"
                } else if kind & F_XSK_POLL != 0 {
                    "poll"
                } else {
                    "send"
                };
                v.push(("xsk_tx".into(), how.into()));
            }
            v
        });
        let p = out.fill(
            &h,
            r.data,
            self.wall_offset,
            runtime::Names {
                source: &self.source,
                hook,
                ifname,
                comm: Some(comm),
                extra,
            },
        );
        // TX is captured in the sending thread; RX in whichever delivered
        // it and late TX maybe in xcap, so the socket's owner is named
        // instead: as the kernel side recorded it (at bind, or when xcap
        // started), else as /proc shows it now, else nobody (the socket
        // closed before it was looked up): never the bystander.
        if h.flags & F_OWNER != 0 {
            p.meta.tid = None;
        } else if !out_dir || late {
            p.meta.tid = None;
            match self.owners.get(sock) {
                Some(o) => {
                    p.meta.pid = Some(o.pid);
                    runtime::share_opt(&mut p.meta.comm, Some(&o.comm));
                }
                None => {
                    p.meta.pid = None;
                    p.meta.comm = None;
                }
            }
        }
        p.meta.queue = h.queue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_name_the_ring() {
        assert!(drop_reason(libc::ENOBUFS as u32).starts_with("RX ring full"));
        assert!(drop_reason(libc::ENOMEM as u32).starts_with("fill ring empty"));
        assert_eq!(drop_reason(9999), "error 9999");
    }
}
