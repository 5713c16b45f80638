//! The C ABI of `plugins/include/xcap_plugin.h`, field for field (a test
//! compiles the header and compares every offset). Used by the SDK's
//! wrappers and by xcap's loader, so the ABI is written down once in Rust.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

pub const MAGIC: u64 = 0x4755_4c50_5041_4358;
pub const ABI_MAJOR: u16 = 1;
pub const ABI_MINOR: u16 = 0;
pub const SYMBOL: &str = "xcap_plugin";

pub const DIR_UNKNOWN: u8 = 0;
pub const DIR_IN: u8 = 1;
pub const DIR_OUT: u8 = 2;

pub const LOG_ERROR: c_int = 0;
pub const LOG_WARN: c_int = 1;
pub const LOG_INFO: c_int = 2;
pub const LOG_DEBUG: c_int = 3;

pub const UNKNOWN: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Kv {
    pub key: *const c_char,
    pub value: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    pub size: u32,
    pub link_type: u16,
    pub direction: u8,
    pub reserved0: u8,
    pub ts_ns: u64,
    pub data: *const u8,
    pub cap_len: u32,
    pub orig_len: u32,
    pub ifname: *const c_char,
    pub ifindex: u32,
    pub pid: u32,
    pub tid: u32,
    pub queue: u32,
    pub comm: *const c_char,
    pub hook: *const c_char,
    pub meta: *const Kv,
    pub n_meta: u32,
    pub reserved1: u32,
}

pub type EmitFn = unsafe extern "C" fn(ctx: *mut c_void, pkt: *const Packet) -> c_int;
pub type StoppingFn = unsafe extern "C" fn(ctx: *mut c_void) -> c_int;
pub type LostFn = unsafe extern "C" fn(ctx: *mut c_void, n: u64);
pub type LogFn = unsafe extern "C" fn(ctx: *mut c_void, level: c_int, msg: *const c_char);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Host {
    pub size: u32,
    pub reserved0: u32,
    pub ctx: *mut c_void,
    pub emit: Option<EmitFn>,
    pub stopping: Option<StoppingFn>,
    pub lost: Option<LostFn>,
    pub log: Option<LogFn>,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Config {
    pub size: u32,
    pub snaplen: u32,
    pub path: *const c_char,
    pub interfaces: *const *const c_char,
    pub n_interfaces: u32,
    pub verbose: u32,
    pub opts: *const Kv,
    pub n_opts: u32,
    pub reserved0: u32,
}

pub type OpenFn = unsafe extern "C" fn(
    cfg: *const Config,
    host: *const Host,
    state: *mut *mut c_void,
    err: *mut c_char,
    errlen: usize,
) -> c_int;
pub type RunFn = unsafe extern "C" fn(
    state: *mut c_void,
    host: *const Host,
    err: *mut c_char,
    errlen: usize,
) -> c_int;
pub type CloseFn = unsafe extern "C" fn(state: *mut c_void);
pub type WriteFn = unsafe extern "C" fn(
    state: *mut c_void,
    pkt: *const Packet,
    err: *mut c_char,
    errlen: usize,
) -> c_int;
pub type FlushFn =
    unsafe extern "C" fn(state: *mut c_void, err: *mut c_char, errlen: usize) -> c_int;
pub type FinishFn = unsafe extern "C" fn(
    state: *mut c_void,
    summary: *const Summary,
    err: *mut c_char,
    errlen: usize,
) -> c_int;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Source {
    pub size: u32,
    pub reserved0: u32,
    pub name: *const c_char,
    pub help: *const c_char,
    pub open: Option<OpenFn>,
    pub run: Option<RunFn>,
    pub close: Option<CloseFn>,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SourceStats {
    pub name: *const c_char,
    pub captured: u64,
    pub dropped: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Summary {
    pub size: u32,
    pub n_sources: u32,
    pub sources: *const SourceStats,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sink {
    pub size: u32,
    pub writes_file: u32,
    pub name: *const c_char,
    pub help: *const c_char,
    pub open: Option<OpenFn>,
    pub write: Option<WriteFn>,
    pub flush: Option<FlushFn>,
    pub finish: Option<FinishFn>,
    pub close: Option<CloseFn>,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Plugin {
    pub magic: u64,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub size: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub description: *const c_char,
    pub sources: *const *const Source,
    pub n_sources: u32,
    pub reserved0: u32,
    pub sinks: *const *const Sink,
    pub n_sinks: u32,
    pub reserved1: u32,
}

// The tables are immutable statics that only point at other statics.
unsafe impl Sync for Source {}
unsafe impl Sync for Sink {}
unsafe impl Sync for Plugin {}

/// Bytes of a struct a reader may use: the size its writer declared.
/// `covers(size, offset_of!(T, f) + size_of::<F>())` says field `f` is there.
pub fn covers(declared: u32, end: usize) -> bool {
    declared as usize >= end
}
