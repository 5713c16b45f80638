//! Write xcap plugins in Rust.
//!
//! A source implements [`SourcePlugin`], a sink [`SinkPlugin`]; one
//! [`export_plugin!`] in a `cdylib` crate exports them under the C ABI of
//! `plugins/include/xcap_plugin.h`. The wrappers here turn raw pointers
//! into borrowed Rust values and catch every panic at the boundary: a
//! panicking plugin fails with its panic message, as if it had returned an
//! error, and never unwinds into xcap.
//!
//! ```ignore
//! struct Gen { left: u64 }
//! impl xcap_plugin_sdk::SourcePlugin for Gen {
//!     const NAME: &'static CStr = c"gen";
//!     const HELP: &'static CStr = c"synthetic packets";
//!     fn open(cfg: &Config, _: &Host) -> Result<Self, String> { Ok(Gen { left: 10 }) }
//!     fn run(&mut self, host: &Host) -> Result<(), String> { ... host.emit(&pkt) ... }
//! }
//! xcap_plugin_sdk::export_plugin!(name: c"gen", version: c"0.1.0",
//!     description: c"...", sources: [Gen], sinks: []);
//! ```

pub mod abi;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::{offset_of, size_of};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A C string field as text ("" for NULL or bad UTF-8).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn text<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        None
    } else {
        CStr::from_ptr(p).to_str().ok()
    }
}

/// How xcap was asked to capture, and the plugin's own options.
pub struct Config<'a> {
    raw: &'a abi::Config,
}

impl<'a> Config<'a> {
    pub fn snaplen(&self) -> u32 {
        self.raw.snaplen
    }
    /// A sink's `-w` file (`-` is stdout).
    pub fn path(&self) -> Option<&'a str> {
        // SAFETY: the host passes a valid string or NULL.
        unsafe { text(self.raw.path) }
    }
    pub fn verbose(&self) -> u32 {
        self.raw.verbose
    }
    /// The `-i` names.
    pub fn interfaces(&self) -> Vec<&'a str> {
        (0..self.raw.n_interfaces as usize)
            // SAFETY: n_interfaces valid string pointers.
            .filter_map(|i| unsafe { text(*self.raw.interfaces.add(i)) })
            .collect()
    }
    /// This plugin's `--plugin-opt` KEY=VALUE pairs, in order.
    pub fn opts(&self) -> Vec<(&'a str, &'a str)> {
        (0..self.raw.n_opts as usize)
            .filter_map(|i| {
                // SAFETY: n_opts valid pairs.
                let kv = unsafe { *self.raw.opts.add(i) };
                unsafe { Some((text(kv.key)?, text(kv.value)?)) }
            })
            .collect()
    }
    /// The options parsed against the keys a plugin knows: an unknown key
    /// or a value `parse` refuses is an error naming it.
    pub fn parse_opts(
        &self,
        mut set: impl FnMut(&str, &str) -> Option<Result<(), String>>,
    ) -> Result<(), String> {
        for (k, v) in self.opts() {
            match set(k, v) {
                None => return Err(format!("unknown option '{k}'")),
                Some(Err(e)) => return Err(format!("option {k}={v}: {e}")),
                Some(Ok(())) => {}
            }
        }
        Ok(())
    }
}

/// What xcap offers a running plugin.
pub struct Host<'a> {
    raw: &'a abi::Host,
}

/// A log level for [`Host::log`].
#[derive(Clone, Copy, Debug)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Host<'_> {
    /// Hand a packet to xcap (copied before this returns). False when the
    /// capture is stopping: return from `run` then.
    pub fn emit(&self, p: &Packet) -> bool {
        let Some(emit) = self.raw.emit else {
            return false;
        };
        let names: Vec<CString> = [p.ifname, p.comm, p.hook]
            .iter()
            .map(|s| CString::new(s.unwrap_or("")).unwrap_or_default())
            .collect();
        let strs: Vec<(CString, CString)> = p
            .meta
            .iter()
            .map(|(k, v)| {
                (
                    CString::new(*k).unwrap_or_default(),
                    CString::new(*v).unwrap_or_default(),
                )
            })
            .collect();
        let kv: Vec<abi::Kv> = strs
            .iter()
            .map(|(k, v)| abi::Kv {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let opt = |i: usize, o: Option<&str>| {
            if o.is_some() {
                names[i].as_ptr()
            } else {
                std::ptr::null()
            }
        };
        let raw = abi::Packet {
            size: size_of::<abi::Packet>() as u32,
            link_type: p.link_type,
            direction: p.direction as u8,
            reserved0: 0,
            ts_ns: p.ts_ns,
            data: p.data.as_ptr(),
            cap_len: p.data.len() as u32,
            orig_len: p.orig_len.max(p.data.len() as u32),
            ifname: opt(0, p.ifname),
            ifindex: p.ifindex,
            pid: p.pid.unwrap_or(abi::UNKNOWN),
            tid: p.tid.unwrap_or(abi::UNKNOWN),
            queue: p.queue.unwrap_or(abi::UNKNOWN),
            comm: opt(1, p.comm),
            hook: opt(2, p.hook),
            meta: kv.as_ptr(),
            n_meta: kv.len() as u32,
            reserved1: 0,
        };
        // SAFETY: the host's callback with its own context; raw and what it
        // points to live until it returns.
        unsafe { emit(self.raw.ctx, &raw) == 0 }
    }
    /// True once the capture is stopping. Call it at least every 100 ms
    /// while there is nothing to emit.
    pub fn stopping(&self) -> bool {
        match self.raw.stopping {
            // SAFETY: the host's callback with its own context.
            Some(f) => unsafe { f(self.raw.ctx) != 0 },
            None => true,
        }
    }
    /// `n` packets were lost before they could be emitted.
    pub fn lost(&self, n: u64) {
        if let Some(f) = self.raw.lost {
            // SAFETY: the host's callback with its own context.
            unsafe { f(self.raw.ctx, n) }
        }
    }
    pub fn log(&self, level: Level, msg: &str) {
        if let (Some(f), Ok(m)) = (self.raw.log, CString::new(msg)) {
            // SAFETY: the host's callback; m lives across the call.
            unsafe { f(self.raw.ctx, level as c_int, m.as_ptr()) }
        }
    }
}

/// Direction of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    #[default]
    Unknown = 0,
    In = 1,
    Out = 2,
}

/// One packet, as a source emits it or a sink receives it.
#[derive(Clone, Debug, Default)]
pub struct Packet<'a> {
    pub ts_ns: u64,
    /// pcap LINKTYPE_*: 1 Ethernet, 101 raw IP.
    pub link_type: u16,
    pub direction: Direction,
    pub data: &'a [u8],
    pub orig_len: u32,
    pub ifname: Option<&'a str>,
    pub ifindex: u32,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub queue: Option<u32>,
    pub comm: Option<&'a str>,
    pub hook: Option<&'a str>,
    /// Further metadata (keys without '=' or ';').
    pub meta: Vec<(&'a str, &'a str)>,
}

impl<'a> Packet<'a> {
    /// # Safety
    /// `p` is a packet the host passed, valid for `'a`.
    unsafe fn from_raw(p: &'a abi::Packet) -> Packet<'a> {
        let has = |end: usize| abi::covers(p.size, end);
        let known = |v: u32| (v != abi::UNKNOWN).then_some(v);
        let mut out = Packet {
            ts_ns: p.ts_ns,
            link_type: p.link_type,
            direction: match p.direction {
                abi::DIR_IN => Direction::In,
                abi::DIR_OUT => Direction::Out,
                _ => Direction::Unknown,
            },
            data: if p.data.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(p.data, p.cap_len as usize)
            },
            orig_len: p.orig_len,
            ..Default::default()
        };
        if has(offset_of!(abi::Packet, reserved1)) {
            out.ifname = text(p.ifname);
            out.ifindex = p.ifindex;
            out.pid = known(p.pid);
            out.tid = known(p.tid);
            out.queue = known(p.queue);
            out.comm = text(p.comm);
            out.hook = text(p.hook);
            out.meta = (0..p.n_meta as usize)
                .filter_map(|i| {
                    let kv = *p.meta.add(i);
                    Some((text(kv.key)?, text(kv.value)?))
                })
                .collect();
        }
        out
    }
}

/// What one source did, for a sink's `finish`.
#[derive(Clone, Debug)]
pub struct SourceStats<'a> {
    pub name: &'a str,
    pub captured: u64,
    pub dropped: u64,
}

/// A capture source.
pub trait SourcePlugin: Sized + Send {
    /// For `--source`.
    const NAME: &'static CStr;
    /// One line for `--list`.
    const HELP: &'static CStr;
    /// Check the options and prepare; an error is bad input (exit 2).
    fn open(cfg: &Config, host: &Host) -> Result<Self, String>;
    /// Capture until done or `host.stopping()`.
    fn run(&mut self, host: &Host) -> Result<(), String>;
}

/// A sink.
pub trait SinkPlugin: Sized {
    const NAME: &'static CStr;
    const HELP: &'static CStr;
    /// Whether it writes the `-w` file (`Config::path`).
    const WRITES_FILE: bool;
    fn open(cfg: &Config, host: &Host) -> Result<Self, String>;
    fn write(&mut self, p: &Packet) -> Result<(), String>;
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn finish(&mut self, _sources: &[SourceStats]) -> Result<(), String> {
        Ok(())
    }
}

/// Write `msg` into the host's error buffer, cut to fit, NUL-terminated.
///
/// # Safety
/// `err` has `len` writable bytes (or is NULL).
unsafe fn put_err(err: *mut c_char, len: usize, msg: &str) {
    if err.is_null() || len == 0 {
        return;
    }
    let line = msg.lines().next().unwrap_or("");
    let mut n = line.len().min(len - 1);
    while !line.is_char_boundary(n) {
        n -= 1;
    }
    std::ptr::copy_nonoverlapping(line.as_ptr(), err as *mut u8, n);
    *err.add(n) = 0;
}

thread_local! {
    /// Where the last panic inside `guard` on this thread happened.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The plugin's own panic hook (a cdylib has its own std, so this touches
/// nothing of xcap's): a panic inside a call from xcap becomes the call's
/// one-line error, with its location, instead of a report on stderr; a
/// panic on a thread of the plugin's own is one line on stderr.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if IN_GUARD.with(|g| g.get()) {
                PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
            } else {
                eprintln!(
                    "xcap plugin: a thread panicked{at}: {}",
                    payload(info.payload())
                );
            }
        }));
    });
}

fn payload(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".into())
}

/// Run `f`, turning an error or a panic into the C convention.
///
/// # Safety
/// As for `put_err`.
unsafe fn guard(err: *mut c_char, len: usize, f: impl FnOnce() -> Result<(), String>) -> c_int {
    quiet_panics();
    let outer = IN_GUARD.with(|g| g.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(outer));
    match r {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            put_err(err, len, &e);
            1
        }
        Err(p) => {
            let at = PANIC_AT.with(|a| a.borrow_mut().take()).unwrap_or_default();
            put_err(err, len, &format!("panicked{at}: {}", payload(&*p)));
            2
        }
    }
}

/// Shims behind the tables; public for `export_plugin!` only.
#[doc(hidden)]
pub mod shim {
    use super::*;

    /// Both kinds' open: the plugin's value, boxed, is the state.
    unsafe fn open_boxed<T>(
        cfg: *const abi::Config,
        host: *const abi::Host,
        state: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
        open: impl FnOnce(&Config, &Host) -> Result<T, String>,
    ) -> c_int {
        guard(err, len, || {
            let t = open(&Config { raw: &*cfg }, &Host { raw: &*host })?;
            *state = Box::into_raw(Box::new(t)) as *mut c_void;
            Ok(())
        })
    }

    pub unsafe extern "C" fn source_open<S: SourcePlugin>(
        cfg: *const abi::Config,
        host: *const abi::Host,
        state: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int {
        open_boxed(cfg, host, state, err, len, S::open)
    }

    pub unsafe extern "C" fn source_run<S: SourcePlugin>(
        state: *mut c_void,
        host: *const abi::Host,
        err: *mut c_char,
        len: usize,
    ) -> c_int {
        guard(err, len, || (*(state as *mut S)).run(&Host { raw: &*host }))
    }

    pub unsafe extern "C" fn close<T>(state: *mut c_void) {
        if !state.is_null() {
            // A panicking drop must not unwind into the host either.
            let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(state as *mut T))));
        }
    }

    pub unsafe extern "C" fn sink_open<S: SinkPlugin>(
        cfg: *const abi::Config,
        host: *const abi::Host,
        state: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int {
        open_boxed(cfg, host, state, err, len, S::open)
    }

    pub unsafe extern "C" fn sink_write<S: SinkPlugin>(
        state: *mut c_void,
        p: *const abi::Packet,
        err: *mut c_char,
        len: usize,
    ) -> c_int {
        guard(err, len, || {
            (*(state as *mut S)).write(&Packet::from_raw(&*p))
        })
    }

    pub unsafe extern "C" fn sink_flush<S: SinkPlugin>(
        state: *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int {
        guard(err, len, || (*(state as *mut S)).flush())
    }

    pub unsafe extern "C" fn sink_finish<S: SinkPlugin>(
        state: *mut c_void,
        s: *const abi::Summary,
        err: *mut c_char,
        len: usize,
    ) -> c_int {
        guard(err, len, || {
            let s = &*s;
            let stats: Vec<SourceStats> = (0..s.n_sources as usize)
                .map(|i| {
                    let r = *s.sources.add(i);
                    SourceStats {
                        name: text(r.name).unwrap_or(""),
                        captured: r.captured,
                        dropped: r.dropped,
                    }
                })
                .collect();
            (*(state as *mut S)).finish(&stats)
        })
    }

    pub const fn source<S: SourcePlugin>() -> abi::Source {
        abi::Source {
            size: size_of::<abi::Source>() as u32,
            reserved0: 0,
            name: S::NAME.as_ptr(),
            help: S::HELP.as_ptr(),
            open: Some(source_open::<S>),
            run: Some(source_run::<S>),
            close: Some(close::<S>),
        }
    }

    pub const fn sink<S: SinkPlugin>() -> abi::Sink {
        abi::Sink {
            size: size_of::<abi::Sink>() as u32,
            writes_file: S::WRITES_FILE as u32,
            name: S::NAME.as_ptr(),
            help: S::HELP.as_ptr(),
            open: Some(sink_open::<S>),
            write: Some(sink_write::<S>),
            flush: Some(sink_flush::<S>),
            finish: Some(sink_finish::<S>),
            close: Some(close::<S>),
        }
    }

    /// A `&'static` table, as the pointer arrays of the descriptor hold.
    #[repr(transparent)]
    pub struct Table<T: 'static>(pub &'static T);
    // SAFETY: tables are immutable statics.
    unsafe impl<T> Sync for Table<T> {}
}

/// Export a plugin's descriptor (`xcap_plugin`) with its sources and sinks.
/// Use once, at the top level of a `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        description: $desc:expr,
        sources: [$($src:ty),* $(,)?],
        sinks: [$($snk:ty),* $(,)?] $(,)?
    ) => {
        #[allow(non_upper_case_globals)]
        #[no_mangle]
        pub static xcap_plugin: $crate::abi::Plugin = {
            static SOURCES: &[$crate::shim::Table<$crate::abi::Source>] = &[$(
                $crate::shim::Table({
                    static T: $crate::abi::Source = $crate::shim::source::<$src>();
                    &T
                })
            ),*];
            static SINKS: &[$crate::shim::Table<$crate::abi::Sink>] = &[$(
                $crate::shim::Table({
                    static T: $crate::abi::Sink = $crate::shim::sink::<$snk>();
                    &T
                })
            ),*];
            const NAME: &::std::ffi::CStr = $name;
            const VERSION: &::std::ffi::CStr = $version;
            const DESC: &::std::ffi::CStr = $desc;
            $crate::abi::Plugin {
                magic: $crate::abi::MAGIC,
                abi_major: $crate::abi::ABI_MAJOR,
                abi_minor: $crate::abi::ABI_MINOR,
                size: ::std::mem::size_of::<$crate::abi::Plugin>() as u32,
                name: NAME.as_ptr(),
                version: VERSION.as_ptr(),
                description: DESC.as_ptr(),
                sources: SOURCES.as_ptr() as *const *const $crate::abi::Source,
                n_sources: SOURCES.len() as u32,
                reserved0: 0,
                sinks: SINKS.as_ptr() as *const *const $crate::abi::Sink,
                n_sinks: SINKS.len() as u32,
                reserved1: 0,
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::abi::*;
    use std::mem::{offset_of, size_of};
    use std::path::Path;

    fn include() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../include"))
    }

    /// Compile the C header and compare each struct's layout with abi.rs.
    macro_rules! same_layout {
        ($t:ty, $c:literal, [$($f:ident),*]) => {{
            let (size, offs) = xcap_core::layout::c_layout(
                &[include()],
                &["xcap_plugin.h"],
                $c,
                &[$(stringify!($f)),*],
            )
            .unwrap();
            assert_eq!(size, size_of::<$t>(), "size of {}", $c);
            assert_eq!(offs, vec![$(offset_of!($t, $f)),*], "offsets of {}", $c);
        }};
    }

    #[test]
    fn layout_matches_c_header() {
        same_layout!(Kv, "xcap_kv", [key, value]);
        same_layout!(
            Packet,
            "xcap_packet",
            [
                size, link_type, direction, ts_ns, data, cap_len, orig_len, ifname, ifindex, pid,
                tid, queue, comm, hook, meta, n_meta
            ]
        );
        same_layout!(Host, "xcap_host", [size, ctx, emit, stopping, lost, log]);
        same_layout!(
            Config,
            "xcap_config",
            [
                size,
                snaplen,
                path,
                interfaces,
                n_interfaces,
                verbose,
                opts,
                n_opts
            ]
        );
        same_layout!(Source, "xcap_source", [size, name, help, open, run, close]);
        same_layout!(SourceStats, "xcap_source_stats", [name, captured, dropped]);
        same_layout!(Summary, "xcap_summary", [size, n_sources, sources]);
        same_layout!(
            Sink,
            "xcap_sink",
            [
                size,
                writes_file,
                name,
                help,
                open,
                write,
                flush,
                finish,
                close
            ]
        );
        same_layout!(
            Plugin,
            "xcap_plugin",
            [
                magic,
                abi_major,
                abi_minor,
                size,
                name,
                version,
                description,
                sources,
                n_sources,
                sinks,
                n_sinks
            ]
        );
    }

    #[test]
    fn constants_match_c_header() {
        let v = xcap_core::layout::c_consts(
            &[include()],
            &["xcap_plugin.h"],
            &[
                "XCAP_PLUGIN_MAGIC",
                "XCAP_ABI_MAJOR",
                "XCAP_ABI_MINOR",
                "XCAP_DIR_IN",
                "XCAP_DIR_OUT",
                "XCAP_LOG_DEBUG",
            ],
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                MAGIC as i64,
                ABI_MAJOR as i64,
                ABI_MINOR as i64,
                DIR_IN as i64,
                DIR_OUT as i64,
                LOG_DEBUG as i64
            ]
        );
        assert_eq!(&MAGIC.to_le_bytes(), b"XCAPPLUG");
    }
}
