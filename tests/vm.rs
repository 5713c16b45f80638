//! Function hooks in VMs running Debian 12's stock kernels, 6.1 (the
//! default) and 6.12 (kprobe-multi), where fentry and kprobes work (this
//! machine's kernel refuses fentry and has no kprobes). Needs root, qemu,
//! virtme-ng (vng), linux-image-amd64 and linux-image-6.12-amd64:
//! scripts/setup installs them. The VM shares the host's filesystem, so it
//! runs the xcap just built; tests/vm/function_hooks.sh does the capture
//! inside and this test checks the files it leaves.

mod common;

use std::collections::BTreeMap;

use common::*;

/// Whether the kernel was built with fprobe, which kprobe-multi needs.
fn has_fprobe(kernel: &std::path::Path) -> bool {
    let config = kernel.to_string_lossy().replace("vmlinuz-", "config-");
    std::fs::read_to_string(config)
        .unwrap_or_default()
        .lines()
        .any(|l| l == "CONFIG_FPROBE=y")
}

/// Packets of one pcapng interface (by name): (packet id, bytes) in order.
fn by_iface(path: &std::path::Path) -> BTreeMap<String, Vec<(u64, Vec<u8>)>> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut r = PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut m: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            Block::InterfaceDescription(i) => {
                let name = i
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                names.push(name);
            }
            Block::EnhancedPacket(p) => {
                let id = p
                    .options
                    .iter()
                    .find_map(|o| match o {
                        EnhancedPacketOption::Unknown(u) if u.code == 5 => {
                            Some(u64::from_le_bytes(u.value[..8].try_into().unwrap()))
                        }
                        _ => None,
                    })
                    .unwrap_or(0);
                m.entry(names[p.interface_id as usize].clone())
                    .or_default()
                    .push((id, p.data.into_owned()));
            }
            _ => {}
        }
    }
    m
}

/// Debian 12's default kernel (linux-image-amd64, 6.1): no kprobe-multi,
/// so wildcards attach one kprobe per function.
#[test]
fn function_hooks_debian_6_1_match_tcpdump() {
    function_hooks_match_tcpdump(&stock_kernel("6.1."), "6.1");
}

/// Debian 12's 6.12 kernel package (linux-image-6.12-amd64): kprobe-multi,
/// and 6.12's skb_frag_t (netmem).
#[test]
fn function_hooks_debian_6_12_match_tcpdump() {
    function_hooks_match_tcpdump(&stock_kernel("6.12"), "6.12");
}

fn function_hooks_match_tcpdump(kernel: &std::path::Path, tag: &str) {
    let dir = vm_script(kernel, &format!("vm{tag}"), "function_hooks.sh", 600);
    let exited_0 = |name: &str| assert_exited_0(&dir, name);
    exited_0("x.err");
    let td = read_packets(&dir.join("t.pcap"));
    assert!(td.len() >= 8, "tcpdump saw the connection: {}", td.len());
    let want: BTreeMap<Vec<u8>, usize> = td.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p.1.clone()).or_insert(0) += 1;
        m
    });
    let got = by_iface(&dir.join("x.pcapng"));
    // Each backend at each function (fentry shows the bare name), and a
    // kprobe at an skb named by position.
    let mut hooks: Vec<String> = Vec::new();
    for k in ["", "fexit:", "kprobe:", "kretprobe:"] {
        for f in ["ip_rcv", "ip_local_deliver", "tcp_v4_rcv"] {
            hooks.push(format!("{k}{f}"));
        }
    }
    hooks.push("kprobe:ip_protocol_deliver_rcu".into());
    for h in &hooks {
        let name = format!("kernel:{h}:vb");
        let pkts = got
            .get(&name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", got.keys()));
        let bag = pkts.iter().fold(BTreeMap::new(), |mut m, p| {
            *m.entry(p.1.clone()).or_insert(0) += 1;
            m
        });
        assert_eq!(bag, want, "{h}: same packets and bytes as tcpdump");
    }
    // The large write crossed as paged GSO packets: their frags were read
    // on this kernel's skb_frag_t layout (equal bytes above).
    assert!(
        got["kernel:ip_rcv:vb"].iter().any(|p| p.1.len() > 1514),
        "no GSO packet"
    );
    // One packet followed across the hooks (fentry and kprobe alike): the
    // k-th packet has the same id at each.
    let ids: Vec<Vec<u64>> = hooks
        .iter()
        .map(|h| got[&format!("kernel:{h}:vb")].iter().map(|p| p.0).collect())
        .collect();
    assert!(ids[0].iter().all(|i| *i != 0));
    for other in &ids[1..] {
        assert_eq!(&ids[0], other);
    }
    // Return hooks record the return value: 0 (NET_RX_SUCCESS) throughout.
    let json = sh(&format!(
        "{XCAP} -r {} --json",
        dir.join("x.pcapng").display()
    ));
    let mut rets = 0;
    for l in json.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let h = v["hook"].as_str().unwrap_or_default();
        if h.starts_with("fexit:") || h.starts_with("kretprobe:") {
            assert_eq!(v["retval"], 0, "{l}");
            rets += 1;
        } else {
            assert!(v["retval"].is_null(), "{l}");
        }
    }
    assert_eq!(rets, 6 * ids[0].len());
    // The iptables drop, by function hooks: each ping reaches
    // __ip_local_out, nf_hook_slow returns -EPERM, ip_output never sees it.
    exited_0("d.err");
    let json = sh(&format!(
        "{XCAP} -r {} --json",
        dir.join("d.pcapng").display()
    ));
    let count = |hook: &str| {
        json.lines()
            .filter(|l| l.contains(&format!("\"hook\":\"{hook}\"")))
            .count()
    };
    assert_eq!(count("fentry:__ip_local_out"), 3, "{json}");
    assert_eq!(count("fexit:nf_hook_slow"), 3, "{json}");
    assert_eq!(
        count("kprobe:ip_output") + count("fentry:ip_output"),
        0,
        "{json}"
    );
    for l in json.lines().filter(|l| l.contains("nf_hook_slow")) {
        assert!(l.contains("\"retval\":-1"), "-EPERM: {l}");
    }
    // A wildcard: every tcp_* function with an skb, by one multi-attached
    // program; tcp_v4_rcv among them sees what tcpdump saw.
    exited_0("w.err");
    let werr = std::fs::read_to_string(dir.join("w.err")).unwrap_or_default();
    if has_fprobe(kernel) {
        assert!(werr.contains("one kprobe-multi link"), "{werr}");
    } else {
        assert!(werr.contains("one kprobe each (no kprobe-multi"), "{werr}");
    }
    let w = by_iface(&dir.join("w.pcapng"));
    let at_rcv = w
        .get("kernel:kprobe:tcp_v4_rcv:vb")
        .unwrap_or_else(|| panic!("no tcp_v4_rcv in the wildcard: {:?}", w.keys()));
    let bag = at_rcv.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p.1.clone()).or_insert(0) += 1;
        m
    });
    assert_eq!(bag, want, "tcp_* at tcp_v4_rcv: same packets as tcpdump");
    assert!(
        w.len() >= 3,
        "several tcp_* functions saw packets: {:?}",
        w.keys()
    );
    // The IP header not built yet at __ip_queue_xmit, synthesized from the
    // socket (the TCP header and payload are the packet's own), matched by
    // the filter; against tcpdump -Q out on the sender.
    exited_0("s.err");
    let out = read_packets(&dir.join("to.pcap"));
    assert!(out.len() >= 8, "tcpdump saw the sender: {}", out.len());
    let spk = read_packets(&dir.join("s.pcapng"));
    let smeta: Vec<serde_json::Value> = sh(&format!(
        "{XCAP} -r {} --json",
        dir.join("s.pcapng").display()
    ))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(spk.len(), smeta.len());
    for m in &smeta {
        assert_eq!(m["hook"], "fentry:__ip_queue_xmit", "{m}");
        assert_eq!(m["extra"]["synth"], "ip", "{m}");
    }
    // tcpdump's frames are Ethernet: compare from the IP header on. The
    // last ACK after the peer's FIN leaves through ip_send_unicast_reply,
    // not __ip_queue_xmit: every synthesized packet is one tcpdump saw,
    // and every one that carried data is there.
    let real: Vec<&[u8]> = out.iter().map(|p| &p.1[14..]).collect();
    for (s, m) in spk.iter().zip(&smeta) {
        assert_eq!(s.0, 101, "raw IP: {m}");
        let hit = real.iter().any(|r| {
            s.1[9] == r[9]
                && s.1[2..4] == r[2..4]
                && s.1[12..20] == r[12..20]
                && s.1[20..] == r[20..]
        });
        assert!(hit, "synthesized packet not sent as such: {m}");
    }
    let payload = |r: &[u8]| r.len() - 20 - ((r[32] >> 4) as usize) * 4;
    let mut data: Vec<&&[u8]> = real.iter().filter(|r| payload(r) > 0).collect();
    // A segment TCP retransmitted (the emulated VM is slow) counts once:
    // one per sequence number and length.
    data.sort_by_key(|r| (r[24..28].to_vec(), payload(r)));
    data.dedup_by_key(|r| (r[24..28].to_vec(), payload(r)));
    assert_eq!(
        data.iter().map(|r| payload(r)).sum::<usize>(),
        1500 + 40960,
        "every byte written"
    );
    for r in data {
        assert!(
            spk.iter().any(|s| s.1[20..] == r[20..]),
            "data packet missing"
        );
    }
    // A reallocated buffer keeps its packet's id: at netif_receive_skb and
    // at ip_rcv after tc's pedit moved it (ids equal, echo requests and
    // replies alike), while ip_rcv alone shows the new buffer's address.
    exited_0("f.err");
    exited_0("g.err");
    let f = by_iface(&dir.join("f.pcapng"));
    let g = by_iface(&dir.join("g.pcapng"));
    let ids_at = |m: &BTreeMap<String, Vec<(u64, Vec<u8>)>>, h: &str| -> Vec<u64> {
        m.get(&format!("kernel:{h}:vb"))
            .unwrap_or_else(|| panic!("no {h}: {:?}", m.keys()))
            .iter()
            .map(|p| p.0)
            .collect()
    };
    let (tp, rcv, alone) = (
        ids_at(&f, "netif_receive_skb"),
        ids_at(&f, "ip_rcv"),
        ids_at(&g, "ip_rcv"),
    );
    assert_eq!(tp.len(), 3, "three echo requests reach vb");
    assert_eq!(tp, rcv, "one id across the reallocation");
    assert_eq!(alone.len(), 3);
    for (a, b) in tp.iter().zip(&alone) {
        assert_ne!(a, b, "pedit reallocated the buffer");
    }
    // --latency: every packet from ip_rcv to tcp_v4_rcv, with a summary.
    exited_0("lat.err");
    let lat = std::fs::read_to_string(dir.join("lat.txt")).unwrap_or_default();
    let n = ids[0].len();
    assert_eq!(lat.matches("  +").count(), n, "{lat}");
    assert!(
        lat.contains(&format!(
            "fentry:ip_rcv -> fentry:tcp_v4_rcv: {n} packets, min "
        )),
        "{lat}"
    );
}

/// One id per packet at every hook, run after run: ten fresh captures of
/// three echo requests at a tracepoint and fentry, fexit, kprobe and
/// kretprobe hooks, with --track (tests/vm/packet_ids.sh).
#[test]
fn packet_ids_hold_across_hooks_debian_6_1() {
    packet_ids_hold(&stock_kernel("6.1."), "6.1");
}

#[test]
fn packet_ids_hold_across_hooks_debian_6_12() {
    packet_ids_hold(&stock_kernel("6.12"), "6.12");
}

fn packet_ids_hold(kernel: &std::path::Path, tag: &str) {
    let dir = vm_script(kernel, &format!("ids{tag}"), "packet_ids.sh", 900);
    let hooks = [
        "kernel:netif_receive_skb:vb",
        "kernel:ip_rcv:vb",
        "kernel:fexit:ip_local_deliver:vb",
        "kernel:kprobe:ip_protocol_deliver_rcu:vb",
        "kernel:kretprobe:icmp_rcv:vb",
    ];
    let mut bad = Vec::new();
    for n in 1..=10 {
        assert_exited_0(&dir, &format!("run-{n}.err"));
        let got = by_iface(&dir.join(format!("run-{n}.pcapng")));
        let ids: Vec<Vec<u64>> = hooks
            .iter()
            .map(|h| {
                got.get(*h)
                    .map_or(Vec::new(), |p| p.iter().map(|x| x.0).collect())
            })
            .collect();
        let ok =
            ids[0].len() == 3 && ids[0].iter().all(|i| *i != 0) && ids.iter().all(|v| *v == ids[0]);
        if !ok {
            let seqs: Vec<String> = hooks
                .iter()
                .zip(&ids)
                .map(|(h, v)| format!("  {h}: {v:x?}"))
                .collect();
            bad.push(format!("run {n}:\n{}", seqs.join("\n")));
        }
    }
    assert!(bad.is_empty(), "ids differ:\n{}", bad.join("\n"));
}
