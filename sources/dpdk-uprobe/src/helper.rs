//! The probes in a helper process (`--dpdk-helper`, and `--bpftime`, which
//! runs the helper under bpftime's syscall server so the same BPF program
//! runs in userspace). The helper is the xcap binary started again as
//! `xcap --xcap-helper dpdk KEY=VALUE...`; it attaches as the in-process
//! source would and streams the ring buffer's raw records on its stdout.
//! Closing its stdin stops it; it then detaches and sends its counters.
//!
//! Frames on the helper's stdout: one type byte, a u32 length (native
//! order), the payload.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use xcap_bpf_common::runtime;
use xcap_core::registry::HookStats;
use xcap_core::{CaptureConfig, Error, Filter, Result, Source, SourceCtx, SourceReport};

use crate::decode::Decoder;
use crate::probe::{self, hook_table, Options, Probe, Target};
use crate::DpdkArgs;

const RECORD: u8 = b'R';
const WATERMARK: u8 = b'W';
const PORTS: u8 = b'P';
const INFO: u8 = b'I';
const READY: u8 = b'K';
const ERROR: u8 = b'E';
const STATS: u8 = b'S';

/// The files of a bpftime install that the helper needs.
const BPFTIME_SERVER: &str = "libbpftime-syscall-server.so";
const BPFTIME_AGENT: &str = "libbpftime-agent.so";

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&[kind])?;
    w.write_all(&(payload.len() as u32).to_ne_bytes())?;
    w.write_all(payload)
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_ne_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

fn ports_payload(p: &Probe) -> Vec<u8> {
    p.ports
        .iter()
        .map(|port| format!("{}\t{}\n", port.id, port.name))
        .collect::<String>()
        .into_bytes()
}

// ---- the helper process ----

/// `xcap --xcap-helper dpdk KEY=VALUE...`: returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let code = match helper(&args, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let mut msg = vec![e.exit_code() as u8];
            msg.extend_from_slice(e.to_string().as_bytes());
            let _ = write_frame(&mut out, ERROR, &msg);
            e.exit_code()
        }
    };
    let _ = out.flush();
    code
}

fn helper(args: &[String], out: &mut impl Write) -> Result<()> {
    let io = |e: std::io::Error| Error::runtime(format!("helper output: {e}"));
    let mut cfg = CaptureConfig::default();
    let mut d = DpdkArgs::default();
    let mut expr = None;
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Error::input(format!("helper: bad argument {a}")))?;
        let num = || {
            v.parse::<u32>()
                .map_err(|_| Error::input(format!("helper: bad {k}")))
        };
        match k {
            "target" => d.target = Some(v.to_string()),
            "hook" => d.hooks.push(v.to_string()),
            "mbuf" => d.mbuf = Some(v.to_string()),
            "snaplen" => cfg.snaplen = num()?,
            "buffer" => cfg.buffer_kib = num()?,
            "filter" => expr = Some(v.to_string()),
            _ => return Err(Error::input(format!("helper: unknown argument {k}"))),
        }
    }
    if let Some(e) = expr {
        cfg.filter = Some(Arc::new(Filter::compile(&e, cfg.snaplen)?));
    }
    let opts = Options::parse(&cfg, &d)?;
    // Stop when the parent closes our stdin (or goes away).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mono_mark = || xcap_bpf_common::runtime::watermark_mono().to_ne_bytes();
    let mut probe = match &opts.target {
        Target::Pid(pid) => {
            let p = Probe::attach(&opts, *pid, false)?.ok_or_else(|| Error::runtime("no ports"))?;
            write_frame(out, PORTS, &ports_payload(&p)).map_err(io)?;
            write_frame(out, INFO, p.describe().as_bytes()).map_err(io)?;
            write_frame(out, READY, b"").map_err(io)?;
            out.flush().map_err(io)?;
            p
        }
        Target::Exe(_) => {
            write_frame(out, READY, b"").map_err(io)?;
            out.flush().map_err(io)?;
            let mut alive = true;
            let found =
                crate::wait_for_process(&opts, &|| stop.load(Ordering::Relaxed), &mut || {
                    alive = write_frame(out, WATERMARK, &mono_mark())
                        .and_then(|_| out.flush())
                        .is_ok();
                    alive
                })?;
            match found {
                Some(p) => {
                    write_frame(out, PORTS, &ports_payload(&p)).map_err(io)?;
                    write_frame(out, INFO, p.describe().as_bytes()).map_err(io)?;
                    p
                }
                None => return Ok(()),
            }
        }
    };
    let out = std::cell::RefCell::new(out);
    let mut failed = false;
    let result = probe::pump(
        &mut probe,
        &|| stop.load(Ordering::Relaxed),
        &mut |rec| {
            if !failed {
                failed = write_frame(*out.borrow_mut(), RECORD, rec).is_err();
            }
        },
        &mut |mark| {
            let mut o = out.borrow_mut();
            write_frame(*o, WATERMARK, &mark.to_ne_bytes())
                .and_then(|_| o.flush())
                .is_ok()
        },
        &mut |p, msg| {
            let mut o = out.borrow_mut();
            let _ = write_frame(*o, PORTS, &ports_payload(p));
            let _ = write_frame(*o, INFO, msg.as_bytes());
        },
    );
    let out = out.into_inner();
    result?;
    let stats: String = probe
        .counters()
        .iter()
        .map(|h| format!("{}\t{}\t{}\t{}\n", h.hook, h.seen, h.lost, h.truncated))
        .collect();
    write_frame(out, STATS, stats.as_bytes()).map_err(io)?;
    Ok(())
}

// ---- the parent's side ----

pub struct HelperSource {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: BufReader<ChildStdout>,
    decoder: Decoder,
    /// The helper's last "dpdk: pid N (name)" line: the application.
    described: String,
}

impl HelperSource {
    pub fn spawn(
        cfg: &CaptureConfig,
        d: &DpdkArgs,
        opts: &Options,
        bpftime: Option<&Path>,
    ) -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::runtime(format!("cannot find the xcap binary: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--xcap-helper").arg("dpdk");
        cmd.args(helper_args(cfg, d));
        if let Some(dir) = bpftime {
            for f in [BPFTIME_SERVER, BPFTIME_AGENT] {
                if !dir.join(f).is_file() {
                    return Err(Error::input(format!(
                        "--bpftime {}: no {f} there (a bpftime install, usually ~/.bpftime, holds {BPFTIME_SERVER} and {BPFTIME_AGENT})",
                        dir.display()
                    )));
                }
            }
            cmd.env("LD_PRELOAD", dir.join(BPFTIME_SERVER));
        }
        // Its own process group: Ctrl-C reaches xcap, which stops the helper
        // in order (closing its stdin) instead of killing it mid-detach.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::runtime(format!("cannot start the DPDK helper: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::runtime("helper has no stdout"))?;
        let mut s = HelperSource {
            child,
            stdin,
            reader: BufReader::with_capacity(1 << 20, stdout),
            decoder: Decoder::bare(hook_table(opts), xcap_core::time::mono_to_wall_offset()),
            described: String::new(),
        };
        if let Target::Exe(path) = &opts.target {
            eprintln!(
                "xcap: dpdk: waiting for a process of {} with started ports",
                path.display()
            );
        }
        // Wait until the helper has attached (or failed).
        let under = |e: Error| match (bpftime, e) {
            // Say where it ran: bpftime may refuse what the kernel accepts.
            (Some(dir), Error::Runtime(m)) => {
                Error::runtime(format!("under bpftime ({}): {m}", dir.display()))
            }
            (_, e) => e,
        };
        loop {
            match s.frame()? {
                Some((READY, _)) => break,
                Some((ERROR, msg)) => return Err(under(s.failed(&msg))),
                Some(_) => {}
                None => return Err(under(s.died())),
            }
        }
        Ok(s)
    }

    /// Read one frame, handling the informational ones here.
    fn frame(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let f = read_frame(&mut self.reader)
            .map_err(|e| Error::runtime(format!("reading the DPDK helper: {e}")))?;
        match &f {
            Some((INFO, msg)) => {
                let m = String::from_utf8_lossy(msg);
                eprintln!("xcap: {m}");
                if m.starts_with("dpdk: pid ") {
                    self.described = m.lines().next().unwrap_or("").to_string();
                }
            }
            Some((PORTS, text)) => {
                for line in String::from_utf8_lossy(text).lines() {
                    if let Some((id, name)) = line.split_once('\t') {
                        if let Ok(id) = id.parse() {
                            self.decoder.ports.insert(id, name.into());
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(f)
    }

    fn failed(&mut self, msg: &[u8]) -> Error {
        let _ = self.child.wait();
        let text = String::from_utf8_lossy(msg.get(1..).unwrap_or_default()).into_owned();
        match msg.first() {
            Some(2) => Error::input(text),
            _ => Error::runtime(text),
        }
    }

    fn died(&mut self) -> Error {
        let status = self.child.wait();
        Error::runtime(format!(
            "the DPDK helper ended unexpectedly ({})",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ))
    }

    /// Wait up to `ms` for the helper's output; true if there is some.
    fn readable(&self, ms: i32) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let mut pfd = libc::pollfd {
            fd: self.reader.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }
}

/// The helper's command line: what the probes need, as KEY=VALUE.
fn helper_args(cfg: &CaptureConfig, d: &DpdkArgs) -> Vec<String> {
    let DpdkArgs {
        target,
        hooks,
        mbuf,
        ..
    } = d;
    let mut v = Vec::new();
    if let Some(t) = target {
        v.push(format!("target={t}"));
    }
    v.extend(hooks.iter().map(|h| format!("hook={h}")));
    if let Some(m) = mbuf {
        v.push(format!("mbuf={m}"));
    }
    v.push(format!("snaplen={}", cfg.snaplen));
    v.push(format!("buffer={}", cfg.buffer_kib));
    if let Some(f) = &cfg.filter {
        v.push(format!("filter={}", f.expr));
    }
    v
}

impl Source for HelperSource {
    fn name(&self) -> &str {
        "dpdk"
    }

    fn filters(&self) -> bool {
        true
    }

    fn run(mut self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
        let wall = self.decoder.wall_offset;
        let mut pending = runtime::Slots::default();
        let mut delivered = 0u64;
        let mut hooks: Vec<HookStats> = Vec::new();
        let mut error = None;
        let mut bus_gone = false;
        loop {
            if self.stdin.is_some() && (ctx.stopped() || bus_gone) {
                self.stdin = None; // the helper's signal to detach and finish
            }
            if !self.readable(50) {
                continue;
            }
            let Some((kind, payload)) = self.frame()? else {
                break;
            };
            match kind {
                RECORD => {
                    self.decoder.decode(&payload, &mut pending);
                }
                WATERMARK if !bus_gone => {
                    let mark = u64::from_ne_bytes(payload[..8].try_into().unwrap_or_default());
                    delivered += pending.len() as u64;
                    bus_gone = !runtime::send(&ctx, &mut pending, mark + wall);
                }
                STATS => {
                    hooks = String::from_utf8_lossy(&payload)
                        .lines()
                        .filter_map(|l| {
                            let f: Vec<&str> = l.split('\t').collect();
                            Some(HookStats {
                                hook: f.first()?.to_string(),
                                seen: f.get(1)?.parse().ok()?,
                                lost: f.get(2)?.parse().ok()?,
                                truncated: f.get(3)?.parse().ok()?,
                            })
                        })
                        .collect();
                }
                ERROR => error = Some(self.failed(&payload)),
                _ => {}
            }
        }
        let status = self.child.wait();
        if let Some(e) = error {
            return Err(e);
        }
        if !matches!(status, Ok(s) if s.success()) {
            return Err(self.died());
        }
        delivered += pending.len() as u64;
        if !bus_gone {
            ctx.send(pending.into_batch(), u64::MAX);
        }
        // The helper ended cleanly without being asked to: the application
        // went away.
        let asked = self.stdin.is_none();
        Ok(SourceReport {
            name: "dpdk".into(),
            delivered,
            dropped: hooks.iter().map(|h| h.lost).sum::<u64>() + self.decoder.bad,
            hooks,
            failure: (!asked).then(|| crate::gone(&self.described)),
            notes: Vec::new(),
        })
    }
}

impl Drop for HelperSource {
    fn drop(&mut self) {
        // Never leave a helper attached behind us: closing its stdin makes
        // it detach; read what it still writes so it cannot block on a full
        // pipe, then wait for it.
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = std::io::copy(&mut self.reader, &mut std::io::sink());
            let _ = self.child.wait();
        }
    }
}
