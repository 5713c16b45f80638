//! What the file sinks share: opening the output, error wording, snap length.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use pcap_file::PcapError;
use xcap_core::event::MAX_SNAPLEN;
use xcap_core::{Error, PacketRef, Result, SinkConfig};

/// Large enough that a busy capture does few write(2) calls.
const BUF_SIZE: usize = 256 * 1024;

/// A capture file's output: whole blocks (a pcap record, a pcapng block)
/// are gathered in a buffer and written in large pieces, and the file only
/// ever ends after a whole block. When a write fails (disk full, a file
/// size limit) the file is cut back to the last block that reached it
/// whole, so it stays valid up to its last whole packet. A sink writes a
/// block through `Write`, then calls `end_block`.
pub struct Output {
    inner: Box<dyn Write + Send>,
    /// The same file, to cut it back (None for stdout: a pipe cannot be).
    file: Option<File>,
    buf: Vec<u8>,
    /// Where each whole block in `buf` ends.
    ends: Vec<usize>,
    /// Bytes of whole blocks the file holds.
    committed: u64,
    /// The kind of the write error that stopped this output: later calls
    /// fail the same way (a closed pipe stays a quiet stop).
    failed: Option<io::ErrorKind>,
}

impl Output {
    /// Mark the end of a block; write out once the buffer is large.
    pub fn end_block(&mut self) -> io::Result<()> {
        self.ends.push(self.buf.len());
        if self.buf.len() >= BUF_SIZE {
            self.push_whole()
        } else {
            Ok(())
        }
    }

    /// The buffer to build a block in, in place; `end_block` then marks it
    /// whole.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes of whole blocks written so far, buffered ones included.
    pub fn len(&self) -> u64 {
        self.committed + self.ends.last().copied().unwrap_or(0) as u64
    }

    /// Write every whole block buffered; on failure cut the file back to
    /// the last whole block it got.
    fn push_whole(&mut self) -> io::Result<()> {
        if let Some(k) = self.failed {
            return Err(io::Error::new(k, "an earlier write failed"));
        }
        let n = self.ends.last().copied().unwrap_or(0);
        let mut pos = 0;
        while pos < n {
            match self.inner.write(&self.buf[pos..n]) {
                Ok(0) => return self.cut(pos, io::ErrorKind::WriteZero.into()),
                Ok(k) => pos += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.cut(pos, e),
            }
        }
        self.buf.drain(..n);
        self.ends.clear();
        self.committed += n as u64;
        self.inner.flush()
    }

    /// `pos` bytes of the buffer reached the file before `e`.
    fn cut(&mut self, pos: usize, e: io::Error) -> io::Result<()> {
        self.failed = Some(e.kind());
        let keep = self.ends.iter().rev().find(|&&end| end <= pos).copied();
        self.committed += keep.unwrap_or(0) as u64;
        if let Some(f) = &self.file {
            // Best effort: the error that matters is the write's.
            let _ = f.set_len(self.committed);
        }
        self.buf.clear();
        self.ends.clear();
        Err(e)
    }
}

impl Write for Output {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(b);
        Ok(())
    }
    /// Writes whole blocks only: a block still being written waits.
    fn flush(&mut self) -> io::Result<()> {
        if self.ends.is_empty() {
            return match self.failed {
                Some(k) => Err(io::Error::new(k, "an earlier write failed")),
                None => Ok(()),
            };
        }
        self.push_whole()
    }
}

/// Open (create or truncate) the output file; `-` is stdout. Done when the
/// sink is opened so that an unwritable path fails before capture starts.
pub fn open_output(path: Option<&Path>) -> Result<(Output, String)> {
    let path = path.unwrap_or(Path::new("-"));
    let name = path.display().to_string();
    let (inner, file): (Box<dyn Write + Send>, Option<File>) = if name == "-" {
        (Box::new(io::stdout()), None)
    } else {
        let f = File::create(path)
            .map_err(|e| Error::input(format!("cannot write {name}: {}", io_reason(&e))))?;
        let cut = f.try_clone().ok();
        (Box::new(f), cut)
    };
    let out = Output {
        inner,
        file,
        buf: Vec::with_capacity(BUF_SIZE + 64 * 1024),
        ends: Vec::new(),
        committed: 0,
        failed: None,
    };
    Ok((out, name))
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
pub fn clip<'a>(p: &PacketRef<'a>, snaplen: u32) -> (&'a [u8], u32) {
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

/// tcpdump's -C, -G and -W: when a capture file ends and what the next one
/// is called, with tcpdump's naming. -C: a new file once the current one is
/// larger than the size, named FILE, FILE1, FILE2, ... (with -W N: FILE0 to
/// FILE{N-1} in a ring, zero-padded to the digits of N-1). -G: a new file
/// every that many seconds, FILE taken as a strftime(3) pattern; with -W N
/// and no -C, the capture stops after N files.
pub struct Rotation {
    base: String,
    bytes: Option<u64>,
    secs: Option<u64>,
    count: Option<u32>,
    /// tcpdump's Cflag_count: the number after the name.
    c_index: u32,
    /// Files -G has opened, and when the current one was (ns). Nanoseconds,
    /// not tcpdump's whole seconds: a file opened at x.99 s would otherwise
    /// end 10 ms later, before the first packet arrived, and stay empty.
    g_files: u32,
    g_started: u64,
}

/// What to do before writing the next packet.
pub enum Next {
    Keep,
    Switch(PathBuf),
    /// -G with -W: the last file is complete.
    Stop(String),
}

fn now_ns() -> u64 {
    xcap_core::time::realtime_ns()
}

const NS: u64 = 1_000_000_000;

/// `pattern` through strftime(3) for local time `t`.
fn strftime(pattern: &str, t: u64) -> String {
    let Ok(fmt) = std::ffi::CString::new(pattern) else {
        return pattern.to_string();
    };
    let mut buf = vec![0u8; pattern.len() * 4 + 256];
    // SAFETY: tm is filled by localtime_r; buf has buf.len() bytes and
    // strftime writes at most that many, NUL included.
    let n = unsafe {
        let tt = t as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&tt, &mut tm);
        libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            fmt.as_ptr(),
            &tm,
        )
    };
    if n == 0 && !pattern.is_empty() {
        return pattern.to_string();
    }
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

impl Rotation {
    /// None without -C and -G.
    pub fn new(cfg: &SinkConfig) -> Option<Rotation> {
        if cfg.rotate_bytes.is_none() && cfg.rotate_secs.is_none() {
            return None;
        }
        Some(Rotation {
            base: cfg.path.as_ref()?.display().to_string(),
            bytes: cfg.rotate_bytes,
            secs: cfg.rotate_secs,
            count: cfg.file_count,
            c_index: 0,
            g_files: 0,
            g_started: now_ns(),
        })
    }

    /// The file name for a file opened at `t` ns.
    fn name(&self, t: u64) -> PathBuf {
        let base = if self.secs.is_some() {
            strftime(&self.base, t / NS)
        } else {
            self.base.clone()
        };
        // Digits of N-1 for -W N, as tcpdump pads.
        let width = match (self.bytes, self.count) {
            (Some(_), Some(w)) => (w.saturating_sub(1)).max(1).to_string().len(),
            _ => 0,
        };
        if self.bytes.is_none() || (self.c_index == 0 && width == 0) {
            PathBuf::from(base)
        } else {
            PathBuf::from(format!("{base}{:0width$}", self.c_index))
        }
    }

    /// The first file's name.
    pub fn first(&self) -> PathBuf {
        self.name(self.g_started)
    }

    /// Before a packet is written to a file of `len` bytes.
    pub fn check(&mut self, len: u64) -> Next {
        if let Some(g) = self.secs {
            let t = now_ns();
            if t.saturating_sub(self.g_started) >= g.saturating_mul(NS) {
                self.g_started = t;
                self.g_files += 1;
                if let Some(w) = self.count {
                    if self.g_files >= w {
                        return Next::Stop(format!("Maximum file limit reached: {w}"));
                    }
                }
                self.c_index = 0;
                return Next::Switch(self.name(t));
            }
        }
        if let Some(b) = self.bytes {
            if len > b {
                self.c_index += 1;
                if self.count.is_some_and(|w| self.c_index >= w) {
                    self.c_index = 0;
                }
                return Next::Switch(self.name(self.g_started));
            }
        }
        Next::Keep
    }
}
