//! The text form of packet metadata, shared by the pcapng writer (packet
//! comments, interface descriptions) and the file reader.
//!
//! First line: `key=value` pairs separated by single spaces, in a fixed order,
//! only the fields that are present. Values escape backslash as `\\`, space
//! as `\s` and newline as `\n`; `=` needs no escape because a pair is split
//! at its first `=` (so extra keys must not contain `=`). A non-empty stack
//! follows as a `stack:` line and one `  FRAME` line per frame.

use std::sync::Arc;

use xcap_core::{Direction, Meta};

fn escape_into(out: &mut String, s: &str, spaces: bool) {
    // Fast path: almost every value needs no escaping (this runs per packet).
    if !s
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (spaces && b == b' '))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if spaces => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            // Not one of ours: keep it verbatim rather than lose a character.
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Builds one `key=value key=value` line.
#[derive(Default)]
struct Line(String);

impl Line {
    /// One of xcap's own keys: nothing to escape (this runs per packet).
    fn key(&mut self, k: &'static str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(k);
        self.0.push('=');
    }
    fn str(&mut self, k: &'static str, v: &str) {
        self.key(k);
        escape_into(&mut self.0, v, true);
    }
    fn num(&mut self, k: &'static str, v: impl itoa::Integer) {
        self.key(k);
        self.0.push_str(itoa::Buffer::new().format(v));
    }
    /// `0x` and lowercase hex digits, as `{:#x}` writes them, without the
    /// formatting machinery.
    fn hex(&mut self, k: &'static str, v: u64) {
        self.key(k);
        let mut b = [0u8; 18];
        let mut i = b.len();
        let mut x = v;
        loop {
            i -= 1;
            b[i] = b"0123456789abcdef"[(x & 15) as usize];
            x >>= 4;
            if x == 0 {
                break;
            }
        }
        i -= 2;
        b[i] = b'0';
        b[i + 1] = b'x';
        // SAFETY: `b[i..]` holds only the ASCII bytes written above.
        self.0
            .push_str(unsafe { std::str::from_utf8_unchecked(&b[i..]) });
    }
    /// A source's own key (`x.NAME`), escaped like a value.
    fn extra(&mut self, k: &str, v: &str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str("x.");
        escape_into(&mut self.0, k, true);
        self.0.push('=');
        escape_into(&mut self.0, v, true);
    }
}

/// `key=value` pairs of one line, values unescaped. Tokens without `=` are
/// skipped: a person may have edited the comment in Wireshark.
fn pairs(line: &str) -> impl Iterator<Item = (&str, String)> {
    line.split(' ')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k, unescape(v)))
}

fn set<T: std::str::FromStr>(slot: &mut T, v: &str) {
    if let Ok(x) = v.parse() {
        *slot = x;
    }
}

fn set_opt<T: std::str::FromStr>(slot: &mut Option<T>, v: &str) {
    if let Ok(x) = v.parse() {
        *slot = Some(x);
    }
}

/// The metadata of a packet as a comment (empty if there is none). The
/// source is not included: it names the interface block the packet is in.
pub fn format_comment(m: &Meta) -> String {
    let mut out = iface_part(m);
    packet_part_into(&mut out, m);
    out
}

/// The part of the comment that is the same for every packet of one
/// interface block (hook, interface, namespace). The pcapng writer leaves
/// it out: the interface description holds it.
fn iface_part(m: &Meta) -> String {
    let mut l = Line::default();
    if !m.hook.is_empty() {
        l.str("hook", &m.hook);
    }
    if !m.ifname.is_empty() {
        l.str("if", &m.ifname);
    }
    if m.ifindex != 0 {
        l.num("ifindex", m.ifindex);
    }
    if m.netns != 0 {
        l.num("netns", m.netns);
    }
    l.0
}

/// Append the per-packet part of the comment to `buf` (which holds the
/// interface part, or nothing).
pub fn packet_part_into(buf: &mut String, m: &Meta) {
    task_part_into(buf, m);
    let mut l = Line(std::mem::take(buf));
    if let Some(v) = m.packet_id {
        l.hex("id", v);
    }
    *buf = l.0;
    rest_part_into(buf, m);
}

/// The fields of the per-packet part that stay the same while one task on
/// one CPU sends or receives (direction, cpu, pid, tid, comm): the pcapng
/// writer keeps them formatted while they do not change.
pub fn task_part_into(buf: &mut String, m: &Meta) {
    let mut l = Line(std::mem::take(buf));
    if m.dir != Direction::Unknown {
        l.str("dir", m.dir.as_str());
    }
    if let Some(v) = m.cpu {
        l.num("cpu", v);
    }
    if let Some(v) = m.pid {
        l.num("pid", v);
    }
    if let Some(v) = m.tid {
        l.num("tid", v);
    }
    if let Some(v) = &m.comm {
        l.str("comm", v);
    }
    *buf = l.0;
}

/// The rest of the per-packet part, after [`task_part_into`] and the
/// packet id (which the pcapng writer leaves to `epb_packetid`).
pub fn rest_part_into(buf: &mut String, m: &Meta) {
    let mut l = Line(std::mem::take(buf));
    if let Some(v) = m.queue {
        l.num("queue", v);
    }
    if let Some(v) = m.retval {
        l.num("ret", v);
    }
    if let Some(v) = &m.drop_reason {
        l.str("drop", v);
    }
    if let Some(v) = &m.drop_location {
        l.str("location", v);
    }
    for (k, v) in &m.extra {
        l.extra(k, v);
    }
    let mut out = l.0;
    if !m.stack.is_empty() {
        out.push_str("\nstack:");
        for f in &m.stack {
            out.push_str("\n  ");
            // Frames keep their spaces ("func+0x1a [module]"); only what
            // would break the line structure is escaped.
            escape_into(&mut out, f, false);
        }
    }
    *buf = out;
}

/// Fill `meta` from a comment written by [`format_comment`]. Fields present
/// in the comment overwrite those of `meta`; stack frames and extra
/// key/values are appended. Unknown keys and unparsable values are ignored.
pub fn parse_comment(text: &str, meta: &mut Meta) {
    let mut lines = text.split('\n');
    for (k, v) in pairs(lines.next().unwrap_or("")) {
        match k {
            "hook" => meta.hook = v.into(),
            "dir" => {
                meta.dir = match v.as_str() {
                    "In" => Direction::In,
                    "Out" => Direction::Out,
                    _ => Direction::Unknown,
                }
            }
            "if" => meta.ifname = v.into(),
            "ifindex" => set(&mut meta.ifindex, &v),
            "netns" => set(&mut meta.netns, &v),
            "cpu" => set_opt(&mut meta.cpu, &v),
            "pid" => set_opt(&mut meta.pid, &v),
            "tid" => set_opt(&mut meta.tid, &v),
            "comm" => meta.comm = Some(Arc::from(v)),
            "id" => {
                let hex = v.strip_prefix("0x").unwrap_or(&v);
                if let Ok(x) = u64::from_str_radix(hex, 16) {
                    meta.packet_id = Some(x);
                }
            }
            "queue" => set_opt(&mut meta.queue, &v),
            "ret" => set_opt(&mut meta.retval, &v),
            "drop" => meta.drop_reason = Some(v),
            "location" => meta.drop_location = Some(v),
            k => {
                if let Some(x) = k.strip_prefix("x.") {
                    meta.extra.push((unescape(x), v));
                }
            }
        }
    }
    let mut in_stack = false;
    for line in lines {
        if line == "stack:" {
            in_stack = true;
        } else if let Some(frame) = line.strip_prefix("  ").filter(|_| in_stack) {
            meta.stack.push(unescape(frame));
        }
    }
}

/// A hook for short display: a tracepoint by its name
/// (`tp:net:netif_receive_skb` -> `netif_receive_skb`), a function hooked
/// by fentry, the default backend, by the function's name (`ip_rcv`). The
/// other kinds keep their prefix (`kprobe:ip_rcv`, `fexit:tcp_v4_rcv`), so
/// two hooks on one function never share a name.
pub fn hook_short(hook: &str) -> &str {
    if let Some(f) = hook.strip_prefix("fentry:") {
        return f;
    }
    if ["fexit:", "kprobe:", "kretprobe:"]
        .iter()
        .any(|p| hook.starts_with(p))
    {
        return hook;
    }
    hook.rsplit(':').next().unwrap_or(hook)
}

#[cfg(test)]
mod hook_short_tests {
    #[test]
    fn one_name_per_hook() {
        use super::hook_short;
        assert_eq!(hook_short("tp:net:netif_receive_skb"), "netif_receive_skb");
        assert_eq!(hook_short("net:netif_receive_skb"), "netif_receive_skb");
        assert_eq!(hook_short("fentry:ip_rcv"), "ip_rcv");
        for h in [
            "kprobe:ip_rcv",
            "fexit:ip_rcv",
            "kretprobe:ip_rcv",
            "dpdk:rx",
        ] {
            assert_ne!(hook_short(h), "ip_rcv", "{h}");
        }
        assert_eq!(hook_short("kprobe:ip_rcv"), "kprobe:ip_rcv");
    }
}

/// The interface name for displays: the name, else `if<index>`, else `-`.
pub fn display_ifname(m: &Meta) -> IfName<'_> {
    IfName(m)
}

/// See [`display_ifname`]: formatted where it is written, no String per
/// packet.
pub struct IfName<'a>(&'a Meta);

impl std::fmt::Display for IfName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        if !m.ifname.is_empty() {
            f.write_str(&m.ifname)
        } else if m.ifindex != 0 {
            write!(f, "if{}", m.ifindex)
        } else {
            f.write_str("-")
        }
    }
}

/// pcapng `if_name` of the interface block a packet goes to:
/// `SOURCE:HOOKSHORT:IFNAME`, e.g. `kernel:netif_receive_skb:veth0`.
pub fn if_name(m: &Meta) -> String {
    format!("{}:{}:{}", m.source, hook_short(&m.hook), display_ifname(m))
}

/// pcapng `if_description`: every field that identifies the interface
/// block, e.g. `source=kernel hook=tp:net:netif_receive_skb ifname=veth0
/// ifindex=3 netns=4026531840`.
pub fn format_if_description(m: &Meta) -> String {
    let mut l = Line::default();
    l.str("source", &m.source);
    l.str("hook", &m.hook);
    l.str("ifname", &m.ifname);
    l.num("ifindex", m.ifindex);
    l.num("netns", m.netns);
    l.0
}

/// Fill source, hook, ifname, ifindex and netns from an interface
/// description written by [`format_if_description`]. False if it is not
/// one (no `source=`), e.g. a file another tool wrote.
pub fn parse_if_description(text: &str, meta: &mut Meta) -> bool {
    let mut ours = false;
    for (k, v) in pairs(text.lines().next().unwrap_or("")) {
        match k {
            "source" => {
                meta.source = Arc::from(v);
                ours = true;
            }
            "hook" => meta.hook = v.into(),
            "ifname" => meta.ifname = v.into(),
            "ifindex" => set(&mut meta.ifindex, &v),
            "netns" => set(&mut meta.netns, &v),
            _ => {}
        }
    }
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Meta {
        Meta {
            source: "kernel".into(),
            hook: "tp:net:netif_receive_skb".into(),
            dir: Direction::In,
            ifindex: 3,
            ifname: "veth0".into(),
            netns: 4026531840,
            queue: Some(2),
            cpu: Some(1),
            pid: Some(4242),
            tid: Some(4243),
            comm: Some(r"my proc\ with = signs".into()),
            packet_id: Some(0xffff_8881_0a2b_3c00),
            drop_reason: Some("NETFILTER_DROP".into()),
            drop_location: Some("nf_hook_slow+0x8c".into()),
            retval: Some(-22),
            stack: vec![
                "kfree_skb_reason+0x0".into(),
                "nf_hook_slow+0x8c [nf tables]".into(),
                r"odd\frame".into(),
            ],
            extra: vec![
                ("verdict".into(), "XDP_PASS".into()),
                ("note".into(), "two words\nand a line".into()),
            ],
        }
    }

    #[test]
    fn format_full() {
        let c = format_comment(&full());
        assert_eq!(
            c,
            "hook=tp:net:netif_receive_skb if=veth0 ifindex=3 netns=4026531840 dir=In \
             cpu=1 pid=4242 tid=4243 comm=my\\sproc\\\\\\swith\\s=\\ssigns \
             id=0xffff88810a2b3c00 queue=2 ret=-22 drop=NETFILTER_DROP \
             location=nf_hook_slow+0x8c x.verdict=XDP_PASS x.note=two\\swords\\nand\\sa\\sline\n\
             stack:\n  kfree_skb_reason+0x0\n  nf_hook_slow+0x8c [nf tables]\n  odd\\\\frame"
        );
    }

    #[test]
    fn round_trip() {
        let m = full();
        let mut back = Meta {
            source: m.source.clone(),
            ..Default::default()
        };
        parse_comment(&format_comment(&m), &mut back);
        assert_eq!(back, m);
    }

    #[test]
    fn round_trip_sparse_and_odd() {
        let cases = [
            Meta::default(),
            Meta {
                comm: Some(Arc::from("")),
                ..Default::default()
            },
            Meta {
                comm: Some(Arc::from("\\")),
                pid: Some(0),
                ..Default::default()
            },
            Meta {
                comm: Some(Arc::from(" \\s \\\\n\n")),
                dir: Direction::Out,
                ..Default::default()
            },
            Meta {
                stack: vec!["only a stack".into()],
                ..Default::default()
            },
            Meta {
                drop_reason: Some("a=b=c".into()),
                retval: Some(i64::MIN),
                packet_id: Some(0),
                ..Default::default()
            },
        ];
        for m in cases {
            let mut back = Meta::default();
            let c = format_comment(&m);
            parse_comment(&c, &mut back);
            assert_eq!(back, m, "comment {c:?}");
        }
    }

    #[test]
    fn parse_tolerates_foreign_text() {
        let mut m = Meta::default();
        parse_comment("checked by alice  pid=x cpu=7 unknown=1 =", &mut m);
        assert_eq!(m.cpu, Some(7));
        assert_eq!(m.pid, None);
        parse_comment("", &mut m);
        parse_comment("  frame without header", &mut m);
        assert!(m.stack.is_empty());
    }

    #[test]
    fn interface_naming() {
        let m = full();
        assert_eq!(if_name(&m), "kernel:netif_receive_skb:veth0");
        let d = format_if_description(&m);
        assert_eq!(
            d,
            "source=kernel hook=tp:net:netif_receive_skb ifname=veth0 ifindex=3 netns=4026531840"
        );
        let mut back = Meta::default();
        assert!(parse_if_description(&d, &mut back));
        assert_eq!(
            (
                back.source,
                back.hook,
                back.ifname,
                back.ifindex,
                back.netns
            ),
            (m.source, m.hook, m.ifname, m.ifindex, m.netns)
        );
        let anon = Meta {
            source: "afxdp".into(),
            hook: "xsk".into(),
            ifindex: 7,
            ..Default::default()
        };
        assert_eq!(if_name(&anon), "afxdp:xsk:if7");
        assert_eq!(if_name(&Meta::default()), "::-");
        assert!(!parse_if_description("eth0 on host", &mut Meta::default()));
    }
}
