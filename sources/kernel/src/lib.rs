//! xcap's kernel source: skbs at tracepoints (`tp_btf`) and kernel
//! functions (fentry, fexit, kprobe, kretprobe, kprobe-multi).
//!
//! One BPF object is loaded per hook because a `tp_btf` or fentry
//! program's target is fixed at load time (one per wildcard: a kprobe
//! program attached to every function); all share the first object's ring
//! buffer, so their events come out in one stream. The capture runtime of
//! xcap_bpf_common loads them and runs the ring buffer.

mod args;
mod backends;
mod btf;
mod config;
mod ksyms;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use libbpf_rs::{Link, Object};
use xcap_bpf_common::runtime::{self, Rodata, RtConfig};
use xcap_bpf_common::{iface, Interned};
use xcap_core::event::{self, DIR_IN, DIR_OUT, F_DROP, F_RET};
use xcap_core::registry::ProgramStat;
use xcap_core::{
    CaptureConfig, Error, Packet, Result, Source, SourceCtx, SourceFactory, SourceReport,
};

pub use crate::args::KernelArgs;
use crate::btf::KernelBtf;
use crate::config::KernelConfig;
use crate::ksyms::Ksyms;

const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernel.bpf.o"));

/// Hooks used when the user names none: where tcpdump sees packets.
pub const DEFAULT_HOOKS: [&str; 2] = ["tp:net:netif_receive_skb", "tp:net:net_dev_start_xmit"];
const DROP_HOOK: &str = "tp:skb:kfree_skb";

inventory::submit! {
    SourceFactory {
        name: "kernel",
        help: "skbs at kernel tracepoints (--hook tp:CATEGORY:NAME, --drops)",
        args: args::args,
        open: |cfg, m| open_with(cfg, &KernelArgs::from_matches(m)),
        list_hooks: Some(list_hooks),
        verify: Some(|cfg, m| verify_with(cfg, &KernelArgs::from_matches(m))),
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
    // Wildcards attach kprobes: try only that backend.
    let b = backends::probe_some(btf, &funcs[0].0, false, true);
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
fn task_filter(cfg: &KernelArgs) -> Result<(u32, [u8; 16])> {
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
fn plan_hooks(cfg: &KernelArgs, btf: &KernelBtf) -> Result<Vec<Hook>> {
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
    /// The `-i` interfaces, watched while capturing.
    watch: Option<iface::Watch>,
}

// SAFETY: libbpf objects and links are plain handles (fds and heap memory)
// with no thread affinity; the source is moved to its thread once, before
// use, and never shared.
unsafe impl Send for KernelSource {}

/// Everything loaded (verified) for a capture, nothing attached yet.
struct Prepared {
    /// Drop reasons by value, with --drops.
    reasons: HashMap<u32, String>,
    hooks: Vec<Hook>,
    loaded: Vec<Loaded>,
    helpers: Vec<(Loaded, Hook)>,
    stats: Vec<ProgramStat>,
}

/// Plan the hooks and load every object the capture needs.
fn prepare(cfg: &CaptureConfig, k: &KernelArgs) -> Result<Prepared> {
    let snaplen = runtime::snaplen(cfg.snaplen, "kernel")?;
    // Two slow reads of kernel-generated text (a second each in the
    // emulated test VM), done while the BTF is parsed and hooks planned.
    let direct_map = std::thread::spawn(ksyms::direct_map_vars);
    if k.hooks.iter().any(|s| !s.starts_with("tp:")) {
        std::thread::spawn(backends::traceable_functions);
    }
    let btf = KernelBtf::load()?;
    let hooks = plan_hooks(k, &btf)?;
    let ifaces = iface::selection(&cfg.interfaces, cfg.netns.as_deref())?;
    let (pid, comm) = task_filter(k)?;
    if k.track && cfg.filter.is_none() {
        return Err(Error::input(
            "--track follows packets that matched the filter: give a filter expression",
        ));
    }
    let (vmemmap_base, page_offset_base) = direct_map.join().unwrap_or_default();
    let frag = btf.frag_layout();
    let image = runtime::image(BPF_OBJECT, cfg.filter.as_deref())?;
    let ring_bytes = runtime::ring_bytes(cfg.buffer_kib);
    let expand = follow_backend(k, &hooks, &btf);
    let mut loaded: Vec<Loaded> = Vec::with_capacity(hooks.len());
    let mut stats = Vec::new();
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
        let mut src = KernelConfig {
            dir: hook.dir as u32,
            nr_ifaces: ifaces.len() as u32,
            vmemmap_base,
            page_offset_base,
            frag,
            follow: expand.is_some() as u32,
            pid,
            comm,
            track: k.track as u32,
            untrack: FREE_TPS.contains(&hook.tp.as_str()) as u32,
            ret: hook.ret.is_some() as u32,
            ..Default::default()
        };
        for (j, (idx, ns)) in ifaces.iter().enumerate() {
            src.ifindex[j] = *idx;
            src.netns[j] = *ns;
        }
        let rodata = Rodata {
            rt: RtConfig {
                snaplen,
                filter: cfg.filter.is_some() as u32,
                stack: k.stack as u32,
                hook_base: i as u32,
            },
            src,
        };
        let shared = loaded.first().map(|l| &l.obj);
        let (obj, st) = load_hook(
            hook,
            &image,
            rodata.as_bytes(),
            n as u32,
            shared,
            ring_bytes,
        )?;
        stats.extend(st);
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
    if k.track || expand.is_some() {
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
        let rodata = Rodata::<KernelConfig>::default();
        let (obj, st) = load_hook(&h, &image, rodata.as_bytes(), 1, shared, ring_bytes)?;
        stats.extend(st);
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
    Ok(Prepared {
        reasons: if k.drops {
            btf.drop_reasons()
        } else {
            HashMap::new()
        },
        hooks,
        loaded,
        helpers,
        stats,
    })
}

/// `--dry-run`: load every object, attach nothing; what the verifier did.
pub fn verify_with(cfg: &CaptureConfig, k: &KernelArgs) -> Result<Vec<ProgramStat>> {
    Ok(prepare(cfg, k)?.stats)
}

/// Load and attach everything the capture needs.
pub fn open_with(cfg: &CaptureConfig, k: &KernelArgs) -> Result<Box<dyn Source>> {
    let Prepared {
        reasons,
        hooks,
        mut loaded,
        mut helpers,
        ..
    } = prepare(cfg, k)?;
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
    let watch = iface::Watch::start(&cfg.interfaces, cfg.netns.as_deref())?;
    Ok(Box::new(KernelSource {
        watch,
        reasons,
        ksyms: (k.drops || k.stack).then(Ksyms::load),
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
    cfg: &KernelArgs,
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

/// Load the object of one hook (or wildcard group of `n` hooks, or helper).
fn load_hook(
    hook: &Hook,
    image: &[u8],
    rodata: &[u8],
    n: u32,
    shared: Option<&Object>,
    ring_bytes: u32,
) -> Result<(Object, Vec<ProgramStat>)> {
    let target = Some(hook.tp.as_str());
    let mut progs = vec![(hook.prog.as_str(), target)];
    if let Some((r, _)) = &hook.ret {
        progs.push((r.as_str(), target));
    }
    runtime::load(&runtime::LoadSpec {
        what: &format!("hook {}", hook.name),
        image,
        progs,
        rodata,
        hooks: n,
        ring: match shared {
            Some(o) => runtime::Ring::Shared(o),
            None => runtime::Ring::Own(ring_bytes),
        },
        shared_maps: &SHARED_MAPS,
        sizes: &[],
    })
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
    fn decode(&mut self, buf: &[u8], out: &mut runtime::Slots) {
        let Some(r) = event::parse(buf) else {
            self.bad += 1;
            return;
        };
        let h = r.hdr;
        let Some(hook) = self.hooks.get(h.hook as usize) else {
            return;
        };
        if h.flags & F_RET != 0 {
            // The packet is shown when its function returns, with the value.
            let Some(mut p) = self.held.get_mut(&(h.tid, h.hook)).and_then(|v| v.pop()) else {
                return;
            };
            p.ts_ns = h.ts_ns + self.wall_offset;
            p.meta.retval = hook.ret.as_ref().map(|(_, r)| r.value(h.location));
            out.push(p);
            return;
        }
        self.fill(out, &r, hook);
        if hook.ret.is_some() {
            let p = out.take_last();
            self.held.entry((h.tid, h.hook)).or_default().push(p);
        }
    }

    /// Packets whose function had not returned when capture stopped.
    fn unreturned(&mut self) -> Vec<Packet> {
        let mut v: Vec<Packet> = self.held.drain().flat_map(|(_, p)| p).collect();
        v.sort_by_key(|p| p.ts_ns);
        v
    }

    fn fill(&mut self, out: &mut runtime::Slots, r: &event::Record<'_>, hook: &Hook) {
        let h = r.hdr;
        let ifname = self
            .ifnames
            .get((h.netns, h.ifindex, h.ifname), |k| event::cstr(&k.2).into());
        let comm = self.comms.get(h.comm, |k| event::cstr(k).into());
        let p = out.fill(
            &h,
            r.data,
            self.wall_offset,
            runtime::Names {
                source: &self.source,
                hook: &hook.name,
                ifname,
                comm: Some(comm),
                extra: &[],
            },
        );
        let meta = &mut p.meta;
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
    }
}

impl KernelSource {
    fn counters(&self) -> Vec<xcap_core::registry::HookStats> {
        let mut out = Vec::new();
        for l in &self.loaded {
            for (j, hook) in self.hooks[l.first..l.first + l.n].iter().enumerate() {
                let st = runtime::hook_stats(&l.obj, j as u32, &hook.name);
                // A wildcard reports only the functions packets went through.
                if hook.group.is_some() && st.seen == 0 {
                    continue;
                }
                out.push(st);
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
        let mut ksyms = self.ksyms.take();
        let ring = runtime::ring_handle(&self.loaded[0].obj)?;
        let wall = xcap_core::time::mono_to_wall_offset();
        let mut failure = None;
        let (delivered, bad) = {
            let mut decoder = Decoder {
                hooks: &self.hooks,
                reasons: &self.reasons,
                ksyms: ksyms.as_mut(),
                ifnames: Interned::default(),
                comms: Interned::default(),
                source: Arc::from("kernel"),
                wall_offset: wall,
                bad: 0,
                held: HashMap::new(),
            };
            let decoder = RefCell::new(&mut decoder);
            let (loaded, helpers) = (&mut self.loaded, &mut self.helpers);
            let watch = &self.watch;
            let failure = &mut failure;
            let delivered = runtime::deliver(
                &ctx,
                &ring,
                wall,
                &mut |rec, out| decoder.borrow_mut().decode(rec, out),
                &mut || {
                    // An -i interface deleted ends the capture (exit 1).
                    match watch.as_ref().and_then(|w| w.gone()) {
                        Some(n) => {
                            *failure = Some(format!("interface {n} went away"));
                            Ok(false)
                        }
                        None => Ok(true),
                    }
                },
                &mut || {
                    for l in loaded.iter_mut().chain(helpers.iter_mut()) {
                        l.links.clear();
                    }
                },
                &mut || decoder.borrow_mut().unreturned(),
            )?;
            let bad = decoder.borrow().bad;
            (delivered, bad)
        };
        let hooks = self.counters();
        let dropped = hooks.iter().map(|h| h.lost).sum::<u64>() + bad;
        Ok(SourceReport {
            name: "kernel".into(),
            delivered,
            dropped,
            hooks,
            failure,
            notes: Vec::new(),
        })
    }
}
