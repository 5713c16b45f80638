//! xcap's kernel source: skbs at BTF tracepoints (`tp_btf`).
//!
//! One BPF object is loaded per hook because a `tp_btf` program's target is
//! fixed at load time; all hooks share one ring buffer, so their events come
//! out in one stream. Function hooks (fentry/kprobe) are a later step and are
//! refused by name until then.

mod backends;
mod btf;
mod config;
mod iface;
mod ksyms;

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use libbpf_rs::{Link, MapCore, Object, ObjectBuilder, RingBufferBuilder};
use xcap_bpf_common::{ring_size, splice_filter, Interned};
use xcap_core::event::{self, DIR_IN, DIR_OUT, F_DROP, F_RET, MAX_IFACES, MAX_SNAPLEN};
use xcap_core::filter::ebpf::{self, Insn};
use xcap_core::{
    CaptureConfig, Error, Meta, Packet, Result, Source, SourceCtx, SourceFactory, SourceReport,
};

use crate::btf::KernelBtf;
use crate::config::XcapConfig;
use crate::ksyms::Ksyms;

const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernel.bpf.o"));

/// Hooks used when the user names none: where tcpdump sees packets.
pub const DEFAULT_HOOKS: [&str; 2] = ["tp:net:netif_receive_skb", "tp:net:net_dev_start_xmit"];
const DROP_HOOK: &str = "tp:skb:kfree_skb";
/// Pause after a busy poll so records arrive in batches (see `run`).
const COALESCE: Duration = Duration::from_millis(2);
/// Default ring buffer size in KiB.
const DEFAULT_BUFFER_KIB: u32 = 16 * 1024;

inventory::submit! {
    SourceFactory {
        name: "kernel",
        help: "skbs at kernel tracepoints (--hook tp:CATEGORY:NAME, --drops)",
        open,
        list_hooks: Some(list_hooks),
    }
}

/// One capture point.
#[derive(Clone, Debug, Default)]
struct Hook {
    /// As the user writes it: `tp:net:netif_receive_skb`.
    name: Arc<str>,
    /// Tracepoint name: `netif_receive_skb`.
    tp: String,
    /// BPF program that handles it.
    prog: String,
    dir: u8,
    /// fexit/kretprobe: the program reporting the return, and how wide and
    /// whether signed the function's return type is.
    ret: Option<(String, Ret)>,
    /// Wildcard hooks: the hooks of one pattern share one program and one
    /// object (multi-attached); the skb argument goes in the attach cookie.
    group: Option<u32>,
    arg: u8,
}

/// `--hook 'tcp_*'`: every kernel function matching the pattern that takes
/// an skb and can be probed, by one kprobe program attached to all of them
/// (kprobe-multi where the kernel has it, else kprobe by kprobe). fentry
/// would need one program load per function: seconds for hundreds.
fn wildcard_hooks(spec: &str, btf: &KernelBtf, group: u32) -> Result<Vec<Hook>> {
    let pat = match spec.split_once(':') {
        Some(("kprobe", p)) => p,
        None => spec,
        Some((_, p)) => {
            return Err(Error::input(format!(
                "hook '{spec}': wildcards attach with kprobe (one program for every function); write {p} or kprobe:{p}"
            )))
        }
    };
    if pat.contains('@') {
        return Err(Error::input(format!(
            "hook '{spec}': a wildcard takes each function's skb argument from BTF; drop the @N"
        )));
    }
    let traceable = backends::traceable_functions();
    let mut funcs: Vec<(String, usize)> = btf
        .skb_functions()
        .into_iter()
        .filter(|(n, i)| glob(pat, n) && *i <= 4)
        .filter(|(n, _)| traceable.as_ref().is_none_or(|t| t.contains(n)))
        .collect();
    funcs.truncate(MAX_WILDCARD);
    if funcs.is_empty() {
        return Err(Error::input(format!(
            "hook '{spec}': no probeable kernel function taking an skb matches {pat}"
        )));
    }
    let b = backends::probe(btf, &funcs[0].0);
    if b.kprobe.is_err() {
        return Err(refuse_function_hook(spec, btf, Some(b)));
    }
    let multi = backends::kprobe_multi(&funcs[0].0);
    let (prog, how) = match &multi {
        Ok(()) => ("xcap_kprobe_multi", "one kprobe-multi link".to_string()),
        Err(e) => (
            "xcap_kprobe_each",
            format!("one kprobe each (no kprobe-multi: {e})"),
        ),
    };
    eprintln!(
        "xcap: {spec}: {} functions taking an skb, {how}",
        funcs.len()
    );
    Ok(funcs
        .into_iter()
        .map(|(f, arg)| Hook {
            name: Arc::from(format!("kprobe:{f}")),
            dir: direction_of(&f),
            tp: f,
            prog: prog.to_string(),
            group: Some(group),
            arg: arg as u8,
            ..Default::default()
        })
        .collect())
}

/// Attach a wildcard group's program to each of its functions, with the
/// hook index, skb argument and direction in the cookie. Returns the
/// functions that could not be probed.
fn attach_group(l: &mut Loaded, hooks: &[Hook]) -> Result<Vec<String>> {
    let first = &hooks[0];
    let cookie =
        |i: usize, h: &Hook| (l.first + i) as u64 | (h.arg as u64) << 32 | (h.dir as u64) << 40;
    let cookies: Vec<u64> = hooks
        .iter()
        .enumerate()
        .map(|(i, h)| cookie(i, h))
        .collect();
    let prog = l
        .obj
        .progs_mut()
        .find(|p| p.name() == first.prog.as_str())
        .ok_or_else(|| Error::runtime(format!("program {} missing", first.prog)))?;
    if first.prog == "xcap_kprobe_multi" {
        let link = prog
            .attach_kprobe_multi_with_opts(libbpf_rs::KprobeMultiOpts {
                symbols: hooks.iter().map(|h| h.tp.clone()).collect(),
                cookies,
                retprobe: false,
                ..Default::default()
            })
            .map_err(|e| {
                load_error(
                    first,
                    &format!("multi-attach {} functions for", hooks.len()),
                    e,
                )
            })?;
        l.links.push(link);
        return Ok(Vec::new());
    }
    // One file descriptor per kprobe: allow as many as the hard limit.
    raise_fd_limit();
    let mut failed = Vec::new();
    for (h, ck) in hooks.iter().zip(cookies) {
        let opts = libbpf_rs::KprobeOpts {
            cookie: ck,
            ..Default::default()
        };
        match prog.attach_kprobe_with_opts(false, &h.tp, opts) {
            Ok(link) => l.links.push(link),
            Err(e) if e.to_string().contains("Too many open files") => {
                return Err(Error::runtime(format!(
                    "hook {}: out of file descriptors after {} kprobes (one each without kprobe-multi); raise ulimit -n or match fewer functions",
                    first.name,
                    l.links.len()
                )))
            }
            Err(_) => failed.push(h.tp.clone()),
        }
    }
    if failed.len() == hooks.len() {
        return Err(Error::runtime(format!(
            "hook {}: no matching function could be probed",
            first.name
        )));
    }
    Ok(failed)
}

fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Most functions one wildcard attaches (the BTF of 6.x lists about 2,400
/// taking an skb).
const MAX_WILDCARD: usize = 4096;

/// A function's return type, for showing its value.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ret {
    pub bytes: u8,
    pub signed: bool,
}

impl Ret {
    fn value(self, raw: u64) -> i64 {
        match (self.bytes, self.signed) {
            (1, true) => raw as i8 as i64,
            (1, false) => raw as u8 as i64,
            (2, true) => raw as i16 as i64,
            (2, false) => raw as u16 as i64,
            (4, true) => raw as i32 as i64,
            (4, false) => raw as u32 as i64,
            _ => raw as i64,
        }
    }
}

/// Tracepoints where skbs are freed: --track forgets them there.
const FREE_TPS: [&str; 2] = ["kfree_skb", "consume_skb"];

/// `--pid` and `--comm`, checked.
fn task_filter(cfg: &CaptureConfig) -> Result<(u32, [u8; 16])> {
    let mut comm = [0u8; 16];
    if let Some(c) = &cfg.comm {
        if c.is_empty() || c.len() > 15 {
            return Err(Error::input(format!(
                "--comm '{c}': a task name is 1 to 15 bytes (the kernel keeps 15)"
            )));
        }
        comm[..c.len()].copy_from_slice(c.as_bytes());
    }
    let pid = match cfg.pid {
        Some(p) if !std::path::Path::new(&format!("/proc/{p}")).exists() => {
            return Err(Error::input(format!("--pid {p}: no such process")))
        }
        Some(p) => p,
        None => 0,
    };
    Ok((pid, comm))
}

/// Parse and check the hooks against the kernel's BTF.
fn plan_hooks(cfg: &CaptureConfig, btf: &KernelBtf) -> Result<Vec<Hook>> {
    let mut specs: Vec<String> = if cfg.hooks.is_empty() {
        DEFAULT_HOOKS.iter().map(|s| s.to_string()).collect()
    } else {
        cfg.hooks.clone()
    };
    if cfg.drops && !specs.iter().any(|s| s == DROP_HOOK) {
        specs.push(DROP_HOOK.to_string());
    }
    let mut hooks: Vec<Hook> = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let (cat, tp) = match parts.as_slice() {
            ["tp", cat, name] if !cat.is_empty() && !name.is_empty() => (*cat, *name),
            ["tp", name] if !name.is_empty() => ("", *name),
            ["tp", ..] => {
                return Err(Error::input(format!(
                    "bad hook '{spec}': a tracepoint is written tp:CATEGORY:NAME"
                )))
            }
            _ if spec.contains(['*', '?']) => {
                let group = hooks
                    .iter()
                    .filter_map(|h| h.group)
                    .max()
                    .map_or(0, |g| g + 1);
                for h in wildcard_hooks(&spec, btf, group)? {
                    if !hooks.iter().any(|x| x.name == h.name) {
                        hooks.push(h);
                    }
                }
                continue;
            }
            _ => {
                let h = function_hook(&spec, btf)?;
                if !hooks.iter().any(|x| x.name == h.name) {
                    hooks.push(h);
                }
                continue;
            }
        };
        let Some(args) = btf.tracepoint(tp) else {
            return Err(Error::input(format!(
                "unknown hook '{spec}': this kernel has no tracepoint {tp}"
            )));
        };
        if !cat.is_empty() {
            check_category(cat, tp, &spec)?;
        }
        let Some(skb_arg) = args.skb_arg else {
            return Err(Error::input(format!(
                "hook '{spec}': tracepoint {tp} has no struct sk_buff * argument"
            )));
        };
        let prog = if tp == "kfree_skb" && skb_arg == 0 && args.nr_args >= 3 {
            "xcap_kfree_skb".to_string()
        } else if skb_arg <= 5 {
            format!("xcap_tp_arg{skb_arg}")
        } else {
            return Err(Error::input(format!(
                "hook '{spec}': the skb is argument {skb_arg}; xcap handles positions 0 to 5"
            )));
        };
        // The same tracepoint named twice (tp:NAME and tp:CAT:NAME, or by
        // --drops) is attached once; a function of the same name is not it.
        if hooks
            .iter()
            .any(|h| h.tp == tp && h.name.starts_with("tp:"))
        {
            continue;
        }
        hooks.push(Hook {
            name: Arc::from(if cat.is_empty() {
                format!("tp:{tp}")
            } else {
                format!("tp:{cat}:{tp}")
            }),
            tp: tp.to_string(),
            prog,
            dir: direction_of(tp),
            ..Default::default()
        });
    }
    Ok(hooks)
}

/// A function hook on a named function: `fentry:NAME`, `kprobe:NAME`, or
/// `NAME` (fentry where the kernel allows it, else kprobe; found by trying),
/// each optionally `@N`: the skb is argument N (from 1) instead of the one
/// BTF types as `struct sk_buff *`. Anything else (fexit, kretprobe,
/// wildcards) is refused by `refuse_function_hook` with what the kernel
/// allows.
fn function_hook(spec: &str, btf: &KernelBtf) -> Result<Hook> {
    // fexit is fentry plus a return program; kretprobe is kprobe plus one.
    let (want, ret_prog, rest) = match spec.split_once(':') {
        Some((b @ ("fentry" | "kprobe"), f)) => (Some(b), None, f),
        Some(("fexit", f)) => (Some("fentry"), Some("xcap_fexit"), f),
        Some(("kretprobe", f)) => (Some("kprobe"), Some("xcap_kretprobe"), f),
        Some(_) => return Err(refuse_function_hook(spec, btf, None)),
        None => (None, None, spec),
    };
    let (func, at) = match rest.split_once('@') {
        Some((f, n)) => {
            let n = match n.parse::<usize>() {
                Ok(n @ 1..=6) => n - 1,
                _ => {
                    return Err(Error::input(format!(
                        "hook '{spec}': '@{n}' is not an argument number (1 to 6)"
                    )))
                }
            };
            (f, Some(n))
        }
        None => (rest, None),
    };
    if func.contains(['*', '?']) {
        return Err(refuse_function_hook(spec, btf, None));
    }
    let Some(params) = btf.params(func) else {
        return Err(refuse_function_hook(spec, btf, None));
    };
    // BTF also lists functions that were inlined everywhere or are notrace:
    // fentry would fail to load, a kprobe would attach and never fire.
    if let Some(t) = backends::traceable_functions() {
        if !t.contains(func) {
            return Err(Error::input(format!(
                "hook '{spec}': {func} cannot be traced: ftrace does not list it (inlined or notrace); hook its caller or callee"
            )));
        }
    }
    let arg = match at {
        Some(n) if n >= params.len() => {
            return Err(Error::input(format!(
                "hook '{spec}': {func} has {} arguments",
                params.len()
            )))
        }
        Some(n) => n,
        None => match params.iter().position(|p| *p) {
            Some(n) => n,
            None => return Err(refuse_function_hook(spec, btf, None)),
        },
    };
    // fentry reads the skb through its BTF type: the argument must be one.
    let typed = params[arg];
    if want == Some("fentry") && !typed {
        return Err(Error::input(format!(
            "hook '{spec}': argument {} of {func} is not a struct sk_buff * in BTF; fentry/fexit read it by its type (kprobe:{func}@{} reads it as an skb)",
            arg + 1,
            arg + 1
        )));
    }
    if ret_prog.is_some() && btf.returns(func).is_none() {
        return Err(Error::input(format!(
            "hook '{spec}': {func} returns nothing; use {}:{func}",
            if ret_prog == Some("xcap_fexit") {
                "fentry"
            } else {
                "kprobe"
            }
        )));
    }
    // Try what the hook can use: the backend asked for; else fentry, and
    // kprobe only when fentry is refused.
    let b = match want {
        Some("fentry") => backends::probe_some(btf, func, true, false),
        Some(_) => backends::probe_some(btf, func, false, true),
        None if typed => match backends::probe_some(btf, func, true, false) {
            b if b.fentry.is_ok() => b,
            _ => backends::probe(btf, func),
        },
        None => backends::probe(btf, func),
    };
    let fentry_ok = b.fentry.is_ok() && typed;
    let (backend, max) = match want {
        Some("fentry") if fentry_ok => ("fentry", 5),
        Some("kprobe") if b.kprobe.is_ok() => ("kprobe", 4),
        None if fentry_ok => ("fentry", 5),
        None if b.kprobe.is_ok() => ("kprobe", 4),
        // Refused: say what every backend gives here.
        _ => return Err(refuse_function_hook(spec, btf, None)),
    };
    if arg > max {
        return Err(Error::input(format!(
            "hook '{spec}': the skb is argument {}; xcap's {backend} hooks handle arguments 1 to {}",
            arg + 1,
            max + 1
        )));
    }
    if want.is_none() && backend == "kprobe" {
        eprintln!(
            "xcap: {func}: fentry refused here, using kprobe ({})",
            b.describe()
        );
    }
    let kind = match (backend, ret_prog) {
        ("fentry", Some(_)) => "fexit",
        ("kprobe", Some(_)) => "kretprobe",
        (b, _) => b,
    };
    Ok(Hook {
        name: Arc::from(format!("{kind}:{func}")),
        tp: func.to_string(),
        prog: format!("xcap_{backend}_arg{arg}"),
        dir: direction_of(func),
        ret: ret_prog.map(|p| (p.to_string(), btf.returns(func).unwrap_or_default())),
        ..Default::default()
    })
}

/// A function hook (`ip_rcv`, `fentry:ip_rcv`, `kprobe:tcp_*`, `ip_rcv@1`)
/// that cannot be served: checked against BTF, then refused with what this
/// kernel allows, found by trying (`probed` when the caller already tried).
fn refuse_function_hook(spec: &str, btf: &KernelBtf, probed: Option<backends::Backends>) -> Error {
    let (backend, rest) = match spec.split_once(':') {
        Some((b @ ("fentry" | "fexit" | "kprobe" | "kretprobe"), r)) => (Some(b), r),
        Some(_) => {
            return Error::input(format!(
                "bad hook '{spec}': write tp:CATEGORY:NAME, or a function as NAME or fentry:/fexit:/kprobe:/kretprobe:NAME"
            ))
        }
        None => (None, spec),
    };
    let func = rest.split('@').next().unwrap_or(rest);
    let probe_on = if func.contains(['*', '?']) {
        let matches: Vec<(String, usize)> = btf
            .skb_functions()
            .into_iter()
            .filter(|(n, _)| glob(func, n))
            .collect();
        match matches.first() {
            Some((n, _)) => n.clone(),
            None => {
                return Error::input(format!(
                    "hook '{spec}': no kernel function taking an skb matches {func}"
                ))
            }
        }
    } else {
        match btf.function(func) {
            None => {
                return Error::input(format!(
                    "unknown hook '{spec}': the kernel's BTF has no function {func} (inlined, or misspelt)"
                ))
            }
            Some(None) if !rest.contains('@') => {
                return Error::input(format!(
                    "hook '{spec}': {func} takes no struct sk_buff * (name the argument with {func}@N)"
                ))
            }
            Some(_) => func.to_string(),
        }
    };
    let b = probed.unwrap_or_else(|| backends::probe(btf, &probe_on));
    let chosen = backend.unwrap_or("fentry/kprobe");
    Error::input(format!(
        "hook '{spec}': {chosen} function hooks are unavailable on this kernel: {}; tracepoints work, e.g. --hook tp:net:netif_receive_skb (see --list-hooks)",
        b.describe()
    ))
}

/// Shell-style match of `*` and `?`.
fn glob(pat: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pat.as_bytes(), s.as_bytes())
}

/// `--list-hooks [PATTERN]`: the tracepoints that carry an skb, with its
/// argument position and the backend that works, then the kernel functions
/// that take one and what this kernel allows for them.
fn list_hooks(pattern: Option<&str>) -> Result<String> {
    use std::fmt::Write;
    let btf = KernelBtf::load()?;
    let pat = pattern.unwrap_or("*");
    let mut out = String::new();
    let tps: Vec<_> = btf
        .skb_tracepoints()
        .into_iter()
        .filter(|(n, _)| glob(pat, n) || glob(pat, &format!("tp:{n}")))
        .collect();
    let _ = writeln!(
        out,
        "# tracepoints with an skb ({}): hook, skb argument (from 1), backend",
        tps.len()
    );
    for (n, i) in &tps {
        let _ = writeln!(
            out,
            "tp:{}\tskb=@{}\ttp_btf",
            tracepoint_category(n).map_or(n.clone(), |c| format!("{c}:{n}")),
            i + 1
        );
    }
    let funcs: Vec<_> = btf
        .skb_functions()
        .into_iter()
        .filter(|(n, _)| glob(pat, n))
        .collect();
    let b = backends::probe(&btf, "netif_receive_skb");
    let _ = writeln!(
        out,
        "# kernel functions with an skb ({}): {}{}",
        funcs.len(),
        b.describe(),
        if b.any() {
            "; hook them by NAME or NAME@N (fentry, else kprobe)"
        } else {
            "; none can be hooked here"
        }
    );
    for (n, i) in &funcs {
        let _ = writeln!(out, "{n}\tskb=@{}", i + 1);
    }
    Ok(out)
}

/// A tracepoint's category from tracefs, when it is mounted.
fn tracepoint_category(tp: &str) -> Option<String> {
    for base in [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ] {
        if let Ok(dirs) = std::fs::read_dir(base) {
            for d in dirs.flatten() {
                if d.path().join(tp).is_dir() {
                    return Some(d.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    None
}

/// BTF does not know a tracepoint's category; tracefs does when it is
/// mounted (it is not under `ip netns exec`), so check there when we can.
fn check_category(cat: &str, tp: &str, spec: &str) -> Result<()> {
    let events = std::path::Path::new("/sys/kernel/tracing/events");
    if !events.join(cat).join(tp).exists() && events.is_dir() {
        if let Ok(dirs) = std::fs::read_dir(events) {
            for d in dirs.flatten() {
                if d.path().join(tp).is_dir() {
                    return Err(Error::input(format!(
                        "unknown hook '{spec}': tracepoint {tp} is in category {}, not {cat}",
                        d.file_name().to_string_lossy()
                    )));
                }
            }
        }
    }
    Ok(())
}

fn direction_of(tp: &str) -> u8 {
    if tp.contains("xmit") || tp.contains("_tx") || tp.contains("send") {
        DIR_OUT
    } else if tp.contains("receive") || tp.contains("_rx") || tp.contains("rcv") {
        DIR_IN
    } else {
        0
    }
}

/// libbpf's messages, kept for error reports instead of printed as noise.
fn load_error(hook: &Hook, what: &str, e: libbpf_rs::Error) -> Error {
    xcap_bpf_common::libbpf_error(&format!("{what} hook {}", hook.name), e)
}

/// One loaded hook: the object and its attachment.
struct Loaded {
    // Declared first so it is dropped (detached) before its object.
    links: Vec<Link>,
    obj: Object,
    /// The hooks it serves: first .. first + n.
    first: usize,
    n: usize,
}

pub struct KernelSource {
    hooks: Vec<Hook>,
    loaded: Vec<Loaded>,
    /// Programs that only keep state: forget freed skbs (--track, ids),
    /// follow buffers through pskb_expand_head.
    helpers: Vec<Loaded>,
    reasons: HashMap<u32, String>,
    ksyms: Option<Ksyms>,
}

// SAFETY: libbpf objects and links are plain handles (fds and heap memory)
// with no thread affinity; the source is moved to its thread once, before
// use, and never shared.
unsafe impl Send for KernelSource {}

fn open(cfg: &CaptureConfig) -> Result<Box<dyn Source>> {
    let snaplen = match cfg.snaplen {
        0 => MAX_SNAPLEN,
        s if s > MAX_SNAPLEN => {
            return Err(Error::input(format!(
                "snap length {s} is too large for the kernel source (at most {MAX_SNAPLEN})"
            )))
        }
        s => s,
    };
    // Two slow reads of kernel-generated text (a second each in the
    // emulated test VM), done while the BTF is parsed and hooks planned.
    let direct_map = std::thread::spawn(ksyms::direct_map_vars);
    if cfg.hooks.iter().any(|s| !s.starts_with("tp:")) {
        std::thread::spawn(backends::traceable_functions);
    }
    let btf = KernelBtf::load()?;
    let hooks = plan_hooks(cfg, &btf)?;
    let mut ifaces = iface::resolve(&cfg.interfaces, cfg.netns.as_deref())?;
    if ifaces.is_empty() {
        if let Some(ns) = &cfg.netns {
            ifaces.push((0, iface::netns_inode(ns)?));
        }
    }
    if ifaces.len() > MAX_IFACES {
        return Err(Error::input(format!(
            "too many interfaces: at most {MAX_IFACES} -i options"
        )));
    }
    let (pid, comm) = task_filter(cfg)?;
    if cfg.track && cfg.filter.is_none() {
        return Err(Error::input(
            "--track follows packets that matched the filter: give a filter expression",
        ));
    }
    let (vmemmap_base, page_offset_base) = direct_map.join().unwrap_or_default();
    let frag = btf.frag_layout();
    let ncpus = libbpf_rs::num_possible_cpus()
        .map_err(|e| Error::runtime(format!("cannot count CPUs: {e}")))? as u32;
    let rb_bytes = ring_size(if cfg.buffer_kib == 0 {
        DEFAULT_BUFFER_KIB
    } else {
        cfg.buffer_kib
    });

    let block = match &cfg.filter {
        Some(f) => Some(f.ebpf_block(ebpf::BLOCK_INSNS)?),
        None => None,
    };
    xcap_bpf_common::capture_libbpf_log();
    let mut loaded: Vec<Loaded> = Vec::with_capacity(hooks.len());
    let expand = follow_backend(cfg, &hooks, &btf);
    // One object per hook, or per wildcard group of hooks.
    let mut units: Vec<(usize, usize)> = Vec::new();
    for (i, h) in hooks.iter().enumerate() {
        match units.last_mut() {
            Some((start, n)) if h.group.is_some() && hooks[*start].group == h.group => *n += 1,
            _ => units.push((i, 1)),
        }
    }
    for &(i, n) in &units {
        let hook = &hooks[i];
        let mut c = XcapConfig {
            hook: i as u32,
            nr_hooks: n as u32,
            snaplen,
            dir: hook.dir as u32,
            stack: cfg.stack as u32,
            nr_ifaces: ifaces.len() as u32,
            filter: block.is_some() as u32,
            vmemmap_base,
            page_offset_base,
            frag,
            follow: expand.is_some() as u32,
            pid,
            comm,
            track: cfg.track as u32,
            untrack: FREE_TPS.contains(&hook.tp.as_str()) as u32,
            ret: hook.ret.is_some() as u32,
            ..Default::default()
        };
        for (j, (idx, ns)) in ifaces.iter().enumerate() {
            c.ifindex[j] = *idx;
            c.netns[j] = *ns;
        }
        let shared = loaded.first().map(|l| &l.obj);
        let obj = load_hook(hook, &c, block.as_deref(), shared, rb_bytes, ncpus)?;
        loaded.push(Loaded {
            links: Vec::new(),
            obj,
            first: i,
            n,
        });
    }
    // Helper programs, sharing the first object's maps: forget freed skbs
    // at the free tracepoints not captured at (--track, ids), and follow
    // buffers through pskb_expand_head.
    let mut helpers: Vec<(Loaded, Hook)> = Vec::new();
    let mut aux: Vec<Hook> = Vec::new();
    if cfg.track || expand.is_some() {
        for tp in FREE_TPS {
            if !hooks
                .iter()
                .any(|h| h.tp == tp && h.name.starts_with("tp:"))
            {
                aux.push(Hook {
                    name: Arc::from(format!("untrack:{tp}")),
                    tp: tp.to_string(),
                    prog: format!("xcap_untrack_{}", tp.trim_end_matches("_skb")),
                    ..Default::default()
                });
            }
        }
    }
    if let Some((entry, ret)) = expand {
        aux.push(Hook {
            name: Arc::from(EXPAND_FN),
            tp: EXPAND_FN.to_string(),
            prog: entry.to_string(),
            ret: Some((ret.to_string(), Ret::default())),
            ..Default::default()
        });
    }
    for h in aux {
        let shared = loaded.first().map(|l| &l.obj);
        let obj = load_hook(&h, &XcapConfig::default(), None, shared, rb_bytes, ncpus)?;
        helpers.push((
            Loaded {
                links: Vec::new(),
                obj,
                first: 0,
                n: 0,
            },
            h,
        ));
    }
    // Attach only once everything loaded, so a failure leaves nothing behind.
    let mut unattached = Vec::new();
    for l in loaded.iter_mut() {
        let hook = &hooks[l.first];
        if hook.group.is_some() {
            unattached.extend(attach_group(l, &hooks[l.first..l.first + l.n])?);
            continue;
        }
        attach_hook(l, hook)?;
    }
    for (l, hook) in helpers.iter_mut() {
        attach_hook(l, hook)?;
    }
    if !unattached.is_empty() {
        eprintln!(
            "xcap: {} matching functions could not be probed (inlined or notrace), e.g. {}",
            unattached.len(),
            unattached[..unattached.len().min(3)].join(", ")
        );
    }
    Ok(Box::new(KernelSource {
        reasons: if cfg.drops {
            btf.drop_reasons()
        } else {
            HashMap::new()
        },
        ksyms: (cfg.drops || cfg.stack).then(Ksyms::load),
        hooks,
        loaded,
        helpers: helpers.into_iter().map(|(l, _)| l).collect(),
    }))
}

/// Maps every hook's object shares with the first (besides the ring).
const SHARED_MAPS: [&str; 3] = ["tracked", "ids", "expanding"];

/// The function whose reallocations packet ids follow.
const EXPAND_FN: &str = "pskb_expand_head";

/// Whether packet ids follow buffers through pskb_expand_head, and with
/// which entry and return programs: when packets are followed across hooks
/// (two or more, or --track) and the kernel lets us hook the function.
fn follow_backend(
    cfg: &CaptureConfig,
    hooks: &[Hook],
    btf: &KernelBtf,
) -> Option<(&'static str, &'static str)> {
    if hooks.len() < 2 && !cfg.track {
        return None;
    }
    btf.func_id(EXPAND_FN)?;
    if backends::probe_some(btf, EXPAND_FN, true, false)
        .fentry
        .is_ok()
    {
        Some(("xcap_expand_fentry", "xcap_expand_fexit"))
    } else if backends::probe_some(btf, EXPAND_FN, false, true)
        .kprobe
        .is_ok()
    {
        Some(("xcap_expand_kprobe", "xcap_expand_kretprobe"))
    } else {
        None
    }
}

/// Attach a loaded hook's program, and its return program if any.
fn attach_hook(l: &mut Loaded, hook: &Hook) -> Result<()> {
    let progs =
        std::iter::once(hook.prog.as_str()).chain(hook.ret.as_ref().map(|(p, _)| p.as_str()));
    for name in progs {
        let prog = l
            .obj
            .progs_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::runtime(format!("program {name} missing")))?;
        let link = if name.contains("kretprobe") {
            prog.attach_kprobe(true, &hook.tp)
        } else if name.contains("kprobe") {
            prog.attach_kprobe(false, &hook.tp)
        } else {
            prog.attach()
        };
        l.links
            .push(link.map_err(|e| load_error(hook, "attach", e))?);
    }
    Ok(())
}

fn load_hook(
    hook: &Hook,
    cfg: &XcapConfig,
    filter: Option<&[Insn]>,
    shared: Option<&Object>,
    rb_bytes: u32,
    ncpus: u32,
) -> Result<Object> {
    let mut open = ObjectBuilder::default()
        .open_memory(BPF_OBJECT)
        .map_err(|e| load_error(hook, "open BPF object for", e))?;
    let ret_prog = hook.ret.as_ref().map(|(p, _)| p.as_str());
    for mut p in open.progs_mut() {
        // tp_btf, fentry and fexit programs name their target at load.
        let tracing = matches!(p.prog_type(), libbpf_rs::ProgramType::Tracing);
        if Some(p.name().to_str().unwrap_or_default()) == ret_prog {
            p.set_autoload(true);
            if tracing {
                p.set_attach_target(0, Some(hook.tp.clone()))
                    .map_err(|e| load_error(hook, "target", e))?;
            }
        } else if p.name() == hook.prog.as_str() {
            p.set_autoload(true);
            if xcap_bpf_common::debug() {
                // Verifier statistics (insns processed, states) in the libbpf log.
                p.set_log_level(if std::env::var_os("XCAP_DEBUG_VERIFIER").is_some() {
                    1
                } else {
                    4
                });
            }
            if tracing {
                p.set_attach_target(0, Some(hook.tp.clone()))
                    .map_err(|e| load_error(hook, "target", e))?;
            }
            if let Some(block) = filter {
                splice_filter(&mut p, block)?;
            }
        } else {
            p.set_autoload(false);
        }
    }
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let r = if SHARED_MAPS.contains(&name.as_str()) {
            match shared.and_then(|o| o.maps().find(|m| m.name() == name.as_str())) {
                Some(t) => m.reuse_fd(t.as_fd()),
                None => Ok(()),
            }
        } else if name == "events" {
            match shared.and_then(|o| o.maps().find(|m| m.name() == "events")) {
                Some(rb) => m.reuse_fd(rb.as_fd()),
                None => m.set_max_entries(rb_bytes),
            }
        } else if name == "scratch_map" {
            m.set_max_entries(ncpus)
        } else if name == "counters" {
            m.set_max_entries(cfg.nr_hooks.max(1) * event::CNT_MAX as u32)
        } else if name.ends_with(".rodata") {
            xcap_bpf_common::write_rodata(&mut m, cfg.as_bytes(), "struct xcap_config")?;
            Ok(())
        } else {
            Ok(())
        };
        r.map_err(|e| load_error(hook, "configure", e))?;
    }
    open.load().map_err(|e| load_error(hook, "load", e))
}

/// Turns ring buffer records into packets.
struct Decoder<'a> {
    hooks: &'a [Hook],
    reasons: &'a HashMap<u32, String>,
    ksyms: Option<&'a mut Ksyms>,
    ifnames: Interned<(u32, u32, [u8; event::IFNAME_LEN])>,
    /// Task names: a handful of distinct ones, needed for every packet.
    comms: Interned<[u8; event::COMM_LEN]>,
    source: Arc<str>,
    wall_offset: u64,
    bad: u64,
    /// fexit/kretprobe: packets captured at entry, awaiting their return
    /// record, by (thread, hook); a stack, since calls can nest.
    held: HashMap<(u32, u32), Vec<Packet>>,
}

impl Decoder<'_> {
    fn decode(&mut self, buf: &[u8]) -> Option<Packet> {
        let Some(r) = event::parse(buf) else {
            self.bad += 1;
            return None;
        };
        let h = r.hdr;
        let hook = self.hooks.get(h.hook as usize)?;
        if h.flags & F_RET != 0 {
            // The packet is shown when its function returns, with the value.
            let mut p = self.held.get_mut(&(h.tid, h.hook))?.pop()?;
            p.ts_ns = h.ts_ns + self.wall_offset;
            p.meta.retval = hook.ret.as_ref().map(|(_, r)| r.value(h.location));
            return Some(p);
        }
        let p = self.packet(&r, hook)?;
        if hook.ret.is_some() {
            self.held.entry((h.tid, h.hook)).or_default().push(p);
            return None;
        }
        Some(p)
    }

    /// Packets whose function had not returned when capture stopped.
    fn unreturned(&mut self) -> Vec<Packet> {
        let mut v: Vec<Packet> = self.held.drain().flat_map(|(_, p)| p).collect();
        v.sort_by_key(|p| p.ts_ns);
        v
    }

    fn packet(&mut self, r: &event::Record<'_>, hook: &Hook) -> Option<Packet> {
        let h = r.hdr;
        let ifname = self
            .ifnames
            .get((h.netns, h.ifindex, h.ifname), |k| event::cstr(&k.2).into());
        let mut meta = Meta {
            source: self.source.clone(),
            hook: hook.name.clone(),
            dir: h.direction(),
            ifindex: h.ifindex,
            ifname,
            netns: h.netns,
            cpu: Some(h.cpu),
            pid: Some(h.pid),
            tid: Some(h.tid),
            comm: Some(self.comms.get(h.comm, |k| event::cstr(k).into())),
            packet_id: Some(h.skb),
            ..Default::default()
        };
        // Headers made up from the socket before the stack wrote them.
        if h.flags & event::F_SYNTH_L3 != 0 {
            meta.extra.push(("synth".into(), "ip".into()));
        }
        if h.flags & F_DROP != 0 {
            meta.drop_reason = Some(
                self.reasons
                    .get(&h.drop_reason)
                    .cloned()
                    .unwrap_or_else(|| h.drop_reason.to_string()),
            );
            if let Some(k) = self.ksyms.as_deref_mut() {
                meta.drop_location = Some(k.symbolize(h.location));
            }
        }
        if let Some(k) = self.ksyms.as_deref_mut() {
            meta.stack = r
                .stack
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
                .filter(|a| *a != 0)
                .map(|a| k.symbolize(a))
                // The innermost frames are xcap's own program and the
                // tracepoint glue: not where the packet was.
                .skip_while(|f| {
                    f.starts_with("bpf_prog_")
                        || f.starts_with("bpf_trace_run")
                        || f.starts_with("__bpf_trace_")
                })
                .collect();
        }
        Some(Packet {
            ts_ns: h.ts_ns + self.wall_offset,
            data: r.data.to_vec(),
            orig_len: h.orig_len,
            link: h.link_type(),
            meta,
        })
    }
}

impl KernelSource {
    fn counters(&self) -> Vec<xcap_core::registry::HookStats> {
        let mut out = Vec::new();
        for l in &self.loaded {
            let m = l.obj.maps().find(|m| m.name() == "counters");
            for (j, hook) in self.hooks[l.first..l.first + l.n].iter().enumerate() {
                let c = |k: usize| {
                    m.as_ref().map_or(0, |m| {
                        xcap_bpf_common::percpu_sum(m, (j * event::CNT_MAX + k) as u32)
                    })
                };
                let seen = c(event::CNT_SEEN);
                // A wildcard reports only the functions packets went through.
                if hook.group.is_some() && seen == 0 {
                    continue;
                }
                out.push(xcap_core::registry::HookStats {
                    hook: hook.name.to_string(),
                    seen,
                    lost: c(event::CNT_LOST),
                    truncated: c(event::CNT_TRUNC),
                });
            }
        }
        out
    }
}

impl Source for KernelSource {
    fn name(&self) -> &str {
        "kernel"
    }

    fn filters(&self) -> bool {
        true
    }

    fn run(mut self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
        let wall_offset = xcap_core::time::mono_to_wall_offset();
        let pending: RefCell<Vec<Packet>> = RefCell::new(Vec::new());
        let mut ksyms = self.ksyms.take();
        let decoder = RefCell::new(Decoder {
            hooks: &self.hooks,
            reasons: &self.reasons,
            ksyms: ksyms.as_mut(),
            ifnames: Interned::default(),
            comms: Interned::default(),
            source: Arc::from("kernel"),
            wall_offset,
            bad: 0,
            held: HashMap::new(),
        });
        let events = self.loaded[0]
            .obj
            .maps()
            .find(|m| m.name() == "events")
            .ok_or_else(|| Error::runtime("ring buffer map missing"))?;
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&events, |data: &[u8]| {
                if let Some(p) = decoder.borrow_mut().decode(data) {
                    pending.borrow_mut().push(p);
                }
                0
            })
            .map_err(|e| Error::runtime(format!("ring buffer: {e}")))?;
        let rb = builder
            .build()
            .map_err(|e| Error::runtime(format!("ring buffer: {e}")))?;
        let mut delivered = 0u64;
        let mut bus_gone = false;
        while !ctx.stopped() {
            let r = rb.poll_raw(Duration::from_millis(50));
            if r < 0 && r != -libc::EINTR {
                return Err(Error::runtime(format!(
                    "ring buffer poll: {}",
                    std::io::Error::from_raw_os_error(-r)
                )));
            }
            let batch = std::mem::take(&mut *pending.borrow_mut());
            delivered += batch.len() as u64;
            // Records are committed within microseconds of their stamp; 10 ms
            // of slack covers stragglers from other CPUs.
            let now = xcap_core::time::monotonic_ns().saturating_sub(10_000_000);
            let busy = !batch.is_empty();
            if !ctx.send(batch, now + wall_offset) {
                bus_gone = true;
                break;
            }
            if busy {
                // Let records pile up for a moment: one wakeup and one batch
                // per couple of milliseconds instead of one per packet, which
                // at high rates costs more in context switches than the copy.
                std::thread::sleep(COALESCE);
            }
        }
        // Detach first so nothing new arrives, then drain what is in flight.
        for l in self.loaded.iter_mut().chain(self.helpers.iter_mut()) {
            l.links.clear();
        }
        if !bus_gone {
            let _ = rb.consume_raw();
            let mut left = decoder.borrow_mut().unreturned();
            pending.borrow_mut().append(&mut left);
            let batch = std::mem::take(&mut *pending.borrow_mut());
            delivered += batch.len() as u64;
            ctx.send(batch, u64::MAX);
        }
        drop(rb);
        let bad = decoder.borrow().bad;
        let hooks = self.counters();
        let dropped = hooks.iter().map(|h| h.lost).sum::<u64>() + bad;
        Ok(SourceReport {
            name: "kernel".into(),
            delivered,
            dropped,
            hooks,
        })
    }
}
