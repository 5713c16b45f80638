//! Which function-hook backends this kernel allows, found by trying: load a
//! tiny fentry program, load and attach a tiny kprobe. Nothing stays
//! attached. Function hooks themselves are not built yet (issue 4); this
//! tells the user exactly what the kernel allows and refuses.

use libbpf_rs::{ObjectBuilder, PrintLevel};

const PROBE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// Outcome per backend: Ok, or the kernel's refusal in words.
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
pub fn probe(func: &str) -> Backends {
    // The attempts are expected to fail on many kernels: keep libbpf quiet.
    let prev = libbpf_rs::set_print(None);
    let b = Backends {
        fentry: try_fentry(func),
        kprobe: try_kprobe(func),
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

fn try_fentry(func: &str) -> Result<(), String> {
    let mut o = open("xcap_probe_fentry")?;
    for mut p in o.progs_mut() {
        if p.name() == "xcap_probe_fentry" {
            p.set_attach_target(0, Some(func.to_string()))
                .map_err(|e| why(&e))?;
        }
    }
    let obj = o.load().map_err(|e| why(&e))?;
    let p = obj
        .progs_mut()
        .find(|p| p.name() == "xcap_probe_fentry")
        .ok_or("probe program missing")?;
    p.attach().map(drop).map_err(|e| why(&e))
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
    let prev = libbpf_rs::set_print(None);
    let r = try_kprobe_multi(func);
    libbpf_rs::set_print(prev.or(Some((PrintLevel::Warn, |_, _| {}))));
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
