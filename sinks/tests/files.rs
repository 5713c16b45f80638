//! The file sinks and the file source against real readers: tshark,
//! capinfos and tcpdump.

mod common;

use common::*;
use serde_json::Value;
use xcap_core::registry::{sink, source};
use xcap_core::{CaptureConfig, Direction, Error, LinkType, Meta, Packet, SinkConfig};
use xcap_sinks::{
    format_if_description, if_name, parse_comment, parse_if_description, summary, PcapSink,
};

/// tshark's stderr without the notice it prints whenever it runs as root.
fn tshark_stderr(o: &std::process::Output) -> String {
    stderr(o)
        .lines()
        .filter(|l| !l.starts_with("Running as user"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tshark_ok(args: &[&str]) -> String {
    let o = run("tshark", args);
    assert!(o.status.success(), "tshark {args:?}: {}", stderr(&o));
    let e = tshark_stderr(&o);
    assert!(e.is_empty(), "tshark {args:?} warned: {e}");
    stdout(&o)
}

fn epoch(ts_ns: u64) -> String {
    format!("{}.{:09}", ts_ns / 1_000_000_000, ts_ns % 1_000_000_000)
}

fn ethernet_only(v: &[Packet]) -> Vec<Packet> {
    v.iter()
        .filter(|p| p.link == LinkType::Ethernet)
        .cloned()
        .collect()
}

/// The first value of a tshark JSON field, if present.
fn field<'a>(layers: &'a Value, name: &str) -> Option<&'a str> {
    layers.get(name)?.get(0)?.as_str()
}

#[test]
fn pcapng_is_wireshark_ready() {
    let dir = tmpdir("pcapng-wireshark");
    let f = dir.join("cap.pcapng");
    let f = f.to_str().unwrap();
    let packets = packets();
    write_with("pcapng", f.as_ref(), &packets, &kernel_report(7));

    let list = tshark_ok(&["-r", f]);
    assert_eq!(list.lines().count(), packets.len(), "{list}");

    // Per packet: interface, direction, nanosecond time, id, queue, comment.
    let json = tshark_ok(&[
        "-r",
        f,
        "-T",
        "json",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.interface_description",
        "-e",
        "frame.packet_flags_direction",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.packet_id",
        "-e",
        "frame.interface_queue",
        "-e",
        "frame.comment",
    ]);
    let frames: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(frames.len(), packets.len());
    for (p, fr) in packets.iter().zip(&frames) {
        let l = &fr["_source"]["layers"];
        let m = &p.meta;
        assert_eq!(field(l, "frame.interface_name"), Some(&*if_name(m)));
        assert_eq!(
            field(l, "frame.interface_description"),
            Some(&*format_if_description(m))
        );
        let dir = field(l, "frame.packet_flags_direction")
            .and_then(|d| u32::from_str_radix(d.trim_start_matches("0x"), 16).ok());
        let want = match m.dir {
            Direction::Unknown => 0,
            Direction::In => 1,
            Direction::Out => 2,
        };
        assert_eq!(dir, Some(want), "{l}");
        assert_eq!(field(l, "frame.time_epoch"), Some(&*epoch(p.ts_ns)));
        assert_eq!(
            field(l, "frame.packet_id").map(|v| v.parse::<u64>().unwrap()),
            m.packet_id
        );
        assert_eq!(
            field(l, "frame.interface_queue").map(|v| v.parse::<u32>().unwrap()),
            m.queue
        );
        // The interface description, the packet id and queue options and
        // the comment tshark shows carry all the metadata; the comment
        // repeats neither the interface's fields nor the id.
        let mut back = Meta::default();
        assert!(parse_if_description(
            field(l, "frame.interface_description").unwrap(),
            &mut back
        ));
        back.packet_id = field(l, "frame.packet_id").map(|v| v.parse().unwrap());
        back.queue = field(l, "frame.interface_queue").map(|v| v.parse().unwrap());
        let comment = field(l, "frame.comment").unwrap_or("");
        for key in ["hook=", "if=", "ifindex=", "netns=", "id="] {
            assert!(!comment.split(' ').any(|w| w.starts_with(key)), "{comment}");
        }
        parse_comment(comment, &mut back);
        assert_eq!(&back, m);
    }
    let names: Vec<&str> = frames
        .iter()
        .filter_map(|fr| field(&fr["_source"]["layers"], "frame.interface_name"))
        .collect();
    assert_eq!(
        names[..4],
        [
            "kernel:netif_receive_skb:veth0",
            "kernel:net_dev_queue:veth0",
            "kernel:kfree_skb:if5",
            "afxdp:rx:veth1"
        ]
    );

    let o = run("capinfos", &[f]);
    assert!(o.status.success(), "capinfos: {}", stderr(&o));
    let info = stdout(&o);
    for want in [
        "Capture application: xcap ",
        "Number of interfaces in file: 5",
        "Number of packets:   8",
        "First packet time:   2023-11-14 22:13:20.123456789",
    ] {
        assert!(info.contains(want), "capinfos lacks {want:?}:\n{info}");
    }

    tshark_ok(&["-r", f, "-q", "-z", "io,stat,0"]);

    // Interface statistics, as Wireshark's own pcapng dissector reads them:
    // one block per interface, packets per interface, drops per hook.
    let blocks = tshark_ok(&[
        "-X",
        "read_format:MIME Files Format",
        "-r",
        f,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "pcapng.block.type",
        "-e",
        "pcapng.options.option.data.interface.received",
        "-e",
        "pcapng.options.option.data.interface.dropped",
        "-e",
        "pcapng.timestamp",
        "-e",
        "pcapng.options.option.data.comment",
    ]);
    let cols: Vec<&str> = blocks.trim_end().split('|').collect();
    let isbs = cols[0].split(',').filter(|t| *t == "0x00000005").count();
    assert_eq!(isbs, 5, "{blocks}");
    assert_eq!(cols[1], "3,2,1,1,1", "{blocks}");
    // Only interfaces of a hook with a report have a drop count.
    assert_eq!(cols[2], "7,0,7", "{blocks}");
    // The statistics time is now: its two 32-bit halves are in order.
    // A source's notes go to the blocks of its interfaces on their device
    // (ifindex 3: the first two interfaces), after any drop comment.
    let notes = cols[4].matches("socket 7: rx_dropped=2").count();
    assert_eq!(notes, 2, "{blocks}");
    let year = cols[3].split(',').next_back().unwrap_or("");
    assert!(
        !year.contains("1970") && !year.contains(" 2023 "),
        "ISB timestamp {year}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn file_source_reads_pcapng_back() {
    let dir = tmpdir("pcapng-back");
    let f = dir.join("cap.pcapng");
    let packets = packets();
    write_with("pcapng", &f, &packets, &kernel_report(0));
    let (got, reports) = read_back(&f);
    assert_eq!(got, packets);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].name, "file");
    assert_eq!(reports[0].delivered, packets.len() as u64);
    let _ = std::fs::remove_dir_all(dir);
}

/// The writer keeps a task's comment fields formatted while they repeat:
/// every comment must still be what the packet's own metadata gives, when
/// the task, the interface or only the packet id changes, and when nothing
/// follows the task fields but a stack.
#[test]
fn pcapng_comments_follow_every_change_of_task() {
    let dir = tmpdir("pcapng-tasks");
    let f = dir.join("cap.pcapng");
    let base = packets().swap_remove(0);
    let mut v = Vec::new();
    let mut push = |edit: &dyn Fn(&mut Meta)| {
        let mut p = base.clone();
        p.ts_ns += v.len() as u64;
        edit(&mut p.meta);
        v.push(p);
    };
    push(&|_| {});
    push(&|m| m.packet_id = Some(1));
    push(&|m| m.packet_id = None);
    push(&|m| m.tid = Some(1));
    push(&|m| m.comm = Some("other".into()));
    push(&|m| m.comm = None);
    push(&|m| m.cpu = None);
    push(&|m| m.dir = Direction::Out);
    push(&|m| {
        m.packet_id = None;
        m.stack = vec!["a+0x1".into(), "b+0x2 [mod]".into()];
    });
    push(&|m| m.ifname = "veth9".into());
    push(&|m| {
        (m.dir, m.cpu, m.pid, m.tid, m.comm) = (Direction::Unknown, None, None, None, None);
        m.packet_id = None;
        m.stack = vec!["c+0x3".into()];
    });
    push(&|m| m.pid = Some(99));
    write_with("pcapng", &f, &v, &kernel_report(0));
    let (got, _) = read_back(&f);
    assert_eq!(got, v);
    let _ = std::fs::remove_dir_all(dir);
}

/// A comment longer than an option can hold (a 16-bit length) is cut at
/// a character boundary; the block stays valid and what follows it too.
#[test]
fn pcapng_cuts_a_comment_too_long_for_an_option() {
    let dir = tmpdir("pcapng-long");
    let f = dir.join("cap.pcapng");
    let mut v: Vec<Packet> = packets().into_iter().take(2).collect();
    v[0].meta.stack = (0..4000).map(|i| format!("frame_ä{i:04}+0x1a")).collect();
    write_with("pcapng", &f, &v, &kernel_report(0));
    let out = tshark_ok(&[
        "-r",
        f.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "frame.comment",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (_, first) = lines[0].split_once('\t').unwrap();
    // tshark shows newlines as the two characters \n.
    let shown = first.replace("\\n", "\n");
    assert!(
        shown.len() <= 65535 && shown.len() > 65535 - 4,
        "{}",
        shown.len()
    );
    assert!(shown.contains("frame_ä2000"), "the stack goes on past 2000");
    let (got, _) = read_back(&f);
    assert_eq!(got[1], v[1]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pcap_holds_one_link_type() {
    let dir = tmpdir("pcap-link");
    let f = dir.join("cap.pcap");
    let packets = packets();
    let cfg = SinkConfig {
        path: Some(f.clone()),
        snaplen: SNAPLEN,
        ..Default::default()
    };
    let mut s = PcapSink::open(&cfg).unwrap();
    for p in &packets {
        xcap_core::Sink::write(&mut s, &p.as_ref()).unwrap();
    }
    assert_eq!(s.skipped(), 1);
    assert_eq!(
        s.skip_warning().as_deref(),
        Some(
            "xcap: pcap: 1 packet of link type RAW not written \
             (a pcap file holds one link type; use pcapng)"
        )
    );
    xcap_core::Sink::finish(&mut s, &[]).unwrap();

    let eth = ethernet_only(&packets);
    let fs = f.to_str().unwrap();
    let o = run("tcpdump", &["-nn", "-S", "-t", "-r", fs]);
    assert!(o.status.success(), "tcpdump: {}", stderr(&o));
    assert!(
        stderr(&o).contains("link-type EN10MB (Ethernet), snapshot length 262144"),
        "{}",
        stderr(&o)
    );
    // tcpdump decodes every packet as our summary does.
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    let ours: Vec<String> = eth.iter().map(|p| summary(&p.as_ref())).collect();
    assert_eq!(lines, ours);

    // Nanosecond timestamps survive.
    let o = run(
        "tcpdump",
        &["-nn", "-tt", "--time-stamp-precision=nano", "-r", fs],
    );
    let times: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    let want: Vec<String> = eth.iter().map(|p| epoch(p.ts_ns)).collect();
    assert_eq!(times, want);

    let list = tshark_ok(&["-r", fs]);
    assert_eq!(list.lines().count(), eth.len());

    // Read back: bytes, lengths, times and link type; the metadata is gone.
    let (got, _) = read_back(&f);
    let want: Vec<Packet> = eth
        .into_iter()
        .map(|mut p| {
            p.meta = Meta {
                source: "file".into(),
                hook: "file".into(),
                ..Default::default()
            };
            p
        })
        .collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pcap_takes_the_first_link_type() {
    let dir = tmpdir("pcap-raw");
    let f = dir.join("raw.pcap");
    let mut packets = packets();
    // The raw IP packet first: the file is LINKTYPE_RAW.
    let raw = packets.remove(6);
    packets.insert(0, raw.clone());
    write_with("pcap", &f, &packets, &[]);
    let o = run("tcpdump", &["-nn", "-S", "-t", "-r", f.to_str().unwrap()]);
    assert!(o.status.success(), "tcpdump: {}", stderr(&o));
    assert!(stderr(&o).contains("link-type RAW"), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim_end(), summary(&raw.as_ref()));
    let (got, _) = read_back(&f);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].link, LinkType::RawIp);
    assert_eq!(got[0].data, raw.data);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pcapng_of_one_link_type_reads_in_tcpdump() {
    // libpcap reads pcapng only while every interface has the same link type.
    let dir = tmpdir("pcapng-tcpdump");
    let f = dir.join("eth.pcapng");
    let eth = ethernet_only(&packets());
    write_with("pcapng", &f, &eth, &kernel_report(3));
    let o = run("tcpdump", &["-nn", "-S", "-t", "-r", f.to_str().unwrap()]);
    assert!(o.status.success(), "tcpdump: {}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    let ours: Vec<String> = eth.iter().map(|p| summary(&p.as_ref())).collect();
    assert_eq!(lines, ours);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn file_source_reads_other_tools_microsecond_files() {
    // editcap rewrites our nanosecond pcap as a microsecond pcap, and that
    // as a pcapng whose interface has the default resolution.
    let dir = tmpdir("foreign");
    let ns = dir.join("ns.pcap");
    let us = dir.join("us.pcap");
    let ng = dir.join("us.pcapng");
    let eth = ethernet_only(&packets());
    write_with("pcap", &ns, &eth, &[]);
    for (fmt, from, to) in [("pcap", &ns, &us), ("pcapng", &us, &ng)] {
        let o = run(
            "editcap",
            &["-F", fmt, from.to_str().unwrap(), to.to_str().unwrap()],
        );
        assert!(o.status.success(), "editcap: {}", stderr(&o));
    }
    let want: Vec<(u64, Vec<u8>, u32)> = eth
        .iter()
        .map(|p| (p.ts_ns / 1000 * 1000, p.data.clone(), p.orig_len))
        .collect();
    for f in [&us, &ng] {
        let (got, _) = read_back(f);
        let got3: Vec<(u64, Vec<u8>, u32)> = got
            .iter()
            .map(|p| (p.ts_ns, p.data.clone(), p.orig_len))
            .collect();
        assert_eq!(got3, want, "{}", f.display());
        assert!(got
            .iter()
            .all(|p| &*p.meta.source == "file" && &*p.meta.hook == "file"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn empty_captures_are_valid_files() {
    let dir = tmpdir("empty");
    for name in ["pcap", "pcapng"] {
        let f = dir.join(format!("empty.{name}"));
        write_with(name, &f, &[], &[]);
        let fs = f.to_str().unwrap();
        assert_eq!(tshark_ok(&["-r", fs]), "");
        let o = run("tcpdump", &["-r", fs]);
        assert!(o.status.success(), "tcpdump {name}: {}", stderr(&o));
        let (got, _) = read_back(&f);
        assert!(got.is_empty());
    }
    let o = run("tcpdump", &["-r", dir.join("empty.pcap").to_str().unwrap()]);
    assert!(stderr(&o).contains("link-type EN10MB"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn truncated_files_give_what_is_whole_then_say_where_the_damage_starts() {
    let dir = tmpdir("truncated");
    let packets = ethernet_only(&packets());
    for name in ["pcap", "pcapng"] {
        let f = dir.join(format!("cut.{name}"));
        write_with(name, &f, &packets, &[]);
        let mut bytes = std::fs::read(&f).unwrap();
        if name == "pcapng" {
            // Drop the statistics blocks, then cut into the last packet.
            let end = last_epb_end(&bytes);
            bytes.truncate(end);
        }
        // Where the last packet's record or block starts: the cut is in it.
        let n = bytes.len();
        let last = if name == "pcapng" {
            u32::from_ne_bytes(bytes[n - 4..].try_into().unwrap()) as usize
        } else {
            16 + packets.last().unwrap().data.len()
        };
        let whole = n - last;
        bytes.truncate(n - 7);
        std::fs::write(&f, &bytes).unwrap();
        let (got, _, err) = read_back_until_error(&f);
        let want = &packets[..packets.len() - 1];
        match err {
            Some(xcap_core::Error::Input(m)) => assert!(
                m.ends_with(&format!(
                    "cut short at byte {whole} (after {} whole packets)",
                    want.len()
                )),
                "{name}: {m}"
            ),
            other => panic!("{name}: {other:?}"),
        }
        if name == "pcapng" {
            assert_eq!(got, want);
        } else {
            let strip = |v: &[Packet]| -> Vec<(u64, Vec<u8>)> {
                v.iter().map(|p| (p.ts_ns, p.data.clone())).collect()
            };
            assert_eq!(strip(&got), strip(want));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Offset just after the last Enhanced Packet Block of a pcapng file
/// written on this machine (native byte order).
fn last_epb_end(b: &[u8]) -> usize {
    let mut off = 0;
    let mut end = 0;
    while off + 8 <= b.len() {
        let ty = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap());
        let len = u32::from_ne_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
        off += len;
        if ty == 6 {
            end = off;
        }
    }
    end
}

#[test]
fn bad_input_fails_before_capture() {
    let dir = tmpdir("bad");
    let open_src = |p: &std::path::Path| {
        let cfg = CaptureConfig {
            read_file: Some(p.to_path_buf()),
            ..Default::default()
        };
        (source("file").unwrap().open)(&cfg, &Default::default()).err()
    };
    let missing = dir.join("missing.pcap");
    match open_src(&missing) {
        Some(Error::Input(m)) => assert_eq!(
            m,
            format!(
                "cannot read {}: No such file or directory",
                missing.display()
            )
        ),
        other => panic!("{other:?}"),
    }
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not a capture\n").unwrap();
    match open_src(&text) {
        Some(Error::Input(m)) => assert_eq!(
            m,
            format!("cannot read {}: not a pcap or pcapng file", text.display())
        ),
        other => panic!("{other:?}"),
    }
    let short = dir.join("short.pcap");
    std::fs::write(&short, [0xd4, 0xc3]).unwrap();
    assert!(matches!(open_src(&short), Some(Error::Input(m)) if m.contains("too short")));
    let header = dir.join("header.pcap");
    std::fs::write(&header, [0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).unwrap();
    assert!(
        matches!(open_src(&header), Some(Error::Input(m)) if m.ends_with("truncated file header"))
    );
    let none = (source("file").unwrap().open)(&CaptureConfig::default(), &Default::default()).err();
    assert!(matches!(none, Some(Error::Input(_))), "{none:?}");

    for name in ["pcap", "pcapng"] {
        let path = dir.join("no-such-dir").join("out");
        let cfg = SinkConfig {
            path: Some(path.clone()),
            ..Default::default()
        };
        match (sink(name).unwrap().open)(&cfg).err() {
            Some(Error::Input(m)) => assert_eq!(
                m,
                format!("cannot write {}: No such file or directory", path.display())
            ),
            other => panic!("{name}: {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
