//! Mirror of `struct xcap_src_config` in bpf/afxdp.h.

use xcap_bpf_common::runtime::SrcConfig;
use xcap_core::event::MAX_IFACES;

/// XCAP_XSK_POLL_CALLS, XCAP_XSK_SEND_CALLS and XCAP_XSK_NO_CALL.
pub const POLL_CALLS: usize = 8;
pub const SEND_CALLS: usize = 4;
pub const NO_CALL: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AfxdpConfig {
    pub nr_ifaces: u32,
    pub ifindex: [u32; MAX_IFACES],
    pub netns: [u32; MAX_IFACES],
    pub sys_bind: u32,
    pub sys_close: u32,
    pub sys_poll: [u32; POLL_CALLS],
    pub sys_send: [u32; SEND_CALLS],
}

impl AfxdpConfig {
    /// Every interface; the syscalls of this architecture (`libc::SYS_*`),
    /// the send family only with `sends` (kernels without sock_send_length).
    pub fn new(sends: bool) -> AfxdpConfig {
        let nr = |n: libc::c_long| n as u32;
        let mut c = AfxdpConfig {
            nr_ifaces: 0,
            ifindex: [0; MAX_IFACES],
            netns: [0; MAX_IFACES],
            sys_bind: nr(libc::SYS_bind),
            sys_close: nr(libc::SYS_close),
            sys_poll: [NO_CALL; POLL_CALLS],
            sys_send: [NO_CALL; SEND_CALLS],
        };
        let polls = [
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_select,
            libc::SYS_pselect6,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_pwait2,
        ];
        for (slot, n) in c.sys_poll.iter_mut().zip(polls) {
            *slot = nr(n);
        }
        if sends {
            for (slot, n) in
                c.sys_send
                    .iter_mut()
                    .zip([libc::SYS_sendto, libc::SYS_sendmsg, libc::SYS_sendmmsg])
            {
                *slot = nr(n);
            }
        }
        c
    }
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
                ("sys_bind", offset_of!(AfxdpConfig, sys_bind)),
                ("sys_close", offset_of!(AfxdpConfig, sys_close)),
                ("sys_poll", offset_of!(AfxdpConfig, sys_poll)),
                ("sys_send", offset_of!(AfxdpConfig, sys_send)),
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
