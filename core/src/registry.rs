//! Source and sink traits and the compile-time registry of built-ins.
//!
//! A built-in registers itself with `inventory::submit!`; the CLI learns the
//! list from here, so adding a source or sink is one crate plus one
//! registration.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::{Packet, Result};

/// What the user asked to capture; every source reads what applies to it.
#[derive(Clone, Debug, Default)]
pub struct CaptureConfig {
    /// `-i`: interface names, resolved in `netns`.
    pub interfaces: Vec<String>,
    /// `--netns NAME|PATH`: where interface names are resolved.
    pub netns: Option<String>,
    /// `-s`: bytes to capture per packet.
    pub snaplen: u32,
    /// `--hook`: hooks named by the user; empty means the source's defaults.
    pub hooks: Vec<String>,
    /// `--drops`: also capture packets as they are freed as dropped.
    pub drops: bool,
    /// `--stack`: record kernel stacks.
    pub stack: bool,
    /// `-r`: read packets from this file instead of capturing.
    pub read_file: Option<PathBuf>,
    /// `-B`: per-source buffer size in KiB (ring buffer).
    pub buffer_kib: u32,
    /// The filter expression, compiled. Sources that run BPF splice it into
    /// their programs; for the others the bus runs it in userspace.
    pub filter: Option<Arc<crate::Filter>>,
    /// `--pid`: only packets handled while this process runs.
    pub pid: Option<u32>,
    /// `--comm`: only packets handled while a task of this name runs.
    pub comm: Option<String>,
    /// `--track`: keep following a packet once the filter matched it.
    pub track: bool,
    /// Options of the DPDK source.
    pub dpdk: DpdkOptions,
}

/// `--dpdk-*`: which application the DPDK source probes, and how.
#[derive(Clone, Debug, Default)]
pub struct DpdkOptions {
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

/// A batch of packets from one source, in the source's order, with the
/// source's promise that it will send nothing older than `watermark` later.
pub struct Batch {
    pub source: usize,
    pub packets: Vec<Packet>,
    pub watermark: u64,
    /// Set on the last batch of a source: how it ended.
    pub done: Option<Result<SourceReport>>,
}

/// What a running source gets: a way to hand packets to the bus and the
/// stop signal.
pub struct SourceCtx {
    pub(crate) index: usize,
    pub(crate) tx: SyncSender<Batch>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl SourceCtx {
    /// Hand a batch to the bus. Blocks when the bus is behind, so that back
    /// pressure reaches the source's own buffer, where losses are counted.
    /// Returns false when the bus has gone away.
    pub fn send(&self, packets: Vec<Packet>, watermark: u64) -> bool {
        self.tx
            .send(Batch {
                source: self.index,
                packets,
                watermark,
                done: None,
            })
            .is_ok()
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
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

/// How a source ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceReport {
    pub name: String,
    /// Packets the source delivered to the bus.
    pub delivered: u64,
    /// Packets lost inside the source, all causes.
    pub dropped: u64,
    pub hooks: Vec<HookStats>,
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
    /// Check the configuration and attach. `Error::Input` for bad input.
    pub open: fn(&CaptureConfig) -> Result<Box<dyn Source>>,
    /// `--list-hooks [PATTERN]`: the capture points this source offers here.
    pub list_hooks: Option<ListHooks>,
}

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
}

pub trait Sink: Send {
    fn name(&self) -> &str;
    fn write(&mut self, packet: &Packet) -> Result<()>;
    /// Called when the bus has no packet ready: push buffered output out so
    /// a live reader (terminal, pipe, growing file) sees it.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Flush and close; the file must be valid afterwards. Gets every
    /// source's report so files can record their statistics.
    fn finish(&mut self, reports: &[SourceReport]) -> Result<()>;
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
