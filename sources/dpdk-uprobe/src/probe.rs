//! The probes themselves: find the application's burst functions, load the
//! BPF program once, attach one uprobe per function (plus a return probe
//! for receive), keep the queue map current as ports change, and hand out
//! the ring buffer's raw records. Used in-process and by the helper.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libbpf_rs::{Link, MapCore, MapFlags, Object, UprobeOpts};
use xcap_bpf_common::libbpf_error;
use xcap_bpf_common::runtime::{self, Rodata, RtConfig};
use xcap_core::event::{DIR_IN, DIR_OUT};
use xcap_core::registry::{HookStats, ProgramStat};
use xcap_core::{Direction, Error, Filter, Result};

use crate::config::{cookie, Args, DpdkConfig, MAX_HOOKS};
use crate::hooks::{self, HookSpec};
use crate::layout::{self, Ethdev, Mbuf};
use crate::ports::{Port, Tables};
use crate::process::Process;

const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dpdk.bpf.o"));

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
    pub fn parse(cfg: &xcap_core::CaptureConfig, d: &crate::DpdkArgs) -> Result<Options> {
        let target = match d.target.as_deref() {
            // --dry-run needs no application: the known layout is verified.
            None if cfg.dry_run => Target::Pid(0),
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
        let snaplen = runtime::snaplen(cfg.snaplen, "dpdk")?;
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
            buffer_kib: cfg.buffer_kib,
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
        let (obj, _) = load(opts, &mbuf)?;
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

    /// A handle on the ring buffer the probes write.
    pub fn ring(&self) -> Result<libbpf_rs::MapHandle> {
        runtime::ring_handle(&self.obj)
    }

    /// Detach every probe; the application keeps running untouched.
    pub fn detach(&mut self) {
        self.links.clear();
    }

    pub fn counters(&self) -> Vec<HookStats> {
        self.hooks
            .iter()
            .enumerate()
            .map(|(i, h)| runtime::hook_stats(&self.obj, i as u32, &h.name))
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

/// `--dry-run`: load the object as a capture of `opts` would (with the
/// application's mbuf layout when it is running, else the known one).
pub fn verify(opts: &Options) -> Result<Vec<ProgramStat>> {
    let mbuf = match opts.target {
        Target::Pid(pid) if pid != 0 => {
            layouts(&Process::open(pid)?, opts.mbuf.as_deref(), false)?.0
        }
        _ => match &opts.mbuf {
            Some(m) => layout::mbuf_override(m, Some(layout::ABI23_MBUF))?,
            None => layout::ABI23_MBUF,
        },
    };
    Ok(load(opts, &mbuf)?.1)
}

/// Load (and so verify) the DPDK object for `mbuf`'s layout.
pub fn load(opts: &Options, mbuf: &Mbuf) -> Result<(Object, Vec<ProgramStat>)> {
    let image = runtime::image(BPF_OBJECT, opts.filter.as_deref())?;
    let rodata = Rodata {
        rt: RtConfig {
            snaplen: opts.snaplen,
            filter: opts.filter.is_some() as u32,
            stack: 0,
            hook_base: 0,
        },
        src: DpdkConfig::new(mbuf),
    };
    runtime::load(&runtime::LoadSpec {
        what: "the DPDK probes",
        image: &image,
        progs: vec![("xcap_dpdk_entry", None), ("xcap_dpdk_return", None)],
        rodata: rodata.as_bytes(),
        hooks: MAX_HOOKS as u32,
        ring: runtime::Ring::Own(runtime::ring_bytes(opts.buffer_kib)),
        shared_maps: &[],
        sizes: &[],
    })
}

/// How often the ports are looked at again.
pub const REFRESH: Duration = Duration::from_millis(200);

/// Poll the probe's ring buffer until `stop` says so, refreshing the ports
/// every REFRESH; `on_record` gets each raw record, `on_batch` runs after
/// each poll with its watermark (false: its reader is gone), `on_change` gets each change of
/// ports. Detaches before draining what is left.
pub fn pump(
    probe: &mut Probe,
    stop: &dyn Fn() -> bool,
    on_record: &mut dyn FnMut(&[u8]),
    on_batch: &mut dyn FnMut(u64) -> bool,
    on_change: &mut dyn FnMut(&Probe, String),
) -> Result<()> {
    let ring = probe.ring()?;
    let probe = std::cell::RefCell::new(probe);
    let mut last = std::time::Instant::now();
    runtime::pump(
        &ring,
        stop,
        on_record,
        &mut |mark| {
            if !on_batch(mark) {
                return Ok(false);
            }
            refresh(&mut probe.borrow_mut(), &mut last, REFRESH, on_change)
        },
        &mut || probe.borrow_mut().detach(),
        &mut || {},
    )?;
    Ok(())
}

/// Look at the ports again when `every` has passed; false when the
/// application has gone.
pub fn refresh(
    probe: &mut Probe,
    last: &mut std::time::Instant,
    every: Duration,
    on_change: &mut dyn FnMut(&Probe, String),
) -> Result<bool> {
    if last.elapsed() < every {
        return Ok(true);
    }
    *last = std::time::Instant::now();
    match probe.refresh()? {
        (false, _) => Ok(false),
        (true, Some(msg)) => {
            on_change(probe, msg);
            Ok(true)
        }
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcap_core::filter::ebpf;

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
