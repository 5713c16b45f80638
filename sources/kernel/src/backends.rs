//! Which function-hook backends this kernel allows, found by trying: load
//! and attach a tiny fentry program and a tiny kprobe. Nothing stays
//! attached. This tells the user exactly what the kernel allows and refuses.

use libbpf_rs::{ObjectBuilder, PrintLevel};

use crate::btf::KernelBtf;

const PROBE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// Outcome per backend: Ok, or the kernel's refusal in words.
#[derive(Clone)]
pub struct Backends {
    pub fentry: Result<(), String>,
    pub kprobe: Result<(), String>,
}

impl Backends {
    /// One line: what works and what was refused.
    pub fn describe(&self) -> String {
        let one = |name: &str, r: &Result<(), String>| match r {
            Ok(()) => format!("{name} works"),
            Err(e) => format!("{name} refused ({e})"),
        };
        format!(
            "{}; {}",
            one("fentry", &self.fentry),
            one("kprobe", &self.kprobe)
        )
    }
    pub fn any(&self) -> bool {
        self.fentry.is_ok() || self.kprobe.is_ok()
    }
}

fn why(e: &libbpf_rs::Error) -> String {
    match e.kind() {
        libbpf_rs::ErrorKind::PermissionDenied => "EPERM from the kernel".to_string(),
        _ => e.to_string(),
    }
}

/// Try both backends on kernel function `func`.
pub fn probe(btf: &KernelBtf, func: &str) -> Backends {
    probe_some(btf, func, true, true)
}

/// Try only the backends asked for (each try attaches something: a
/// trampoline or a kprobe, tenths of a second in an emulated VM); the
/// others read "not tried".
pub fn probe_some(btf: &KernelBtf, func: &str, fentry: bool, kprobe: bool) -> Backends {
    // Asked once per function and backend in a process (--dry-run of many
    // filters asks again and again).
    type Tried = std::collections::HashMap<(String, bool, bool), Backends>;
    static TRIED: std::sync::Mutex<Option<Tried>> = std::sync::Mutex::new(None);
    let key = (func.to_string(), fentry, kprobe);
    if let Some(b) = TRIED
        .lock()
        .ok()
        .and_then(|t| t.as_ref()?.get(&key).cloned())
    {
        return b;
    }
    let b = try_some(btf, func, fentry, kprobe);
    if let Ok(mut t) = TRIED.lock() {
        t.get_or_insert_with(Default::default)
            .insert(key, b.clone());
    }
    b
}

fn try_some(btf: &KernelBtf, func: &str, fentry: bool, kprobe: bool) -> Backends {
    // The attempts are expected to fail on many kernels: keep libbpf quiet.
    let prev = libbpf_rs::set_print(None);
    let untried = || Err("not tried".to_string());
    let b = Backends {
        fentry: if fentry {
            try_fentry(btf, func)
        } else {
            untried()
        },
        kprobe: if kprobe { try_kprobe(func) } else { untried() },
    };
    libbpf_rs::set_print(prev.or(Some((PrintLevel::Warn, |_, _| {}))));
    b
}

fn open(only: &str) -> Result<libbpf_rs::OpenObject, String> {
    let mut o = ObjectBuilder::default()
        .open_memory(PROBE_OBJECT)
        .map_err(|e| e.to_string())?;
    for mut p in o.progs_mut() {
        p.set_autoload(p.name() == only);
    }
    Ok(o)
}

/// fentry by raw syscalls with the function's BTF id from our own parse:
/// through a libbpf object this would parse the kernel's BTF once more
/// (half a second in the emulated test VM).
fn try_fentry(btf: &KernelBtf, func: &str) -> Result<(), String> {
    let id = btf.func_id(func).ok_or("not in BTF")?;
    // r0 = 0; exit
    let mut insns: [libbpf_sys::bpf_insn; 2] = Default::default();
    insns[0].code = 0xb7;
    insns[1].code = 0x95;
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: libbpf_sys::BPF_TRACE_FENTRY,
        attach_btf_id: id,
        ..Default::default()
    };
    // SAFETY: valid instructions, options and NUL-terminated strings that
    // outlive the call; the returned descriptors are closed below.
    let prog = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            c"xcap_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if prog < 0 {
        return Err(errno_why(-prog));
    }
    // SAFETY: prog is a program descriptor we own.
    let link = unsafe {
        libbpf_sys::bpf_link_create(prog, 0, libbpf_sys::BPF_TRACE_FENTRY, std::ptr::null())
    };
    // SAFETY: descriptors we own, closed once.
    unsafe {
        if link >= 0 {
            libc::close(link);
        }
        libc::close(prog);
    }
    if link < 0 {
        return Err(errno_why(-link));
    }
    Ok(())
}

fn errno_why(errno: i32) -> String {
    if errno == libc::EPERM {
        "EPERM from the kernel".to_string()
    } else {
        std::io::Error::from_raw_os_error(errno).to_string()
    }
}

fn try_kprobe(func: &str) -> Result<(), String> {
    let o = open("xcap_probe_kprobe")?;
    let obj = o.load().map_err(|e| why(&e))?;
    let p = obj
        .progs_mut()
        .find(|p| p.name() == "xcap_probe_kprobe")
        .ok_or("probe program missing")?;
    p.attach_kprobe(false, func).map(drop).map_err(|e| {
        if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            "the kernel has no kprobe support".to_string()
        } else {
            why(&e)
        }
    })
}

/// Whether one program can be attached to many functions at once
/// (kprobe-multi), tried on `func`; only wildcards need to know.
pub fn kprobe_multi(func: &str) -> Result<(), String> {
    // A property of the kernel: tried once per process.
    static TRIED: std::sync::Mutex<Option<Result<(), String>>> = std::sync::Mutex::new(None);
    if let Some(r) = TRIED.lock().ok().and_then(|t| t.clone()) {
        return r;
    }
    let prev = libbpf_rs::set_print(None);
    let r = try_kprobe_multi(func);
    libbpf_rs::set_print(prev.or(Some((PrintLevel::Warn, |_, _| {}))));
    if let Ok(mut t) = TRIED.lock() {
        *t = Some(r.clone());
    }
    r
}

fn try_kprobe_multi(func: &str) -> Result<(), String> {
    let o = open("xcap_probe_kprobe_multi")?;
    let obj = o.load().map_err(|e| why(&e))?;
    let p = obj
        .progs_mut()
        .find(|p| p.name() == "xcap_probe_kprobe_multi")
        .ok_or("probe program missing")?;
    p.attach_kprobe_multi(false, vec![func])
        .map(drop)
        .map_err(|e| why(&e))
}

/// The functions ftrace can probe (`available_filter_functions`), without
/// the inlined and notrace ones BTF still lists; tracefs is mounted if it
/// is not. None when the kernel does not let us read it.
pub fn traceable_functions() -> Option<&'static std::collections::HashSet<String>> {
    static SET: std::sync::OnceLock<Option<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    SET.get_or_init(read_traceable).as_ref()
}

fn read_traceable() -> Option<std::collections::HashSet<String>> {
    let dir = std::path::Path::new("/sys/kernel/tracing");
    let file = dir.join("available_filter_functions");
    if !file.exists() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status();
    }
    let text = std::fs::read_to_string(file).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect(),
    )
}
