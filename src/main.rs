//! The `xcap` command: parses the command line and wires sources to sinks
//! through the engine. Everything else lives in the crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser};
use xcap_core::registry::{self, CaptureConfig, SinkConfig};
use xcap_core::{BusOptions, Error, Filter};
use xcap_plugins::Plugins;

// Built-in sources and sinks register themselves; linking them is enough.
use xcap_sinks as _;
use xcap_source_afxdp as _;
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
    /// Before writing a packet, start a new -w file if the current one is
    /// larger than SIZE: millions of bytes, or with a k, m or g suffix
    /// 1024-multiples (tcpdump's -C). Files are FILE, FILE1, FILE2, ...
    #[arg(short = 'C', value_name = "SIZE", value_parser = parse_file_size)]
    rotate_size: Option<u64>,
    /// Start a new -w file every SECS seconds; FILE may hold strftime(3)
    /// codes (tcpdump's -G).
    #[arg(short = 'G', value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    rotate_secs: Option<u64>,
    /// With -C, keep at most COUNT files, reused in a ring (FILE0 ...);
    /// with -G alone, stop after COUNT files (tcpdump's -W).
    #[arg(short = 'W', value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    file_count: Option<u32>,
    /// Once every hook is attached, become USER (a name or uid) and keep no
    /// privilege; -w files are then created as USER (tcpdump's -Z; only
    /// when run as root).
    #[arg(short = 'Z', value_name = "USER")]
    user: Option<String>,
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
    /// More detail on stdout (repeatable).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// One JSON object per packet on stdout.
    #[arg(long)]
    json: bool,
    /// Timestamps on stdout: -t none, -tt Unix time, -ttt delta to the
    /// previous packet, -tttt date and time, -ttttt delta to the first.
    #[arg(short = 't', action = clap::ArgAction::Count)]
    time_format: u8,
    /// Print each packet's bytes in hex and ASCII after its line, without
    /// the link-level header (-XX: with it).
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    hex: u8,
    /// Print each packet's bytes in ASCII after its line, without the
    /// link-level header.
    #[arg(short = 'A', conflicts_with = "hex")]
    ascii: bool,
    /// Print the link-level header (MAC addresses, ethertype) on each line.
    #[arg(short = 'e')]
    link_header: bool,
    /// Quick output: less protocol detail (a TCP segment reads "tcp LEN").
    #[arg(short = 'q')]
    quick: bool,
    /// Do not resolve addresses or ports to names: xcap never does, the
    /// flag is taken for tcpdump's habits.
    #[arg(short = 'n', action = clap::ArgAction::Count)]
    no_resolve: u8,
    /// Line-buffered stdout / packet-buffered -w: xcap writes out after
    /// every batch anyway (a live reader sees packets within milliseconds);
    /// taken for tcpdump's habits.
    #[arg(short = 'l', visible_short_alias = 'U')]
    line_buffered: bool,
    /// Print only the number of packets (on stderr), not the packets.
    #[arg(long = "count", conflicts_with_all = ["write", "json", "latency"])]
    count_only: bool,
    /// List the registered sources and sinks, and exit.
    #[arg(long)]
    list: bool,
    /// List the hooks that can carry packets on this kernel (optionally
    /// matching PATTERN, * and ? as in the shell), and exit.
    #[arg(long, value_name = "PATTERN", num_args = 0..=1, default_missing_value = "*")]
    list_hooks: Option<String>,
    /// For packets seen at several hooks, print the time from the first hook
    /// to each later one, and min/median/p99 per hop at the end (instead of
    /// the stdout lines).
    #[arg(long)]
    latency: bool,
    /// Print the filter as classic BPF and as the eBPF xcap runs, and exit.
    #[arg(short = 'd')]
    dump: bool,
    /// Load and verify every BPF program the capture would use, print the
    /// instructions the kernel's verifier processed for each, and exit
    /// (nothing is attached).
    #[arg(long)]
    dry_run: bool,
    /// Load source and sink plugins from this shared library (repeatable).
    /// Every *.so in the folders of $XCAP_PLUGIN_PATH (colon-separated) is
    /// loaded too.
    #[arg(long, value_name = "PATH")]
    plugin: Vec<PathBuf>,
    /// An option for a plugin's source or sink, NAME.KEY=VALUE, where NAME
    /// is the source's, sink's or plugin's name (repeatable).
    #[arg(long, value_name = "NAME.KEY=VALUE")]
    plugin_opt: Vec<String>,
    /// Print the man page (roff), generated from these options, and exit.
    #[arg(long, hide = true)]
    generate_man: bool,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell), generated from these options, and exit.
    #[arg(long, hide = true, value_name = "SHELL")]
    generate_completions: Option<clap_complete::Shell>,
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
    let parsed = command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
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
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xcap: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// -C's size: tcpdump's units (1,000,000 bytes), or 1024-multiples with a
/// k, m or g suffix.
fn parse_file_size(v: &str) -> Result<u64, String> {
    let (num, unit) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&v[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&v[..i], 1 << 30),
        _ => (v, 1_000_000),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("'{v}' is not a file size (e.g. 10, 500k, 2m)")),
    }
}

/// xcap's own options, then each source's (the registry's).
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for s in registry::sources() {
        cmd = cmd.args((s.args)());
    }
    cmd
}

/// Refuse an option of a source the capture does not use: silently
/// ignoring `--hook` in a capture without the kernel source would capture
/// something other than what was asked.
fn unused_source_options(used: &[String], m: &clap::ArgMatches) -> Result<(), Error> {
    for s in registry::sources().filter(|s| !used.iter().any(|u| u == s.name)) {
        for a in (s.args)() {
            let given =
                m.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine);
            if given {
                let name = a
                    .get_long()
                    .map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"));
                let what = if used.iter().any(|u| u == "file") {
                    "-r reads a file".to_string()
                } else {
                    format!("--source {}", used.join(","))
                };
                return Err(Error::input(format!(
                    "{name} is an option of the {} source, which this capture does not use ({what})",
                    s.name
                )));
            }
        }
    }
    Ok(())
}

/// A sink to open: a built-in or a plugin's.
enum SinkChoice {
    Builtin(&'static registry::SinkFactory),
    Plugin(String, bool),
}

impl SinkChoice {
    fn name(&self) -> &str {
        match self {
            SinkChoice::Builtin(f) => f.name,
            SinkChoice::Plugin(n, _) => n,
        }
    }
    fn writes_file(&self) -> bool {
        match self {
            SinkChoice::Builtin(f) => f.writes_file,
            SinkChoice::Plugin(_, w) => *w,
        }
    }
}

/// The sinks to open: as named, or chosen from -w.
fn pick_sinks(cli: &Cli, plugins: &Plugins) -> Result<Vec<SinkChoice>, Error> {
    let mut names: Vec<String> = if !cli.sink.is_empty() {
        cli.sink.clone()
    } else if let Some(w) = &cli.write {
        let pcap = w.extension().is_some_and(|e| e == "pcap");
        vec![if pcap { "pcap" } else { "pcapng" }.to_string()]
    } else if cli.latency || cli.count_only {
        Vec::new()
    } else {
        vec!["stdout".to_string()]
    };
    if cli.latency {
        // Both write to stdout: latency lines replace the packet lines.
        names.retain(|n| n != "stdout");
        names.push("latency".to_string());
    }
    let mut out: Vec<SinkChoice> = Vec::new();
    for n in &names {
        let choice = if let Some(f) = registry::sink(n) {
            SinkChoice::Builtin(f)
        } else if let Some(w) = plugins.sink_writes_file(n) {
            SinkChoice::Plugin(n.clone(), w)
        } else {
            let mut known: Vec<String> = registry::sinks().map(|s| s.name.to_string()).collect();
            known.extend(plugins.list_sinks().into_iter().map(|l| l.name));
            return Err(Error::input(format!(
                "unknown sink '{n}' (known: {})",
                known.join(", ")
            )));
        };
        if !out.iter().any(|o| o.name() == choice.name()) {
            out.push(choice);
        }
    }
    let file_sinks = out.iter().filter(|f| f.writes_file()).count();
    match (file_sinks, &cli.write) {
        (0, Some(_)) => Err(Error::input("-w given but no selected sink writes a file")),
        (n, None) if n > 0 => Err(Error::input(format!(
            "sink {} needs -w FILE",
            out.iter()
                .find(|f| f.writes_file())
                .map_or("", |f| f.name())
        ))),
        (n, _) if n > 1 => Err(Error::input("only one file sink can write the -w file")),
        _ => Ok(out),
    }
}

/// The kernel's limit on the instructions its verifier processes for one
/// program (BPF_COMPLEXITY_LIMIT_INSNS, since Linux 5.2).
const VERIFIER_LIMIT: u64 = 1_000_000;

/// `--dry-run`: every program the sources would load, verified, one line
/// each; a program the verifier refuses is bad input (exit 2).
fn dry_run(
    sources: &[String],
    capture: &CaptureConfig,
    matches: &registry::SourceArgs,
    plugins: &Plugins,
) -> Result<(), Error> {
    let mut n = 0;
    for name in sources {
        if registry::source(name).is_none() && plugins.has_source(name) {
            println!("{name}: a plugin source, loads no BPF program");
            continue;
        }
        let f = registry::source(name)
            .ok_or_else(|| Error::input(format!("unknown source '{name}'")))?;
        let Some(verify) = f.verify else {
            println!("{name}: loads no BPF program");
            continue;
        };
        let stats = verify(capture, matches).map_err(|e| match e {
            Error::Runtime(m) => Error::Input(m),
            e => e,
        })?;
        for s in stats {
            let insns = s
                .insns
                .map_or("? (the kernel does not say)".to_string(), |i| {
                    format!(
                        "{i} ({:.1}% of the limit)",
                        i as f64 * 100.0 / VERIFIER_LIMIT as f64
                    )
                });
            println!("{name}\t{}\t{}\tprocessed {insns}", s.object, s.program);
            n += 1;
        }
    }
    println!("{n} programs verified; the kernel's limit is {VERIFIER_LIMIT} processed instructions per program");
    Ok(())
}

fn run(cli: Cli, matches: &registry::SourceArgs) -> Result<(), Error> {
    if cli.generate_man {
        let out = &mut std::io::stdout();
        return clap_mangen::Man::new(command())
            .render(out)
            .map_err(|e| Error::from_write(e, "write stdout"));
    }
    if let Some(shell) = cli.generate_completions {
        clap_complete::generate(shell, &mut command(), "xcap", &mut std::io::stdout());
        return Ok(());
    }
    let builtin_sources: Vec<&str> = registry::sources().map(|s| s.name).collect();
    let builtin_sinks: Vec<&str> = registry::sinks().map(|s| s.name).collect();
    let plugins = Plugins::load(
        &cli.plugin,
        std::env::var("XCAP_PLUGIN_PATH").ok().as_deref(),
        &cli.plugin_opt,
        &builtin_sources,
        &builtin_sinks,
    )?;
    if cli.list {
        println!("sources:");
        for s in registry::sources().filter(|s| s.name != "file") {
            println!("  {:<10} {}", s.name, s.help);
        }
        for s in plugins.list_sources() {
            println!("  {:<10} {} [plugin {}]", s.name, s.help, s.plugin);
        }
        println!("sinks:");
        for s in registry::sinks() {
            println!("  {:<10} {}", s.name, s.help);
        }
        for s in plugins.list_sinks() {
            println!("  {:<10} {} [plugin {}]", s.name, s.help, s.plugin);
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
    let sink_choices = pick_sinks(&cli, &plugins)?;
    if cli.rotate_size.is_some() || cli.rotate_secs.is_some() {
        let to_file = cli.write.as_ref().is_some_and(|w| w.as_os_str() != "-");
        let rotating = sink_choices
            .iter()
            .any(|c| matches!(c, SinkChoice::Builtin(f) if f.name == "pcap" || f.name == "pcapng"));
        if !to_file || !rotating {
            return Err(Error::input(
                "-C and -G need -w FILE (not -) written by the pcap or pcapng sink",
            ));
        }
    } else if cli.file_count.is_some() {
        return Err(Error::input("-W needs -C or -G"));
    }
    let capture = CaptureConfig {
        interfaces: cli.interface.clone(),
        netns: cli.netns.clone(),
        snaplen: cli.snaplen,
        read_file: cli.read.clone(),
        buffer_kib: cli.buffer,
        filter: filter.clone(),
        dry_run: cli.dry_run,
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
    unused_source_options(&source_names, matches)?;
    if cli.dry_run {
        return dry_run(&source_names, &capture, matches, &plugins);
    }
    // -Z: checked before anything is attached; done once it all is.
    let become_user = match &cli.user {
        Some(name) if xcap_core::privs::is_root() => {
            if source_names.iter().any(|n| n == "dpdk") {
                return Err(Error::input(
                    "-Z: the dpdk source needs its privileges while it runs (it reads the \
                     application's memory and attaches to ports started later)",
                ));
            }
            Some(xcap_core::privs::lookup(name)?)
        }
        _ => None,
    };
    // Sources first: they attach, and a failure leaves no output file behind.
    let mut sources = Vec::new();
    for n in &source_names {
        let f = registry::source(n).filter(|f| f.name != "file" || cli.read.is_some());
        if f.is_none() && plugins.has_source(n) {
            sources.push(plugins.open_source(n, &capture)?);
            continue;
        }
        let f = f.ok_or_else(|| {
            let mut known: Vec<String> = registry::sources()
                .map(|s| s.name.to_string())
                .filter(|s| *s != "file")
                .collect();
            known.extend(plugins.list_sources().into_iter().map(|l| l.name));
            Error::input(format!(
                "unknown source '{n}' (known: {})",
                known.join(", ")
            ))
        })?;
        sources.push((f.open)(&capture, matches)?);
    }
    if let Some(u) = &become_user {
        xcap_core::privs::become_user(u)?;
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
        rotate_bytes: cli.rotate_size,
        rotate_secs: cli.rotate_secs,
        file_count: cli.file_count,
        text: xcap_core::TextFormat {
            time: cli.time_format.min(5),
            bytes: match (cli.hex, cli.ascii) {
                (0, true) => xcap_core::ByteDump::Ascii,
                (0, false) => xcap_core::ByteDump::None,
                (1, _) => xcap_core::ByteDump::Hex,
                _ => xcap_core::ByteDump::HexLink,
            },
            link_header: cli.link_header,
            quick: cli.quick,
        },
    };
    let mut sinks = Vec::new();
    for f in &sink_choices {
        let mut cfg = sink_cfg.clone();
        if !f.writes_file() {
            cfg.path = None;
        }
        sinks.push(match f {
            SinkChoice::Builtin(f) => (f.open)(&cfg)?,
            SinkChoice::Plugin(name, _) => plugins.open_sink(name, &cfg)?,
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Set by a signal only: -c or a failure also set `stop`, and a signal
    // that arrives while they wind down is a first signal, not a second.
    let signalled = Arc::new(AtomicBool::new(false));
    // SIGHUP too: a closed terminal ends the capture with its files whole, as
    // in tcpdump.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // A second signal while stopping ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, signalled.clone())
            .and_then(|_| signal_hook::flag::register(sig, signalled.clone()))
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

    if cli.count_only {
        // tcpdump's --count: the number alone, on stdout.
        println!("{} packets", report.written);
        return match report.error.or_else(|| plugins.failure()) {
            Some(e) => Err(e),
            None => Ok(()),
        };
    }
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
    // A plugin that failed stopped itself and let the capture go on.
    match report.error.or_else(|| plugins.failure()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
