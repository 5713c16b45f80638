//! The `pcapng` sink: what Wireshark needs to show where each packet was
//! seen.
//!
//! - one Interface Description Block per (source, hook, netns, ifindex,
//!   ifname, link type), written when its first packet arrives, named
//!   `SOURCE:HOOKSHORT:IFNAME`, described by a machine-parsable line,
//!   nanosecond timestamps (`if_tsresol` 9);
//! - one Enhanced Packet Block per packet: direction in `epb_flags`, packet
//!   id and queue as `epb_packetid` / `epb_queue`, and as a comment the
//!   metadata the interface block and the packet id do not already hold
//!   (see `comment.rs`): written per packet, bytes cost more than anything
//!   else in the writer;
//! - one Interface Statistics Block per interface at close.
//!
//! pcap-file 2.0 writes the section and interface blocks. Packet and
//! statistics blocks are encoded here, in the section's (native) byte order:
//! pcap-file's type for options it has no variant of (`UnknownOption`) is in
//! a private module, so `epb_packetid` and `epb_queue` cannot be written
//! through it, and it writes ISB timestamps as one u64 where pcapng wants
//! the high 32 bits first, which is wrong in a little-endian file. (Its EPB
//! timestamps would be right: always nanoseconds, matching `if_tsresol` 9.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::blocks::{ENHANCED_PACKET_BLOCK, INTERFACE_STATISTIC_BLOCK};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};
use xcap_core::{
    Direction, Error, LinkType, Meta, PacketRef, Result, Sink, SinkConfig, SourceReport,
};

use crate::comment;
use crate::output::{self, Output};

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const EPB_FLAGS: u16 = 2;
const EPB_PACKETID: u16 = 5;
const EPB_QUEUE: u16 = 6;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
/// An option value's length is 16 bits.
const MAX_OPTION: usize = u16::MAX as usize;

pub(crate) fn open(cfg: &SinkConfig) -> Result<Box<dyn Sink>> {
    Ok(Box::new(PcapNgSink::open(cfg)?))
}

/// What makes packets share an interface block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct IfKey {
    source: Arc<str>,
    hook: Arc<str>,
    netns: u32,
    ifindex: u32,
    ifname: Arc<str>,
    link: LinkType,
}

impl IfKey {
    fn of(p: &PacketRef) -> Self {
        let m = &p.meta;
        IfKey {
            source: m.source.clone(),
            hook: m.hook.clone(),
            netns: m.netns,
            ifindex: m.ifindex,
            ifname: m.ifname.clone(),
            link: p.link,
        }
    }

    /// Compare without building a key (no reference counting per packet).
    fn matches(&self, p: &PacketRef) -> bool {
        let m = &p.meta;
        self.link == p.link
            && self.ifindex == m.ifindex
            && self.netns == m.netns
            && same(&self.hook, &m.hook)
            && same(&self.source, &m.source)
            && same(&self.ifname, &m.ifname)
    }
}

/// What [`comment::task_part_into`] formats.
struct TaskKey {
    dir: Direction,
    cpu: Option<u32>,
    pid: Option<u32>,
    tid: Option<u32>,
    comm: Option<Arc<str>>,
}

impl TaskKey {
    fn of(m: &Meta) -> Self {
        TaskKey {
            dir: m.dir,
            cpu: m.cpu,
            pid: m.pid,
            tid: m.tid,
            comm: m.comm.clone(),
        }
    }

    fn matches(&self, m: &Meta) -> bool {
        self.dir == m.dir
            && self.cpu == m.cpu
            && self.pid == m.pid
            && self.tid == m.tid
            && match (&self.comm, &m.comm) {
                (None, None) => true,
                (Some(a), Some(b)) => same(a, b),
                _ => false,
            }
    }
}

/// Equal names; a source hands out one shared string per name, so mostly
/// the very same one.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

struct Iface {
    key: IfKey,
    first_ts: u64,
    last_ts: u64,
    packets: u64,
}

/// The `pcapng` sink; see the module documentation.
pub struct PcapNgSink {
    name: String,
    w: Option<PcapNgWriter<Output>>,
    snaplen: u32,
    ifaces: Vec<Iface>,
    index: HashMap<IfKey, usize>,
    /// Interface of the previous packet: consecutive packets mostly share one.
    last: Option<usize>,
    /// The task fields of the last packet's comment: a flood from one task
    /// formats them once.
    task: Option<TaskKey>,
    task_comment: String,
    /// Reused for each packet's comment.
    comment: String,
    /// -C/-G/-W.
    rotation: Option<output::Rotation>,
}

impl PcapNgSink {
    /// Create the output file (`-` or no path: stdout) and write the section
    /// header.
    pub fn open(cfg: &SinkConfig) -> Result<Self> {
        let rotation = output::Rotation::new(cfg);
        let first = rotation.as_ref().map(|r| r.first());
        let (w, name) = Self::start(first.as_deref().or(cfg.path.as_deref()))?;
        Ok(PcapNgSink {
            name,
            w: Some(w),
            snaplen: output::snaplen(cfg.snaplen),
            ifaces: Vec::new(),
            index: HashMap::new(),
            last: None,
            task: None,
            task_comment: String::with_capacity(256),
            comment: String::with_capacity(256),
            rotation,
        })
    }

    /// A new file with its section header.
    fn start(path: Option<&std::path::Path>) -> Result<(PcapNgWriter<Output>, String)> {
        let (out, name) = output::open_output(path)?;
        let mut options = vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
            "xcap {}",
            env!("CARGO_PKG_VERSION")
        )))];
        if let Some(os) = os_name() {
            options.push(SectionHeaderOption::OS(Cow::Owned(os)));
        }
        let shb = SectionHeaderBlock {
            // Native order: the option values encoded here use to_ne_bytes.
            endianness: Endianness::native(),
            major_version: 1,
            minor_version: 0,
            section_length: -1,
            options,
        };
        let mut w = PcapNgWriter::with_section_header(out, shb)
            .map_err(|e| output::write_error(e, &name))?;
        w.get_mut()
            .end_block()
            .map_err(|e| Error::from_write(e, &format!("write {name}")))?;
        Ok((w, name))
    }

    /// -C/-G: close the file (statistics of its own packets; losses are
    /// only known at the end) and go on in the next, every interface
    /// described again so each file stands alone.
    fn rotate(&mut self) -> Result<()> {
        let Some(r) = self.rotation.as_mut() else {
            return Ok(());
        };
        let len = self.w.as_ref().map_or(0, |w| w.get_ref().len());
        match r.check(len) {
            output::Next::Keep => Ok(()),
            output::Next::Stop(why) => {
                self.finish(&[])?;
                eprintln!("xcap: {why}");
                Err(Error::Closed)
            }
            output::Next::Switch(next) => {
                self.finish(&[])?;
                let (w, name) = Self::start(Some(&next)).map_err(|e| match e {
                    Error::Input(m) => Error::Runtime(m),
                    e => e,
                })?;
                self.w = Some(w);
                self.name = name;
                self.ifaces.clear();
                self.index.clear();
                self.last = None;
                self.task = None;
                Ok(())
            }
        }
    }

    fn writer(&mut self) -> Result<&mut PcapNgWriter<Output>> {
        let name = &self.name;
        self.w
            .as_mut()
            .ok_or_else(|| Error::runtime(format!("write {name}: file already closed")))
    }

    /// Index of the packet's interface block, written first if new.
    fn iface(&mut self, p: &PacketRef) -> Result<usize> {
        if let Some(i) = self.last.filter(|&i| self.ifaces[i].key.matches(p)) {
            return Ok(i);
        }
        let key = IfKey::of(p);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let idb = InterfaceDescriptionBlock {
                    linktype: DataLink::from(u32::from(p.link.pcap())),
                    snaplen: self.snaplen,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(
                            cap_str(&comment::if_name(p.meta)).to_string(),
                        )),
                        InterfaceDescriptionOption::IfDescription(Cow::Owned(
                            cap_str(&comment::format_if_description(p.meta)).to_string(),
                        )),
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                };
                let name = self.name.clone();
                let w = self.writer()?;
                w.write_pcapng_block(idb)
                    .map_err(|e| output::write_error(e, &name))?;
                w.get_mut()
                    .end_block()
                    .map_err(|e| Error::from_write(e, &format!("write {name}")))?;
                let i = self.ifaces.len();
                self.ifaces.push(Iface {
                    key: key.clone(),
                    first_ts: p.ts_ns,
                    last_ts: p.ts_ns,
                    packets: 0,
                });
                self.index.insert(key, i);
                i
            }
        };
        self.last = Some(i);
        Ok(i)
    }

    /// The Interface Statistics Block body of interface `i`.
    fn statistics(&self, i: usize, now: u64, reports: &[SourceReport]) -> Vec<u8> {
        let f = &self.ifaces[i];
        let mut b = Vec::with_capacity(96);
        b.extend_from_slice(&(i as u32).to_ne_bytes());
        b.extend_from_slice(&ts_bytes(now));
        push_opt(&mut b, ISB_STARTTIME, &ts_bytes(f.first_ts));
        push_opt(&mut b, ISB_ENDTIME, &ts_bytes(f.last_ts));
        push_opt(&mut b, ISB_IFRECV, &f.packets.to_ne_bytes());
        let report = reports.iter().find(|r| *r.name == *f.key.source);
        let lost = report
            .and_then(|r| r.hooks.iter().find(|h| *h.hook == *f.key.hook))
            .map(|h| h.lost);
        if let Some(lost) = lost {
            push_opt(&mut b, ISB_IFDROP, &lost.to_ne_bytes());
            if lost > 0 {
                let c = format!(
                    "isb_ifdrop is the {lost} packets lost at hook {} of source {} on all \
                     its interfaces: losses are counted per hook, not per interface",
                    f.key.hook, f.key.source
                );
                push_opt(&mut b, OPT_COMMENT, cap_str(&c).as_bytes());
            }
        }
        for (_, note) in report
            .iter()
            .flat_map(|r| &r.notes)
            .filter(|(i, _)| *i == f.key.ifindex)
        {
            push_opt(&mut b, OPT_COMMENT, cap_str(note).as_bytes());
        }
        push_opt(&mut b, OPT_ENDOFOPT, &[]);
        b
    }
}

impl Sink for PcapNgSink {
    fn name(&self) -> &str {
        "pcapng"
    }

    fn write(&mut self, p: &PacketRef) -> Result<()> {
        if self.rotation.is_some() {
            self.rotate()?;
        }
        let i = self.iface(p)?;
        let f = &mut self.ifaces[i];
        f.packets += 1;
        f.first_ts = f.first_ts.min(p.ts_ns);
        f.last_ts = f.last_ts.max(p.ts_ns);

        // The whole block is built in one reused buffer and handed to the
        // writer in one piece: one copy of the packet, no per-field writes.
        let m = &p.meta;
        if !self.task.as_ref().is_some_and(|t| t.matches(m)) {
            self.task_comment.clear();
            comment::task_part_into(&mut self.task_comment, m);
            self.task = Some(TaskKey::of(m));
        }
        self.comment.clear();
        comment::rest_part_into(&mut self.comment, m);

        let (data, orig_len) = output::clip(p, self.snaplen);
        let name = &self.name;
        let Some(w) = self.w.as_mut() else {
            return Err(Error::runtime(format!("write {name}: file already closed")));
        };
        // The task's part, then the rest: one comment option.
        let (task, rest) = (self.task_comment.as_str(), self.comment.as_str());
        let joined = task.is_empty() || rest.is_empty() || rest.starts_with('\n');
        let sep = if joined { "" } else { " " };
        let whole;
        let parts: [&str; 3] = if task.len() + sep.len() + rest.len() > MAX_OPTION {
            whole = format!("{task}{sep}{rest}");
            [cap_str(&whole), "", ""]
        } else {
            [task, sep, rest]
        };
        let clen: usize = parts.iter().map(|p| p.len()).sum();
        // The block's length first, then every field at its place in a
        // zeroed region of the output's buffer (padding is the zeros): one
        // resize, no growth checks per field.
        let opts = 8
            + if m.packet_id.is_some() { 12 } else { 0 }
            + if m.queue.is_some() { 8 } else { 0 }
            + if clen > 0 { 4 + clen + pad4(clen) } else { 0 }
            + 4;
        let total = 28 + data.len() + pad4(data.len()) + opts + 4;
        let out = w.get_mut();
        let b = out.buffer();
        let start = b.len();
        b.resize(start + total, 0);
        let mut c = Cursor {
            b: &mut b[start..],
            at: 0,
        };
        c.put(&ENHANCED_PACKET_BLOCK.to_ne_bytes());
        c.put(&(total as u32).to_ne_bytes());
        c.put(&(i as u32).to_ne_bytes());
        c.put(&ts_bytes(p.ts_ns));
        c.put(&(data.len() as u32).to_ne_bytes());
        c.put(&orig_len.to_ne_bytes());
        c.put(data);
        c.at += pad4(data.len());
        c.opt(EPB_FLAGS, &direction_flags(m).to_ne_bytes());
        if let Some(id) = m.packet_id {
            c.opt(EPB_PACKETID, &id.to_ne_bytes());
        }
        if let Some(q) = m.queue {
            c.opt(EPB_QUEUE, &q.to_ne_bytes());
        }
        if clen > 0 {
            c.put(&OPT_COMMENT.to_ne_bytes());
            c.put(&(clen as u16).to_ne_bytes());
            for part in parts {
                c.put(part.as_bytes());
            }
            c.at += pad4(clen);
        }
        c.at += 4; // opt_endofopt: zeros
        c.put(&(total as u32).to_ne_bytes());
        debug_assert_eq!(c.at, total);
        out.end_block()
            .map_err(|e| Error::from_write(e, &format!("write {name}")))
    }

    fn flush(&mut self) -> Result<()> {
        let name = &self.name;
        match self.w.as_mut() {
            Some(w) => w
                .get_mut()
                .flush()
                .map_err(|e| Error::from_write(e, &format!("write {name}"))),
            None => Ok(()),
        }
    }

    fn finish(&mut self, reports: &[SourceReport]) -> Result<()> {
        let now = xcap_core::time::realtime_ns();
        let blocks: Vec<Vec<u8>> = (0..self.ifaces.len())
            .map(|i| self.statistics(i, now, reports))
            .collect();
        let name = &self.name;
        let Some(mut w) = self.w.take() else {
            return Ok(());
        };
        if self.ifaces.is_empty() {
            // libpcap (tcpdump) refuses a pcapng file without any interface.
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: self.snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed("xcap")),
                    InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                        "no packet was captured",
                    )),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            w.write_pcapng_block(idb)
                .map_err(|e| output::write_error(e, name))?;
            w.get_mut()
                .end_block()
                .map_err(|e| Error::from_write(e, &format!("write {name}")))?;
        }
        let mut out = w.into_inner();
        for b in &blocks {
            write_block(&mut out, INTERFACE_STATISTIC_BLOCK, &[b])
                .and_then(|()| out.end_block())
                .map_err(|e| Error::from_write(e, &format!("write {name}")))?;
        }
        out.flush()
            .map_err(|e| Error::from_write(e, &format!("write {name}")))
    }
}

/// `epb_flags`: inbound 1, outbound 2 in the low two bits, 0 when unknown.
fn direction_flags(m: &Meta) -> u32 {
    match m.dir {
        Direction::Unknown => 0,
        Direction::In => 1,
        Direction::Out => 2,
    }
}

/// The running kernel, for `shb_os` (e.g. "Linux 6.18.0").
fn os_name() -> Option<String> {
    let read = |f: &str| {
        std::fs::read_to_string(f)
            .ok()
            .map(|s| s.trim().to_string())
    };
    Some(format!(
        "{} {}",
        read("/proc/sys/kernel/ostype")?,
        read("/proc/sys/kernel/osrelease")?
    ))
}

/// A string option cut to what an option can hold, at a character boundary.
fn cap_str(s: &str) -> &str {
    if s.len() <= MAX_OPTION {
        return s;
    }
    let mut end = MAX_OPTION;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A pcapng timestamp: high 32 bits, then low 32 bits.
fn ts_bytes(ts: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&((ts >> 32) as u32).to_ne_bytes());
    b[4..].copy_from_slice(&(ts as u32).to_ne_bytes());
    b
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Writes at increasing offsets of a zeroed block.
struct Cursor<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn put(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }

    /// An option whose value is a multiple of 4 bytes long (no padding).
    fn opt(&mut self, code: u16, value: &[u8]) {
        self.put(&code.to_ne_bytes());
        self.put(&(value.len() as u16).to_ne_bytes());
        self.put(value);
    }
}

/// One option: code, length, value, padding to 32 bits.
fn push_opt(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    b.extend_from_slice(&code.to_ne_bytes());
    b.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    b.extend_from_slice(value);
    b.resize(b.len() + pad4(value.len()), 0);
}

/// A block: type, total length, the body (already padded), total length.
fn write_block(w: &mut impl Write, block_type: u32, body: &[&[u8]]) -> io::Result<()> {
    let total = 12 + body.iter().map(|p| p.len()).sum::<usize>();
    let total = u32::try_from(total)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block too large"))?;
    w.write_all(&block_type.to_ne_bytes())?;
    w.write_all(&total.to_ne_bytes())?;
    for part in body {
        w.write_all(part)?;
    }
    w.write_all(&total.to_ne_bytes())
}
