//! The `xcap` command: parses the command line and wires sources to sinks
//! through the engine. Everything else lives in the crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use xcap_core::registry::{self, CaptureConfig, SinkConfig};
use xcap_core::{BusOptions, Error, Filter};

// Built-in sources and sinks register themselves; linking them is enough.
use xcap_sinks as _;
use xcap_source_dpdk as _;
use xcap_source_kernel as _;

/// eBPF packet capture: where the packet really goes.
#[derive(Parser, Debug)]
#[command(name = "xcap", version, about, max_term_width = 100)]
struct Cli {
    /// Sources to capture from, comma-separated (see --list).
    #[arg(
        long,
        value_name = "LIST",
        default_value = "kernel",
        value_delimiter = ','
    )]
    source: Vec<String>,
    /// Sinks to write to, comma-separated: pcapng, pcap, stdout
    /// (default: pcapng or pcap with -w, by the file's extension; stdout without).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    sink: Vec<String>,
    /// Write packets to FILE (pcapng, or pcap when FILE ends in .pcap; - is stdout).
    #[arg(short = 'w', value_name = "FILE")]
    write: Option<PathBuf>,
    /// Read packets from a pcap or pcapng file instead of capturing.
    #[arg(short = 'r', value_name = "FILE", conflicts_with = "source")]
    read: Option<PathBuf>,
    /// Capture only on this interface (repeatable; 'any' for all).
    #[arg(short = 'i', value_name = "IFACE")]
    interface: Vec<String>,
    /// Network namespace (name under /var/run/netns, or a path) where -i
    /// names are resolved; without -i, capture all of its interfaces.
    #[arg(long, value_name = "NAME|PATH")]
    netns: Option<String>,
    /// Exit after COUNT packets.
    #[arg(short = 'c', value_name = "COUNT")]
    count: Option<u64>,
    /// Bytes to capture per packet (0 = 262144).
    #[arg(short = 's', value_name = "SNAPLEN", default_value_t = 262144)]
    snaplen: u32,
    /// Kernel buffer size in KiB (per source).
    #[arg(
        short = 'B',
        value_name = "KiB",
        default_value_t = 0,
        hide_default_value = true
    )]
    buffer: u32,
    /// Capture at this hook, e.g. tp:net:netif_receive_skb (repeatable).
    #[arg(long, value_name = "HOOK")]
    hook: Vec<String>,
    /// Also capture dropped packets with the drop reason and location.
    #[arg(long)]
    drops: bool,
    /// Record the kernel stack of every packet.
    #[arg(long)]
    stack: bool,
    /// More detail on stdout (repeatable).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// One JSON object per packet on stdout.
    #[arg(long)]
    json: bool,
    /// List the registered sources and sinks, and exit.
    #[arg(long)]
    list: bool,
    /// List the hooks that can carry packets on this kernel (optionally
    /// matching PATTERN, * and ? as in the shell), and exit.
    #[arg(long, value_name = "PATTERN", num_args = 0..=1, default_missing_value = "*")]
    list_hooks: Option<String>,
    /// Only packets handled while process PID runs (in the kernel: the task
    /// current at the hook, the sender on the transmit path).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Only packets handled while a task named NAME runs (as --pid).
    #[arg(long, value_name = "NAME")]
    comm: Option<String>,
    /// Keep capturing a packet at later hooks once the filter matched it,
    /// even when NAT or encapsulation changes its headers.
    #[arg(long)]
    track: bool,
    /// For packets seen at several hooks, print the time from the first hook
    /// to each later one, and min/median/p99 per hop at the end (instead of
    /// the stdout lines).
    #[arg(long)]
    latency: bool,
    /// DPDK source: the application's pid, or the path of its executable
    /// to wait for.
    #[arg(long, value_name = "PID|PATH")]
    dpdk_pid: Option<String>,
    /// DPDK source: probe this function instead of the ports' burst
    /// functions: FUNC@ARG, FUNC@ARR@CNT or FUNC@ARR@ret, FUNC may be
    /// LIB:OFFSET (repeatable).
    #[arg(long, value_name = "SPEC")]
    dpdk_hook: Vec<String>,
    /// DPDK source: rte_mbuf field offsets, e.g. next=64,pkt_len=36.
    #[arg(long, value_name = "FIELD=OFF,...")]
    dpdk_mbuf: Option<String>,
    /// DPDK source: run the probes in a helper process.
    #[arg(long)]
    dpdk_helper: bool,
    /// DPDK source: run the helper's probes in userspace with the bpftime
    /// installed in DIR (implies --dpdk-helper).
    #[arg(long, value_name = "DIR")]
    bpftime: Option<PathBuf>,
    /// Print the filter as classic BPF and as the eBPF xcap runs, and exit.
    #[arg(short = 'd')]
    dump: bool,
    /// Filter expression in tcpdump syntax.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    expression: Vec<String>,
}

fn main() -> ExitCode {
    // A source's helper process: the same binary, started by the source.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--xcap-helper") {
        let name = args.get(2).cloned().unwrap_or_default();
        return match registry::helper(&name) {
            Some(h) => ExitCode::from((h.main)(args[3..].to_vec()) as u8),
            None => {
                eprintln!("xcap: no helper '{name}'");
                ExitCode::from(2)
            }
        };
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, like every other input error.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("xcap: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xcap: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The sinks to open: as named, or chosen from -w.
fn pick_sinks(cli: &Cli) -> Result<Vec<&'static registry::SinkFactory>, Error> {
    let mut names: Vec<String> = if !cli.sink.is_empty() {
        cli.sink.clone()
    } else if let Some(w) = &cli.write {
        let pcap = w.extension().is_some_and(|e| e == "pcap");
        vec![if pcap { "pcap" } else { "pcapng" }.to_string()]
    } else if cli.latency {
        Vec::new()
    } else {
        vec!["stdout".to_string()]
    };
    if cli.latency {
        // Both write to stdout: latency lines replace the packet lines.
        names.retain(|n| n != "stdout");
        names.push("latency".to_string());
    }
    let mut out = Vec::new();
    for n in &names {
        let f = registry::sink(n).ok_or_else(|| {
            let known: Vec<&str> = registry::sinks().map(|s| s.name).collect();
            Error::input(format!("unknown sink '{n}' (known: {})", known.join(", ")))
        })?;
        if !out
            .iter()
            .any(|o: &&registry::SinkFactory| o.name == f.name)
        {
            out.push(f);
        }
    }
    let file_sinks = out.iter().filter(|f| f.writes_file).count();
    match (file_sinks, &cli.write) {
        (0, Some(_)) => Err(Error::input("-w given but no selected sink writes a file")),
        (n, None) if n > 0 => Err(Error::input(format!(
            "sink {} needs -w FILE",
            out.iter().find(|f| f.writes_file).map_or("", |f| f.name)
        ))),
        (n, _) if n > 1 => Err(Error::input("only one file sink can write the -w file")),
        _ => Ok(out),
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    if cli.list {
        println!("sources:");
        for s in registry::sources().filter(|s| s.name != "file") {
            println!("  {:<10} {}", s.name, s.help);
        }
        println!("sinks:");
        for s in registry::sinks() {
            println!("  {:<10} {}", s.name, s.help);
        }
        return Ok(());
    }
    if let Some(pat) = &cli.list_hooks {
        for s in registry::sources() {
            if let Some(list) = s.list_hooks {
                print!("{}", list(Some(pat))?);
            }
        }
        return Ok(());
    }
    let filter = if cli.expression.is_empty() {
        None
    } else {
        Some(Arc::new(Filter::compile(
            &cli.expression.join(" "),
            cli.snaplen,
        )?))
    };
    if cli.dump {
        let f = filter
            .as_ref()
            .ok_or_else(|| Error::input("-d needs a filter expression"))?;
        print!("{}", f.dump(xcap_core::filter::ebpf::BLOCK_INSNS)?);
        return Ok(());
    }
    let sink_factories = pick_sinks(&cli)?;
    let capture = CaptureConfig {
        interfaces: cli.interface.clone(),
        netns: cli.netns.clone(),
        snaplen: cli.snaplen,
        hooks: cli.hook.clone(),
        drops: cli.drops,
        stack: cli.stack,
        read_file: cli.read.clone(),
        buffer_kib: cli.buffer,
        filter: filter.clone(),
        pid: cli.pid,
        comm: cli.comm.clone(),
        track: cli.track,
        dpdk: registry::DpdkOptions {
            target: cli.dpdk_pid.clone(),
            hooks: cli.dpdk_hook.clone(),
            mbuf: cli.dpdk_mbuf.clone(),
            helper: cli.dpdk_helper,
            bpftime: cli.bpftime.clone(),
        },
    };
    let mut source_names: Vec<String> = Vec::new();
    if cli.read.is_some() {
        source_names.push("file".to_string());
    }
    for n in &cli.source {
        if cli.read.is_none() && !source_names.contains(n) {
            source_names.push(n.clone());
        }
    }
    // Sources first: they attach, and a failure leaves no output file behind.
    let mut sources = Vec::new();
    for n in &source_names {
        let f = registry::source(n).filter(|f| f.name != "file" || cli.read.is_some());
        let f = f.ok_or_else(|| {
            let known: Vec<&str> = registry::sources()
                .map(|s| s.name)
                .filter(|s| *s != "file")
                .collect();
            Error::input(format!(
                "unknown source '{n}' (known: {})",
                known.join(", ")
            ))
        })?;
        sources.push((f.open)(&capture)?);
    }
    let sink_cfg = SinkConfig {
        path: cli.write.clone(),
        verbose: cli.verbose,
        json: cli.json,
        snaplen: if cli.snaplen == 0 {
            262144
        } else {
            cli.snaplen
        },
    };
    let mut sinks = Vec::new();
    for f in sink_factories {
        let mut cfg = sink_cfg.clone();
        if !f.writes_file {
            cfg.path = None;
        }
        sinks.push((f.open)(&cfg)?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .map_err(|e| Error::runtime(format!("cannot install signal handler: {e}")))?;
    }
    if cli.read.is_none() {
        // Like tcpdump's "listening on": everything is attached from here on.
        eprintln!(
            "xcap: capturing from {}, snapshot length {} bytes",
            source_names.join(","),
            sink_cfg.snaplen
        );
    }
    let opts = BusOptions {
        count: cli.count,
        filter,
    };
    let report = xcap_core::run_bus(sources, sinks, &opts, stop)?;

    let dropped: u64 = report.sources.iter().map(|s| s.dropped).sum();
    eprintln!("{} packets captured", report.written);
    eprintln!("{dropped} packets dropped");
    for (s, written) in report.sources.iter().zip(&report.per_source) {
        eprintln!(
            "  {}: {written} packets captured, {} packets dropped",
            s.name, s.dropped
        );
        for h in &s.hooks {
            if h.lost > 0 || cli.verbose > 0 {
                eprintln!(
                    "    {}: {} seen, {} lost (buffer full)",
                    h.hook, h.seen, h.lost
                );
            }
            if h.truncated > 0 {
                eprintln!(
                    "    {}: {} packets with unreadable paged data (captured short)",
                    h.hook, h.truncated
                );
            }
        }
    }
    match report.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
