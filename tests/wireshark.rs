//! contrib/wireshark/xcap.lua in tshark: the metadata xcap writes becomes
//! fields that display filters select on. The truth to compare with comes
//! from outside the file: the pids of the processes the test started, the
//! packets iptables was told to drop, the hooks a packet must pass. Root
//! required (see tests/common).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn lua() -> String {
    format!(
        "lua_script:{}/contrib/wireshark/xcap.lua",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// tshark with the dissector on `file`: one line per frame the display
/// filter selects, with `fields` tab-separated.
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut c = Command::new("tshark");
    c.args(["-X", &lua(), "-r"]).arg(file);
    c.args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().expect("tshark (scripts/setup installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    // As root, tshark warns that it runs as root; a Lua error would show here.
    let other: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\""))
        .collect();
    assert!(
        out.status.success() && other.is_empty(),
        "tshark -Y {filter}: {err}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn dissector_fields_filter_in_tshark() {
    let v = VethPair::new();
    let dir = tmpdir("lua");
    let xf = dir.join("x.pcapng");
    // Echo requests of 300 bytes die in OUTPUT of namespace a.
    v.exec(
        &v.a,
        "iptables -A OUTPUT -p icmp -m length --length 300:400 -j DROP",
    );
    // Every namespace: a request leaves va and arrives on vb as one skb.
    let xc = xcap(&[
        "--drops",
        "--stack",
        "--track",
        "-w",
        xf.to_str().unwrap(),
        "icmp",
    ]);
    let ping = |extra: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &v.a, "ping", "-c", "3", "-i", "0.05", "-W", "1",
            ])
            .args(extra.split_whitespace())
            .arg(&v.ip_b)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // `ip netns exec` execs ping: the child's pid is ping's.
    let mut good = ping("");
    let good_pid = good.id();
    good.wait().unwrap();
    let mut dropped = ping("-s 300");
    let dropped_pid = dropped.id();
    dropped.wait().unwrap();
    // 3 requests out of va and into vb, 3 replies out of vb and into va,
    // 3 drops.
    wait_until(20, || {
        packets_so_far(&xf).iter().filter(|p| is_icmp(p)).count() >= 15
    });
    let (code, err) = xc.stop();
    assert_eq!(code, 0, "{err}");

    // The requests the first ping sent, at the hook where it sent them.
    let sent = tshark(
        &xf,
        &format!("xcap.pid == {good_pid} and xcap.dir == \"Out\" and icmp.type == 8"),
        &[
            "xcap.comm",
            "xcap.tid",
            "xcap.hook",
            "xcap.ifname",
            "xcap.source",
            "xcap.ifindex",
            "xcap.netns",
        ],
    );
    assert_eq!(sent.len(), 3, "{sent:?}");
    // The interface's fields come from its description, not the comment.
    let ifindex = sh(&format!("ip -n {} -o link show va", v.a));
    let ifindex = ifindex.split(':').next().unwrap().trim();
    let netns = sh(&format!("stat -L -c %i /run/netns/{}", v.a));
    for l in &sent {
        assert_eq!(
            l,
            &format!(
                "ping\t{good_pid}\ttp:net:net_dev_start_xmit\tva\tkernel\t{ifindex}\t{}",
                netns.trim()
            ),
            "{sent:?}"
        );
    }

    // The drops: their reason, their stack, the process that sent them.
    let drops = tshark(
        &xf,
        "xcap.drop_reason == \"NETFILTER_DROP\"",
        &["xcap.pid", "icmp.type", "ip.len"],
    );
    assert_eq!(drops.len(), 3, "{drops:?}");
    for l in &drops {
        assert_eq!(l, &format!("{dropped_pid}\t8\t328"), "{drops:?}");
    }
    let stacks = tshark(
        &xf,
        "xcap.stack contains \"nf_hook_slow\"",
        &["frame.number"],
    );
    assert_eq!(stacks.len(), 3, "{stacks:?}");
    assert!(tshark(
        &xf,
        &format!("xcap.pid == {dropped_pid} and not xcap.drop_reason"),
        &["frame.number"]
    )
    .is_empty());

    // One packet, two hooks: each request arrives on vb after leaving va,
    // with the same id, later; the latency is the gap between the frames.
    let arrived = tshark(
        &xf,
        "xcap.latency > 0 and icmp.type == 8",
        &[
            "xcap.first_hook",
            "xcap.hook",
            "xcap.ifname",
            "xcap.first_frame",
            "frame.number",
            "xcap.latency",
            "frame.time_epoch",
            "xcap.packet_id",
        ],
    );
    assert_eq!(arrived.len(), 3, "{arrived:?}");
    for l in &arrived {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(
            &f[..3],
            [
                "tp:net:net_dev_start_xmit",
                "tp:net:netif_receive_skb",
                "vb"
            ],
            "{l}"
        );
        let first = tshark(
            &xf,
            &format!("frame.number == {}", f[3]),
            &["frame.time_epoch", "xcap.packet_id", "xcap.latency"],
        );
        let g: Vec<&str> = first[0].split('\t').collect();
        assert_eq!(g[1], f[7], "same packet id: {l} / {first:?}");
        assert_eq!(g[2], "0.000000000", "{first:?}");
        let ns = |t: &str| {
            let (s, frac) = t.split_once('.').unwrap();
            s.parse::<i128>().unwrap() * 1_000_000_000 + frac.parse::<i128>().unwrap()
        };
        assert_eq!(ns(f[6]) - ns(g[0]), ns(f[5]), "{l} / {first:?}");
    }

    // Files of earlier versions repeat the interface's fields and the id in
    // every comment: where the comment has them, they are what is shown.
    let old = dir.join("old.pcapng");
    first_packet_as_old_version(&xf, &old);
    let fields = [
        "xcap.source",
        "xcap.hook",
        "xcap.ifname",
        "xcap.ifindex",
        "xcap.netns",
        "xcap.packet_id",
    ];
    let first = tshark(&old, "frame.number == 1", &fields);
    assert_eq!(
        first,
        ["kernel\ttp:x:old\told0\t77\t88\t0x0000000000000abc"],
        "{first:?}"
    );
    let second = tshark(&old, "frame.number == 2", &fields);
    let s: Vec<&str> = second[0].split('\t').collect();
    assert!(
        s[1].starts_with("tp:net:") && s[2] != "old0" && s[5].starts_with("0xffff"),
        "{second:?}"
    );
}

/// Copy `new` to `old` with the first packet as earlier versions wrote it:
/// the interface's fields and the id in the comment (made-up values, to
/// tell them from the description's), no epb_packetid.
fn first_packet_as_old_version(new: &Path, old: &Path) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
    use std::borrow::Cow;
    use std::fs::File;

    let mut r = PcapNgReader::new(File::open(new).unwrap()).unwrap();
    let shb = r.section().clone();
    let mut w = PcapNgWriter::with_section_header(File::create(old).unwrap(), shb).unwrap();
    let mut first = true;
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            Block::EnhancedPacket(mut epb) if first => {
                first = false;
                epb.options.retain(|o| {
                    matches!(
                        o,
                        EnhancedPacketOption::Flags(_) | EnhancedPacketOption::Comment(_)
                    )
                });
                for o in epb.options.iter_mut() {
                    if let EnhancedPacketOption::Comment(c) = o {
                        let (line, rest) = c.split_once('\n').unwrap_or((c, ""));
                        let nl = if rest.is_empty() { "" } else { "\n" };
                        *c = Cow::Owned(format!(
                            "hook=tp:x:old if=old0 ifindex=77 netns=88 {line} id=0xabc{nl}{rest}"
                        ));
                    }
                }
                w.write_pcapng_block(epb).unwrap();
            }
            Block::InterfaceStatistics(_) => {}
            b => {
                w.write_block(&b).unwrap();
            }
        }
    }
}
