//! One-line protocol summaries in tcpdump's style (`tcpdump -nn -S -t`):
//! `IP 10.0.0.1.5000 > 10.0.0.2.80: Flags [S], seq 1, win 64240, length 0`.
//!
//! Lengths come from the headers (IP total length, UDP length), not from
//! the captured bytes, so a packet cut by the snap length reads as it was.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    ArpOperation, ArpPacketSlice, EtherType, Ethernet2Slice, IpNumber, LaxIpSlice, SingleVlanSlice,
    TcpSlice, UdpSlice,
};
use xcap_core::{LinkType, PacketRef};

/// The summary of a packet, e.g. `ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28`.
pub fn summary(p: &PacketRef) -> String {
    let mut s = String::with_capacity(96);
    write_summary(&mut s, p.data, p.orig_len, p.link);
    s
}

/// Append the summary of the packet bytes `data` (of original length
/// `orig_len`) to `out`.
pub fn write_summary(out: &mut String, data: &[u8], orig_len: u32, link: LinkType) {
    write_summary_as(out, data, orig_len, link, false)
}

/// As `write_summary`; `quick` is tcpdump's -q: a TCP segment reads
/// `tcp LENGTH`, without flags, sequence numbers and window.
pub fn write_summary_as(out: &mut String, data: &[u8], orig_len: u32, link: LinkType, quick: bool) {
    let orig_len = (orig_len as usize).max(data.len());
    match link {
        LinkType::Ethernet => ethernet(out, data, orig_len, quick),
        LinkType::RawIp => ip(out, data, orig_len, quick),
        LinkType::Other(v) => {
            let _ = write!(out, "link type {v}, length {orig_len}");
        }
    }
}

fn ethernet(out: &mut String, data: &[u8], orig_len: usize, quick: bool) {
    let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(data) else {
        let _ = write!(out, "[|ether], length {orig_len}");
        return;
    };
    let mut ether_type = eth.ether_type();
    let mut payload = eth.payload_slice();
    // Up to two VLAN tags (802.1Q, QinQ), shown before what they carry.
    for _ in 0..2 {
        if !matches!(
            ether_type,
            EtherType::VLAN_TAGGED_FRAME
                | EtherType::PROVIDER_BRIDGING
                | EtherType::VLAN_DOUBLE_TAGGED_FRAME
        ) {
            break;
        }
        let Ok(vlan) = SingleVlanSlice::from_slice(payload) else {
            out.push_str("[|vlan]");
            return;
        };
        let _ = write!(out, "vlan {}, ", vlan.vlan_identifier().value());
        ether_type = vlan.ether_type();
        payload = vlan.payload_slice();
    }
    // What follows the link-layer header on the wire.
    let rest = orig_len - (data.len() - payload.len());
    match ether_type {
        EtherType::IPV4 | EtherType::IPV6 => ip(out, payload, rest, quick),
        EtherType::ARP => arp(out, payload, rest),
        EtherType(t) if t < 0x0600 => {
            let _ = write!(out, "802.3, length {orig_len}");
        }
        EtherType(t) => {
            let _ = write!(out, "ethertype 0x{t:04x}, length {orig_len}");
        }
    }
}

fn arp(out: &mut String, data: &[u8], len: usize) {
    let Ok(a) = ArpPacketSlice::from_slice(data) else {
        let _ = write!(out, "ARP, [|arp], length {len}");
        return;
    };
    let ipv4 = |b: &[u8]| -> Option<Ipv4Addr> { <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from) };
    let (Some(spa), Some(tpa)) = (
        ipv4(a.sender_protocol_addr()),
        ipv4(a.target_protocol_addr()),
    ) else {
        let _ = write!(out, "ARP, operation {}, length {len}", a.operation().0);
        return;
    };
    match a.operation() {
        ArpOperation::REQUEST => {
            let _ = write!(out, "ARP, Request who-has {tpa}");
            let tha = a.target_hw_addr();
            if tha.iter().any(|&b| b != 0) {
                let _ = write!(out, " ({})", mac(tha));
            }
            let _ = write!(out, " tell {spa}, length {len}");
        }
        ArpOperation::REPLY => {
            let _ = write!(
                out,
                "ARP, Reply {spa} is-at {}, length {len}",
                mac(a.sender_hw_addr())
            );
        }
        op => {
            let _ = write!(out, "ARP, operation {}, length {len}", op.0);
        }
    }
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`, formatted where it is written
/// (no String per packet).
fn mac(b: &[u8]) -> Mac<'_> {
    Mac(b)
}

struct Mac<'a>(&'a [u8]);

impl std::fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

/// `len`: bytes from the start of the IP header to the end of the packet as
/// it was (not as captured), used when the header gives no length.
fn ip(out: &mut String, data: &[u8], len: usize, quick: bool) {
    let (ip, _) = match LaxIpSlice::from_slice(data) {
        Ok(x) => x,
        Err(_) => {
            let v = data.first().map(|b| b >> 4);
            let name = if v == Some(6) { "IP6" } else { "IP" };
            let _ = write!(out, "{name} [|ip], length {len}");
            return;
        }
    };
    let (name, src, dst, declared, first_fragment) = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let total = h.total_len() as usize;
            // 0 (TSO, BIG TCP) or nonsense: trust the packet length instead.
            let declared = if total >= h.slice().len() { total } else { len };
            (
                "IP",
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                declared,
                h.fragments_offset().value() == 0,
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            // 0 is a jumbogram: the length is in a hop-by-hop option.
            let declared = match h.payload_length() {
                0 => len,
                n => 40 + n as usize,
            };
            (
                "IP6",
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                declared,
                // The extension headers do not tell which fragment this is
                // without more parsing; show every fragment as such.
                !v6.is_payload_fragmented(),
            )
        }
    };
    let payload = ip.payload();
    let l4_off = payload.payload.as_ptr() as usize - data.as_ptr() as usize;
    let l4_len = declared.saturating_sub(l4_off);
    let proto = payload.ip_number;
    if !first_fragment {
        let _ = write!(
            out,
            "{name} {src} > {dst}: ip-proto-{} {l4_len} (fragment)",
            proto.0
        );
        return;
    }
    let l4 = payload.payload;
    match proto {
        IpNumber::TCP => tcp(out, name, src, dst, l4, l4_len, quick),
        IpNumber::UDP => match UdpSlice::from_slice_lax(l4) {
            Ok(u) => {
                let ulen = match u.length() as usize {
                    n if n >= 8 => n - 8,
                    _ => l4_len.saturating_sub(8),
                };
                let _ = write!(
                    out,
                    "{name} {}.{} > {}.{}: UDP, length {ulen}",
                    src,
                    u.source_port(),
                    dst,
                    u.destination_port()
                );
            }
            Err(_) => {
                let _ = write!(out, "{name} {src} > {dst}: [|udp]");
            }
        },
        IpNumber::ICMP => {
            let _ = write!(out, "{name} {src} > {dst}: ");
            icmp4(out, l4, l4_len);
        }
        IpNumber::IPV6_ICMP => {
            let _ = write!(out, "{name} {src} > {dst}: ");
            icmp6(out, l4, l4_len);
        }
        IpNumber(n) => {
            let _ = write!(out, "{name} {src} > {dst}: ip-proto-{n} {l4_len}");
        }
    }
}

fn tcp(
    out: &mut String,
    name: &str,
    src: IpAddr,
    dst: IpAddr,
    l4: &[u8],
    l4_len: usize,
    quick: bool,
) {
    let Ok(t) = TcpSlice::from_slice(l4) else {
        let _ = write!(out, "{name} {src} > {dst}: [|tcp]");
        return;
    };
    if quick {
        let hdr = t.data_offset() as usize * 4;
        let _ = write!(
            out,
            "{name} {src}.{} > {dst}.{}: tcp {}",
            t.source_port(),
            t.destination_port(),
            l4_len.saturating_sub(hdr)
        );
        return;
    }
    // tcpdump's letters, in tcpdump's order.
    // On the stack: at most eight letters, or "none".
    let mut letters = [0u8; 8];
    let mut n = 0;
    for (on, c) in [
        (t.fin(), 'F'),
        (t.syn(), 'S'),
        (t.rst(), 'R'),
        (t.psh(), 'P'),
        (t.ack(), '.'),
        (t.urg(), 'U'),
        (t.ece(), 'E'),
        (t.cwr(), 'W'),
    ] {
        if on {
            letters[n] = c as u8;
            n += 1;
        }
    }
    let flags = match n {
        0 => "none",
        n => std::str::from_utf8(&letters[..n]).unwrap_or("?"),
    };
    let hdr = t.data_offset() as usize * 4;
    let len = l4_len.saturating_sub(hdr);
    let seq = t.sequence_number();
    let _ = write!(
        out,
        "{name} {src}.{} > {dst}.{}: Flags [{flags}], seq {seq}",
        t.source_port(),
        t.destination_port()
    );
    if len > 0 {
        let _ = write!(out, ":{}", seq.wrapping_add(len as u32));
    }
    if t.ack() {
        let _ = write!(out, ", ack {}", t.acknowledgment_number());
    }
    let _ = write!(out, ", win {}, length {len}", t.window_size());
}

/// Type, code and the 4 bytes after the checksum (id/seq, MTU, pointer).
fn icmp_fields(l4: &[u8]) -> Option<(u8, u8, [u8; 4])> {
    let rest: [u8; 4] = l4.get(4..8)?.try_into().ok()?;
    Some((*l4.first()?, *l4.get(1)?, rest))
}

fn icmp4(out: &mut String, l4: &[u8], len: usize) {
    let Some((ty, code, rest)) = icmp_fields(l4) else {
        out.push_str("ICMP [|icmp]");
        return;
    };
    let id = u16::from_be_bytes([rest[0], rest[1]]);
    let seq = u16::from_be_bytes([rest[2], rest[3]]);
    let _ = match (ty, code) {
        (0, _) => write!(out, "ICMP echo reply, id {id}, seq {seq}, length {len}"),
        (8, _) => write!(out, "ICMP echo request, id {id}, seq {seq}, length {len}"),
        (3, _) => {
            // The offending datagram's destination, as tcpdump shows it.
            let inner = l4
                .get(8 + 16..8 + 20)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(Ipv4Addr::from);
            let what = match code {
                0 => "net unreachable",
                1 => "host unreachable",
                2 => "protocol unreachable",
                3 => "port unreachable",
                4 => "unreachable - need to frag",
                13 => "unreachable - admin prohibited filter",
                _ => "unreachable",
            };
            match inner {
                Some(a) => write!(out, "ICMP {a} {what}, length {len}"),
                None => write!(out, "ICMP {what}, length {len}"),
            }
        }
        (11, 0) => write!(out, "ICMP time exceeded in-transit, length {len}"),
        (11, _) => write!(out, "ICMP ip reassembly time exceeded, length {len}"),
        (5, _) => write!(out, "ICMP redirect, length {len}"),
        _ => write!(out, "ICMP type {ty}, code {code}, length {len}"),
    };
}

fn icmp6(out: &mut String, l4: &[u8], len: usize) {
    let Some((ty, code, rest)) = icmp_fields(l4) else {
        out.push_str("ICMP6 [|icmp6]");
        return;
    };
    let id = u16::from_be_bytes([rest[0], rest[1]]);
    let seq = u16::from_be_bytes([rest[2], rest[3]]);
    let target = l4
        .get(8..24)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(std::net::Ipv6Addr::from);
    let _ = match (ty, target) {
        (128, _) => write!(out, "ICMP6, echo request, id {id}, seq {seq}, length {len}"),
        (129, _) => write!(out, "ICMP6, echo reply, id {id}, seq {seq}, length {len}"),
        (1, _) => write!(
            out,
            "ICMP6, destination unreachable, code {code}, length {len}"
        ),
        (2, _) => write!(
            out,
            "ICMP6, packet too big, mtu {}, length {len}",
            u32::from_be_bytes(rest)
        ),
        (3, _) => write!(out, "ICMP6, time exceeded in-transit, length {len}"),
        (133, _) => write!(out, "ICMP6, router solicitation, length {len}"),
        (134, _) => write!(out, "ICMP6, router advertisement, length {len}"),
        (135, Some(t)) => write!(
            out,
            "ICMP6, neighbor solicitation, who has {t}, length {len}"
        ),
        (136, Some(t)) => write!(
            out,
            "ICMP6, neighbor advertisement, tgt is {t}, length {len}"
        ),
        (143, _) => write!(out, "ICMP6, multicast listener report v2, length {len}"),
        _ => write!(out, "ICMP6, type {ty}, code {code}, length {len}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    }

    fn s(data: &[u8], link: LinkType) -> String {
        let mut out = String::new();
        write_summary(&mut out, data, data.len() as u32, link);
        out
    }

    #[test]
    fn tcp_udp_icmp() {
        let mut b = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(5000, 80, 1, 65535)
            .syn()
            .write(&mut b, &[])
            .unwrap();
        assert_eq!(
            s(&b, LinkType::Ethernet),
            "IP 10.0.0.1.5000 > 10.0.0.2.80: Flags [S], seq 1, win 65535, length 0"
        );

        let mut b = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(40000, 40001)
            .write(&mut b, &[0; 64])
            .unwrap();
        assert_eq!(
            s(&b, LinkType::Ethernet),
            "IP 10.0.0.1.40000 > 10.0.0.2.40001: UDP, length 64"
        );
        // Cut by the snap length: lengths still come from the headers.
        let mut out = String::new();
        write_summary(&mut out, &b[..50], b.len() as u32, LinkType::Ethernet);
        assert_eq!(out, "IP 10.0.0.1.40000 > 10.0.0.2.40001: UDP, length 64");

        let mut b = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut b, &[0; 56])
            .unwrap();
        assert_eq!(
            s(&b, LinkType::RawIp),
            "IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 2, length 64"
        );
    }

    #[test]
    fn odd_frames() {
        assert_eq!(s(&[1, 2, 3], LinkType::Ethernet), "[|ether], length 3");
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(&[0; 46]);
        assert_eq!(s(&f, LinkType::Ethernet), "ethertype 0x1234, length 60");
        assert_eq!(s(&[0x45, 0], LinkType::RawIp), "IP [|ip], length 2");
        assert_eq!(s(&[0; 4], LinkType::Other(113)), "link type 113, length 4");
    }
}
