//! A plugin source run as an xcap `Source`: its run() on the source's
//! thread, host callbacks that batch packets for the bus.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::mem::{offset_of, size_of};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xcap_core::registry::{SourceCtx, SourceReport};
use xcap_core::{Direction, LinkType, Meta, Packet, Result, Source};
use xcap_plugin_sdk::abi;

use crate::{text, LogLabel, RawConfig};

/// How long packets wait in a batch, and how far behind "now" a plugin's
/// timestamps may be and still be merged in order (the ABI's promise).
const BATCH_AGE: Duration = Duration::from_millis(50);
const SKEW_NS: u64 = 100_000_000;
const BATCH_MAX: usize = 1024;

pub(crate) struct PluginSource {
    table: &'static abi::Source,
    name: String,
    state: *mut c_void,
    snaplen: u32,
    failures: Arc<Mutex<Vec<String>>>,
    closed: bool,
}

// SAFETY: the ABI gives a source's run() a thread of its own; the state is
// only used from one thread at a time.
unsafe impl Send for PluginSource {}

pub(crate) fn open(
    table: &'static abi::Source,
    name: &str,
    cfg: &RawConfig,
    failures: Arc<Mutex<Vec<String>>>,
) -> Result<Box<dyn Source>> {
    let label = LogLabel {
        name: format!("plugin source {name}"),
        debug: false,
    };
    let host = abi::Host {
        size: size_of::<abi::Host>() as u32,
        reserved0: 0,
        ctx: &label as *const LogLabel as *mut c_void,
        emit: None,
        stopping: None,
        lost: None,
        log: Some(crate::log_cb),
    };
    let state = crate::open_state(table.open.unwrap(), cfg, &host, &label.name)?;
    Ok(Box::new(PluginSource {
        table,
        name: name.to_string(),
        state,
        snaplen: cfg.raw.snaplen,
        failures,
        closed: false,
    }))
}

impl PluginSource {
    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            // SAFETY: open succeeded and close was not called yet.
            unsafe { (self.table.close.unwrap())(self.state) }
        }
    }
}

impl Drop for PluginSource {
    fn drop(&mut self) {
        self.close();
    }
}

/// The host context of a running source (`LogLabel` first: see log_cb).
#[repr(C)]
struct Emitter<'a> {
    label: LogLabel,
    ctx: &'a SourceCtx,
    source: Arc<str>,
    /// Interned interface, task and hook names: Arc clones, not strings,
    /// per packet.
    names: HashMap<Box<str>, Arc<str>>,
    batch: Vec<Packet>,
    sent_at: Instant,
    delivered: u64,
    lost: u64,
    snaplen: usize,
    gone: bool,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Emitter<'_> {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(s.into(), a.clone());
        a
    }

    /// Hand the batch to the bus with the promise the ABI makes.
    fn send(&mut self, watermark: u64) {
        self.sent_at = Instant::now();
        if self.gone {
            return;
        }
        let mut next = self.ctx.recycled().unwrap_or_default();
        next.clear();
        let mut batch = std::mem::replace(&mut self.batch, next);
        batch.sort_by_key(|p| p.ts_ns);
        self.delivered += batch.len() as u64;
        if !self.ctx.send(batch, watermark) {
            self.gone = true;
        }
    }

    fn tick(&mut self) {
        if self.sent_at.elapsed() >= BATCH_AGE {
            self.send(now_ns().saturating_sub(SKEW_NS));
        }
    }

    /// # Safety
    /// `p` is a packet the plugin passed, valid during the call.
    unsafe fn emit(&mut self, p: &abi::Packet) {
        let has = |end: usize| abi::covers(p.size, end);
        let cap = (p.cap_len as usize).min(self.snaplen);
        let data = if p.data.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(p.data, cap).to_vec()
        };
        let known = |v: u32| (v != abi::UNKNOWN).then_some(v);
        let mut meta = Meta {
            source: self.source.clone(),
            hook: self.source.clone(),
            dir: match p.direction {
                abi::DIR_IN => Direction::In,
                abi::DIR_OUT => Direction::Out,
                _ => Direction::Unknown,
            },
            ..Default::default()
        };
        if has(offset_of!(abi::Packet, reserved1)) {
            if !p.hook.is_null() {
                meta.hook = self.intern(&CStr::from_ptr(p.hook).to_string_lossy());
            }
            if !p.ifname.is_null() {
                meta.ifname = self.intern(&CStr::from_ptr(p.ifname).to_string_lossy());
            }
            if !p.comm.is_null() {
                meta.comm = Some(self.intern(&CStr::from_ptr(p.comm).to_string_lossy()));
            }
            meta.ifindex = p.ifindex;
            meta.pid = known(p.pid);
            meta.tid = known(p.tid);
            meta.queue = known(p.queue);
            for i in 0..p.n_meta as usize {
                let kv = *p.meta.add(i);
                let k = text(kv.key).replace(['=', ';'], "_");
                meta.extra.push((k, text(kv.value)));
            }
        }
        self.batch.push(Packet {
            ts_ns: p.ts_ns,
            orig_len: p.orig_len.max(p.cap_len),
            data,
            link: LinkType::from_pcap(p.link_type),
            meta,
        });
        if self.batch.len() >= BATCH_MAX {
            self.send(now_ns().saturating_sub(SKEW_NS));
        } else {
            self.tick();
        }
    }
}

unsafe extern "C" fn emit_cb(ctx: *mut c_void, p: *const abi::Packet) -> c_int {
    // SAFETY: ctx is the Emitter of this run; p the plugin's packet.
    let e = &mut *(ctx as *mut Emitter);
    if !p.is_null() && !e.gone {
        e.emit(&*p);
    }
    (e.gone || e.ctx.stopped()) as c_int
}

unsafe extern "C" fn stopping_cb(ctx: *mut c_void) -> c_int {
    // SAFETY: ctx is the Emitter of this run.
    let e = &mut *(ctx as *mut Emitter);
    e.tick();
    (e.gone || e.ctx.stopped()) as c_int
}

unsafe extern "C" fn lost_cb(ctx: *mut c_void, n: u64) {
    // SAFETY: ctx is the Emitter of this run.
    let e = &mut *(ctx as *mut Emitter);
    e.lost = e.lost.saturating_add(n);
}

impl Source for PluginSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(mut self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
        let mut em = Emitter {
            label: LogLabel {
                name: format!("plugin source {}", self.name),
                debug: false,
            },
            ctx: &ctx,
            source: Arc::from(self.name.as_str()),
            names: HashMap::new(),
            batch: Vec::new(),
            sent_at: Instant::now(),
            delivered: 0,
            lost: 0,
            snaplen: self.snaplen as usize,
            gone: false,
        };
        let host = abi::Host {
            size: size_of::<abi::Host>() as u32,
            reserved0: 0,
            ctx: &mut em as *mut Emitter as *mut c_void,
            emit: Some(emit_cb),
            stopping: Some(stopping_cb),
            lost: Some(lost_cb),
            log: Some(crate::log_cb),
        };
        let (run, state) = (self.table.run.unwrap(), self.state);
        // SAFETY: open succeeded; host and em outlive the call.
        let r = crate::call(|err, len| unsafe { run(state, &host, err, len) });
        em.send(now_ns());
        self.close();
        if let Err(e) = r {
            // The plugin stops itself; the capture goes on.
            crate::record_failure(
                &self.failures,
                format!("plugin source {} failed: {e}", self.name),
            );
        }
        Ok(SourceReport {
            name: self.name.clone(),
            delivered: em.delivered,
            dropped: em.lost,
            hooks: Vec::new(),
            failure: None,
            notes: Vec::new(),
        })
    }
}
