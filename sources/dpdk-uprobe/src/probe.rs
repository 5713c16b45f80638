//! The probes themselves: find the application's burst functions, load the
//! BPF program once, attach one uprobe per function (plus a return probe
//! for receive), keep the queue map current as ports change, and hand out
//! the ring buffer's raw records. Used in-process and by the helper.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder, RingBufferBuilder, UprobeOpts};
use xcap_bpf_common::{libbpf_error, percpu_sum, ring_size};
use xcap_core::event::{self, DIR_IN, DIR_OUT, MAX_SNAPLEN};
use xcap_core::filter::ebpf;
use xcap_core::registry::HookStats;
use xcap_core::{Direction, Error, Filter, Result};

use crate::config::{cookie, Args, DpdkConfig, MAX_HOOKS};
use crate::hooks::{self, HookSpec};
use crate::layout::{self, Ethdev, Mbuf};
use crate::ports::{Port, Tables};
use crate::process::Process;

const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dpdk.bpf.o"));
const DEFAULT_BUFFER_KIB: u32 = 16 * 1024;

#[derive(Clone, Debug)]
pub enum Target {
    Pid(u32),
    /// Wait for a process running this executable.
    Exe(PathBuf),
}

/// Everything the probes need, as parsed from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub hooks: Vec<HookSpec>,
    pub mbuf: Option<String>,
    pub snaplen: u32,
    pub buffer_kib: u32,
    pub filter: Option<Arc<Filter>>,
}

impl Options {
    pub fn parse(cfg: &xcap_core::CaptureConfig) -> Result<Options> {
        let d = &cfg.dpdk;
        let target = match d.target.as_deref() {
            None => {
                return Err(Error::input(
                    "the dpdk source needs --dpdk-pid PID (or the path of the application's executable)",
                ))
            }
            Some(t) if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) => {
                Target::Pid(t.parse().map_err(|_| Error::input(format!("bad pid {t}")))?)
            }
            Some(t) => {
                let p = std::fs::canonicalize(t).map_err(|e| {
                    Error::input(format!("--dpdk-pid {t}: neither a pid nor an executable ({e})"))
                })?;
                Target::Exe(p)
            }
        };
        if let Some(m) = &d.mbuf {
            // Syntax is checked now; the values once the version is known.
            layout::mbuf_override(m, Some(layout::ABI23_MBUF))?;
        }
        let snaplen = match cfg.snaplen {
            0 => MAX_SNAPLEN,
            s if s > MAX_SNAPLEN => {
                return Err(Error::input(format!(
                    "snap length {s} is too large for the dpdk source (at most {MAX_SNAPLEN})"
                )))
            }
            s => s,
        };
        let hooks = d
            .hooks
            .iter()
            .map(|h| hooks::parse(h))
            .collect::<Result<Vec<_>>>()?;
        if hooks.len() + 2 > MAX_HOOKS {
            return Err(Error::input(format!(
                "too many --dpdk-hook: at most {}",
                MAX_HOOKS - 2
            )));
        }
        Ok(Options {
            target,
            hooks,
            mbuf: d.mbuf.clone(),
            snaplen,
            buffer_kib: if cfg.buffer_kib == 0 {
                DEFAULT_BUFFER_KIB
            } else {
                cfg.buffer_kib
            },
            filter: cfg.filter.clone(),
        })
    }
}

/// Names of the hooks, by the index events carry.
#[derive(Clone, Debug)]
pub struct HookInfo {
    pub name: Arc<str>,
}

pub fn hook_table(opts: &Options) -> Vec<HookInfo> {
    let mut v = vec![
        HookInfo {
            name: "rx_burst".into(),
        },
        HookInfo {
            name: "tx_burst".into(),
        },
    ];
    v.extend(opts.hooks.iter().map(|h| HookInfo {
        name: h.text.as_str().into(),
    }));
    v
}

fn dir_code(d: Direction) -> u8 {
    match d {
        Direction::In => DIR_IN,
        Direction::Out => DIR_OUT,
        Direction::Unknown => 0,
    }
}

/// The layouts for this process: by the ABI of its DPDK libraries, with
/// --dpdk-mbuf applied.
fn layouts(p: &Process, mbuf: Option<&str>, need_ethdev: bool) -> Result<(Mbuf, Option<Ethdev>)> {
    let abi = p.files().iter().find_map(|f| {
        let n = crate::process::basename(f);
        if n.starts_with("librte_ethdev") || n.starts_with("librte_mbuf") {
            layout::abi_of(f)
        } else {
            None
        }
    });
    let known = abi.and_then(layout::known);
    let what = match abi {
        Some(a) => format!("DPDK ABI {a}, a version xcap has no layout for"),
        None => "no versioned DPDK library (statically linked?)".to_string(),
    };
    let mbuf = match (mbuf, known) {
        (Some(spec), k) => layout::mbuf_override(spec, k.map(|k| k.0))?,
        (None, Some(k)) => k.0,
        (None, None) => {
            return Err(Error::input(format!(
                "pid {} uses {what}: give the rte_mbuf offsets with --dpdk-mbuf",
                p.pid
            )))
        }
    };
    let ethdev = match known {
        Some(k) => Some(k.1),
        None if need_ethdev => {
            return Err(Error::input(format!(
                "pid {} uses {what}: name its burst functions with --dpdk-hook (and the mbuf layout with --dpdk-mbuf)",
                p.pid
            )))
        }
        None => None,
    };
    Ok((mbuf, ethdev))
}

/// One attached application.
pub struct Probe {
    opts: Options,
    pub hooks: Vec<HookInfo>,
    pub process: Process,
    tables: Option<Tables>,
    pub ports: Vec<Port>,
    queue_keys: HashSet<u64>,
    /// The ports' burst functions are probed (no --dpdk-hook).
    auto: bool,
    // Declared before the object so they are dropped (detached) first.
    links: HashMap<(String, u64, bool), Link>,
    obj: Object,
}

// SAFETY: libbpf objects and links are plain handles (fds and heap memory)
// with no thread affinity; the probe is moved to its thread once.
unsafe impl Send for Probe {}

impl Probe {
    /// Attach to `pid`. Ok(None) when it is a DPDK application whose ports
    /// are not started yet and `wait` is set.
    pub fn attach(opts: &Options, pid: u32, wait: bool) -> Result<Option<Probe>> {
        let process = Process::open(pid)?;
        let auto = opts.hooks.is_empty();
        let dpdk_libs = process
            .files()
            .iter()
            .any(|f| crate::process::basename(f).starts_with("librte_"));
        if !dpdk_libs
            && opts.mbuf.is_none()
            && process.symbol_in(&process.exe, "rte_eth_fp_ops").is_none()
        {
            return Err(Error::input(format!(
                "pid {pid} ({}) is not a DPDK application: no librte_* library, no rte_eth_fp_ops (a static, stripped one needs --dpdk-hook and --dpdk-mbuf)",
                process.exe
            )));
        }
        let (mbuf, ethdev) = layouts(&process, opts.mbuf.as_deref(), auto)?;
        let tables = match ethdev {
            Some(l) => Tables::find(&process, l)?,
            None => None,
        };
        let ports = match &tables {
            // Hand-named hooks still get port and queue from the table.
            Some(t) => t.ports(&process)?,
            None if auto => {
                return Err(Error::input(format!(
                    "pid {pid} ({}) is not a DPDK application: it has no rte_eth_fp_ops",
                    process.exe
                )))
            }
            None => Vec::new(),
        };
        if auto && ports.is_empty() {
            if wait {
                return Ok(None);
            }
            return Err(Error::input(format!(
                "pid {pid} ({}) has no started DPDK ports",
                process.exe
            )));
        }
        let obj = load(opts, &mbuf)?;
        let mut p = Probe {
            opts: opts.clone(),
            hooks: hook_table(opts),
            process,
            tables,
            ports: Vec::new(),
            queue_keys: HashSet::new(),
            auto,
            links: HashMap::new(),
            obj,
        };
        for (i, h) in opts.hooks.iter().enumerate() {
            let (path, off) = hooks::locate(h, &p.process)?;
            p.attach_fn(&path, off, i + 2, h.args, h.dir)?;
        }
        p.set_ports(ports)?;
        Ok(Some(p))
    }

    /// What is attached, for the user.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "dpdk: pid {} ({})",
            self.process.pid,
            crate::process::basename(&self.process.exe)
        );
        for port in self.ports.iter().filter(|_| self.auto) {
            s.push_str(&format!(
                "; port {} {}: {} rx, {} tx queues, rx {}, tx {}",
                port.id,
                port.name,
                port.rxqs.len(),
                port.txqs.len(),
                self.process.describe(port.rx_burst),
                self.process.describe(port.tx_burst)
            ));
        }
        for h in &self.opts.hooks {
            s.push_str(&format!("; {}", h.text));
        }
        s
    }

    fn attach_fn(
        &mut self,
        path: &str,
        off: u64,
        hook: usize,
        args: Args,
        dir: Direction,
    ) -> Result<()> {
        let host = self.process.host_path(path);
        let off = skip_endbr(&host, off);
        let ck = cookie(hook, args, dir_code(dir));
        let mut want = vec![("xcap_dpdk_entry", false)];
        if args.needs_return() {
            want.push(("xcap_dpdk_return", true));
        }
        for (prog, ret) in want {
            let key = (path.to_string(), off, ret);
            if self.links.contains_key(&key) {
                continue;
            }
            let p = self
                .obj
                .progs_mut()
                .find(|p| p.name() == prog)
                .ok_or_else(|| Error::runtime(format!("program {prog} missing")))?;
            let link = p
                .attach_uprobe_with_opts(
                    self.process.pid as i32,
                    &host,
                    off as usize,
                    UprobeOpts {
                        cookie: ck,
                        retprobe: ret,
                        ..Default::default()
                    },
                )
                .map_err(|e| libbpf_error(&format!("attach a uprobe at {path}+{off:#x}"), e))?;
            self.links.insert(key, link);
        }
        Ok(())
    }

    /// Attach the burst functions of `ports` and map their queues.
    fn set_ports(&mut self, ports: Vec<Port>) -> Result<()> {
        let auto = self.auto;
        for port in ports.iter().filter(|_| auto) {
            for (addr, hook, args, dir) in [
                (port.rx_burst, 0, Args::RX_BURST, Direction::In),
                (port.tx_burst, 1, Args::TX_BURST, Direction::Out),
            ] {
                let (path, off) = self.process.file_offset(addr).ok_or_else(|| {
                    Error::runtime(format!(
                        "port {}: burst function {addr:#x} is not in a mapped file of pid {}",
                        port.id, self.process.pid
                    ))
                })?;
                self.attach_fn(&path, off, hook, args, dir)?;
            }
        }
        let queues = self
            .obj
            .maps()
            .find(|m| m.name() == "queues")
            .ok_or_else(|| Error::runtime("queue map missing"))?;
        let mut keys = HashSet::new();
        for port in &ports {
            for q in [&port.rxqs, &port.txqs] {
                for (i, ptr) in q.iter().enumerate() {
                    let v = [port.id.to_ne_bytes(), (i as u16).to_ne_bytes()].concat();
                    queues
                        .update(&ptr.to_ne_bytes(), &v, MapFlags::ANY)
                        .map_err(|e| libbpf_error("update the queue map", e))?;
                    keys.insert(*ptr);
                }
            }
        }
        for stale in self.queue_keys.difference(&keys) {
            let _ = queues.delete(&stale.to_ne_bytes());
        }
        self.queue_keys = keys;
        self.ports = ports;
        Ok(())
    }

    /// Look at the ports again. Ok(false) when the process has gone.
    /// Returns a line for the user when something changed.
    pub fn refresh(&mut self) -> Result<(bool, Option<String>)> {
        if !self.process.alive() {
            return Ok((false, None));
        }
        let Some(t) = &self.tables else {
            return Ok((true, None));
        };
        let ports = match t.ports(&self.process) {
            Ok(p) => p,
            // Exiting while we read.
            Err(_) if !self.process.alive() => return Ok((false, None)),
            Err(e) => return Err(e),
        };
        if ports == self.ports {
            return Ok((true, None));
        }
        self.process.reload_maps()?;
        self.set_ports(ports)?;
        Ok((true, Some(self.describe())))
    }

    pub fn ring(&self) -> Result<libbpf_rs::Map<'_>> {
        self.obj
            .maps()
            .find(|m| m.name() == "events")
            .ok_or_else(|| Error::runtime("ring buffer map missing"))
    }

    /// Detach every probe; the application keeps running untouched.
    pub fn detach(&mut self) {
        self.links.clear();
    }

    pub fn counters(&self) -> Vec<HookStats> {
        let m = self.obj.maps().find(|m| m.name() == "counters");
        self.hooks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let c = |k: usize| {
                    m.as_ref()
                        .map_or(0, |m| percpu_sum(m, (i * event::CNT_MAX + k) as u32))
                };
                HookStats {
                    hook: h.name.to_string(),
                    seen: c(event::CNT_SEEN),
                    lost: c(event::CNT_LOST),
                    truncated: c(event::CNT_TRUNC),
                }
            })
            .collect()
    }
}

/// Functions built with CET start with endbr64, which the kernel must
/// single-step (about 15 us a hit here); the instruction after it is
/// usually one it emulates (about 0.5 us). endbr64 changes no register, so
/// probing right after it sees the same arguments and return address.
fn skip_endbr(file: &std::path::Path, off: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    match std::fs::File::open(file).and_then(|f| f.read_exact_at(&mut b, off)) {
        Ok(()) if b == [0xf3, 0x0f, 0x1e, 0xfa] => off + 4,
        _ => off,
    }
}

fn load(opts: &Options, mbuf: &Mbuf) -> Result<Object> {
    xcap_bpf_common::capture_libbpf_log();
    let block = match &opts.filter {
        Some(f) => Some(f.ebpf_block(ebpf::BLOCK_INSNS)?),
        None => None,
    };
    let cfg = DpdkConfig::new(opts.snaplen, block.is_some(), mbuf);
    let ncpus = libbpf_rs::num_possible_cpus()
        .map_err(|e| Error::runtime(format!("cannot count CPUs: {e}")))? as u32;
    // The filter runs in the per-mbuf callback, a subprogram: splice it
    // into the ELF image itself.
    let image = match &block {
        Some(b) => std::borrow::Cow::Owned(xcap_bpf_common::splice_filter_elf(BPF_OBJECT, b)?),
        None => std::borrow::Cow::Borrowed(BPF_OBJECT),
    };
    let mut open = ObjectBuilder::default()
        .open_memory(&image)
        .map_err(|e| libbpf_error("open the DPDK BPF object", e))?;
    for mut p in open.progs_mut() {
        if xcap_bpf_common::debug() {
            p.set_log_level(4);
        }
    }
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let r = if name == "events" {
            m.set_max_entries(ring_size(opts.buffer_kib))
        } else if name == "scratch_map" {
            m.set_max_entries(ncpus)
        } else if name.ends_with(".rodata") {
            xcap_bpf_common::write_rodata(&mut m, cfg.as_bytes(), "struct xcap_dpdk_config")?;
            Ok(())
        } else {
            Ok(())
        };
        r.map_err(|e| libbpf_error("configure the DPDK BPF object", e))?;
    }
    open.load()
        .map_err(|e| libbpf_error("load the DPDK BPF program", e))
}

/// Poll the probe's ring buffer until `stop` says so, refreshing the ports
/// every REFRESH; `on_record` gets each raw record, `on_change` each
/// change of ports. Detaches before draining what is left.
pub fn pump(
    probe: &mut Probe,
    stop: &dyn Fn() -> bool,
    on_record: &mut dyn FnMut(&[u8]),
    on_batch: &mut dyn FnMut() -> bool,
    on_change: &mut dyn FnMut(&Probe, String),
) -> Result<()> {
    const REFRESH: Duration = Duration::from_millis(200);
    const COALESCE: Duration = Duration::from_millis(2);
    let on_record = std::cell::RefCell::new(on_record);
    let mut builder = RingBufferBuilder::new();
    // A handle of its own (a dup of the fd), so the probe stays free to
    // change its attachments while the ring buffer is read.
    let handle = libbpf_rs::MapHandle::try_from(&probe.ring()?)
        .map_err(|e| libbpf_error("open the ring buffer", e))?;
    builder
        .add(&handle, |data: &[u8]| {
            (on_record.borrow_mut())(data);
            0
        })
        .map_err(|e| libbpf_error("set up the ring buffer", e))?;
    let rb = builder
        .build()
        .map_err(|e| libbpf_error("set up the ring buffer", e))?;
    let mut last = std::time::Instant::now();
    let mut gone = false;
    while !stop() {
        let n = rb.poll_raw(Duration::from_millis(50));
        if n < 0 && n != -libc::EINTR {
            return Err(Error::runtime(format!(
                "ring buffer poll: {}",
                std::io::Error::from_raw_os_error(-n)
            )));
        }
        if !on_batch() {
            gone = true;
            break;
        }
        if last.elapsed() >= REFRESH {
            last = std::time::Instant::now();
            match probe.refresh()? {
                (false, _) => break,
                (true, Some(msg)) => on_change(probe, msg),
                _ => {}
            }
        }
        if n > 0 {
            // As the kernel source: one wakeup per couple of milliseconds.
            std::thread::sleep(COALESCE);
        }
    }
    probe.detach();
    if !gone {
        // What was in flight when the probes went; the caller sends it.
        let _ = rb.consume_raw();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter reaches the per-mbuf callback, wherever the embedded
    /// object happens to sit in memory.
    #[test]
    fn filter_spliced_into_the_callback_at_any_alignment() {
        let f = Filter::compile("udp port 53", 0).unwrap();
        let block = f.ebpf_block(ebpf::BLOCK_INSNS).unwrap();
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(BPF_OBJECT);
        let out = xcap_bpf_common::splice_filter_elf(&shifted[1..], &block).unwrap();
        assert_eq!(out.len(), BPF_OBJECT.len());
        assert_ne!(out, BPF_OBJECT);
        // Spliced once only: the marker is gone.
        assert!(xcap_bpf_common::splice_filter_elf(&out, &block).is_err());
    }
}
