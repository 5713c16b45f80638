//! The Rust half of the capture runtime (core/bpf/xcap_runtime.h): what
//! every BPF source does the same way. Loading an object (the filter
//! spliced in, the maps sized, the read-only configuration written, the
//! verifier's work measured), reading the per-hook counters, and running
//! the ring buffer: poll, coalesce, decode, hand batches to the bus with a
//! watermark, detach, drain. A source writes only what to attach and how
//! to decode its records.

use std::borrow::Cow;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use libbpf_rs::{MapCore, Object, ObjectBuilder};
use xcap_core::event::{self, XcapEvent, MAX_SNAPLEN};
use xcap_core::filter::ebpf;
use xcap_core::registry::{HookStats, ProgramStat};
use xcap_core::{Error, Filter, Meta, Packet, Result, SourceCtx};

use crate::{debug, libbpf_error, percpu_sum};

/// Ring buffer size when -B is not given, in KiB.
pub const DEFAULT_BUFFER_KIB: u32 = 16 * 1024;
/// Pause after a busy poll, so records arrive in batches: one wakeup, one
/// batch and one write(2) per few milliseconds instead of per packet, which
/// at high rates costs more than the packets (5 ms: 20% less CPU per packet
/// than 2 ms on a flood; 10 ms gained nothing more; the default ring holds
/// well over 5 ms of a million packets a second).
pub const COALESCE: Duration = Duration::from_millis(5);
/// How far behind now a source's watermark stays: records are committed
/// within microseconds of their stamp; 10 ms covers stragglers from other
/// CPUs.
pub const WATERMARK_SLACK_NS: u64 = 10_000_000;
/// How long one poll of the ring buffer waits for records.
const POLL: Duration = Duration::from_millis(50);

/// Mirror of `struct xcap_rt_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RtConfig {
    pub snaplen: u32,
    pub filter: u32,
    pub stack: u32,
    pub hook_base: u32,
}

/// A source's part of the read-only configuration (`struct
/// xcap_src_config`).
///
/// # Safety
/// The type is `repr(C)` plain old data with no padding that is not
/// explicit, mirrored by a C struct (each source tests the layout).
pub unsafe trait SrcConfig: Copy + 'static {}

/// Mirror of `struct xcap_rodata`: the runtime's part, then the source's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Rodata<S> {
    pub rt: RtConfig,
    pub src: S,
}

impl<S: SrcConfig> Rodata<S> {
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) of two plain-old-data parts (SrcConfig's promise);
        // RtConfig's 16 bytes leave no gap before any source struct.
        unsafe {
            std::slice::from_raw_parts(
                self as *const Self as *const u8,
                std::mem::size_of::<Self>(),
            )
        }
    }
}

/// Test helper: `Rodata<S>` against C's `struct xcap_rodata` with the
/// source's `struct xcap_src_config` from `header` in `dir`; `fields` are
/// the source struct's fields with their Rust offsets.
pub fn check_rodata_layout<S: SrcConfig>(
    dir: &std::path::Path,
    header: &str,
    fields: &[(&str, usize)],
) -> std::result::Result<(), String> {
    use std::mem::{offset_of, size_of};
    let inc = [std::path::Path::new(xcap_core::BPF_INCLUDE_DIR), dir];
    let hdrs = ["xcap_event.h", header, "xcap_config.h"];
    let names: Vec<&str> = fields.iter().map(|f| f.0).collect();
    let (size, offs) = xcap_core::layout::c_layout(&inc, &hdrs, "xcap_src_config", &names)?;
    let rust: Vec<usize> = fields.iter().map(|f| f.1).collect();
    if size != size_of::<S>() || offs != rust {
        return Err(format!(
            "struct xcap_src_config: C size {size} offsets {offs:?}, Rust {} {rust:?}",
            size_of::<S>()
        ));
    }
    let (size, offs) = xcap_core::layout::c_layout(
        &inc,
        &hdrs,
        "xcap_rt_config",
        &["snaplen", "filter", "stack", "hook_base"],
    )?;
    let rust = vec![
        offset_of!(RtConfig, snaplen),
        offset_of!(RtConfig, filter),
        offset_of!(RtConfig, stack),
        offset_of!(RtConfig, hook_base),
    ];
    if size != size_of::<RtConfig>() || offs != rust {
        return Err(format!(
            "struct xcap_rt_config: C {size} {offs:?}, Rust {rust:?}"
        ));
    }
    let (size, offs) = xcap_core::layout::c_layout(&inc, &hdrs, "xcap_rodata", &["rt", "src"])?;
    let rust = vec![offset_of!(Rodata<S>, rt), offset_of!(Rodata<S>, src)];
    if size != size_of::<Rodata<S>>() || offs != rust {
        return Err(format!(
            "struct xcap_rodata: C {size} {offs:?}, Rust {rust:?}"
        ));
    }
    Ok(())
}

/// The snap length a source copies: `-s 0` means the most it can.
pub fn snaplen(asked: u32, source: &str) -> Result<u32> {
    match asked {
        0 => Ok(MAX_SNAPLEN),
        s if s > MAX_SNAPLEN => Err(Error::input(format!(
            "snap length {s} is too large for the {source} source (at most {MAX_SNAPLEN})"
        ))),
        s => Ok(s),
    }
}

/// Ring buffer bytes for `-B KiB` (0: the default): a power of two pages,
/// at least 64 KiB.
pub fn ring_bytes(kib: u32) -> u32 {
    let kib = if kib == 0 { DEFAULT_BUFFER_KIB } else { kib };
    (kib.clamp(64, 1 << 21) * 1024).next_power_of_two()
}

/// The object image with the filter spliced into its placeholder (the
/// global function `xcap_run_filter`), or as built when there is none.
pub fn image(elf: &'static [u8], filter: Option<&Filter>) -> Result<Cow<'static, [u8]>> {
    match filter {
        None => Ok(Cow::Borrowed(elf)),
        Some(f) => {
            let block = f.ebpf_block(ebpf::BLOCK_INSNS)?;
            Ok(Cow::Owned(crate::splice_filter_elf(elf, &block)?))
        }
    }
}

/// Where an object's ring buffer comes from.
pub enum Ring<'a> {
    /// Its own, of this many bytes.
    Own(u32),
    /// The first object's: every hook writes one stream.
    Shared(&'a Object),
}

/// How to load one object.
pub struct LoadSpec<'a> {
    /// Names the object in errors, e.g. "hook tp:net:netif_receive_skb".
    pub what: &'a str,
    pub image: &'a [u8],
    /// Programs to load, with their attach target: set at load for tracing
    /// programs (tp_btf, fentry, fexit), ignored for the others (kprobes
    /// and uprobes name theirs when attached).
    pub progs: Vec<(&'a str, Option<&'a str>)>,
    /// `struct xcap_rodata`, as bytes.
    pub rodata: &'a [u8],
    /// Hooks with counters in this object.
    pub hooks: u32,
    pub ring: Ring<'a>,
    /// Other maps taken from `ring`'s shared object, by name.
    pub shared_maps: &'a [&'a str],
    /// Other maps to size: (name, entries).
    pub sizes: &'a [(&'a str, u32)],
}

/// Load (and so verify) an object; returns it and what the verifier did
/// for each program.
pub fn load(spec: &LoadSpec<'_>) -> Result<(Object, Vec<ProgramStat>)> {
    crate::capture_libbpf_log();
    let err = |what: &str, e| libbpf_error(&format!("{what} {}", spec.what), e);
    let mut open = ObjectBuilder::default()
        .open_memory(spec.image)
        .map_err(|e| err("open the BPF object of", e))?;
    for mut p in open.progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        match spec.progs.iter().find(|(n, _)| *n == name) {
            Some((_, target)) => {
                p.set_autoload(true);
                let tracing = matches!(p.prog_type(), libbpf_rs::ProgramType::Tracing);
                if let Some(t) = target.filter(|_| tracing) {
                    p.set_attach_target(0, Some(t.to_string()))
                        .map_err(|e| err("set the target of", e))?;
                }
                if debug() {
                    // The verifier's statistics (or its whole log) in libbpf's log.
                    p.set_log_level(if std::env::var_os("XCAP_DEBUG_VERIFIER").is_some() {
                        1
                    } else {
                        4
                    });
                }
            }
            None => p.set_autoload(false),
        }
    }
    let ncpus = libbpf_rs::num_possible_cpus()
        .map_err(|e| Error::runtime(format!("cannot count CPUs: {e}")))? as u32;
    let shared = match spec.ring {
        Ring::Shared(o) => Some(o),
        Ring::Own(_) => None,
    };
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let from_shared = |n: &str| shared.and_then(|o| o.maps().find(|m| m.name() == n));
        let r = if name == "events" || spec.shared_maps.contains(&name.as_str()) {
            match (from_shared(&name), &spec.ring) {
                (Some(t), _) => m.reuse_fd(t.as_fd()),
                (None, Ring::Own(bytes)) if name == "events" => m.set_max_entries(*bytes),
                (None, _) => Ok(()),
            }
        } else if name == "scratch_map" {
            m.set_max_entries(ncpus)
        } else if name == "counters" {
            m.set_max_entries(spec.hooks.max(1) * event::CNT_MAX as u32)
        } else if name.ends_with(".rodata") {
            crate::write_rodata(&mut m, spec.rodata, "struct xcap_rodata")?;
            Ok(())
        } else if let Some((_, n)) = spec.sizes.iter().find(|(n, _)| *n == name) {
            m.set_max_entries(*n)
        } else {
            Ok(())
        };
        r.map_err(|e| err("configure", e))?;
    }
    let obj = open.load().map_err(|e| err("load", e))?;
    let stats = obj
        .progs()
        .filter(|p| spec.progs.iter().any(|(n, _)| p.name() == *n))
        .map(|p| ProgramStat {
            object: spec.what.to_string(),
            program: p.name().to_string_lossy().into_owned(),
            insns: verified_insns(p.as_fd()),
        })
        .collect();
    Ok((obj, stats))
}

/// Instructions the verifier processed for a loaded program (the kernel
/// reports it since 5.16; None before).
fn verified_insns(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a zeroed bpf_prog_info and len its size; the kernel
    // fills at most len bytes.
    let r = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len)
    };
    let have = std::mem::offset_of!(libbpf_rs::libbpf_sys::bpf_prog_info, verified_insns) + 4;
    (r == 0 && len as usize >= have && info.verified_insns > 0)
        .then_some(info.verified_insns as u64)
}

/// The counters of hook slot `slot` of an object.
pub fn hook_stats(obj: &Object, slot: u32, name: &str) -> HookStats {
    let m = obj.maps().find(|m| m.name() == "counters");
    let c = |k: usize| {
        m.as_ref().map_or(0, |m| {
            percpu_sum(m, slot * event::CNT_MAX as u32 + k as u32)
        })
    };
    HookStats {
        hook: name.to_string(),
        seen: c(event::CNT_SEEN),
        lost: c(event::CNT_LOST),
        truncated: c(event::CNT_TRUNC),
    }
}

/// A handle of its own on an object's ring buffer (a dup of the fd), so
/// the object stays free to change its attachments while it is read.
pub fn ring_handle(obj: &Object) -> Result<libbpf_rs::MapHandle> {
    let m = obj
        .maps()
        .find(|m| m.name() == "events")
        .ok_or_else(|| Error::runtime("ring buffer map missing"))?;
    libbpf_rs::MapHandle::try_from(&m).map_err(|e| libbpf_error("open the ring buffer", e))
}

/// The largest byte buffer a packet keeps for the next one it is filled
/// with (larger ones are kept only for packets as large).
const BUF_KEEP: usize = 2048;
/// The most packets a new batch makes room for up front.
const BATCH_RESERVE_MAX: usize = 16384;

/// The packets of the next batch, being decoded. The vector is a batch the
/// sinks have written, its packets still in it: they are filled again in
/// place, so that in a steady capture a packet is neither allocated nor
/// moved, and names that repeat keep their reference counts untouched.
///
/// In place ([`Slots::in_place`], a single source writing on its own
/// thread), a packet's bytes are not copied: the packet points at its
/// record in the ring buffer, and the batch is written from there before
/// the ring's space is given back.
#[derive(Default)]
pub struct Slots {
    packets: Vec<Packet>,
    filled: usize,
    /// Per filled packet: where its bytes are in the ring buffer, or null
    /// when they are the packet's own (`data`).
    views: Vec<(*const u8, usize)>,
    in_place: bool,
    /// The written order of the filled packets (time), reused.
    order: Vec<u32>,
}

// SAFETY: the view pointers are only followed on the thread that reads the
// ring, before its space is given back (see `deliver`).
unsafe impl Send for Slots {}

impl Slots {
    /// Slots in `packets`, a written batch (or an empty vector).
    pub fn new(packets: Vec<Packet>) -> Self {
        Slots {
            packets,
            ..Default::default()
        }
    }

    /// Slots whose packets point at their records (see the type). Only
    /// `deliver` makes them: it alone knows when the ring's space is given
    /// back, so a source cannot keep a pointer past that in safe code.
    pub(crate) fn in_place() -> Self {
        Slots {
            in_place: true,
            ..Default::default()
        }
    }

    /// The next packet to fill: an old one, whose fields are all stale.
    fn slot(&mut self) -> &mut Packet {
        if self.filled == self.packets.len() {
            let p = SPARE
                .with_borrow_mut(|s| s.pop())
                .unwrap_or_else(|| Packet {
                    ts_ns: 0,
                    data: Vec::new(),
                    orig_len: 0,
                    link: xcap_core::LinkType::Ethernet,
                    meta: Meta::default(),
                });
            self.packets.push(p);
        }
        self.views.truncate(self.filled);
        self.views.push((std::ptr::null(), 0));
        self.filled += 1;
        &mut self.packets[self.filled - 1]
    }

    /// Fill the next packet from a record (see [`fill_meta`]) with the
    /// bytes `data`, which are the record's (in the ring buffer); the
    /// source may then change the packet's metadata.
    pub fn fill(&mut self, h: &XcapEvent, data: &[u8], wall: u64, names: Names<'_>) -> &mut Packet {
        let in_place = self.in_place;
        self.slot();
        let i = self.filled - 1;
        let p = &mut self.packets[i];
        fill_meta(p, h, wall, names);
        if in_place {
            p.data.clear();
            self.views[i] = (data.as_ptr(), data.len());
        } else {
            set_data(p, data);
        }
        &mut self.packets[i]
    }

    /// Take back the packet `slot` gave last, out of the batch (to hold
    /// it), with bytes of its own.
    pub fn take_last(&mut self) -> Packet {
        self.filled -= 1;
        self.own(self.filled);
        self.views.truncate(self.filled);
        self.packets.swap_remove(self.filled)
    }

    /// Add a packet made elsewhere (one held back earlier).
    pub fn push(&mut self, p: Packet) {
        *self.slot() = p;
    }

    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Copy packet i's bytes from the ring into the packet.
    fn own(&mut self, i: usize) {
        let (ptr, len) = self.views[i];
        if !ptr.is_null() {
            // SAFETY: a view is followed before the ring's space is given
            // back (the contract of `in_place` slots).
            set_data(&mut self.packets[i], unsafe {
                std::slice::from_raw_parts(ptr, len)
            });
            self.views[i] = (std::ptr::null(), 0);
        }
    }

    /// Write the filled packets to the sinks, oldest first, and start
    /// again with the same packets. False once nothing more is to be
    /// written.
    pub fn write(&mut self, w: &mut xcap_core::DirectWriter<'_>) -> bool {
        let n = self.filled;
        self.order.clear();
        self.order.extend(0..n as u32);
        // Records from different CPUs may interleave a little.
        let ts = |i: &u32| self.packets[*i as usize].ts_ns;
        if !self.order.is_sorted_by_key(ts) {
            self.order.sort_by_key(ts);
        }
        let mut go_on = true;
        for &i in &self.order {
            let p = &self.packets[i as usize];
            let (ptr, len) = self.views[i as usize];
            let data = if ptr.is_null() {
                &p.data[..]
            } else {
                // SAFETY: as in `own`.
                unsafe { std::slice::from_raw_parts(ptr, len) }
            };
            let r = xcap_core::PacketRef {
                ts_ns: p.ts_ns,
                data,
                orig_len: p.orig_len,
                link: p.link,
                meta: &p.meta,
            };
            if !w.write(&r) {
                go_on = false;
                break;
            }
        }
        self.filled = 0;
        self.views.clear();
        go_on
    }

    /// The filled packets, with bytes of their own; the old ones left over
    /// are kept for `slot`.
    pub fn into_batch(mut self) -> Vec<Packet> {
        for i in 0..self.filled {
            self.own(i);
        }
        if self.filled < self.packets.len() {
            SPARE.with_borrow_mut(|s| {
                let room = SPARE_MAX.saturating_sub(s.len());
                let keep = (self.packets.len() - self.filled).min(room);
                s.extend(
                    self.packets
                        .drain(self.filled..self.filled + keep)
                        .map(|mut p| {
                            // Spares hold no large buffer (a burst of big packets).
                            if p.data.capacity() > BUF_KEEP {
                                p.data = Vec::new();
                            }
                            p
                        }),
                );
            });
            self.packets.truncate(self.filled);
        }
        self.packets
    }
}

thread_local! {
    /// Packets left over when a batch is smaller than the one whose
    /// vector it fills: batch sizes vary from poll to poll, and without
    /// these each poll would drop some packets and allocate others.
    static SPARE: std::cell::RefCell<Vec<Packet>> = const { std::cell::RefCell::new(Vec::new()) };
}
const SPARE_MAX: usize = 4096;

/// The shared names of a packet (see [`share`]).
pub struct Names<'a> {
    pub source: &'a Arc<str>,
    pub hook: &'a Arc<str>,
    pub ifname: &'a Arc<str>,
    pub comm: Option<&'a Arc<str>>,
    /// The source's key/values for this packet. A refilled packet that
    /// holds the same keeps its strings: no allocation per packet.
    pub extra: &'a [(String, String)],
}

/// A packet's bytes, in the buffer it has.
fn set_data(p: &mut Packet, data: &[u8]) {
    if p.data.capacity() > BUF_KEEP.max(data.len()) {
        // A large packet's buffer is not kept for small ones.
        p.data = Vec::with_capacity(data.len());
    }
    p.data.clear();
    p.data.extend_from_slice(data);
}

/// Fill `p` from one record, all but its bytes: the fields every BPF
/// source takes from the record's header, as they are, and `names.extra`;
/// queue, drop, return value and stack empty.
pub fn fill_meta(p: &mut Packet, h: &XcapEvent, wall: u64, names: Names<'_>) {
    p.ts_ns = h.ts_ns + wall;
    p.orig_len = h.orig_len;
    p.link = h.link_type();
    let m = &mut p.meta;
    share(&mut m.source, names.source);
    share(&mut m.hook, names.hook);
    share(&mut m.ifname, names.ifname);
    share_opt(&mut m.comm, names.comm);
    m.dir = h.direction();
    m.ifindex = h.ifindex;
    m.netns = h.netns;
    m.queue = None;
    m.cpu = Some(h.cpu);
    m.pid = Some(h.pid);
    m.tid = Some(h.tid);
    m.packet_id = Some(h.skb);
    m.drop_reason = None;
    m.drop_location = None;
    m.retval = None;
    m.stack.clear();
    if m.extra[..] != *names.extra {
        m.extra.clear();
        m.extra.extend_from_slice(names.extra);
    }
}

/// Point `slot` at `v`, unless it does already.
pub fn share(slot: &mut Arc<str>, v: &Arc<str>) {
    if !Arc::ptr_eq(slot, v) {
        *slot = v.clone();
    }
}

/// [`share`] for a name a packet may lack.
pub fn share_opt(slot: &mut Option<Arc<str>>, v: Option<&Arc<str>>) {
    match (slot.as_ref(), v) {
        (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
        _ => *slot = v.cloned(),
    }
}

/// The newest time (monotonic ns) a source may promise it has nothing
/// older than.
pub fn watermark_mono() -> u64 {
    xcap_core::time::monotonic_ns().saturating_sub(WATERMARK_SLACK_NS)
}

/// Read the ring buffer until `stop` says so or `after_poll` returns false:
/// every record goes to `on_record`; after each poll `after_poll` runs (to
/// write or hand on a batch, look at the target again) with the watermark
/// (monotonic) the records taken allow: nothing older follows. Then `detach`
/// runs, so that nothing new arrives, and what is in flight goes to
/// `on_record` unless `after_poll` ended it (its reader is gone); `last`
/// runs at the very end. A record's memory stays valid until the
/// `after_poll` or `last` that follows it has returned. Returns whether it
/// drained.
pub fn pump(
    ring: &libbpf_rs::MapHandle,
    stop: &dyn Fn() -> bool,
    on_record: &mut dyn FnMut(&[u8]),
    after_poll: &mut dyn FnMut(u64) -> Result<bool>,
    detach: &mut dyn FnMut(),
    last: &mut dyn FnMut(),
) -> Result<bool> {
    let mut rb = crate::ring::Ring::new(ring)
        .map_err(|e| Error::runtime(format!("cannot map the ring buffer: {e}")))?;
    let mut ended = false;
    let mut result = Ok(());
    while !stop() {
        if let Err(e) = rb.wait(POLL) {
            result = Err(Error::runtime(format!("ring buffer poll: {e}")));
            break;
        }
        // Taken before the records are: a record committed while these
        // are decoded (which can take long: a socket's owner looked up)
        // must not be older than the promise.
        let mark = watermark_mono();
        let n = rb.take(on_record);
        let next = after_poll(mark);
        rb.give_back();
        match next {
            Ok(true) => {}
            Ok(false) => {
                ended = true;
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        if n > 0 {
            std::thread::sleep(COALESCE);
        }
    }
    detach();
    if result.is_ok() && !ended {
        rb.take(on_record);
    }
    last();
    rb.give_back();
    result?;
    Ok(!ended)
}

/// `pump` for a source running in xcap: records decoded into packets
/// (`decode` may hold some back and push them later) and written, oldest
/// first: by a single source straight from the ring buffer's memory to the
/// sinks, on this thread; otherwise handed to the bus in batches with a
/// watermark (`wall`: what `decode` adds to monotonic stamps). `tick` runs
/// after each poll (false: the target is gone, end). At the end `held`
/// gives what was held back. Returns the packets delivered.
pub fn deliver(
    ctx: &SourceCtx,
    ring: &libbpf_rs::MapHandle,
    wall: u64,
    decode: &mut dyn FnMut(&[u8], &mut Slots),
    tick: &mut dyn FnMut() -> Result<bool>,
    detach: &mut dyn FnMut(),
    held: &mut dyn FnMut() -> Vec<Packet>,
) -> Result<u64> {
    let direct = ctx.direct().is_some();
    let pending = std::cell::RefCell::new(if direct {
        Slots::in_place()
    } else {
        Slots::new(Vec::new())
    });
    let delivered = std::cell::Cell::new(0u64);
    let bus_gone = std::cell::Cell::new(false);
    pump(
        ring,
        &|| ctx.stopped(),
        &mut |rec| decode(rec, &mut pending.borrow_mut()),
        &mut |mark| {
            let mut slots = pending.borrow_mut();
            delivered.set(delivered.get() + slots.len() as u64);
            if let Some(mut w) = ctx.direct() {
                slots.write(&mut w);
            } else if !send(ctx, &mut slots, mark + wall) {
                bus_gone.set(true);
                return Ok(false);
            }
            tick()
        },
        detach,
        &mut || {
            if bus_gone.get() {
                return;
            }
            let mut slots = pending.borrow_mut();
            for p in held() {
                slots.push(p);
            }
            delivered.set(delivered.get() + slots.len() as u64);
            if let Some(mut w) = ctx.direct() {
                slots.write(&mut w);
            } else {
                let mut batch = std::mem::take(&mut *slots).into_batch();
                batch.sort_by_key(|p| p.ts_ns);
                ctx.send(batch, u64::MAX);
            }
        },
    )?;
    Ok(delivered.get())
}

/// Hand the filled packets to the bus, and take the next batch's packets:
/// the written batch with the most packets to fill again (the others are
/// dropped here, on the thread that made them), with room for as many as
/// this one has (growing a vector of packets by doubling moves each
/// packet again). False when the bus has gone.
pub fn send(ctx: &SourceCtx, slots: &mut Slots, watermark: u64) -> bool {
    let cap = slots.len().next_power_of_two().min(BATCH_RESERVE_MAX);
    let mut next = Vec::new();
    while let Some(v) = ctx.recycled() {
        if v.len() > next.len() {
            next = v;
        }
    }
    next.reserve(cap.saturating_sub(next.len()));
    let batch = std::mem::replace(slots, Slots::new(next)).into_batch();
    ctx.send(batch, watermark)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fill one packet as `Slots::fill` does when not in place.
    fn fill(p: &mut Packet, h: &XcapEvent, data: &[u8], wall: u64, names: Names<'_>) {
        fill_meta(p, h, wall, names);
        set_data(p, data);
    }

    fn record(ts: u64, skb: u64) -> XcapEvent {
        XcapEvent {
            ts_ns: ts,
            skb,
            cap_len: 3,
            orig_len: 60,
            ifindex: 2,
            pid: 7,
            ..Default::default()
        }
    }

    fn shared_names() -> (Arc<str>, Arc<str>, Arc<str>) {
        ("kernel".into(), "tp:net:x".into(), "eth0".into())
    }

    fn names_of<'a>(source: &'a Arc<str>, hook: &'a Arc<str>, ifname: &'a Arc<str>) -> Names<'a> {
        Names {
            source,
            hook,
            ifname,
            comm: None,
            extra: &[],
        }
    }

    #[test]
    fn written_packets_are_filled_again_in_place() {
        let (source, hook, ifname) = shared_names();
        let names = || names_of(&source, &hook, &ifname);
        let mut slots = Slots::default();
        for i in 0..3 {
            slots.fill(&record(i, i), &[1, 2, 3], 100, names());
        }
        let mut batch = slots.into_batch();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[2].ts_ns, 102);
        assert_eq!(batch[2].meta.packet_id, Some(2));
        // A stale packet: every per-packet field must be reset by `fill`.
        batch[0].meta.drop_reason = Some("X".into());
        batch[0].meta.stack = vec!["f".into()];
        batch[0].meta.extra = vec![("k".into(), "v".into())];
        batch[0].meta.queue = Some(3);
        batch[0].meta.retval = Some(1);
        let bufs: Vec<*const u8> = batch.iter().map(|p| p.data.as_ptr()).collect();
        let counts = Arc::strong_count(&hook);

        let mut slots = Slots::new(batch);
        slots.fill(&record(9, 9), &[4, 5, 6], 0, names());
        slots.fill(&record(10, 10), &[7, 8, 9], 0, names());
        // No new reference to the shared names.
        assert_eq!(Arc::strong_count(&hook), counts);
        // The second is held back (a function that has not returned), and
        // comes back later as a packet made elsewhere.
        let held = slots.take_last();
        assert_eq!(held.ts_ns, 10);
        assert_eq!(slots.len(), 1);
        slots.push(held);
        let batch = slots.into_batch();
        assert_eq!(batch.len(), 2);
        let p = &batch[0];
        assert_eq!((p.ts_ns, &p.data[..]), (9, &[4u8, 5, 6][..]));
        let m = &p.meta;
        assert!(m.drop_reason.is_none() && m.stack.is_empty() && m.extra.is_empty());
        assert!(m.queue.is_none() && m.retval.is_none());
        assert_eq!((m.pid, m.ifindex, &*m.ifname), (Some(7), 2, "eth0"));
        // The same buffer.
        assert_eq!(p.data.as_ptr(), bufs[0]);
        assert_eq!(batch[1].ts_ns, 10);
    }

    #[test]
    fn extras_are_the_sources_and_kept_while_the_same() {
        let (source, hook, ifname) = shared_names();
        let xsk: Vec<(String, String)> = vec![("xsk".into(), "7".into())];
        let other: Vec<(String, String)> = vec![("xsk".into(), "8".into())];
        let with = |extra| Names {
            extra,
            ..names_of(&source, &hook, &ifname)
        };
        let mut slots = Slots::default();
        let p = slots.slot();
        fill(p, &record(1, 1), &[1], 0, with(&xsk));
        assert_eq!(p.meta.extra, xsk);
        let kept = p.meta.extra[0].1.as_ptr();
        fill(p, &record(2, 2), &[1], 0, with(&xsk));
        assert_eq!(
            p.meta.extra[0].1.as_ptr(),
            kept,
            "the same strings, not new ones"
        );
        fill(p, &record(3, 3), &[1], 0, with(&other));
        assert_eq!(p.meta.extra, other);
        // A source's own push after the fill does not outlive the packet.
        p.meta.extra.push(("synth".into(), "ip".into()));
        fill(p, &record(4, 4), &[1], 0, with(&other));
        assert_eq!(p.meta.extra, other);
        fill(p, &record(5, 5), &[1], 0, with(&[]));
        assert!(p.meta.extra.is_empty());
    }

    #[test]
    fn no_large_buffer_is_kept_for_small_packets() {
        let (source, hook, ifname) = shared_names();
        let names = || names_of(&source, &hook, &ifname);
        let mut slots = Slots::default();
        for i in 0..3 {
            slots.fill(&record(i, i), &[7; 9000], 0, names());
        }
        let mut slots = Slots::new(slots.into_batch());
        slots.fill(&record(5, 5), &[1; 10], 0, names());
        let batch = slots.into_batch();
        assert_eq!(batch.len(), 1);
        assert!(batch[0].data.capacity() <= BUF_KEEP);
        // The two left over wait as spares, without their 9000 bytes.
        SPARE.with_borrow(|s| {
            assert!(s.len() >= 2);
            assert!(s.iter().all(|p| p.data.capacity() <= BUF_KEEP));
        });
    }

    /// A source that fills in-place slots from a buffer of its own (the
    /// ring's stand-in), out of time order, writes them, then scribbles on
    /// the buffer: the sinks must have had the bytes, in time order.
    struct InPlace;

    impl xcap_core::Source for InPlace {
        fn name(&self) -> &str {
            "inplace"
        }
        fn run(self: Box<Self>, ctx: SourceCtx) -> Result<xcap_core::SourceReport> {
            let (source, hook, ifname) = shared_names();
            let names = || names_of(&source, &hook, &ifname);
            let mut ring = [[1u8; 4], [2; 4], [3; 4]];
            let mut slots = Slots::in_place();
            for (ts, i) in [(20, 1), (10, 0), (30, 2)] {
                slots.fill(&record(ts, ts), &ring[i], 0, names());
            }
            // Held back: its bytes must be its own from here on.
            let held = slots.take_last();
            ring[2] = [0xee; 4];
            slots.push(held);
            assert!(slots.write(&mut ctx.direct().expect("a single source")));
            for r in ring.iter_mut() {
                *r = [0xff; 4];
            }
            assert!(slots.is_empty());
            Ok(xcap_core::SourceReport::default())
        }
    }

    /// What a sink was given: time and bytes of each packet.
    type Written = Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

    struct Collect(Written);

    impl xcap_core::Sink for Collect {
        fn name(&self) -> &str {
            "collect"
        }
        fn write(&mut self, p: &xcap_core::PacketRef<'_>) -> Result<()> {
            self.0.lock().unwrap().push((p.ts_ns, p.data.to_vec()));
            Ok(())
        }
        fn finish(&mut self, _: &[xcap_core::SourceReport]) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn in_place_packets_are_written_in_time_order_from_the_ring() {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = xcap_core::run_bus(
            vec![Box::new(InPlace)],
            vec![Box::new(Collect(got.clone()))],
            &xcap_core::BusOptions::default(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )
        .unwrap();
        assert!(r.error.is_none());
        let got = got.lock().unwrap();
        assert_eq!(
            *got,
            vec![(10, vec![1; 4]), (20, vec![2; 4]), (30, vec![3; 4])]
        );
    }

    #[test]
    fn ring_size_is_a_power_of_two_within_bounds() {
        assert_eq!(ring_bytes(1), 64 * 1024);
        assert_eq!(ring_bytes(100), 128 * 1024);
        assert_eq!(ring_bytes(0), DEFAULT_BUFFER_KIB * 1024);
    }

    #[test]
    fn snaplen_zero_is_the_most() {
        assert_eq!(snaplen(0, "x").unwrap(), MAX_SNAPLEN);
        assert_eq!(snaplen(100, "x").unwrap(), 100);
        assert!(matches!(
            snaplen(MAX_SNAPLEN + 1, "x"),
            Err(Error::Input(_))
        ));
    }
}
