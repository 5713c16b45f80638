//! Loads third-party sources and sinks from shared libraries (the C ABI of
//! `plugins/include/xcap_plugin.h`) and runs them as `Source`s and `Sink`s.
//!
//! Safety first: the descriptor's head (magic, ABI major, size) is read
//! from the ELF file before the library is opened, so a file that is not a
//! plugin or was built for another ABI major never runs any code. A plugin
//! that fails or panics (panics are caught by the Rust SDK) stops itself
//! and the capture goes on; xcap exits 1 at the end. Libraries are never
//! unloaded.

mod elf;
mod sink;
mod source;

use std::ffi::{c_char, CStr, CString};
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use xcap_core::registry::{CaptureConfig, SinkConfig};
use xcap_core::{Error, Result, Sink, Source};
use xcap_plugin_sdk::abi;

/// One plugin's source or sink table, with where it came from.
struct Entry<T: 'static> {
    plugin: Arc<Info>,
    name: String,
    help: String,
    table: &'static T,
}

/// A loaded plugin.
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    pub path: PathBuf,
}

/// Every loaded plugin's sources and sinks, their options, and the
/// failures of those that stopped themselves.
#[derive(Default)]
pub struct Plugins {
    sources: Vec<Entry<abi::Source>>,
    sinks: Vec<Entry<abi::Sink>>,
    /// `--plugin-opt NAME.KEY=VALUE` as (NAME, KEY, VALUE).
    opts: Vec<(String, String, String)>,
    failures: Arc<Mutex<Vec<String>>>,
}

/// A line for `--list`.
pub struct Listed {
    pub name: String,
    pub help: String,
    pub plugin: String,
}

/// A C string from a plugin, as text.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that lives as long as the library.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl Plugins {
    /// Load the `--plugin` files and every `*.so` of the folders in
    /// `dirs_var` (XCAP_PLUGIN_PATH, colon-separated); `taken_sources` and
    /// `taken_sinks` are the built-in names a plugin may not reuse.
    /// `opts` are the `--plugin-opt` arguments. Bad input is `Error::Input`.
    pub fn load(
        files: &[PathBuf],
        dirs_var: Option<&str>,
        opts: &[String],
        taken_sources: &[&str],
        taken_sinks: &[&str],
    ) -> Result<Plugins> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for dir in dirs_var.unwrap_or("").split(':').filter(|d| !d.is_empty()) {
            let rd = std::fs::read_dir(dir).map_err(|e| {
                Error::input(format!("XCAP_PLUGIN_PATH: cannot read folder {dir}: {e}"))
            })?;
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "so"))
                .collect();
            found.sort();
            paths.extend(found);
        }
        paths.extend(files.iter().cloned());
        let mut me = Plugins::default();
        for p in &paths {
            let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if me.sources.iter().any(|e| e.plugin.path == canon)
                || me.sinks.iter().any(|e| e.plugin.path == canon)
            {
                continue; // the same file named twice
            }
            me.load_one(p, &canon, taken_sources, taken_sinks)?;
        }
        for o in opts {
            let (name, kv) = o.split_once('.').ok_or_else(|| {
                Error::input(format!("--plugin-opt {o}: expected NAME.KEY=VALUE"))
            })?;
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::input(format!("--plugin-opt {o}: expected NAME.KEY=VALUE"))
            })?;
            let known = me
                .sources
                .iter()
                .any(|e| e.name == name || e.plugin.name == name)
                || me
                    .sinks
                    .iter()
                    .any(|e| e.name == name || e.plugin.name == name);
            if !known || k.is_empty() {
                return Err(Error::input(format!(
                    "--plugin-opt {o}: no loaded plugin, plugin source or plugin sink is named '{name}'"
                )));
            }
            me.opts.push((name.into(), k.into(), v.into()));
        }
        Ok(me)
    }

    fn load_one(
        &mut self,
        path: &Path,
        canon: &Path,
        taken_sources: &[&str],
        taken_sinks: &[&str],
    ) -> Result<()> {
        let shown = path.display();
        elf::check(path).map_err(|e| Error::input(format!("plugin {shown}: {e}")))?;
        // SAFETY: the file is an ELF shared object of this machine whose
        // exported descriptor says it follows this ABI major: running its
        // initializers is what loading a plugin means.
        let lib = unsafe { libloading::Library::new(canon) }
            .map_err(|e| Error::input(format!("plugin {shown}: cannot load: {e}")))?;
        // SAFETY: the symbol is the descriptor object the ELF check found.
        let desc: &'static abi::Plugin = unsafe {
            let sym = lib
                .get::<*const abi::Plugin>(abi::SYMBOL.as_bytes())
                .map_err(|e| Error::input(format!("plugin {shown}: {e}")))?;
            &**sym
        };
        // Never unloaded: its code may run until the process ends.
        std::mem::forget(lib);
        let bad = |m: String| Error::input(format!("plugin {shown}: {m}"));
        if desc.magic != abi::MAGIC || desc.abi_major != abi::ABI_MAJOR {
            return Err(bad("descriptor changed while loading".into()));
        }
        // SAFETY: strings and tables of a descriptor of this ABI major,
        // read only as far as its declared sizes go.
        unsafe {
            let info = Arc::new(Info {
                name: text(desc.name),
                version: text(desc.version),
                description: text(desc.description),
                path: canon.to_path_buf(),
            });
            if info.name.is_empty() || info.name.contains(['.', '=', ',']) {
                return Err(bad(format!(
                    "bad plugin name '{}' (empty, or with '.', '=' or ',')",
                    info.name
                )));
            }
            // A count with no array behind it would be read through NULL.
            if (desc.n_sources > 0 && desc.sources.is_null())
                || (desc.n_sinks > 0 && desc.sinks.is_null())
            {
                return Err(bad(format!(
                    "it declares {} sources and {} sinks but gives no table array for them",
                    desc.n_sources, desc.n_sinks
                )));
            }
            for i in 0..desc.n_sources as usize {
                let t = *desc.sources.add(i);
                if t.is_null()
                    || !abi::covers(
                        (*t).size,
                        offset_of!(abi::Source, close) + size_of::<usize>(),
                    )
                    || (*t).open.is_none()
                    || (*t).run.is_none()
                    || (*t).close.is_none()
                {
                    return Err(bad(format!("source table {i} is too small or incomplete")));
                }
                let t: &'static abi::Source = &*t;
                let name = text(t.name);
                self.check_name(&name, "source", taken_sources, true)
                    .map_err(bad)?;
                self.sources.push(Entry {
                    plugin: info.clone(),
                    name,
                    help: text(t.help),
                    table: t,
                });
            }
            for i in 0..desc.n_sinks as usize {
                let t = *desc.sinks.add(i);
                if t.is_null()
                    || !abi::covers((*t).size, offset_of!(abi::Sink, close) + size_of::<usize>())
                    || (*t).open.is_none()
                    || (*t).write.is_none()
                    || (*t).close.is_none()
                {
                    return Err(bad(format!("sink table {i} is too small or incomplete")));
                }
                let t: &'static abi::Sink = &*t;
                let name = text(t.name);
                self.check_name(&name, "sink", taken_sinks, false)
                    .map_err(bad)?;
                self.sinks.push(Entry {
                    plugin: info.clone(),
                    name,
                    help: text(t.help),
                    table: t,
                });
            }
            if desc.n_sources == 0 && desc.n_sinks == 0 {
                return Err(bad("it offers no source and no sink".into()));
            }
        }
        Ok(())
    }

    fn check_name(
        &self,
        name: &str,
        kind: &str,
        taken: &[&str],
        source: bool,
    ) -> std::result::Result<(), String> {
        if name.is_empty() || name.contains(['.', '=', ',']) {
            return Err(format!(
                "bad {kind} name '{name}' (empty, or with '.', '=' or ',')"
            ));
        }
        let dup = if source {
            self.sources
                .iter()
                .find(|e| e.name == name)
                .map(|e| &e.plugin)
        } else {
            self.sinks
                .iter()
                .find(|e| e.name == name)
                .map(|e| &e.plugin)
        };
        if taken.contains(&name) {
            return Err(format!("{kind} '{name}' is a built-in {kind}'s name"));
        }
        if let Some(other) = dup {
            return Err(format!(
                "{kind} '{name}' is already offered by plugin {}",
                other.path.display()
            ));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.sinks.is_empty()
    }

    fn listed<T>(v: &[Entry<T>]) -> Vec<Listed> {
        v.iter()
            .map(|e| Listed {
                name: e.name.clone(),
                help: e.help.clone(),
                plugin: format!(
                    "{} {} ({})",
                    e.plugin.name,
                    e.plugin.version,
                    e.plugin.path.display()
                ),
            })
            .collect()
    }
    pub fn list_sources(&self) -> Vec<Listed> {
        Self::listed(&self.sources)
    }
    pub fn list_sinks(&self) -> Vec<Listed> {
        Self::listed(&self.sinks)
    }
    pub fn has_source(&self, name: &str) -> bool {
        self.sources.iter().any(|e| e.name == name)
    }
    /// Whether plugin sink `name` exists, and if so whether it writes -w.
    pub fn sink_writes_file(&self, name: &str) -> Option<bool> {
        self.sinks
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.table.writes_file != 0)
    }

    /// The options for a source or sink: those given to its own name or
    /// to its plugin's.
    fn opts_for(&self, name: &str, plugin: &str) -> Vec<(String, String)> {
        self.opts
            .iter()
            .filter(|(n, _, _)| n == name || n == plugin)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Open plugin source `name` (which `has_source` knows).
    pub fn open_source(&self, name: &str, cfg: &CaptureConfig) -> Result<Box<dyn Source>> {
        let e = self
            .sources
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::input(format!("unknown source '{name}'")))?;
        let opts = self.opts_for(&e.name, &e.plugin.name);
        let raw = RawConfig::new(cfg.snaplen, None, &cfg.interfaces, 0, &opts);
        source::open(e.table, &e.name, &raw, self.failures.clone())
    }

    /// Open plugin sink `name`.
    pub fn open_sink(&self, name: &str, cfg: &SinkConfig) -> Result<Box<dyn Sink>> {
        let e = self
            .sinks
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::input(format!("unknown sink '{name}'")))?;
        let opts = self.opts_for(&e.name, &e.plugin.name);
        let path = cfg.path.as_ref().map(|p| p.display().to_string());
        let raw = RawConfig::new(cfg.snaplen, path, &[], cfg.verbose as u32, &opts);
        sink::open(e.table, &e.name, &raw, self.failures.clone())
    }

    /// The first failure of a plugin that stopped itself, as xcap's error.
    pub fn failure(&self) -> Option<Error> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.first().map(|m| Error::runtime(m.clone()))
    }
}

/// A `struct xcap_config` and the strings it points to.
struct RawConfig {
    _strings: Vec<CString>,
    _ifaces: Vec<*const c_char>,
    _opts: Vec<abi::Kv>,
    raw: abi::Config,
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl RawConfig {
    fn new(
        snaplen: u32,
        path: Option<String>,
        ifaces: &[String],
        verbose: u32,
        opts: &[(String, String)],
    ) -> RawConfig {
        let mut strings = Vec::new();
        let path = path.map(|p| cstring(&p));
        let iface_c: Vec<CString> = ifaces.iter().map(|s| cstring(s)).collect();
        let opt_c: Vec<(CString, CString)> =
            opts.iter().map(|(k, v)| (cstring(k), cstring(v))).collect();
        let ifaces: Vec<*const c_char> = iface_c.iter().map(|c| c.as_ptr()).collect();
        let kvs: Vec<abi::Kv> = opt_c
            .iter()
            .map(|(k, v)| abi::Kv {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let raw = abi::Config {
            size: size_of::<abi::Config>() as u32,
            snaplen: if snaplen == 0 { 262_144 } else { snaplen },
            path: path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            interfaces: ifaces.as_ptr(),
            n_interfaces: ifaces.len() as u32,
            verbose,
            opts: kvs.as_ptr(),
            n_opts: kvs.len() as u32,
            reserved0: 0,
        };
        // Heap buffers: they stay put when the vectors and RawConfig move.
        strings.extend(path);
        strings.extend(iface_c);
        for (k, v) in opt_c {
            strings.push(k);
            strings.push(v);
        }
        RawConfig {
            _strings: strings,
            _ifaces: ifaces,
            _opts: kvs,
            raw,
        }
    }
}

/// The error text a plugin wrote into `buf`.
fn err_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if s.is_empty() {
        "failed without saying why".into()
    } else {
        s
    }
}

/// The size of the error buffers xcap passes.
const ERR_LEN: usize = 512;

/// Call a plugin function that reports failure as (nonzero, a line in an
/// error buffer): Ok, or the line.
fn call(f: impl FnOnce(*mut c_char, usize) -> std::ffi::c_int) -> std::result::Result<(), String> {
    let mut err = [0u8; ERR_LEN];
    match f(err.as_mut_ptr() as *mut c_char, ERR_LEN) {
        0 => Ok(()),
        _ => Err(err_text(&err)),
    }
}

/// A table's open, for either kind (`who` is "plugin source NAME" or
/// "plugin sink NAME"): the plugin's state, or bad input (exit 2).
fn open_state(
    open: abi::OpenFn,
    cfg: &RawConfig,
    host: &abi::Host,
    who: &str,
) -> Result<*mut std::ffi::c_void> {
    let mut state = std::ptr::null_mut();
    // SAFETY: a table checked at load; cfg and host outlive the call.
    call(|err, len| unsafe { open(&cfg.raw, host, &mut state, err, len) })
        .map_err(|e| Error::input(format!("{who}: {e}")))?;
    Ok(state)
}

/// A plugin that stopped itself: said now, and kept for xcap's exit code.
fn record_failure(failures: &Mutex<Vec<String>>, msg: String) {
    eprintln!("xcap: {msg}; the capture goes on without it");
    failures.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
}

/// `log` for both kinds: one line on stderr, prefixed with who said it.
unsafe extern "C" fn log_cb(
    ctx: *mut std::ffi::c_void,
    level: std::ffi::c_int,
    msg: *const c_char,
) {
    // SAFETY: ctx is the &str label the host set up for this plugin.
    let label = &*(ctx as *const LogLabel);
    let what = match level {
        abi::LOG_ERROR => "error",
        abi::LOG_WARN => "warning",
        abi::LOG_INFO => "info",
        _ => {
            if !label.debug {
                return;
            }
            "debug"
        }
    };
    let m = text(msg);
    eprintln!(
        "xcap: {}: {what}: {}",
        label.name,
        m.lines().next().unwrap_or("")
    );
}

/// What `log_cb` needs to know about whoever calls it. The first field of
/// every host context, so one callback serves sources and sinks.
#[repr(C)]
struct LogLabel {
    name: String,
    debug: bool,
}
