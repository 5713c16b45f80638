//! A plugin sink run as an xcap `Sink`. Each packet is handed over as a
//! `struct xcap_packet` whose strings live in one reused buffer.

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::mem::size_of;
use std::sync::{Arc, Mutex};

use xcap_core::registry::SourceReport;
use xcap_core::{Direction, PacketRef, Result, Sink};
use xcap_plugin_sdk::abi;

use crate::{LogLabel, RawConfig};

/// The host context of a sink (`LogLabel` first: see log_cb).
#[repr(C)]
struct SinkCtx {
    label: LogLabel,
}

pub(crate) struct PluginSink {
    table: &'static abi::Sink,
    name: String,
    state: *mut c_void,
    /// Boxed: the plugin may keep the host pointer it got at open.
    _ctx: Box<SinkCtx>,
    _host: Box<abi::Host>,
    /// Stopped by its own failure: called no more.
    failed: bool,
    failures: Arc<Mutex<Vec<String>>>,
    closed: bool,
    /// NUL-terminated strings of the packet being written.
    strings: String,
    kv: Vec<abi::Kv>,
    pairs: Vec<(usize, usize)>,
}

// SAFETY: the bus calls a sink from one thread at a time.
unsafe impl Send for PluginSink {}

pub(crate) fn open(
    table: &'static abi::Sink,
    name: &str,
    cfg: &RawConfig,
    failures: Arc<Mutex<Vec<String>>>,
) -> Result<Box<dyn Sink>> {
    let mut ctx = Box::new(SinkCtx {
        label: LogLabel {
            name: format!("plugin sink {name}"),
            debug: cfg.raw.verbose > 1,
        },
    });
    let host = Box::new(abi::Host {
        size: size_of::<abi::Host>() as u32,
        reserved0: 0,
        ctx: &mut *ctx as *mut SinkCtx as *mut c_void,
        emit: None,
        stopping: None,
        lost: None,
        log: Some(crate::log_cb),
    });
    let state = crate::open_state(table.open.unwrap(), cfg, &host, &ctx.label.name)?;
    Ok(Box::new(PluginSink {
        table,
        name: name.to_string(),
        state,
        _ctx: ctx,
        _host: host,
        failed: false,
        failures,
        closed: false,
        strings: String::new(),
        kv: Vec::new(),
        pairs: Vec::new(),
    }))
}

impl PluginSink {
    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            // SAFETY: open succeeded and close was not called yet.
            unsafe { (self.table.close.unwrap())(self.state) }
        }
    }

    /// A call's result: a failure stops this sink, not the capture.
    fn check(&mut self, r: std::result::Result<(), String>) {
        if let (Err(e), false) = (r, self.failed) {
            crate::record_failure(
                &self.failures,
                format!("plugin sink {} failed: {e}", self.name),
            );
            self.failed = true;
            self.close();
        }
    }

    /// Append `s` and a NUL; its offset.
    fn put(&mut self, s: &str) -> usize {
        let at = self.strings.len();
        self.strings.push_str(&s.replace('\0', ""));
        self.strings.push('\0');
        at
    }
}

impl Drop for PluginSink {
    fn drop(&mut self) {
        self.close();
    }
}

impl Sink for PluginSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// xcap_plugin.h: "A sink's functions are called from one thread".
    fn bound_to_its_thread(&self) -> bool {
        true
    }

    fn write(&mut self, p: &PacketRef) -> Result<()> {
        if self.failed {
            return Ok(());
        }
        let m = &p.meta;
        self.strings.clear();
        self.pairs.clear();
        let ifname = self.put(&m.ifname);
        let comm = m.comm.as_deref().map(|c| self.put(c));
        let hook = self.put(&m.hook);
        // What struct xcap_packet has no field for travels as metadata.
        let mut v = String::new();
        let pair = |me: &mut Self, k: &str, v: &str| {
            let k = me.put(k);
            let v = me.put(v);
            me.pairs.push((k, v));
        };
        pair(self, "source", &m.source);
        if m.netns != 0 {
            let _ = write!(v, "{}", m.netns);
            pair(self, "netns", &v);
        }
        for (k, val) in [("cpu", m.cpu.map(u64::from)), ("packet_id", m.packet_id)] {
            if let Some(x) = val {
                v.clear();
                let _ = write!(v, "{x}");
                pair(self, k, &v);
            }
        }
        if let Some(r) = m.retval {
            v.clear();
            let _ = write!(v, "{r}");
            pair(self, "retval", &v);
        }
        if let Some(r) = &m.drop_reason {
            pair(self, "drop_reason", r);
        }
        if let Some(l) = &m.drop_location {
            pair(self, "drop_location", l);
        }
        if !m.stack.is_empty() {
            pair(self, "stack", &m.stack.join(" <- "));
        }
        for (k, val) in &m.extra {
            pair(self, k, val);
        }
        let base = self.strings.as_ptr() as *const c_char;
        // SAFETY: offsets into `strings`, which no longer changes below.
        let at = |o: usize| unsafe { base.add(o) };
        self.kv.clear();
        for &(k, v) in &self.pairs {
            self.kv.push(abi::Kv {
                key: at(k),
                value: at(v),
            });
        }
        let raw = abi::Packet {
            size: size_of::<abi::Packet>() as u32,
            link_type: p.link.pcap(),
            direction: match m.dir {
                Direction::In => abi::DIR_IN,
                Direction::Out => abi::DIR_OUT,
                Direction::Unknown => abi::DIR_UNKNOWN,
            },
            reserved0: 0,
            ts_ns: p.ts_ns,
            data: p.data.as_ptr(),
            cap_len: p.data.len() as u32,
            orig_len: p.orig_len,
            ifname: if m.ifname.is_empty() {
                std::ptr::null()
            } else {
                at(ifname)
            },
            ifindex: m.ifindex,
            pid: m.pid.unwrap_or(abi::UNKNOWN),
            tid: m.tid.unwrap_or(abi::UNKNOWN),
            queue: m.queue.unwrap_or(abi::UNKNOWN),
            comm: comm.map_or(std::ptr::null(), at),
            hook: at(hook),
            meta: self.kv.as_ptr(),
            n_meta: self.kv.len() as u32,
            reserved1: 0,
        };
        let (write, state) = (self.table.write.unwrap(), self.state);
        // SAFETY: open succeeded; raw and its strings outlive the call.
        let r = crate::call(|err, len| unsafe { write(state, &raw, err, len) });
        self.check(r);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let (false, Some(f)) = (self.failed, self.table.flush) {
            let state = self.state;
            // SAFETY: open succeeded.
            let r = crate::call(|err, len| unsafe { f(state, err, len) });
            self.check(r);
        }
        Ok(())
    }

    fn finish(&mut self, reports: &[SourceReport]) -> Result<()> {
        if let (false, Some(f)) = (self.failed, self.table.finish) {
            let names: Vec<std::ffi::CString> =
                reports.iter().map(|r| crate::cstring(&r.name)).collect();
            let stats: Vec<abi::SourceStats> = reports
                .iter()
                .zip(&names)
                .map(|(r, n)| abi::SourceStats {
                    name: n.as_ptr(),
                    captured: r.delivered,
                    dropped: r.dropped,
                })
                .collect();
            let summary = abi::Summary {
                size: size_of::<abi::Summary>() as u32,
                n_sources: stats.len() as u32,
                sources: stats.as_ptr(),
            };
            let state = self.state;
            // SAFETY: open succeeded; summary and its strings outlive the call.
            let r = crate::call(|err, len| unsafe { f(state, &summary, err, len) });
            self.check(r);
        }
        self.close();
        // Already said when it happened; xcap exits 1 at the end.
        Ok(())
    }
}
