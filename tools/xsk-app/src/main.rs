//! xsk-app: a small AF_XDP application on the raw kernel UAPI (no libxdp),
//! for xcap's tests of what real applications do not cover: TX kicked by
//! poll() alone, multi-buffer packets (XDP_USE_SG) and zero-copy binding.
//!
//! `rx` attaches an XDP program redirecting the queue to the socket and
//! prints each packet; `tx` sends generated UDP packets and waits for
//! their completions. Exit 0 on success, 1 on a runtime failure, 2 for
//! bad arguments or what the device does not support (a failed bind or
//! XDP attach).

mod uapi;
mod xsk;

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, PrintLevel, Xdp, XdpFlags};

use uapi::*;
use xsk::{errno, strerror, Xsk};

const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));
/// Ethernet + IPv4 + UDP headers.
const HEADERS: usize = 14 + 20 + 8;
/// A TX packet whose completions stop coming for this long fails the run.
const TX_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "xsk-app",
    about = "A small AF_XDP application (raw UAPI) for xcap's tests"
)]
struct Cli {
    /// The network device to bind to.
    #[arg(long)]
    dev: String,
    #[arg(long, default_value_t = 0)]
    queue: u32,
    #[arg(long, value_enum, default_value_t = BindMode::Copy)]
    bind: BindMode,
    /// Bind with XDP_USE_NEED_WAKEUP (implied by `tx --kick poll`).
    #[arg(long)]
    need_wakeup: bool,
    /// Bind with XDP_USE_SG: packets larger than a frame, in several descriptors.
    #[arg(long)]
    sg: bool,
    /// UMEM frame (chunk) size: a power of two, at least 2048.
    #[arg(long, default_value_t = 4096)]
    frame_size: u32,
    /// UMEM frames; every ring gets this many entries, rounded up to a power of two.
    #[arg(long, default_value_t = 4096)]
    frames: u32,
    /// How `rx` attaches its XDP program.
    #[arg(long, value_enum, default_value_t = XdpMode::Native)]
    xdp: XdpMode,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum BindMode {
    Copy,
    Zerocopy,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum XdpMode {
    Native,
    Generic,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Kick {
    Sendto,
    Poll,
    /// poll() from a child forked after bind: a process that did not bind
    /// the socket (and shares it, as a pre-forked worker would) drives TX.
    PollChild,
}

#[derive(Subcommand)]
enum Mode {
    /// Receive N packets through an XDP program redirecting to the socket.
    Rx(RxArgs),
    /// Send N generated Ethernet/IPv4/UDP packets.
    Tx(TxArgs),
}

#[derive(Args)]
struct RxArgs {
    #[arg(long)]
    count: u64,
    #[arg(long, default_value_t = 10000)]
    timeout_ms: u64,
}

#[derive(Args)]
struct TxArgs {
    #[arg(long)]
    count: u64,
    /// Bytes per packet, Ethernet header included (at least 42).
    #[arg(long)]
    len: usize,
    #[arg(long, value_enum)]
    kick: Kick,
    /// Default: the device's own address.
    #[arg(long, value_parser = parse_mac)]
    src_mac: Option<Mac>,
    #[arg(long, value_parser = parse_mac, default_value = "ff:ff:ff:ff:ff:ff")]
    dst_mac: Mac,
    #[arg(long)]
    src_ip: Ipv4Addr,
    #[arg(long)]
    dst_ip: Ipv4Addr,
    #[arg(long, default_value_t = 4000)]
    sport: u16,
    #[arg(long)]
    dport: u16,
    /// Send one packet at a time, this many milliseconds apart.
    #[arg(long, default_value_t = 0)]
    gap_ms: u64,
    /// End the process with the socket open (no close()): the kernel
    /// closes it as the process exits.
    #[arg(long)]
    exit_open: bool,
}

#[derive(Clone, Copy)]
struct Mac([u8; 6]);

fn parse_mac(s: &str) -> Result<Mac, String> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("not a MAC address: {s}"))?;
    let mac = bytes
        .try_into()
        .map_err(|_| format!("not a MAC address: {s}"))?;
    Ok(Mac(mac))
}

/// A failure: the line to print (after "xsk-app: ") and the exit code.
pub struct Fail {
    code: i32,
    msg: String,
}

impl Fail {
    pub fn runtime(msg: String) -> Fail {
        Fail { code: 1, msg }
    }
    pub fn usage(msg: String) -> Fail {
        Fail { code: 2, msg }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM end the loops (poll returns EINTR: no SA_RESTART), so the
/// XDP program is detached on the way out.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with our handler; on_signal only
        // stores an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// One line to stdout; a closed pipe is not worth a panic.
fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}").and_then(|_| o.flush());
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help
        Err(e) => {
            // clap's message on one line, without its usage block.
            let text = e.to_string();
            let text = text.split("\n\nUsage:").next().unwrap_or("");
            let text = text.split("\n\nFor more information").next().unwrap_or("");
            let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("xsk-app: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    catch_signals();
    // run() returns only after everything it set up was dropped (detached).
    let code = match run(&cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("xsk-app: {}", f.msg);
            f.code
        }
    };
    std::process::exit(code);
}

fn run(cli: &Cli) -> Result<i32, Fail> {
    if !cli.frame_size.is_power_of_two() || cli.frame_size < 2048 {
        return Err(Fail::usage(format!(
            "--frame-size {}: must be a power of two, at least 2048",
            cli.frame_size
        )));
    }
    if cli.frames == 0 || cli.frames > 1 << 20 {
        return Err(Fail::usage(format!(
            "--frames {}: 1 to 1048576",
            cli.frames
        )));
    }
    if let Mode::Tx(a) = &cli.mode {
        check_tx(cli, a)?;
    }
    let name = CString::new(cli.dev.as_str())
        .map_err(|_| Fail::usage(format!("bad device name {:?}", cli.dev)))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(Fail::usage(format!(
            "no device {}: {}",
            cli.dev,
            strerror(errno())
        )));
    }
    let mut flags = match cli.bind {
        BindMode::Copy => XDP_COPY,
        BindMode::Zerocopy => XDP_ZEROCOPY,
        BindMode::Auto => 0,
    };
    // poll() drives copy-mode TX only on sockets bound with need-wakeup.
    let poll_kick = matches!(&cli.mode, Mode::Tx(a) if a.kick != Kick::Sendto);
    if cli.need_wakeup || poll_kick {
        flags |= XDP_USE_NEED_WAKEUP;
    }
    if cli.sg {
        flags |= XDP_USE_SG;
    }
    let xsk = Xsk::create(&xsk::Config {
        frame_size: cli.frame_size,
        frames: cli.frames,
        rx: matches!(cli.mode, Mode::Rx(_)),
        tx: matches!(cli.mode, Mode::Tx(_)),
    })?;
    match &cli.mode {
        Mode::Rx(a) => rx(cli, &xsk, ifindex, flags, a),
        Mode::Tx(a) => tx(cli, &xsk, ifindex, flags, a),
    }
}

fn bind(cli: &Cli, xsk: &Xsk, ifindex: u32, flags: u16) -> Result<(), Fail> {
    let mode = cli
        .bind
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let mode = mode.unwrap_or_default();
    // EBUSY: the queue still has the pool of a socket just closed (the
    // kernel releases it from a workqueue), or another socket's: wait a bit.
    let give_up = Instant::now() + Duration::from_secs(2);
    let mut r = xsk.bind(ifindex, cli.queue, flags);
    while r == Err(libc::EBUSY) && Instant::now() < give_up && !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        r = xsk.bind(ifindex, cli.queue, flags);
    }
    r.map_err(|e| {
        let (dev, q) = (&cli.dev, cli.queue);
        Fail::usage(format!("bind {dev} queue {q} ({mode}): {}", strerror(e)))
    })?;
    let zc = match xsk.zerocopy() {
        Some(true) => "zerocopy",
        Some(false) => "copy",
        None => "unknown",
    };
    eprintln!("xsk-app: bound {} queue {} mode={zc}", cli.dev, cli.queue);
    Ok(())
}

/// The line tests wait for: the socket exists, is bound and (rx) attached.
fn ready(xsk: &Xsk) {
    eprintln!(
        "xsk-app: ready ino={} pid={}",
        xsk.inode(),
        std::process::id()
    );
    let _ = std::io::stderr().flush();
}

static LIBBPF_LAST: Mutex<String> = Mutex::new(String::new());

fn libbpf_log(_: PrintLevel, msg: String) {
    if let Ok(mut last) = LIBBPF_LAST.lock() {
        *last = msg.trim_end().to_string();
    }
}

fn bpf_fail(what: &str, e: libbpf_rs::Error) -> Fail {
    let last = LIBBPF_LAST.lock().map(|l| l.clone()).unwrap_or_default();
    let e = e.to_string();
    let e = e.split(" (os error").next().unwrap_or("");
    match last.trim_start_matches("libbpf: ") {
        "" => Fail::runtime(format!("{what}: {e}")),
        last => Fail::runtime(format!("{what}: {e} ({last})")),
    }
}

/// The redirect program attached to a device; detached when dropped.
struct Attached {
    obj: Object,
    prog: &'static str,
    ifindex: i32,
    /// XdpFlags::{DRV,SKB}_MODE bits (XdpFlags is not Copy).
    mode: u32,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let prog = self.obj.progs().find(|p| p.name() == OsStr::new(self.prog));
        if let Some(p) = prog {
            if let Err(e) =
                Xdp::new(p.as_fd()).detach(self.ifindex, XdpFlags::from_bits_retain(self.mode))
            {
                eprintln!("xsk-app: detach the XDP program: {e}");
            }
        }
    }
}

fn attach(cli: &Cli, xsk: &Xsk, ifindex: u32) -> Result<Attached, Fail> {
    libbpf_rs::set_print(Some((PrintLevel::Warn, libbpf_log)));
    let prog = if cli.sg {
        "xsk_redirect_frags"
    } else {
        "xsk_redirect"
    };
    let mut open = ObjectBuilder::default()
        .open_memory(BPF_OBJECT)
        .map_err(|e| bpf_fail("open the BPF object", e))?;
    // Load only the program used: the frags one needs 5.18+.
    for mut p in open.progs_mut() {
        let used = p.name() == OsStr::new(prog);
        p.set_autoload(used);
    }
    for mut m in open.maps_mut() {
        if m.name() == OsStr::new("xsks") {
            m.set_max_entries(cli.queue + 1)
                .map_err(|e| bpf_fail("size the XSKMAP", e))?;
        }
    }
    let obj = open
        .load()
        .map_err(|e| bpf_fail("load the XDP program", e))?;
    let fd = xsk.fd.as_raw_fd() as u32;
    let map = obj.maps().find(|m| m.name() == OsStr::new("xsks"));
    let map = map.ok_or_else(|| Fail::runtime("no map xsks in the BPF object".into()))?;
    map.update(&cli.queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| bpf_fail("put the socket in the XSKMAP", e))?;
    let (mode, mode_name) = match cli.xdp {
        XdpMode::Native => (XdpFlags::DRV_MODE.bits(), "native"),
        XdpMode::Generic => (XdpFlags::SKB_MODE.bits(), "generic"),
    };
    let p = obj.progs().find(|p| p.name() == OsStr::new(prog));
    let p = p.ok_or_else(|| Fail::runtime(format!("no program {prog} in the BPF object")))?;
    // UPDATE_IF_NOEXIST: never replace (and later detach) someone else's program.
    Xdp::new(p.as_fd())
        .attach(
            ifindex as i32,
            XdpFlags::from_bits_retain(mode) | XdpFlags::UPDATE_IF_NOEXIST,
        )
        .map_err(|e| Fail {
            code: 2, // the device refuses the program in that mode
            ..bpf_fail(&format!("attach XDP ({mode_name}) to {}", cli.dev), e)
        })?;
    Ok(Attached {
        obj,
        prog,
        ifindex: ifindex as i32,
        mode,
    })
}

fn rx(cli: &Cli, xsk: &Xsk, ifindex: u32, flags: u16, a: &RxArgs) -> Result<i32, Fail> {
    let fs = cli.frame_size as u64;
    let rxr = xsk
        .rx
        .as_ref()
        .ok_or_else(|| Fail::runtime("no RX ring".into()))?;
    // Every frame to the kernel before the first packet can arrive.
    let all: Vec<u64> = (0..cli.frames as u64).map(|i| i * fs).collect();
    xsk.fill.produce(&all);
    bind(cli, xsk, ifindex, flags)?;
    let _attached = attach(cli, xsk, ifindex)?;
    ready(xsk);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(a.timeout_ms);
    let (mut n, mut len, mut descs) = (0u64, 0u64, 0u32);
    let mut got = Vec::new();
    while n < a.count {
        if STOP.load(Ordering::Relaxed) {
            eprintln!("xsk-app: interrupted");
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        poll1(
            xsk.fd.as_raw_fd(),
            libc::POLLIN,
            left.as_millis().min(100) as i32,
        )?;
        got.clear();
        rxr.consume(&mut got);
        for d in &got {
            if n == a.count {
                break; // past N: recycled below, not counted
            }
            len += d.len as u64;
            descs += 1;
            // Descriptors with XDP_PKT_CONTD are continued by the next one.
            if d.options & XDP_PKT_CONTD == 0 {
                out(&format!("rx len={len} descs={descs}"));
                (n, len, descs) = (n + 1, 0, 0);
            }
        }
        // Back to the fill ring at the frame's start (the kernel gave an
        // address past its headroom); it always has room for all frames.
        let recycle: Vec<u64> = got.iter().map(|d| d.addr & !(fs - 1)).collect();
        xsk.fill.produce(&recycle);
    }
    out(&format!("rx packets={n}"));
    if n == a.count {
        return Ok(0);
    }
    eprintln!(
        "xsk-app: rx: {n} of {} packets in {} ms ({} fill_need_wakeup={})",
        a.count,
        start.elapsed().as_millis(),
        xsk.stats(),
        xsk.fill.needs_wakeup() as u8
    );
    Ok(1)
}

fn check_tx(cli: &Cli, a: &TxArgs) -> Result<(), Fail> {
    if a.len < HEADERS || a.len - 14 > u16::MAX as usize {
        return Err(Fail::usage(format!("--len {}: 42 to 65549", a.len)));
    }
    let per = a.len.div_ceil(cli.frame_size as usize);
    if per > 1 && !cli.sg {
        return Err(Fail::usage(format!(
            "--len {} is larger than --frame-size {}: a multi-buffer packet needs --sg",
            a.len, cli.frame_size
        )));
    }
    if per > cli.frames as usize {
        return Err(Fail::usage(format!(
            "--len {} needs {per} frames, more than --frames {}",
            a.len, cli.frames
        )));
    }
    Ok(())
}

/// The device's MAC address (SIOCGIFHWADDR).
fn hwaddr(dev: &str) -> Result<[u8; 6], Fail> {
    // SAFETY: plain syscall.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Fail::runtime(format!("socket: {}", strerror(errno()))));
    }
    // SAFETY: a new fd, ours alone.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(dev.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: a valid fd and ifreq; the kernel fills ifru_hwaddr.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) } < 0 {
        return Err(Fail::runtime(format!(
            "SIOCGIFHWADDR {dev}: {}",
            strerror(errno())
        )));
    }
    // SAFETY: SIOCGIFHWADDR wrote the hwaddr member.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    Ok(std::array::from_fn(|i| sa.sa_data[i] as u8))
}

/// Packet `seq`: Ethernet, IPv4 (checksummed), UDP (checksum 0), then the
/// payload: seq as 8 big-endian bytes, then byte j of the payload is
/// (seq + j) as u8.
fn build_packet(p: &mut [u8], seq: u64, a: &TxArgs, src_mac: [u8; 6]) {
    let len = p.len();
    p[0..6].copy_from_slice(&a.dst_mac.0);
    p[6..12].copy_from_slice(&src_mac);
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = libc::IPPROTO_UDP as u8;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&a.src_ip.octets());
    ip[16..20].copy_from_slice(&a.dst_ip.octets());
    let sum = ip_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut p[34..42];
    udp[0..2].copy_from_slice(&a.sport.to_be_bytes());
    udp[2..4].copy_from_slice(&a.dport.to_be_bytes());
    udp[4..6].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    udp[6..8].fill(0);
    let seq_bytes = seq.to_be_bytes();
    for (j, b) in p[HEADERS..].iter_mut().enumerate() {
        *b = match j {
            0..8 => seq_bytes[j],
            _ => seq.wrapping_add(j as u64) as u8,
        };
    }
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Make the kernel transmit what is on the TX ring: by sendto(), or by
/// poll() alone (never sendto/sendmsg in that mode).
fn kick(how: Kick, fd: i32) -> Result<(), Fail> {
    match how {
        Kick::Sendto => {
            // SAFETY: a zero-length send with no buffer or address.
            let r = unsafe {
                libc::sendto(
                    fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            // Busy or out of buffers: reap completions and try again.
            match (r < 0).then(errno) {
                None | Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR) => Ok(()),
                Some(e) => Err(Fail::runtime(format!("sendto: {}", strerror(e)))),
            }
        }
        Kick::Poll => poll1(fd, libc::POLLOUT, 100),
        // The child polls.
        Kick::PollChild => Ok(()),
    }
}

/// A child process that polls the socket for POLLOUT until it is killed
/// (with its parent, at the latest: PR_SET_PDEATHSIG).
struct Poller(libc::pid_t);

impl Poller {
    fn fork(fd: i32) -> Result<Poller, Fail> {
        // SAFETY: the process has one thread here (no XDP program, nothing
        // of libbpf's, in TX mode); the child only calls poll and prctl.
        match unsafe { libc::fork() } {
            -1 => Err(Fail::runtime(format!("fork: {}", strerror(errno())))),
            0 => {
                // SAFETY: plain syscalls in the child.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                loop {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 100) };
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            pid => Ok(Poller(pid)),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: our own child, killed and reaped once.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// poll() one fd; EINTR is no error (the loops check STOP).
fn poll1(fd: i32, events: libc::c_short, ms: i32) -> Result<(), Fail> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 && errno() != libc::EINTR {
        return Err(Fail::runtime(format!("poll: {}", strerror(errno()))));
    }
    Ok(())
}

fn tx(cli: &Cli, xsk: &Xsk, ifindex: u32, flags: u16, a: &TxArgs) -> Result<i32, Fail> {
    let fs = cli.frame_size as usize;
    let per = a.len.div_ceil(fs) as u64;
    let txr = xsk
        .tx
        .as_ref()
        .ok_or_else(|| Fail::runtime("no TX ring".into()))?;
    let src_mac = match a.src_mac {
        Some(m) => m.0,
        None => hwaddr(&cli.dev)?,
    };
    bind(cli, xsk, ifindex, flags)?;
    ready(xsk);
    let child = (a.kick == Kick::PollChild)
        .then(|| Poller::fork(xsk.fd.as_raw_fd()))
        .transpose()?;
    let mut free: Vec<u64> = (0..cli.frames as u64)
        .rev()
        .map(|i| i * fs as u64)
        .collect();
    let mut pkt = vec![0u8; a.len];
    let (mut produced, mut completed) = (0u64, 0u64); // packets, descriptors
    let mut progress_at = Instant::now();
    let mut comp = Vec::new();
    let mut descs = Vec::new();
    while completed < a.count * per {
        if STOP.load(Ordering::Relaxed) {
            return Err(Fail::runtime("interrupted".into()));
        }
        let batch = if a.gap_ms > 0 { 1 } else { u64::MAX };
        let mut made = 0;
        while produced < a.count
            && made < batch
            && free.len() as u64 >= per
            && txr.free() as u64 >= per
        {
            build_packet(&mut pkt, produced, a, src_mac);
            descs.clear();
            // A packet larger than a frame: one descriptor per frame, all
            // but the last marked XDP_PKT_CONTD.
            for (k, chunk) in pkt.chunks(fs).enumerate() {
                let addr = free.pop().unwrap_or_default();
                xsk.write(addr, chunk)?;
                let last = k as u64 + 1 == per;
                descs.push(XdpDesc {
                    addr,
                    len: chunk.len() as u32,
                    options: if last { 0 } else { XDP_PKT_CONTD },
                });
            }
            txr.produce(&descs);
            produced += 1;
            made += 1;
        }
        if produced * per > completed {
            kick(a.kick, xsk.fd.as_raw_fd())?;
        }
        comp.clear();
        let n = xsk.comp.consume(&mut comp) as u64;
        free.extend(comp.iter().map(|addr| addr & !(fs as u64 - 1)));
        completed += n;
        if made > 0 || n > 0 {
            progress_at = Instant::now();
        } else if progress_at.elapsed() > TX_TIMEOUT {
            out(&format!("tx packets={}", completed / per));
            eprintln!(
                "xsk-app: tx: {} of {} packets completed, none for {} s ({} tx_need_wakeup={})",
                completed / per,
                a.count,
                TX_TIMEOUT.as_secs(),
                xsk.stats(),
                txr.needs_wakeup() as u8
            );
            return Ok(1);
        }
        if a.gap_ms > 0 && made > 0 && produced < a.count {
            std::thread::sleep(Duration::from_millis(a.gap_ms));
        } else if made == 0 && n == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    out(&format!("tx packets={}", completed / per));
    if a.exit_open {
        drop(child);
        // Nothing is dropped: the socket is closed by the kernel at exit
        // (and the XDP program, which tx mode does not attach, stays none).
        std::process::exit(0);
    }
    drop(child);
    Ok(0)
}
