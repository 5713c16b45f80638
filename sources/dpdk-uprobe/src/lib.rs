//! xcap's DPDK source: packets inside a running DPDK application, read
//! from the mbufs of its poll-mode driver's burst functions through
//! uprobes, with no change to the application.
//!
//! `probe` finds and attaches the functions, `decode` turns records into
//! packets, `helper` runs the probes in a separate process (the way to run
//! them under bpftime).

mod args;
mod config;
mod decode;
mod helper;
mod hooks;
mod layout;
mod ports;
mod probe;
mod process;

use xcap_bpf_common::runtime;
use xcap_core::registry::{HelperFactory, ProgramStat};
use xcap_core::{CaptureConfig, Error, Result, Source, SourceCtx, SourceFactory, SourceReport};

pub use crate::args::DpdkArgs;
use crate::decode::Decoder;
use crate::probe::{Options, Probe, Target};

inventory::submit! {
    SourceFactory {
        name: "dpdk",
        help: "packets inside a DPDK application, by uprobes on its PMD burst functions (--dpdk-pid)",
        args: args::args,
        open: |cfg, m| open_with(cfg, &DpdkArgs::from_matches(m)),
        list_hooks: None,
        verify: Some(|cfg, m| verify_with(cfg, &DpdkArgs::from_matches(m))),
    }
}

inventory::submit! {
    HelperFactory { name: "dpdk", main: helper::main }
}

/// Attach to the application (or wait for it) as `d` says.
pub fn open_with(cfg: &CaptureConfig, d: &DpdkArgs) -> Result<Box<dyn Source>> {
    let opts = Options::parse(cfg, d)?;
    if d.helper || d.bpftime.is_some() {
        return Ok(Box::new(helper::HelperSource::spawn(
            cfg,
            d,
            &opts,
            d.bpftime.as_deref(),
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

/// `--dry-run`: load the probes' programs, attach nothing.
pub fn verify_with(cfg: &CaptureConfig, d: &DpdkArgs) -> Result<Vec<ProgramStat>> {
    probe::verify(&Options::parse(cfg, d)?)
}

enum State {
    Attached(Box<Probe>),
    Waiting,
}

pub struct DpdkSource {
    opts: Options,
    state: State,
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

/// The line for an application that exited while captured.
/// The line for an application that exited: the process only. Its ports
/// are left out: whether they are still listed depends on whether xcap saw
/// them closed before it saw the process go, a race the line must not show.
pub(crate) fn gone(described: &str) -> String {
    let who = described.strip_prefix("dpdk: ").unwrap_or(described);
    let who = who.split(';').next().unwrap_or(who);
    format!("dpdk: the application exited ({who})")
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
        let probe = match self.state {
            State::Attached(p) => *p,
            State::Waiting => {
                let found = wait_for_process(&opts, &|| ctx.stopped(), &mut || {
                    ctx.send(Vec::new(), runtime::watermark_mono() + wall_offset)
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
        let ring = probe.ring()?;
        let probe = std::cell::RefCell::new(probe);
        let mut last = std::time::Instant::now();
        let delivered = runtime::deliver(
            &ctx,
            &ring,
            wall_offset,
            &mut |rec, out| decoder.borrow_mut().decode(rec, out),
            &mut || {
                probe::refresh(
                    &mut probe.borrow_mut(),
                    &mut last,
                    probe::REFRESH,
                    &mut |p, msg| {
                        decoder.borrow_mut().set_ports(p);
                        eprintln!("xcap: {msg}");
                    },
                )
            },
            &mut || probe.borrow_mut().detach(),
            &mut Vec::new,
        )?;
        let probe = probe.into_inner();
        let hooks = probe.counters();
        let bad = decoder.borrow().bad;
        Ok(SourceReport {
            name: "dpdk".into(),
            delivered,
            dropped: hooks.iter().map(|h| h.lost).sum::<u64>() + bad,
            hooks,
            // Not asked to stop: the application went away.
            failure: (!ctx.stopped()).then(|| gone(&probe.describe())),
            notes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_exit_names_the_process_only() {
        let want = "dpdk: the application exited (pid 7 (dpdk-testpmd))";
        assert_eq!(super::gone("dpdk: pid 7 (dpdk-testpmd)"), want);
        let with_port = "dpdk: pid 7 (dpdk-testpmd); port 0 net_pcap0: 1 rx, 1 tx queues";
        assert_eq!(super::gone(with_port), want);
    }
}
