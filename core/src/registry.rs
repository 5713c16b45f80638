//! Source and sink traits and the compile-time registry of built-ins.
//!
//! A built-in registers itself with `inventory::submit!`; the CLI learns the
//! list from here, so adding a source or sink is one crate plus one
//! registration.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use crate::{Packet, PacketRef, Result};

/// What the user asked to capture, common to every source. A source's own
/// options are its command-line arguments (`SourceFactory::args`).
#[derive(Clone, Debug, Default)]
pub struct CaptureConfig {
    /// `-i`: interface names, resolved in `netns`.
    pub interfaces: Vec<String>,
    /// `--netns NAME|PATH`: where interface names are resolved.
    pub netns: Option<String>,
    /// `-s`: bytes to capture per packet.
    pub snaplen: u32,
    /// `-r`: read packets from this file instead of capturing.
    pub read_file: Option<PathBuf>,
    /// `-B`: per-source buffer size in KiB (ring buffer).
    pub buffer_kib: u32,
    /// The filter expression, compiled. Sources that run BPF splice it into
    /// their programs; for the others the bus runs it in userspace.
    pub filter: Option<Arc<crate::Filter>>,
    /// `--dry-run`: only load and verify (see `SourceFactory::verify`).
    pub dry_run: bool,
}

/// A source's own command-line options as parsed (by the `clap::Arg`s of
/// its `SourceFactory::args`, among xcap's).
pub type SourceArgs = clap::ArgMatches;

/// A source's flag in `m` (false when absent, or when `m` was not parsed
/// with the source's arguments: tests pass an empty one).
pub fn arg_flag(m: &SourceArgs, id: &str) -> bool {
    m.try_get_one::<bool>(id)
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false)
}

/// A source's single-valued option in `m`.
pub fn arg_value<T: Clone + Send + Sync + 'static>(m: &SourceArgs, id: &str) -> Option<T> {
    m.try_get_one::<T>(id).ok().flatten().cloned()
}

/// A source's repeatable option in `m`, in order.
pub fn arg_values(m: &SourceArgs, id: &str) -> Vec<String> {
    m.try_get_many::<String>(id)
        .ok()
        .flatten()
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

/// A batch of packets from one source, in the source's order, with the
/// source's promise that it will send nothing older than `watermark` later.
pub struct Batch {
    pub source: usize,
    pub packets: Vec<Packet>,
    pub watermark: u64,
    /// Set on the last batch of a source: how it ended.
    pub done: Option<Result<SourceReport>>,
}

/// What a running source gets: a way to hand packets on and the stop
/// signal.
pub struct SourceCtx {
    pub(crate) index: usize,
    pub(crate) link: Link,
    pub(crate) stop: Arc<AtomicBool>,
}

/// Where a source's batches go.
pub(crate) enum Link {
    /// To the bus thread, which merges several sources; written batches
    /// come back on `back`.
    Bus {
        tx: SyncSender<Batch>,
        back: Receiver<Vec<Packet>>,
    },
    /// Straight to the sinks, on the source's thread (a single source).
    Direct(Arc<Mutex<crate::bus::Direct>>),
}

impl SourceCtx {
    /// Hand a batch on. Blocks when the bus is behind (or, with a single
    /// source, while the sinks write it), so that back pressure reaches the
    /// source's own buffer, where losses are counted. Returns false when
    /// the bus has gone away.
    pub fn send(&self, packets: Vec<Packet>, watermark: u64) -> bool {
        match &self.link {
            Link::Bus { tx, .. } => tx
                .send(Batch {
                    source: self.index,
                    packets,
                    watermark,
                    done: None,
                })
                .is_ok(),
            Link::Direct(d) => {
                lock(d).take(self.index, packets, watermark);
                true
            }
        }
    }
    /// With a single source, the sinks themselves, for one batch of
    /// borrowed packets written in order on this thread (nothing to merge:
    /// the packets need not outlive the source's buffer). None when the
    /// bus merges several sources: send owned batches then. A source uses
    /// one way or the other, not both: packets sent wait for the watermark,
    /// packets written here do not, and the two would not be in time order.
    pub fn direct(&self) -> Option<crate::bus::DirectWriter<'_>> {
        match &self.link {
            Link::Bus { .. } => None,
            Link::Direct(d) => Some(crate::bus::DirectWriter::new(lock(d), self.index)),
        }
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    /// A batch the sinks have written, for the source to drop or reuse on
    /// its own thread. Dropping packets where they were made keeps the
    /// shared strings' reference counts and the allocator's memory on one
    /// CPU instead of bouncing between the source's and the bus's (a
    /// source that never asks loses nothing: they are dropped elsewhere).
    pub fn recycled(&self) -> Option<Vec<Packet>> {
        match &self.link {
            Link::Bus { back, .. } => back.try_recv().ok(),
            Link::Direct(d) => lock(d).recycled(),
        }
    }
}

/// A poisoned lock means a sink panicked on this very thread, which has
/// then unwound already; the state is still the flow's to finish.
fn lock(d: &Mutex<crate::bus::Direct>) -> std::sync::MutexGuard<'_, crate::bus::Direct> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of one hook (or other capture point) of a source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookStats {
    pub hook: String,
    /// Packets the hook saw (after interface selection).
    pub seen: u64,
    /// Packets lost at this hook (ring buffer full).
    pub lost: u64,
    /// Packets whose paged data could not all be read.
    pub truncated: u64,
}

/// What the kernel's verifier did for one loaded program (`--dry-run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStat {
    /// The object it belongs to, e.g. "hook tp:net:netif_receive_skb".
    pub object: String,
    pub program: String,
    /// Instructions the verifier processed; None where the kernel does not
    /// say (before 5.16).
    pub insns: Option<u64>,
}

/// How a source ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceReport {
    pub name: String,
    /// Packets the source delivered to the bus.
    pub delivered: u64,
    /// Packets lost inside the source, all causes.
    pub dropped: u64,
    pub hooks: Vec<HookStats>,
    /// Set when the source ended by itself because what it captured went
    /// away (the application exited): the capture stops and xcap exits 1,
    /// with the counts above still reported.
    pub failure: Option<String>,
    /// Statistics of the source's own, each for the interface with this
    /// index (0: none in particular): the pcapng writer adds them to the
    /// statistics blocks of the source's interfaces with that index.
    pub notes: Vec<(u32, String)>,
}

/// A capture source: attached when built (so bad input is reported before
/// anything runs), then run on its own thread until stopped.
pub trait Source: Send {
    fn name(&self) -> &str;
    /// Whether the source applies `CaptureConfig::filter` itself (in the
    /// kernel); if not, the bus filters its packets in userspace.
    fn filters(&self) -> bool {
        false
    }
    /// Capture until `ctx.stopped()` or the source runs dry, then detach and
    /// report. Must not return before everything it attached is detached.
    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport>;
}

pub struct SourceFactory {
    pub name: &'static str,
    pub help: &'static str,
    /// The source's own command-line options, added to xcap's (give them a
    /// help heading and names no other source uses).
    pub args: fn() -> Vec<clap::Arg>,
    /// Check the configuration and attach. `Error::Input` for bad input.
    pub open: fn(&CaptureConfig, &SourceArgs) -> Result<Box<dyn Source>>,
    /// `--list-hooks [PATTERN]`: the capture points this source offers here.
    pub list_hooks: Option<ListHooks>,
    /// `--dry-run`: load (and so verify) every program `open` would, attach
    /// nothing, and say what the verifier did. `Error::Input` carries the
    /// verifier's refusal.
    pub verify: Option<Verify>,
}

/// Loads and verifies a source's programs without attaching them.
pub type Verify = fn(&CaptureConfig, &SourceArgs) -> Result<Vec<ProgramStat>>;

/// Lists a source's capture points matching an optional pattern.
pub type ListHooks = fn(Option<&str>) -> Result<String>;
inventory::collect!(SourceFactory);

/// Where and how a sink writes.
#[derive(Clone, Debug, Default)]
pub struct SinkConfig {
    /// `-w`: output file; `-` is stdout. None: the sink's default.
    pub path: Option<PathBuf>,
    /// `-v` count.
    pub verbose: u8,
    /// `--json`.
    pub json: bool,
    /// `-s`: the snap length, for file headers.
    pub snaplen: u32,
    /// `-C`: start a new file once the current one is larger (bytes).
    pub rotate_bytes: Option<u64>,
    /// `-G`: start a new file every this many seconds (`-w` a strftime pattern).
    pub rotate_secs: Option<u64>,
    /// `-W`: with -C, keep this many files in a ring; with -G alone, stop
    /// after this many.
    pub file_count: Option<u32>,
    /// How the text sink prints a packet (tcpdump's -t, -X, -A, -e).
    pub text: TextFormat,
}

/// tcpdump's presentation options, for the text sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextFormat {
    /// Count of `-t`: 0 time of day, 1 none, 2 Unix time, 3 delta to the
    /// previous packet, 4 date and time, 5 delta to the first packet.
    pub time: u8,
    /// `-X`, `-XX`, `-A`: the packet's bytes after its line.
    pub bytes: ByteDump,
    /// `-e`: the link-level header on the line.
    pub link_header: bool,
    /// `-q`: less protocol detail (a TCP segment is `tcp LENGTH`).
    pub quick: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ByteDump {
    #[default]
    None,
    /// `-X`: hex and ASCII, without the link-level header.
    Hex,
    /// `-XX`: hex and ASCII, link-level header included.
    HexLink,
    /// `-A`: ASCII, without the link-level header.
    Ascii,
}

pub trait Sink: Send {
    fn name(&self) -> &str;
    fn write(&mut self, packet: &PacketRef<'_>) -> Result<()>;
    /// Called when the bus has no packet ready: push buffered output out so
    /// a live reader (terminal, pipe, growing file) sees it.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Flush and close; the file must be valid afterwards. Gets every
    /// source's report so files can record their statistics.
    fn finish(&mut self, reports: &[SourceReport]) -> Result<()>;
    /// Whether every call must come from the thread that opened the sink
    /// (a plugin's ABI promises its sinks that). Otherwise a single
    /// source writes to the sinks from its own thread.
    fn bound_to_its_thread(&self) -> bool {
        false
    }
}

pub struct SinkFactory {
    pub name: &'static str,
    pub help: &'static str,
    /// Whether the sink writes to the `-w` file.
    pub writes_file: bool,
    pub open: fn(&SinkConfig) -> Result<Box<dyn Sink>>,
}
inventory::collect!(SinkFactory);

/// A helper process a source runs: the xcap binary started again as
/// `xcap --xcap-helper NAME ARGS...` enters `main` instead of the CLI.
pub struct HelperFactory {
    pub name: &'static str,
    /// Runs the helper; returns the process exit code.
    pub main: fn(args: Vec<String>) -> i32,
}
inventory::collect!(HelperFactory);

pub fn helper(name: &str) -> Option<&'static HelperFactory> {
    inventory::iter::<HelperFactory>
        .into_iter()
        .find(|h| h.name == name)
}

pub fn sources() -> impl Iterator<Item = &'static SourceFactory> {
    inventory::iter::<SourceFactory>.into_iter()
}

pub fn sinks() -> impl Iterator<Item = &'static SinkFactory> {
    inventory::iter::<SinkFactory>.into_iter()
}

pub fn source(name: &str) -> Option<&'static SourceFactory> {
    sources().find(|f| f.name == name)
}

pub fn sink(name: &str) -> Option<&'static SinkFactory> {
    sinks().find(|f| f.name == name)
}
