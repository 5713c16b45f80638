//! libpcap, through its C API: compiling an expression to classic BPF,
//! running classic BPF on a buffer, and printing it like `tcpdump -d`.
//! The `pcap` crate compiles but cannot run a program with separate wire and
//! buffer lengths (`bpf_filter`) or print one (`bpf_image`), so these few
//! calls are bound here directly.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};

use crate::{Error, Result};

/// One classic BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut CbpfInsn,
}

#[repr(C)]
struct Pcap {
    _private: [u8; 0],
}

#[link(name = "pcap")]
extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut Pcap;
    fn pcap_close(p: *mut Pcap);
    fn pcap_compile(
        p: *mut Pcap,
        prog: *mut BpfProgram,
        expr: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_geterr(p: *mut Pcap) -> *mut c_char;
    fn pcap_freecode(prog: *mut BpfProgram);
    fn bpf_filter(
        insns: *const CbpfInsn,
        pkt: *const u8,
        wirelen: c_uint,
        buflen: c_uint,
    ) -> c_uint;
    fn bpf_image(insn: *const CbpfInsn, n: c_int) -> *mut c_char;
}

const PCAP_NETMASK_UNKNOWN: u32 = 0xffff_ffff;

/// DLT_ value libpcap expects for a pcap LINKTYPE_ value. They are equal
/// except for a few; raw IP is the one xcap produces.
pub fn dlt_of_linktype(linktype: u16) -> c_int {
    match linktype {
        101 => 12, // LINKTYPE_RAW -> DLT_RAW (Linux numbering)
        v => v as c_int,
    }
}

/// Compile `expr` for packets of `linktype` (a pcap LINKTYPE_ value).
/// Errors carry libpcap's own message.
pub fn compile(expr: &str, linktype: u16, snaplen: u32) -> Result<Vec<CbpfInsn>> {
    let c =
        CString::new(expr).map_err(|_| Error::input("filter expression contains a NUL byte"))?;
    // SAFETY: plain libpcap calls; the handle is closed on every path and
    // the program freed after its instructions are copied out.
    unsafe {
        let p = pcap_open_dead(
            dlt_of_linktype(linktype),
            snaplen.min(i32::MAX as u32) as c_int,
        );
        if p.is_null() {
            return Err(Error::runtime("libpcap: pcap_open_dead failed"));
        }
        let mut prog = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        let r = pcap_compile(p, &mut prog, c.as_ptr(), 1, PCAP_NETMASK_UNKNOWN);
        let out = if r != 0 {
            let msg = CStr::from_ptr(pcap_geterr(p))
                .to_string_lossy()
                .into_owned();
            Err(Error::input(format!(
                "bad filter expression '{expr}': {msg}"
            )))
        } else {
            let insns = std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec();
            pcap_freecode(&mut prog);
            Ok(insns)
        };
        pcap_close(p);
        out
    }
}

/// libpcap's own interpreter: true when the program accepts the packet.
/// `data` holds the captured bytes, `wirelen` the packet's full length.
pub fn run(insns: &[CbpfInsn], data: &[u8], wirelen: u32) -> bool {
    if insns.is_empty() {
        return true;
    }
    // SAFETY: libpcap reads only within buflen; insns come from pcap_compile.
    unsafe { bpf_filter(insns.as_ptr(), data.as_ptr(), wirelen, data.len() as c_uint) != 0 }
}

/// The program as `tcpdump -d` prints it.
pub fn image(insns: &[CbpfInsn]) -> String {
    let mut out = String::new();
    for (i, insn) in insns.iter().enumerate() {
        // SAFETY: bpf_image returns a pointer to a static buffer.
        let s = unsafe { CStr::from_ptr(bpf_image(insn, i as c_int)) };
        out.push_str(&s.to_string_lossy());
        out.push('\n');
    }
    out
}
