//! Rust mirror of `bpf/xcap_event.h`, the record BPF sources write.
//! `tests` below compiles the C header and checks every offset.

use crate::{Direction, LinkType};

pub const COMM_LEN: usize = 16;
pub const IFNAME_LEN: usize = 16;
pub const MAX_STACK: usize = 32;
pub const MAX_SNAPLEN: u32 = 262_144;
pub const MAX_IFACES: usize = 16;
pub const NO_QUEUE: u32 = u32::MAX;

pub const LINK_ETHERNET: u8 = 0;
pub const LINK_RAW: u8 = 1;
pub const DIR_IN: u8 = 1;
pub const DIR_OUT: u8 = 2;
pub const F_DROP: u16 = 1;
pub const F_STACK: u16 = 2;
pub const F_RET: u16 = 4;
pub const F_SYNTH_L3: u16 = 8;
pub const F_XSK_ZC: u16 = 16;
pub const F_XSK_POLL: u16 = 32;
pub const F_XSK_LATE: u16 = 64;
pub const F_OWNER: u16 = 128;

pub const CNT_SEEN: usize = 0;
pub const CNT_LOST: usize = 1;
pub const CNT_TRUNC: usize = 2;
pub const CNT_MAX: usize = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XcapEvent {
    pub ts_ns: u64,
    pub skb: u64,
    pub location: u64,
    pub hook: u32,
    pub cap_len: u32,
    pub orig_len: u32,
    pub ifindex: u32,
    pub netns: u32,
    pub pid: u32,
    pub tid: u32,
    pub cpu: u32,
    pub drop_reason: u32,
    pub queue: u32,
    pub nr_stack: u16,
    pub flags: u16,
    pub link: u8,
    pub dir: u8,
    pub pad: [u8; 2],
    pub comm: [u8; COMM_LEN],
    pub ifname: [u8; IFNAME_LEN],
}

pub const EVENT_SIZE: usize = std::mem::size_of::<XcapEvent>();

/// A parsed record: header, stack addresses and packet bytes.
pub struct Record<'a> {
    pub hdr: XcapEvent,
    pub stack: &'a [u8],
    pub data: &'a [u8],
}

impl XcapEvent {
    pub fn link_type(&self) -> LinkType {
        if self.link == LINK_RAW {
            LinkType::RawIp
        } else {
            LinkType::Ethernet
        }
    }
    pub fn queue(&self) -> Option<u32> {
        (self.queue != NO_QUEUE).then_some(self.queue)
    }
    pub fn direction(&self) -> Direction {
        match self.dir {
            DIR_IN => Direction::In,
            DIR_OUT => Direction::Out,
            _ => Direction::Unknown,
        }
    }
}

/// Parse one ring-buffer record; None if it is shorter than it claims.
pub fn parse(buf: &[u8]) -> Option<Record<'_>> {
    if buf.len() < EVENT_SIZE {
        return None;
    }
    // SAFETY: XcapEvent is plain old data of EVENT_SIZE bytes; read_unaligned
    // copes with any alignment of the ring buffer slice.
    let hdr: XcapEvent = unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const XcapEvent) };
    let area = if hdr.flags & F_STACK != 0 {
        MAX_STACK * 8
    } else {
        0
    };
    let data_off = EVENT_SIZE + area;
    let valid = (hdr.nr_stack as usize).min(MAX_STACK) * 8;
    let end = data_off.checked_add(hdr.cap_len as usize)?;
    if buf.len() < end {
        return None;
    }
    Some(Record {
        hdr,
        stack: &buf[EVENT_SIZE..EVENT_SIZE + valid],
        data: &buf[data_off..end],
    })
}

/// A NUL-terminated C string field as text.
pub fn cstr(b: &[u8]) -> &str {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// Compile the C header with the system compiler and compare the layout
    /// field by field with the Rust mirror.
    #[test]
    fn layout_matches_c_header() {
        let (size, offs) = crate::layout::c_layout(
            &[std::path::Path::new(crate::BPF_INCLUDE_DIR)],
            &["xcap_event.h"],
            "xcap_event",
            &[
                "ts_ns",
                "skb",
                "location",
                "hook",
                "cap_len",
                "orig_len",
                "ifindex",
                "netns",
                "pid",
                "tid",
                "cpu",
                "drop_reason",
                "queue",
                "nr_stack",
                "flags",
                "link",
                "dir",
                "comm",
                "ifname",
            ],
        )
        .unwrap();
        let rust = [
            offset_of!(XcapEvent, ts_ns),
            offset_of!(XcapEvent, skb),
            offset_of!(XcapEvent, location),
            offset_of!(XcapEvent, hook),
            offset_of!(XcapEvent, cap_len),
            offset_of!(XcapEvent, orig_len),
            offset_of!(XcapEvent, ifindex),
            offset_of!(XcapEvent, netns),
            offset_of!(XcapEvent, pid),
            offset_of!(XcapEvent, tid),
            offset_of!(XcapEvent, cpu),
            offset_of!(XcapEvent, drop_reason),
            offset_of!(XcapEvent, queue),
            offset_of!(XcapEvent, nr_stack),
            offset_of!(XcapEvent, flags),
            offset_of!(XcapEvent, link),
            offset_of!(XcapEvent, dir),
            offset_of!(XcapEvent, comm),
            offset_of!(XcapEvent, ifname),
        ];
        assert_eq!(size, EVENT_SIZE);
        assert_eq!(offs, rust);
    }

    #[test]
    fn constants_match_c_headers() {
        use crate::filter::ebpf;
        let v = crate::layout::c_consts(
            &[std::path::Path::new(crate::BPF_INCLUDE_DIR)],
            &["xcap_event.h", "xcap_filter.h"],
            &[
                "XCAP_COMM_LEN",
                "XCAP_IFNAME_LEN",
                "XCAP_MAX_STACK",
                "XCAP_MAX_SNAPLEN",
                "XCAP_MAX_IFACES",
                "XCAP_NO_QUEUE",
                "XCAP_LINK_RAW",
                "XCAP_DIR_IN",
                "XCAP_DIR_OUT",
                "XCAP_F_DROP",
                "XCAP_F_STACK",
                "XCAP_F_RET",
                "XCAP_F_SYNTH_L3",
                "XCAP_CNT_SEEN",
                "XCAP_CNT_LOST",
                "XCAP_CNT_TRUNC",
                "XCAP_CNT_MAX",
                "XCAP_FILTER_INSNS",
                "XCAP_FILTER_MARKER",
                "XCAP_FILTER_MISS",
                "XCAP_FILTER_MATCH",
                "XCAP_FILTER_NEED_MORE",
            ],
        )
        .unwrap();
        let rust: Vec<i64> = vec![
            COMM_LEN as i64,
            IFNAME_LEN as i64,
            MAX_STACK as i64,
            MAX_SNAPLEN as i64,
            MAX_IFACES as i64,
            NO_QUEUE as i64,
            LINK_RAW as i64,
            DIR_IN as i64,
            DIR_OUT as i64,
            F_DROP as i64,
            F_STACK as i64,
            F_RET as i64,
            F_SYNTH_L3 as i64,
            CNT_SEEN as i64,
            CNT_LOST as i64,
            CNT_TRUNC as i64,
            CNT_MAX as i64,
            ebpf::BLOCK_INSNS as i64,
            ebpf::MARKER as i64,
            ebpf::MISS as i64,
            ebpf::MATCH as i64,
            ebpf::NEED_MORE as i64,
        ];
        assert_eq!(v, rust);
    }

    #[test]
    fn parse_rejects_short_records() {
        let mut buf = vec![0u8; EVENT_SIZE + 4];
        let ev = XcapEvent {
            cap_len: 8,
            ..Default::default()
        };
        // SAFETY: writing POD bytes into a buffer of sufficient size.
        unsafe { std::ptr::write_unaligned(buf.as_mut_ptr() as *mut XcapEvent, ev) };
        assert!(parse(&buf).is_none());
        buf.extend_from_slice(&[1, 2, 3, 4]);
        let r = parse(&buf).unwrap();
        assert_eq!(r.data, &[0, 0, 0, 0, 1, 2, 3, 4]);
    }
}
