//! Rust mirror of `struct xcap_src_config` (bpf/dpdk.h), the DPDK source's
//! part of the object's read-only configuration, and the attach cookie
//! that tells the program where a probed function keeps its mbufs.

use xcap_bpf_common::runtime::SrcConfig;

use crate::layout::Mbuf;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DpdkConfig {
    pub off_buf_addr: u32,
    pub off_data_off: u32,
    pub off_nb_segs: u32,
    pub off_port: u32,
    pub off_pkt_len: u32,
    pub off_data_len: u32,
    pub off_next: u32,
}

// SAFETY: repr(C), u32 fields only (checked against C below).
unsafe impl SrcConfig for DpdkConfig {}

impl DpdkConfig {
    pub fn new(m: &Mbuf) -> Self {
        DpdkConfig {
            off_buf_addr: m.buf_addr,
            off_data_off: m.data_off,
            off_nb_segs: m.nb_segs,
            off_port: m.port,
            off_pkt_len: m.pkt_len,
            off_data_len: m.data_len,
            off_next: m.next,
        }
    }
}

pub const ARG_RET: u8 = 15;
pub const ARG_NONE: u8 = 15;
pub const MAX_HOOKS: usize = 256;

/// Where a probed function's arguments are (0-based argument numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args {
    /// The mbuf array, or the one mbuf when `single`.
    pub arr: u8,
    /// The count, or ARG_RET for the return value.
    pub cnt: u8,
    /// The queue pointer, or ARG_NONE.
    pub queue: u8,
    pub single: bool,
}

impl Args {
    /// `eth_rx_burst_t`/`eth_tx_burst_t`: (queue, mbufs, nb_pkts).
    pub const RX_BURST: Args = Args {
        arr: 1,
        cnt: ARG_RET,
        queue: 0,
        single: false,
    };
    pub const TX_BURST: Args = Args {
        arr: 1,
        cnt: 2,
        queue: 0,
        single: false,
    };
    /// The count comes back from the call: probe the return too.
    pub fn needs_return(&self) -> bool {
        !self.single && self.cnt == ARG_RET
    }
}

pub fn cookie(hook: usize, a: Args, dir: u8) -> u64 {
    (hook as u64 & 0xffff)
        | (a.arr as u64 & 0xf) << 16
        | (a.cnt as u64 & 0xf) << 20
        | (a.queue as u64 & 0xf) << 24
        | (a.single as u64) << 28
        | (dir as u64) << 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use std::path::Path;

    #[test]
    fn layout_and_constants_match_c_header() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        let inc = [Path::new(xcap_core::BPF_INCLUDE_DIR), &here];
        xcap_bpf_common::runtime::check_rodata_layout::<DpdkConfig>(
            &here,
            "dpdk.h",
            &[
                ("off_buf_addr", offset_of!(DpdkConfig, off_buf_addr)),
                ("off_data_off", offset_of!(DpdkConfig, off_data_off)),
                ("off_nb_segs", offset_of!(DpdkConfig, off_nb_segs)),
                ("off_port", offset_of!(DpdkConfig, off_port)),
                ("off_pkt_len", offset_of!(DpdkConfig, off_pkt_len)),
                ("off_data_len", offset_of!(DpdkConfig, off_data_len)),
                ("off_next", offset_of!(DpdkConfig, off_next)),
            ],
        )
        .unwrap();
        let v = xcap_core::layout::c_consts(
            &inc,
            &["xcap_event.h", "dpdk.h"],
            &[
                "XCAP_ARG_RET",
                "XCAP_ARG_NONE",
                "XCAP_CK_SINGLE",
                "XCAP_DPDK_MAX_HOOKS",
            ],
        )
        .unwrap();
        assert_eq!(
            v,
            [ARG_RET as i64, ARG_NONE as i64, 1 << 28, MAX_HOOKS as i64]
        );
    }

    #[test]
    fn cookie_bits() {
        let c = cookie(3, Args::RX_BURST, 1);
        assert_eq!(c & 0xffff, 3);
        assert_eq!((c >> 16) & 0xf, 1);
        assert_eq!((c >> 20) & 0xf, 15);
        assert_eq!((c >> 24) & 0xf, 0);
        assert_eq!((c >> 28) & 1, 0);
        assert_eq!(c >> 32, 1);
    }
}
