//! The kernel source's command-line options.

use clap::{Arg, ArgAction};
use xcap_core::registry::{arg_flag, arg_value, arg_values, SourceArgs};

/// What the kernel source captures, beyond what every source shares.
#[derive(Clone, Debug, Default)]
pub struct KernelArgs {
    /// `--hook`: hooks named by the user; empty means the defaults.
    pub hooks: Vec<String>,
    /// `--drops`: also capture packets as they are freed as dropped.
    pub drops: bool,
    /// `--stack`: record kernel stacks.
    pub stack: bool,
    /// `--track`: keep following a packet once the filter matched it.
    pub track: bool,
    /// `--pid`: only packets handled while this process runs.
    pub pid: Option<u32>,
    /// `--comm`: only packets handled while a task of this name runs.
    pub comm: Option<String>,
}

const HEADING: &str = "Kernel source";

pub fn args() -> Vec<Arg> {
    vec![
        Arg::new("hook")
            .long("hook")
            .value_name("HOOK")
            .action(ArgAction::Append)
            .help("Capture at this hook (repeatable): tp:CATEGORY:NAME, or a kernel function NAME, fentry:/fexit:/kprobe:/kretprobe:NAME, NAME@N, or a pattern like 'tcp_*'"),
        Arg::new("drops")
            .long("drops")
            .action(ArgAction::SetTrue)
            .help("Also capture dropped packets with the drop reason and location"),
        Arg::new("stack")
            .long("stack")
            .action(ArgAction::SetTrue)
            .help("Record the kernel stack of every packet"),
        Arg::new("track")
            .long("track")
            .action(ArgAction::SetTrue)
            .help("Keep capturing a packet at later hooks once the filter matched it, even when NAT or encapsulation changes its headers"),
        Arg::new("pid")
            .long("pid")
            .value_name("PID")
            .value_parser(clap::value_parser!(u32))
            .help("Only packets handled while process PID runs (in the kernel: the task current at the hook, the sender on the transmit path)"),
        Arg::new("comm")
            .long("comm")
            .value_name("NAME")
            .help("Only packets handled while a task named NAME runs (as --pid)"),
    ]
    .into_iter()
    .map(|a| a.help_heading(HEADING))
    .collect()
}

impl KernelArgs {
    pub fn from_matches(m: &SourceArgs) -> KernelArgs {
        KernelArgs {
            hooks: arg_values(m, "hook"),
            drops: arg_flag(m, "drops"),
            stack: arg_flag(m, "stack"),
            track: arg_flag(m, "track"),
            pid: arg_value(m, "pid"),
            comm: arg_value(m, "comm"),
        }
    }
}
