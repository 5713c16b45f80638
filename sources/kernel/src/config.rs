//! Rust mirror of `struct xcap_config` (bpf/kernel.h), the read-only
//! configuration of one hook, written into the object's .rodata.

use xcap_core::event::MAX_IFACES;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XcapConfig {
    pub hook: u32,
    pub snaplen: u32,
    pub dir: u32,
    pub stack: u32,
    pub nr_ifaces: u32,
    pub filter: u32,
    pub ifindex: [u32; MAX_IFACES],
    pub netns: [u32; MAX_IFACES],
    pub vmemmap_base: u64,
    pub page_offset_base: u64,
    pub pid: u32,
    pub track: u32,
    pub untrack: u32,
    pub ret: u32,
    pub nr_hooks: u32,
    /// skb_frag_t layout (KernelBtf::frag_layout).
    pub frag: u32,
    /// Packet ids follow reallocated buffers (pskb_expand_head is hooked).
    pub follow: u32,
    pub pad: u32,
    pub comm: [u8; 16],
}

impl XcapConfig {
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) plain old data; padding bytes are zero because the
        // struct is built from Default (no implicit padding exists anyway:
        // the layout test checks size and offsets against C).
        unsafe {
            std::slice::from_raw_parts(
                self as *const Self as *const u8,
                std::mem::size_of::<Self>(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use std::path::Path;

    #[test]
    fn layout_matches_c_header() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        let (size, offs) = xcap_core::layout::c_layout(
            &[Path::new(xcap_core::BPF_INCLUDE_DIR), &here],
            &["xcap_event.h", "kernel.h"],
            "xcap_config",
            &[
                "hook",
                "snaplen",
                "dir",
                "stack",
                "nr_ifaces",
                "filter",
                "ifindex",
                "netns",
                "vmemmap_base",
                "page_offset_base",
                "pid",
                "track",
                "untrack",
                "ret",
                "nr_hooks",
                "frag",
                "follow",
                "comm",
            ],
        )
        .unwrap();
        assert_eq!(size, std::mem::size_of::<XcapConfig>());
        assert_eq!(
            offs,
            [
                offset_of!(XcapConfig, hook),
                offset_of!(XcapConfig, snaplen),
                offset_of!(XcapConfig, dir),
                offset_of!(XcapConfig, stack),
                offset_of!(XcapConfig, nr_ifaces),
                offset_of!(XcapConfig, filter),
                offset_of!(XcapConfig, ifindex),
                offset_of!(XcapConfig, netns),
                offset_of!(XcapConfig, vmemmap_base),
                offset_of!(XcapConfig, page_offset_base),
                offset_of!(XcapConfig, pid),
                offset_of!(XcapConfig, track),
                offset_of!(XcapConfig, untrack),
                offset_of!(XcapConfig, ret),
                offset_of!(XcapConfig, nr_hooks),
                offset_of!(XcapConfig, frag),
                offset_of!(XcapConfig, follow),
                offset_of!(XcapConfig, comm),
            ]
        );
    }
}
