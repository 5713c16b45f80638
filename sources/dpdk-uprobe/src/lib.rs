//! xcap's DPDK source: packets inside a running DPDK application, read
//! from the mbufs of its poll-mode driver's burst functions through
//! uprobes, with no change to the application.
//!
//! `probe` finds and attaches the functions, `decode` turns records into
//! packets, `helper` runs the probes in a separate process (the way to run
//! them under bpftime).

mod config;
mod decode;
mod helper;
mod hooks;
mod layout;
mod ports;
mod probe;
mod process;

use xcap_core::registry::HelperFactory;
use xcap_core::{CaptureConfig, Error, Result, Source, SourceCtx, SourceFactory, SourceReport};

use crate::decode::Decoder;
use crate::probe::{Options, Probe, Target};

inventory::submit! {
    SourceFactory {
        name: "dpdk",
        help: "packets inside a DPDK application, by uprobes on its PMD burst functions (--dpdk-pid)",
        open,
        list_hooks: None,
    }
}

inventory::submit! {
    HelperFactory { name: "dpdk", main: helper::main }
}

fn open(cfg: &CaptureConfig) -> Result<Box<dyn Source>> {
    let opts = Options::parse(cfg)?;
    if cfg.dpdk.helper || cfg.dpdk.bpftime.is_some() {
        return Ok(Box::new(helper::HelperSource::spawn(
            cfg,
            &opts,
            cfg.dpdk.bpftime.as_deref(),
        )?));
    }
    let state = match &opts.target {
        Target::Pid(pid) => {
            let p = Probe::attach(&opts, *pid, false)?.ok_or_else(|| Error::runtime("no ports"))?;
            eprintln!("xcap: {}", p.describe());
            State::Attached(Box::new(p))
        }
        Target::Exe(path) => {
            eprintln!(
                "xcap: dpdk: waiting for a process of {} with started ports",
                path.display()
            );
            State::Waiting
        }
    };
    Ok(Box::new(DpdkSource { opts, state }))
}

enum State {
    Attached(Box<Probe>),
    Waiting,
}

pub struct DpdkSource {
    opts: Options,
    state: State,
}

/// Watermark for a source that has nothing older in flight: records are
/// committed within microseconds of their stamp; 10 ms covers stragglers.
fn watermark(wall_offset: u64) -> u64 {
    xcap_core::time::monotonic_ns().saturating_sub(10_000_000) + wall_offset
}

/// Wait for a process of `opts`' executable to start its ports, or until
/// `stop` returns true (Ok(None)). `idle` is called between looks.
fn wait_for_process(
    opts: &Options,
    stop: &dyn Fn() -> bool,
    idle: &mut dyn FnMut() -> bool,
) -> Result<Option<Probe>> {
    let Target::Exe(exe) = &opts.target else {
        return Err(Error::runtime("no process to wait for"));
    };
    // A process just started has not mapped its libraries yet: its errors
    // count only once it is a couple of seconds old, and then are shown
    // once while waiting goes on (another process may still come).
    let mut young: std::collections::HashMap<u32, (std::time::Instant, bool)> = Default::default();
    while !stop() {
        for pid in process::pids_of(exe) {
            match Probe::attach(opts, pid, true) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => {
                    let (since, told) = young
                        .entry(pid)
                        .or_insert((std::time::Instant::now(), false));
                    if !*told && since.elapsed() > std::time::Duration::from_secs(2) {
                        *told = true;
                        eprintln!("xcap: dpdk: {e}; still waiting");
                    }
                }
            }
        }
        if !idle() {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(None)
}

impl Source for DpdkSource {
    fn name(&self) -> &str {
        "dpdk"
    }

    fn filters(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
        let wall_offset = xcap_core::time::mono_to_wall_offset();
        let opts = self.opts;
        let mut probe = match self.state {
            State::Attached(p) => *p,
            State::Waiting => {
                let found = wait_for_process(&opts, &|| ctx.stopped(), &mut || {
                    ctx.send(Vec::new(), watermark(wall_offset))
                })?;
                match found {
                    Some(p) => {
                        eprintln!("xcap: {}", p.describe());
                        p
                    }
                    None => {
                        return Ok(SourceReport {
                            name: "dpdk".into(),
                            ..Default::default()
                        })
                    }
                }
            }
        };
        let decoder = std::cell::RefCell::new(Decoder::new(&probe, wall_offset));
        let pending = std::cell::RefCell::new(Vec::new());
        let mut delivered = 0u64;
        probe::pump(
            &mut probe,
            &|| ctx.stopped(),
            &mut |rec| {
                if let Some(p) = decoder.borrow_mut().decode(rec) {
                    pending.borrow_mut().push(p);
                }
            },
            &mut || {
                let batch = std::mem::take(&mut *pending.borrow_mut());
                delivered += batch.len() as u64;
                ctx.send(batch, watermark(wall_offset))
            },
            &mut |p, msg| {
                decoder.borrow_mut().set_ports(p);
                eprintln!("xcap: {msg}");
            },
        )?;
        let batch = std::mem::take(&mut *pending.borrow_mut());
        delivered += batch.len() as u64;
        ctx.send(batch, u64::MAX);
        let hooks = probe.counters();
        let bad = decoder.borrow().bad;
        Ok(SourceReport {
            name: "dpdk".into(),
            delivered,
            dropped: hooks.iter().map(|h| h.lost).sum::<u64>() + bad,
            hooks,
        })
    }
}
