//! The `pcap` sink: classic pcap with nanosecond timestamps (magic
//! 0xa1b23c4d), which tcpdump, libpcap and Wireshark read without loss.
//!
//! A pcap file has one link type for all its packets. The first packet fixes
//! it; packets of another link type are skipped and counted, never given an
//! invented link-layer header (that would lie about what was captured).

use std::collections::BTreeMap;
use std::io::Write;

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};
use xcap_core::{Error, LinkType, PacketRef, Result, Sink, SinkConfig, SourceReport};

use crate::output::{self, Output};

pub(crate) fn open(cfg: &SinkConfig) -> Result<Box<dyn Sink>> {
    Ok(Box::new(PcapSink::open(cfg)?))
}

/// The `pcap` sink; see the module documentation.
pub struct PcapSink {
    name: String,
    out: Option<Output>,
    snaplen: u32,
    /// Link type of the file, once the header is written.
    link: Option<LinkType>,
    /// Packets not written because of their link type, by link type.
    skipped: BTreeMap<u16, u64>,
    /// -C/-G/-W.
    rotation: Option<output::Rotation>,
}

impl PcapSink {
    /// Create the output file (`-` or no path: stdout). The header waits for
    /// the first packet, whose link type it records.
    pub fn open(cfg: &SinkConfig) -> Result<Self> {
        let rotation = output::Rotation::new(cfg);
        let first = rotation.as_ref().map(|r| r.first());
        let (out, name) = output::open_output(first.as_deref().or(cfg.path.as_deref()))?;
        Ok(PcapSink {
            name,
            out: Some(out),
            snaplen: output::snaplen(cfg.snaplen),
            link: None,
            skipped: BTreeMap::new(),
            rotation,
        })
    }

    /// -C/-G: close the file and go on in the next, which gets its own
    /// header, so each file stands alone.
    fn rotate(&mut self) -> Result<()> {
        let Some(r) = self.rotation.as_mut() else {
            return Ok(());
        };
        let len = self.out.as_ref().map_or(0, |o| o.len());
        let next = match r.check(len) {
            output::Next::Keep => return Ok(()),
            output::Next::Stop(why) => {
                self.finish(&[])?;
                eprintln!("xcap: {why}");
                return Err(Error::Closed);
            }
            output::Next::Switch(next) => next,
        };
        let link = self.link.take();
        self.finish_file()?;
        let (out, name) = output::open_output(Some(&next)).map_err(|e| match e {
            Error::Input(m) => Error::Runtime(m),
            e => e,
        })?;
        self.out = Some(out);
        self.name = name;
        if let Some(l) = link {
            self.write_header(l)?;
        }
        Ok(())
    }

    /// Write out and close the current file.
    fn finish_file(&mut self) -> Result<()> {
        let name = self.name.clone();
        if let Some(mut out) = self.out.take() {
            out.flush()
                .map_err(|e| Error::from_write(e, &format!("write {name}")))?;
        }
        Ok(())
    }

    /// Packets skipped so far because their link type is not the file's.
    pub fn skipped(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The warning `finish` prints about skipped packets, if any.
    pub fn skip_warning(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .skipped
            .keys()
            .map(|&l| output::link_name(LinkType::from_pcap(l)))
            .collect();
        let n = self.skipped();
        Some(format!(
            "xcap: pcap: {n} packet{} of link type {} not written (a pcap file holds one link type; use pcapng)",
            if n == 1 { "" } else { "s" },
            names.join(", ")
        ))
    }

    fn out(&mut self) -> Result<&mut Output> {
        self.out
            .as_mut()
            .ok_or_else(|| Error::runtime(format!("write {}: file already closed", self.name)))
    }

    fn write_header(&mut self, link: LinkType) -> Result<()> {
        let header = PcapHeader {
            snaplen: self.snaplen,
            datalink: DataLink::from(u32::from(link.pcap())),
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
            ..Default::default()
        };
        let name = self.name.clone();
        let out = self.out()?;
        header
            .write_to(&mut *out)
            .map_err(|e| output::write_error(e, &name))?;
        out.end_block()
            .map_err(|e| Error::from_write(e, &format!("write {name}")))?;
        self.link = Some(link);
        Ok(())
    }
}

impl Sink for PcapSink {
    fn name(&self) -> &str {
        "pcap"
    }

    fn write(&mut self, p: &PacketRef) -> Result<()> {
        if self.rotation.is_some() {
            self.rotate()?;
        }
        match self.link {
            None => self.write_header(p.link)?,
            Some(l) if l != p.link => {
                *self.skipped.entry(p.link.pcap()).or_default() += 1;
                return Ok(());
            }
            Some(_) => {}
        }
        let (data, orig_len) = output::clip(p, self.snaplen);
        let secs = u32::try_from(p.ts_ns / 1_000_000_000).map_err(|_| {
            Error::runtime(format!(
                "write {}: timestamp {} ns does not fit a pcap file",
                self.name, p.ts_ns
            ))
        })?;
        let nanos = (p.ts_ns % 1_000_000_000) as u32;
        // The 16-byte record header, in the byte order of the file header
        // (native). Written here rather than through pcap-file's PcapWriter:
        // that writer owns its output and offers no way to reach it, so the
        // buffered output could not be flushed while capturing.
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_ne_bytes());
        rec[4..8].copy_from_slice(&nanos.to_ne_bytes());
        rec[8..12].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        rec[12..16].copy_from_slice(&orig_len.to_ne_bytes());
        let name = &self.name;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::runtime(format!("write {name}: file already closed")))?;
        out.write_all(&rec)
            .and_then(|()| out.write_all(data))
            .and_then(|()| out.end_block())
            .map_err(|e| Error::from_write(e, &format!("write {name}")))
    }

    fn flush(&mut self) -> Result<()> {
        let name = &self.name;
        match self.out.as_mut() {
            Some(out) => out
                .flush()
                .map_err(|e| Error::from_write(e, &format!("write {name}"))),
            None => Ok(()),
        }
    }

    fn finish(&mut self, _reports: &[SourceReport]) -> Result<()> {
        if self.out.is_none() {
            return Ok(());
        }
        // No packet at all: still a valid (empty) file.
        if self.link.is_none() {
            self.write_header(LinkType::Ethernet)?;
        }
        if let Some(w) = self.skip_warning() {
            eprintln!("{w}");
        }
        self.finish_file()
    }
}
