//! The `stdout` sink: one tcpdump-like line per packet,
//! `HH:MM:SS.uuuuuu HOOKSHORT IFNAME DIR SUMMARY comm/pid [drop=REASON at LOCATION]`,
//! with `-v` indented metadata lines after it; or with `--json` one JSON
//! object per line.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use serde_json::{json, Map, Value};
use xcap_core::{Direction, Error, Packet, Result, Sink, SinkConfig, SourceReport};

use crate::comment::{display_ifname, hook_short};
use crate::decode::write_summary;

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
    /// Local `HH:MM:SS` of the last second formatted: localtime_r once per
    /// second, not once per packet.
    clock: Option<(u64, String)>,
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
        }
    }

    fn text_line(&mut self, p: &Packet) {
        let secs = p.ts_ns / 1_000_000_000;
        let micros = (p.ts_ns % 1_000_000_000) / 1000;
        if self.clock.as_ref().is_none_or(|(s, _)| *s != secs) {
            self.clock = Some((secs, local_hms(secs)));
        }
        let hms = self.clock.as_ref().map_or("", |(_, t)| t.as_str());
        let m = &p.meta;
        let l = &mut self.line;
        let _ = write!(
            l,
            "{hms}.{micros:06} {} {} {} ",
            or_dash(hook_short(&m.hook)),
            display_ifname(m),
            m.dir.as_str()
        );
        write_summary(l, &p.data, p.orig_len, p.link);
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
fn verbose_lines(l: &mut String, p: &Packet) {
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
    let mut task = String::new();
    if let Some(v) = m.pid {
        let _ = write!(task, " pid {v}");
    }
    if let Some(v) = m.tid {
        let _ = write!(task, " tid {v}");
    }
    if let Some(v) = &m.comm {
        let _ = write!(task, " comm {v:?}");
    }
    if let Some(v) = m.packet_id {
        let _ = write!(task, " id {v:#x}");
    }
    if let Some(v) = m.queue {
        let _ = write!(task, " queue {v}");
    }
    if let Some(v) = m.retval {
        let _ = write!(task, " ret {v}");
    }
    if !task.is_empty() {
        let _ = writeln!(l, "   {task}");
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

fn json_line(p: &Packet, verbose: u8) -> Value {
    let m = &p.meta;
    let mut summary = String::new();
    write_summary(&mut summary, &p.data, p.orig_len, p.link);
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
        for b in &p.data {
            let _ = write!(hex, "{b:02x}");
        }
        o.insert("data".into(), json!(hex));
    }
    Value::Object(o)
}

/// Local wall-clock `HH:MM:SS` of a Unix time, as tcpdump prints it.
pub(crate) fn local_hms(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain old data that localtime_r fills; both pointers are
    // valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if ok {
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    } else {
        // Out of the C library's range: UTC arithmetic is still right.
        let s = secs % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

impl Sink for TextSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn write(&mut self, p: &Packet) -> Result<()> {
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
