//! The `stdout` sink: one tcpdump-like line per packet,
//! `HH:MM:SS.uuuuuu HOOKSHORT IFNAME DIR SUMMARY comm/pid [drop=REASON at LOCATION]`,
//! with `-v` indented metadata lines after it; or with `--json` one JSON
//! object per line.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use serde_json::{json, Map, Value};
use xcap_core::{
    ByteDump, Direction, Error, LinkType, PacketRef, Result, Sink, SinkConfig, SourceReport,
    TextFormat,
};

use crate::comment::{display_ifname, hook_short};
use crate::decode::{write_summary, write_summary_as};

pub(crate) fn open(cfg: &SinkConfig) -> Result<Box<dyn Sink>> {
    // Always stdout: this sink does not write the `-w` file, whatever path
    // the configuration carries.
    Ok(Box::new(TextSink::new(Box::new(io::stdout()), cfg)))
}

/// The `stdout` sink, over any writer.
pub struct TextSink {
    out: BufWriter<Box<dyn Write + Send>>,
    verbose: u8,
    json: bool,
    line: String,
    /// Local `HH:MM:SS` (or date and time, -tttt) of the last second
    /// formatted: localtime_r once per second, not once per packet.
    clock: Option<(u64, String)>,
    format: TextFormat,
    /// Timestamps of the first and the previous packet (-ttt, -ttttt).
    first_ts: Option<u64>,
    prev_ts: Option<u64>,
}

impl TextSink {
    /// A text sink writing to `out` (the registered sink writes to stdout).
    pub fn new(out: Box<dyn Write + Send>, cfg: &SinkConfig) -> Self {
        TextSink {
            out: BufWriter::with_capacity(64 * 1024, out),
            verbose: cfg.verbose,
            json: cfg.json,
            line: String::with_capacity(256),
            clock: None,
            format: cfg.text,
            first_ts: None,
            prev_ts: None,
        }
    }

    /// The line's time, as tcpdump's -t options say, and a space.
    fn time(&mut self, ts: u64) {
        let l = &mut self.line;
        let secs = ts / 1_000_000_000;
        let micros = (ts % 1_000_000_000) / 1000;
        let delta = |from: Option<u64>, l: &mut String| {
            let d = ts.saturating_sub(from.unwrap_or(ts)) / 1000;
            let s = d / 1_000_000;
            // tcpdump's sign column: a space, as a delta here is never
            // negative.
            let _ = write!(
                l,
                " {:02}:{:02}:{:02}.{:06} ",
                s / 3600,
                s / 60 % 60,
                s % 60,
                d % 1_000_000
            );
        };
        match self.format.time {
            1 => {}
            2 => {
                let _ = write!(l, "{secs}.{micros:06} ");
            }
            3 => delta(self.prev_ts, l),
            5 => delta(self.first_ts, l),
            t => {
                if self.clock.as_ref().is_none_or(|(s, _)| *s != secs) {
                    // Formatted again in the same String: no allocation.
                    let mut hms = self.clock.take().map(|(_, h)| h).unwrap_or_default();
                    hms.clear();
                    local_time_into(&mut hms, secs, t == 4);
                    self.clock = Some((secs, hms));
                }
                let hms = self.clock.as_ref().map_or("", |(_, t)| t.as_str());
                let _ = write!(l, "{hms}.{micros:06} ");
            }
        }
        self.first_ts.get_or_insert(ts);
        self.prev_ts = Some(ts);
    }

    fn text_line(&mut self, p: &PacketRef) {
        self.time(p.ts_ns);
        let m = &p.meta;
        let l = &mut self.line;
        let _ = write!(
            l,
            "{} {} {} ",
            or_dash(hook_short(&m.hook)),
            display_ifname(m),
            m.dir.as_str()
        );
        if self.format.link_header {
            link_header(l, p);
        }
        write_summary_as(l, p.data, p.orig_len, p.link, self.format.quick);
        match (&m.comm, m.pid) {
            (Some(c), Some(pid)) => {
                let _ = write!(l, " {c}/{pid}");
            }
            (Some(c), None) => {
                let _ = write!(l, " {c}");
            }
            (None, Some(pid)) => {
                let _ = write!(l, " ?/{pid}");
            }
            (None, None) => {}
        }
        if let Some(r) = &m.drop_reason {
            let _ = write!(l, " drop={r}");
            if let Some(loc) = &m.drop_location {
                let _ = write!(l, " at {loc}");
            }
        }
        l.push('\n');
        if self.verbose >= 1 {
            verbose_lines(l, p);
        }
        match self.format.bytes {
            ByteDump::None => {}
            ByteDump::HexLink => hex_ascii(l, p.data),
            ByteDump::Hex => hex_ascii(l, &p.data[link_len(p)..]),
            ByteDump::Ascii => ascii(l, &p.data[link_len(p)..]),
        }
    }
}

/// Bytes of the link-level header (Ethernet and its VLAN tags), which -X
/// and -A leave out as tcpdump does.
fn link_len(p: &PacketRef) -> usize {
    if p.link != LinkType::Ethernet || p.data.len() < 14 {
        return 0;
    }
    let mut n = 14;
    while n + 4 <= p.data.len()
        && matches!([p.data[n - 2], p.data[n - 1]], [0x81, 0x00] | [0x88, 0xa8])
    {
        n += 4;
    }
    n
}

/// -e: `SRC > DST, ethertype IPv4 (0x0800), length N: ` as tcpdump prints it.
fn link_header(l: &mut String, p: &PacketRef) {
    if p.link != LinkType::Ethernet || p.data.len() < 14 {
        return;
    }
    let mac = |l: &mut String, m: &[u8]| {
        for (i, b) in m.iter().enumerate() {
            let _ = write!(l, "{}{b:02x}", if i > 0 { ":" } else { "" });
        }
    };
    mac(l, &p.data[6..12]);
    l.push_str(" > ");
    mac(l, &p.data[0..6]);
    let t = u16::from_be_bytes([p.data[12], p.data[13]]);
    let name = match t {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        0x8100 => "802.1Q",
        0x88a8 => "802.1Q-QinQ",
        0x8847 => "MPLS unicast",
        _ => "Unknown",
    };
    let _ = write!(l, ", ethertype {name} (0x{t:04x}), length {}: ", p.orig_len);
}

/// -X: tcpdump's hex and ASCII lines, 16 bytes each: " xxxx" per pair of
/// bytes padded to 40 columns, two spaces, and the bytes that are graphic
/// characters (a space is not one here, as in tcpdump).
fn hex_ascii(l: &mut String, d: &[u8]) {
    for (i, row) in d.chunks(16).enumerate() {
        let _ = write!(l, "\t0x{:04x}: ", i * 16);
        let start = l.len();
        for pair in row.chunks(2) {
            l.push(' ');
            for b in pair {
                let _ = write!(l, "{b:02x}");
            }
        }
        for _ in l.len() - start..40 {
            l.push(' ');
        }
        l.push_str("  ");
        for &b in row {
            l.push(if (0x21..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            });
        }
        l.push('\n');
    }
}

/// -A: the bytes as ASCII, line feeds kept, carriage returns dropped, the
/// rest that does not print as '.'.
fn ascii(l: &mut String, d: &[u8]) {
    for &b in d {
        match b {
            b'\n' => l.push('\n'),
            b'\r' => {}
            0x20..=0x7e => l.push(b as char),
            _ => l.push('.'),
        }
    }
    if !d.is_empty() {
        l.push('\n');
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The indented metadata lines of `-v`.
fn verbose_lines(l: &mut String, p: &PacketRef) {
    let m = &p.meta;
    let _ = write!(
        l,
        "    source {} hook {} ifindex {} netns {}",
        or_dash(&m.source),
        or_dash(&m.hook),
        m.ifindex,
        m.netns
    );
    if let Some(v) = m.cpu {
        let _ = write!(l, " cpu {v}");
    }
    let _ = writeln!(l, " caplen {} len {}", p.data.len(), p.orig_len);
    // The task line, written in place and taken back if it stays empty.
    let start = l.len();
    l.push_str("   ");
    let fields = l.len();
    if let Some(v) = m.pid {
        let _ = write!(l, " pid {v}");
    }
    if let Some(v) = m.tid {
        let _ = write!(l, " tid {v}");
    }
    if let Some(v) = &m.comm {
        let _ = write!(l, " comm {v:?}");
    }
    if let Some(v) = m.packet_id {
        let _ = write!(l, " id {v:#x}");
    }
    if let Some(v) = m.queue {
        let _ = write!(l, " queue {v}");
    }
    if let Some(v) = m.retval {
        let _ = write!(l, " ret {v}");
    }
    if l.len() == fields {
        l.truncate(start);
    } else {
        l.push('\n');
    }
    if !m.extra.is_empty() {
        l.push_str("   ");
        for (k, v) in &m.extra {
            let _ = write!(l, " {k}={v:?}");
        }
        l.push('\n');
    }
    if !m.stack.is_empty() {
        l.push_str("    stack:\n");
        for f in &m.stack {
            let _ = writeln!(l, "      {f}");
        }
    }
}

fn json_line(p: &PacketRef, verbose: u8) -> Value {
    let m = &p.meta;
    let mut summary = String::new();
    write_summary(&mut summary, p.data, p.orig_len, p.link);
    let mut o = Map::new();
    o.insert("ts".into(), json!(p.ts_ns as f64 / 1e9));
    o.insert("ts_ns".into(), json!(p.ts_ns));
    o.insert("source".into(), json!(&*m.source));
    o.insert("hook".into(), json!(&*m.hook));
    o.insert(
        "dir".into(),
        match m.dir {
            Direction::Unknown => Value::Null,
            d => json!(d.as_str()),
        },
    );
    o.insert("ifindex".into(), json!(m.ifindex));
    o.insert("ifname".into(), json!(&*m.ifname));
    o.insert("netns".into(), json!(m.netns));
    o.insert("queue".into(), json!(m.queue));
    o.insert("cpu".into(), json!(m.cpu));
    o.insert("pid".into(), json!(m.pid));
    o.insert("tid".into(), json!(m.tid));
    o.insert("comm".into(), json!(m.comm.as_deref()));
    // Hex text: a kernel address does not survive a JSON reader's doubles.
    o.insert(
        "packet_id".into(),
        json!(m.packet_id.map(|v| format!("{v:#x}"))),
    );
    o.insert("drop_reason".into(), json!(m.drop_reason));
    o.insert("drop_location".into(), json!(m.drop_location));
    o.insert("retval".into(), json!(m.retval));
    o.insert("stack".into(), json!(m.stack));
    let extra: Map<String, Value> = m.extra.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    o.insert("extra".into(), Value::Object(extra));
    o.insert("linktype".into(), json!(p.link.pcap()));
    o.insert("summary".into(), json!(summary));
    o.insert("len".into(), json!(p.orig_len));
    o.insert("caplen".into(), json!(p.data.len()));
    if verbose >= 1 {
        let mut hex = String::with_capacity(p.data.len() * 2);
        for b in p.data {
            let _ = write!(hex, "{b:02x}");
        }
        o.insert("data".into(), json!(hex));
    }
    Value::Object(o)
}

/// Local wall-clock `HH:MM:SS` of a Unix time, as tcpdump prints it.
pub(crate) fn local_hms(secs: u64) -> String {
    let mut s = String::new();
    local_time_into(&mut s, secs, false);
    s
}

/// Local `HH:MM:SS`, or with `date` `YYYY-MM-DD HH:MM:SS` (-tttt),
/// appended to `out`.
fn local_time_into(out: &mut String, secs: u64, date: bool) {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain old data that localtime_r fills; both pointers are
    // valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if ok && date {
        let _ = write!(
            out,
            "{}-{:02}-{:02} {:02}:{:02}:{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
    } else if ok {
        let _ = write!(out, "{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else {
        // Out of the C library's range: UTC arithmetic is still right.
        let s = secs % 86_400;
        let _ = write!(out, "{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    }
}

impl Sink for TextSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn write(&mut self, p: &PacketRef) -> Result<()> {
        self.line.clear();
        if self.json {
            let v = json_line(p, self.verbose);
            // Value's Display is its compact JSON form.
            let _ = writeln!(self.line, "{v}");
        } else {
            self.text_line(p);
        }
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| Error::from_write(e, "write stdout"))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::from_write(e, "write stdout"))
    }

    fn finish(&mut self, _reports: &[SourceReport]) -> Result<()> {
        self.flush()
    }
}
