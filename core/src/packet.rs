//! The packet model shared by every source and sink.

use std::sync::Arc;

/// Link type of the captured bytes. xcap never invents a link-layer header:
/// a hook that has no MAC header yields raw IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    /// Raw IPv4 or IPv6 (LINKTYPE_RAW).
    RawIp,
    /// Any other pcap link type, as read from a file.
    Other(u16),
}

impl LinkType {
    /// The pcap LINKTYPE_ value.
    pub fn pcap(self) -> u16 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::Other(v) => v,
        }
    }
    pub fn from_pcap(v: u16) -> Self {
        match v {
            1 => LinkType::Ethernet,
            101 => LinkType::RawIp,
            v => LinkType::Other(v),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    Unknown,
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Unknown => "?",
            Direction::In => "In",
            Direction::Out => "Out",
        }
    }
}

/// Where and how a packet was seen. Strings that repeat for every packet of
/// a hook or interface are shared (`Arc<str>`) so the hot path does not
/// allocate them per packet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    /// Source name, e.g. `kernel`.
    pub source: Arc<str>,
    /// Hook, e.g. `tp:net:netif_receive_skb`.
    pub hook: Arc<str>,
    pub dir: Direction,
    pub ifindex: u32,
    pub ifname: Arc<str>,
    /// Inode of the network namespace, 0 when unknown.
    pub netns: u32,
    pub queue: Option<u32>,
    pub cpu: Option<u32>,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<Arc<str>>,
    /// Identifies one packet across hooks (skb->head for the kernel source,
    /// shared by clones; the mbuf address for DPDK).
    pub packet_id: Option<u64>,
    /// Drop reason by name, e.g. `NETFILTER_DROP`.
    pub drop_reason: Option<String>,
    /// Symbolized drop location, e.g. `nf_hook_slow+0x8c`.
    pub drop_location: Option<String>,
    pub retval: Option<i64>,
    /// Symbolized kernel stack, innermost first.
    pub stack: Vec<String>,
    /// Source-specific key/values.
    pub extra: Vec<(String, String)>,
}

/// One captured packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Captured bytes (at most the snap length).
    pub data: Vec<u8>,
    /// Length of the packet on the wire / in the kernel from its first byte.
    pub orig_len: u32,
    pub link: LinkType,
    pub meta: Meta,
}

/// A packet as the sinks see it: the same fields as [`Packet`], borrowed.
/// A single source hands its records to the sinks this way straight from
/// the ring buffer's memory, so that the bytes are copied once, into the
/// sink's output.
#[derive(Clone, Copy, Debug)]
pub struct PacketRef<'a> {
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
    pub link: LinkType,
    pub meta: &'a Meta,
}

impl Packet {
    pub fn as_ref(&self) -> PacketRef<'_> {
        PacketRef {
            ts_ns: self.ts_ns,
            data: &self.data,
            orig_len: self.orig_len,
            link: self.link,
            meta: &self.meta,
        }
    }
}

impl PacketRef<'_> {
    pub fn to_packet(&self) -> Packet {
        Packet {
            ts_ns: self.ts_ns,
            data: self.data.to_vec(),
            orig_len: self.orig_len,
            link: self.link,
            meta: self.meta.clone(),
        }
    }
}
