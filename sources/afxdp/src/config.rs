//! Mirror of `struct xcap_src_config` in bpf/afxdp.h.

use xcap_bpf_common::runtime::SrcConfig;
use xcap_core::event::MAX_IFACES;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AfxdpConfig {
    pub nr_ifaces: u32,
    pub ifindex: [u32; MAX_IFACES],
    pub netns: [u32; MAX_IFACES],
}

// SAFETY: repr(C), u32 fields only, mirrored by the C struct (tested below).
unsafe impl SrcConfig for AfxdpConfig {}

/// Mirror of `struct xcap_xsk_drop_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropKey {
    pub sock_ino: u32,
    pub err: u32,
    pub ifindex: u32,
    pub index: u32,
}

impl DropKey {
    pub fn from_bytes(b: &[u8]) -> Option<DropKey> {
        let w = |i: usize| {
            Some(u32::from_ne_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        Some(DropKey {
            sock_ino: w(0)?,
            err: w(1)?,
            ifindex: w(2)?,
            index: w(3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::Path;

    #[test]
    fn layout_matches_c_header() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        xcap_bpf_common::runtime::check_rodata_layout::<AfxdpConfig>(
            &here,
            "afxdp.h",
            &[
                ("nr_ifaces", offset_of!(AfxdpConfig, nr_ifaces)),
                ("ifindex", offset_of!(AfxdpConfig, ifindex)),
                ("netns", offset_of!(AfxdpConfig, netns)),
            ],
        )
        .unwrap();
        let inc = [Path::new(xcap_core::BPF_INCLUDE_DIR), &here];
        let (size, offs) = xcap_core::layout::c_layout(
            &inc,
            &["xcap_event.h", "afxdp.h"],
            "xcap_xsk_drop_key",
            &["sock_ino", "err", "ifindex", "index"],
        )
        .unwrap();
        assert_eq!(size, size_of::<DropKey>());
        assert_eq!(offs, vec![0, 4, 8, 12]);
    }
}
