//! The DPDK source's command-line options.

use std::path::PathBuf;

use clap::{Arg, ArgAction};
use xcap_core::registry::{arg_flag, arg_value, arg_values, SourceArgs};

/// `--dpdk-*`: which application the DPDK source probes, and how.
#[derive(Clone, Debug, Default)]
pub struct DpdkArgs {
    /// `--dpdk-pid`: a pid, or the path of an executable to wait for.
    pub target: Option<String>,
    /// `--dpdk-hook`: burst functions named by hand.
    pub hooks: Vec<String>,
    /// `--dpdk-mbuf`: rte_mbuf field offsets overriding the known layout.
    pub mbuf: Option<String>,
    /// `--dpdk-helper`: run the probes in a helper process.
    pub helper: bool,
    /// `--bpftime DIR`: run the helper's probes in userspace under bpftime.
    pub bpftime: Option<PathBuf>,
}

const HEADING: &str = "DPDK source";

pub fn args() -> Vec<Arg> {
    vec![
        Arg::new("dpdk-pid")
            .long("dpdk-pid")
            .value_name("PID|PATH")
            .help("The application's pid, or the path of its executable to wait for"),
        Arg::new("dpdk-hook")
            .long("dpdk-hook")
            .value_name("SPEC")
            .action(ArgAction::Append)
            .help("Probe this function instead of the ports' burst functions: FUNC@ARG, FUNC@ARR@CNT or FUNC@ARR@ret, FUNC may be LIB:OFFSET (repeatable)"),
        Arg::new("dpdk-mbuf")
            .long("dpdk-mbuf")
            .value_name("FIELD=OFF,...")
            .help("rte_mbuf field offsets, e.g. next=64,pkt_len=36"),
        Arg::new("dpdk-helper")
            .long("dpdk-helper")
            .action(ArgAction::SetTrue)
            .help("Run the probes in a helper process"),
        Arg::new("bpftime")
            .long("bpftime")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Run the helper's probes in userspace with the bpftime installed in DIR (implies --dpdk-helper)"),
    ]
    .into_iter()
    .map(|a| a.help_heading(HEADING))
    .collect()
}

impl DpdkArgs {
    pub fn from_matches(m: &SourceArgs) -> DpdkArgs {
        DpdkArgs {
            target: arg_value(m, "dpdk-pid"),
            hooks: arg_values(m, "dpdk-hook"),
            mbuf: arg_value(m, "dpdk-mbuf"),
            helper: arg_flag(m, "dpdk-helper"),
            bpftime: arg_value(m, "bpftime"),
        }
    }
}
