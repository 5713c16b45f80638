//! The `file` source (`-r FILE`): packets from a pcap or pcapng file, with
//! the metadata xcap's pcapng sink stored (interface descriptions, packet
//! flags, ids, queues and comments).

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{Endianness, PcapError, TsResolution};
use xcap_core::{
    CaptureConfig, Direction, Error, LinkType, Meta, Packet, Result, Source, SourceCtx,
    SourceReport,
};

use crate::comment;
use crate::output::io_reason;

/// Packets per batch handed to the bus.
const BATCH: usize = 256;

type Input = Box<dyn Read + Send>;

enum Reader {
    Pcap(PcapReader<Input>),
    PcapNg(PcapNgReader<Input>),
}

/// The `file` source: a pcap or pcapng file opened and its header read.
pub struct FileSource {
    name: String,
    reader: Reader,
    /// Bytes of the file header (pcap) or first section header (pcapng).
    header_len: u64,
}

/// How far reading got: bytes of whole records or blocks, and packets.
#[derive(Default)]
struct Progress {
    offset: u64,
    packets: u64,
}

pub(crate) fn open(cfg: &CaptureConfig) -> Result<Box<dyn Source>> {
    let path = cfg
        .read_file
        .as_deref()
        .ok_or_else(|| Error::input("the file source needs a file to read (-r FILE)"))?;
    Ok(Box::new(FileSource::open(path)?))
}

impl FileSource {
    /// Open a pcap or pcapng file (`-` is stdin) and read its header, so
    /// that a missing or foreign file fails before anything runs.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let fail = |why: String| Error::input(format!("cannot read {name}: {why}"));
        let mut input: Input = if name == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(|e| fail(io_reason(&e)))?)
        };
        let mut magic = [0u8; 4];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => fail("not a pcap or pcapng file (too short)".into()),
            _ => fail(io_reason(&e)),
        })?;
        // A pcapng section header's length (after its magic, in the order
        // its byte-order magic says), to count where damage starts.
        let mut head = magic.to_vec();
        let mut header_len = 24;
        if u32::from_be_bytes(magic) == 0x0a0d_0d0a {
            let mut more = [0u8; 8];
            input
                .read_exact(&mut more)
                .map_err(|_| fail("truncated file header".into()))?;
            let len = [more[0], more[1], more[2], more[3]];
            header_len = match more[4..8] {
                [0x1a, 0x2b, 0x3c, 0x4d] => u32::from_be_bytes(len),
                _ => u32::from_le_bytes(len),
            } as u64;
            head.extend_from_slice(&more);
        }
        // Put what was read back in front of the rest: stdin cannot seek.
        let input: Input = Box::new(Cursor::new(head).chain(input));
        let header_error = |e: PcapError| match e {
            PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                fail("truncated file header".into())
            }
            PcapError::IoError(e) => fail(io_reason(&e)),
            e => fail(e.to_string()),
        };
        let reader = match u32::from_be_bytes(magic) {
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
                Reader::Pcap(PcapReader::new(input).map_err(header_error)?)
            }
            0x0a0d_0d0a => Reader::PcapNg(PcapNgReader::new(input).map_err(header_error)?),
            _ => return Err(fail("not a pcap or pcapng file".into())),
        };
        Ok(FileSource {
            name,
            reader,
            header_len,
        })
    }
}

/// Collects packets into batches for the bus.
struct Sender<'a> {
    ctx: &'a SourceCtx,
    batch: Vec<Packet>,
    delivered: u64,
}

impl Sender<'_> {
    /// False when reading should stop (stop signal or bus gone).
    fn push(&mut self, p: Packet) -> bool {
        self.batch.push(p);
        if self.batch.len() < BATCH {
            return true;
        }
        self.send() && !self.ctx.stopped()
    }

    fn send(&mut self) -> bool {
        let Some(last) = self.batch.last() else {
            return true;
        };
        let watermark = last.ts_ns;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.delivered += batch.len() as u64;
        self.ctx.send(batch, watermark)
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        "file"
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
        let mut tx = Sender {
            ctx: &ctx,
            batch: Vec::with_capacity(BATCH),
            delivered: 0,
        };
        let FileSource {
            name,
            reader,
            header_len,
        } = *self;
        let mut at = Progress {
            offset: header_len,
            packets: 0,
        };
        let r = match reader {
            Reader::Pcap(r) => read_pcap(r, &mut tx, &mut at),
            Reader::PcapNg(r) => read_pcapng(r, &mut tx, &mut at),
        };
        // What came before the damage is good and goes out; then one line
        // says where the damage starts (a file cut short by a capture still
        // running or a full disk, or corrupt bytes).
        let whole = format!(
            "byte {} (after {} whole packet{})",
            at.offset,
            at.packets,
            if at.packets == 1 { "" } else { "s" }
        );
        let end = match r {
            Ok(()) => Ok(()),
            Err(PcapError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(Error::input(format!("{name}: cut short at {whole}")))
            }
            Err(PcapError::IoError(e)) => Err(Error::runtime(format!(
                "cannot read {name}: {}",
                io_reason(&e)
            ))),
            Err(e) => Err(Error::input(format!("{name}: damaged at {whole}: {e}"))),
        };
        // Whatever was read before an error still goes out.
        tx.send();
        end?;
        Ok(SourceReport {
            name: "file".into(),
            delivered: tx.delivered,
            dropped: 0,
            hooks: Vec::new(),
            failure: None,
            notes: Vec::new(),
        })
    }
}

fn read_pcap(
    mut r: PcapReader<Input>,
    tx: &mut Sender,
    at: &mut Progress,
) -> Result<(), PcapError> {
    let h = r.header();
    let frac_ns = match h.ts_resolution {
        TsResolution::MicroSecond => 1000,
        TsResolution::NanoSecond => 1,
    };
    // The upper bits of the header's link type may carry FCS information.
    let link = LinkType::from_pcap(u32::from(h.datalink) as u16);
    let meta = Meta {
        source: "file".into(),
        hook: "file".into(),
        ..Default::default()
    };
    // Raw records: pcap-file 2.0's checked packets reject any packet cut by
    // the snap length (it compares the original length with the snap length).
    while let Some(rec) = r.next_raw_packet() {
        let rec = rec?;
        at.offset += 16 + rec.data.len() as u64;
        at.packets += 1;
        let p = Packet {
            ts_ns: rec.ts_sec as u64 * 1_000_000_000 + rec.ts_frac as u64 * frac_ns,
            data: rec.data.into_owned(),
            orig_len: rec.orig_len,
            link,
            meta: meta.clone(),
        };
        if !tx.push(p) {
            break;
        }
    }
    Ok(())
}

/// What a packet of a pcapng interface inherits from its block.
struct Iface {
    meta: Meta,
    link: LinkType,
    /// if_tsresol: decimal exponent, or binary if the top bit is set.
    tsresol: u8,
    /// if_tsoffset, seconds.
    tsoffset: i64,
}

impl Iface {
    fn new(idb: &InterfaceDescriptionBlock) -> Self {
        let mut meta = Meta::default();
        let mut ours = false;
        let mut name = None;
        let mut tsresol = 6;
        let mut tsoffset = 0;
        for o in &idb.options {
            match o {
                InterfaceDescriptionOption::IfDescription(d) => {
                    ours = comment::parse_if_description(d, &mut meta);
                }
                InterfaceDescriptionOption::IfName(n) => name = Some(n.to_string()),
                InterfaceDescriptionOption::IfTsResol(r) => tsresol = *r,
                InterfaceDescriptionOption::IfTsOffset(s) => tsoffset = *s as i64,
                _ => {}
            }
        }
        if !ours {
            // Another tool's file: keep its interface name.
            meta = Meta {
                source: "file".into(),
                hook: "file".into(),
                ifname: name.unwrap_or_default().into(),
                ..Default::default()
            };
        }
        Iface {
            meta,
            link: LinkType::from_pcap(u32::from(idb.linktype) as u16),
            tsresol,
            tsoffset,
        }
    }

    /// A timestamp in the interface's units as nanoseconds since the epoch.
    fn ns(&self, raw: u64) -> u64 {
        let raw = raw as u128;
        let exp = u32::from(self.tsresol & 0x7f);
        let ns = if self.tsresol & 0x80 != 0 {
            (raw * 1_000_000_000).checked_shr(exp).unwrap_or(0)
        } else if exp <= 9 {
            raw * 10u128.pow(9 - exp)
        } else {
            raw / 10u128.checked_pow(exp - 9).unwrap_or(u128::MAX)
        };
        let ns = ns as i128 + self.tsoffset as i128 * 1_000_000_000;
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

fn read_pcapng(
    mut r: PcapNgReader<Input>,
    tx: &mut Sender,
    at: &mut Progress,
) -> Result<(), PcapError> {
    use byteorder_slice::{BigEndian, LittleEndian};
    let mut endianness = r.section().endianness;
    let mut ifaces: Vec<Iface> = Vec::new();
    // Raw blocks, so that each block's length counts towards the offset.
    while let Some(raw) = r.next_raw_block() {
        let raw = raw?;
        let len = raw.initial_len as u64;
        if raw.type_ == pcap_file::pcapng::blocks::SECTION_HEADER_BLOCK {
            // A new section: its own byte order and interface numbering
            // (the reader has parsed it; read its order once it is done).
            drop(raw);
            endianness = r.section().endianness;
            ifaces.clear();
            at.offset += len;
            continue;
        }
        let block = match endianness {
            Endianness::Big => raw.try_into_block::<BigEndian>(),
            Endianness::Little => raw.try_into_block::<LittleEndian>(),
        }?;
        at.offset += len;
        let p = match block {
            Block::SectionHeader(_) => unreachable!("handled above"),
            Block::InterfaceDescription(idb) => {
                ifaces.push(Iface::new(&idb));
                continue;
            }
            Block::EnhancedPacket(epb) => {
                let f = ifaces
                    .get(epb.interface_id as usize)
                    .ok_or(PcapError::InvalidInterfaceId(epb.interface_id))?;
                let mut meta = f.meta.clone();
                for o in &epb.options {
                    match o {
                        EnhancedPacketOption::Flags(v) => {
                            meta.dir = match v & 3 {
                                1 => Direction::In,
                                2 => Direction::Out,
                                _ => Direction::Unknown,
                            }
                        }
                        EnhancedPacketOption::Comment(c) => comment::parse_comment(c, &mut meta),
                        // Options pcap-file 2.0 does not know: epb_packetid (5)
                        // and epb_queue (6).
                        EnhancedPacketOption::Unknown(u) => match (u.code, u.value.len()) {
                            (5, 8) => meta.packet_id = Some(u64_in(&u.value, endianness)),
                            (6, 4) => meta.queue = Some(u32_in(&u.value, endianness)),
                            _ => {}
                        },
                        _ => {}
                    }
                }
                // pcap-file hands over the raw timestamp units as nanoseconds.
                Packet {
                    ts_ns: f.ns(epb.timestamp.as_nanos() as u64),
                    orig_len: epb.original_len,
                    data: epb.data.into_owned(),
                    link: f.link,
                    meta,
                }
            }
            Block::SimplePacket(spb) => {
                let f = ifaces.first().ok_or(PcapError::InvalidInterfaceId(0))?;
                Packet {
                    ts_ns: 0,
                    orig_len: spb.original_len,
                    data: spb.data.into_owned(),
                    link: f.link,
                    meta: f.meta.clone(),
                }
            }
            // Statistics, name resolution, journal and custom blocks.
            _ => continue,
        };
        at.packets += 1;
        if !tx.push(p) {
            break;
        }
    }
    Ok(())
}

fn u64_in(b: &[u8], e: Endianness) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    match e {
        Endianness::Big => u64::from_be_bytes(a),
        Endianness::Little => u64::from_le_bytes(a),
    }
}

fn u32_in(b: &[u8], e: Endianness) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    match e {
        Endianness::Big => u32::from_be_bytes(a),
        Endianness::Little => u32::from_le_bytes(a),
    }
}
