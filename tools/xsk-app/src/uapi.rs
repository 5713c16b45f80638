//! The AF_XDP socket UAPI, transcribed from the kernel's
//! include/uapi/linux/if_xdp.h (checked against /usr/include/linux/if_xdp.h;
//! XDP_USE_SG and XDP_PKT_CONTD are 6.6's, newer than Debian 12's header).
//! Written out here rather than taken from libc so the test application
//! depends on nothing but the kernel's ABI.

pub const AF_XDP: libc::c_int = 44;
pub const SOL_XDP: libc::c_int = 283;

// sockaddr_xdp.sxdp_flags
#[allow(dead_code)] // xsk-app gives each socket its own UMEM
pub const XDP_SHARED_UMEM: u16 = 1 << 0;
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
pub const XDP_USE_SG: u16 = 1 << 4;

// The flags word of a ring.
pub const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

// Socket options (level SOL_XDP).
pub const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub const XDP_RX_RING: libc::c_int = 2;
pub const XDP_TX_RING: libc::c_int = 3;
pub const XDP_UMEM_REG: libc::c_int = 4;
pub const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
pub const XDP_STATISTICS: libc::c_int = 7;
pub const XDP_OPTIONS: libc::c_int = 8;

// xdp_options.flags
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

// mmap offsets of the rings.
pub const XDP_PGOFF_RX_RING: u64 = 0;
pub const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

// xdp_desc.options: more descriptors of this packet follow.
pub const XDP_PKT_CONTD: u32 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SockaddrXdp {
    pub sxdp_family: u16,
    pub sxdp_flags: u16,
    pub sxdp_ifindex: u32,
    pub sxdp_queue_id: u32,
    pub sxdp_shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct XdpRingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct XdpMmapOffsets {
    pub rx: XdpRingOffset,
    pub tx: XdpRingOffset,
    pub fr: XdpRingOffset,
    pub cr: XdpRingOffset,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct XdpUmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    /// 6.8's tx_metadata_len; the padding (to be zero) of older headers.
    pub tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct XdpOptions {
    pub flags: u32,
}

/// An RX/TX ring entry; fill and completion rings hold bare u64 addresses.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

// The ABI sizes, checked at compile time.
const _: () = assert!(std::mem::size_of::<SockaddrXdp>() == 16);
const _: () = assert!(std::mem::size_of::<XdpRingOffset>() == 32);
const _: () = assert!(std::mem::size_of::<XdpMmapOffsets>() == 128);
const _: () = assert!(std::mem::size_of::<XdpUmemReg>() == 32);
const _: () = assert!(std::mem::size_of::<XdpStatistics>() == 48);
const _: () = assert!(std::mem::size_of::<XdpDesc>() == 16);
