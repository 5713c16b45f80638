//! What the file sinks share: opening the output, error wording, snap length.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use pcap_file::PcapError;
use xcap_core::event::MAX_SNAPLEN;
use xcap_core::{Error, Packet, Result};

/// Large enough that a busy capture does few write(2) calls.
const BUF_SIZE: usize = 256 * 1024;

pub type Output = BufWriter<Box<dyn Write + Send>>;

/// Open (create or truncate) the output file; `-` is stdout. Done when the
/// sink is opened so that an unwritable path fails before capture starts.
pub fn open_output(path: Option<&Path>) -> Result<(Output, String)> {
    let path = path.unwrap_or(Path::new("-"));
    let name = path.display().to_string();
    let w: Box<dyn Write + Send> = if name == "-" {
        Box::new(io::stdout())
    } else {
        let f = File::create(path)
            .map_err(|e| Error::input(format!("cannot write {name}: {}", io_reason(&e))))?;
        Box::new(f)
    };
    Ok((BufWriter::with_capacity(BUF_SIZE, w), name))
}

/// An I/O error as a person reads it: "No such file or directory", without
/// Rust's " (os error 2)" suffix.
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Map a pcap-file error of a write: I/O errors keep their meaning (a closed
/// pipe is a normal stop), anything else is a bug worth reporting.
pub fn write_error(e: PcapError, name: &str) -> Error {
    match e {
        PcapError::IoError(io) => Error::from_write(io, &format!("write {name}")),
        other => Error::runtime(format!("write {name}: {other}")),
    }
}

/// The snap length for file headers: `-s 0` means the largest xcap captures.
pub fn snaplen(configured: u32) -> u32 {
    if configured == 0 {
        MAX_SNAPLEN
    } else {
        configured
    }
}

/// The bytes to store (at most `snaplen`) and the original length, which is
/// never smaller than what is stored (readers reject that).
pub fn clip(p: &Packet, snaplen: u32) -> (&[u8], u32) {
    let n = p.data.len().min(snaplen as usize);
    let caplen = n as u32;
    (&p.data[..n], p.orig_len.max(caplen))
}

/// Readable name of a link type, as tcpdump spells it.
pub fn link_name(link: xcap_core::LinkType) -> String {
    match link {
        xcap_core::LinkType::Ethernet => "EN10MB".into(),
        xcap_core::LinkType::RawIp => "RAW".into(),
        xcap_core::LinkType::Other(v) => v.to_string(),
    }
}
