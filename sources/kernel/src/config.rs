//! Rust mirror of `struct xcap_src_config` (bpf/kernel.h), the kernel
//! source's part of an object's read-only configuration.

use xcap_bpf_common::runtime::SrcConfig;
use xcap_core::event::MAX_IFACES;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelConfig {
    pub dir: u32,
    pub nr_ifaces: u32,
    pub ifindex: [u32; MAX_IFACES],
    pub netns: [u32; MAX_IFACES],
    pub vmemmap_base: u64,
    pub page_offset_base: u64,
    pub pid: u32,
    pub track: u32,
    pub untrack: u32,
    pub ret: u32,
    /// skb_frag_t layout (KernelBtf::frag_layout).
    pub frag: u32,
    /// Packet ids follow reallocated buffers (pskb_expand_head is hooked).
    pub follow: u32,
    pub comm: [u8; 16],
}

// SAFETY: repr(C) plain old data without implicit padding (checked
// against C below).
unsafe impl SrcConfig for KernelConfig {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use std::path::Path;

    #[test]
    fn layout_matches_c_header() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        xcap_bpf_common::runtime::check_rodata_layout::<KernelConfig>(
            &here,
            "kernel.h",
            &[
                ("dir", offset_of!(KernelConfig, dir)),
                ("nr_ifaces", offset_of!(KernelConfig, nr_ifaces)),
                ("ifindex", offset_of!(KernelConfig, ifindex)),
                ("netns", offset_of!(KernelConfig, netns)),
                ("vmemmap_base", offset_of!(KernelConfig, vmemmap_base)),
                (
                    "page_offset_base",
                    offset_of!(KernelConfig, page_offset_base),
                ),
                ("pid", offset_of!(KernelConfig, pid)),
                ("track", offset_of!(KernelConfig, track)),
                ("untrack", offset_of!(KernelConfig, untrack)),
                ("ret", offset_of!(KernelConfig, ret)),
                ("frag", offset_of!(KernelConfig, frag)),
                ("follow", offset_of!(KernelConfig, follow)),
                ("comm", offset_of!(KernelConfig, comm)),
            ],
        )
        .unwrap();
    }
}
