//! tcpdump filter expressions: compiled by libpcap to classic BPF for
//! Ethernet (L2) and raw IP (L3), translated to eBPF for sources that run
//! BPF, and run by libpcap itself for packets that arrive in userspace.

pub mod ebpf;
pub mod pcap;
pub mod testset;

use crate::{Error, LinkType, Result};
pub use pcap::CbpfInsn;

const LINKTYPE_ETHERNET: u16 = 1;
const LINKTYPE_RAW: u16 = 101;

/// A compiled filter expression.
#[derive(Clone, Debug)]
pub struct Filter {
    pub expr: String,
    /// Program for packets that start at the Ethernet header.
    pub l2: Vec<CbpfInsn>,
    /// Program for packets that start at the IP header. An expression that
    /// only makes sense with a link-layer header (`ether host`, `arp`)
    /// rejects every such packet.
    pub l3: Vec<CbpfInsn>,
    /// True when libpcap could not compile the expression for raw IP.
    pub l3_rejects_all: bool,
    snaplen: u32,
}

/// `ret #0`: reject everything.
const REJECT: CbpfInsn = CbpfInsn {
    code: 0x06,
    jt: 0,
    jf: 0,
    k: 0,
};

impl Filter {
    /// Compile `expr`. Errors are libpcap's own messages, as input errors.
    pub fn compile(expr: &str, snaplen: u32) -> Result<Filter> {
        let snaplen = if snaplen == 0 { 262_144 } else { snaplen };
        let l2 = pcap::compile(expr, LINKTYPE_ETHERNET, snaplen)?;
        let (l3, l3_rejects_all) = match pcap::compile(expr, LINKTYPE_RAW, snaplen) {
            Ok(p) => (p, false),
            Err(_) => (vec![REJECT], true),
        };
        Ok(Filter {
            expr: expr.to_string(),
            l2,
            l3,
            l3_rejects_all,
            snaplen,
        })
    }

    /// The eBPF block for BPF sources, exactly `len` instructions long.
    pub fn ebpf_block(&self, len: usize) -> Result<Vec<ebpf::Insn>> {
        ebpf::translate(&self.l2, &self.l3, len).map_err(|e| {
            Error::input(format!(
                "filter '{}' cannot run in the kernel: {}",
                self.expr, e.0
            ))
        })
    }

    /// Run the filter in userspace, with libpcap's interpreter.
    pub fn matches(&self, link: LinkType, data: &[u8], wirelen: u32) -> bool {
        match link {
            LinkType::Ethernet => pcap::run(&self.l2, data, wirelen),
            LinkType::RawIp => pcap::run(&self.l3, data, wirelen),
            LinkType::Other(t) => match pcap::compile(&self.expr, t, self.snaplen) {
                Ok(p) => pcap::run(&p, data, wirelen),
                Err(_) => false,
            },
        }
    }

    /// What `-d` prints: the classic programs (as `tcpdump -d`) and the eBPF
    /// block (up to its padding).
    pub fn dump(&self, block_len: usize) -> Result<String> {
        let mut s = format!("(classic BPF, Ethernet)\n{}", pcap::image(&self.l2));
        if self.l3_rejects_all {
            s.push_str(
                "(classic BPF, raw IP: the expression needs a link-layer header; rejects all)\n",
            );
        } else {
            s.push_str(&format!("(classic BPF, raw IP)\n{}", pcap::image(&self.l3)));
        }
        let block = self.ebpf_block(block_len)?;
        let used = block
            .iter()
            .rposition(|i| *i != block[block.len() - 1])
            .map_or(block.len(), |p| p + 1);
        s.push_str(&format!(
            "(eBPF: r1 packet, r2 bytes there, r3 wire length, r4 scratch, r5 0 = L2 / 1 = L3; r0: 0 miss, 1 match, 2 need more bytes)\n{}",
            ebpf::disasm(&block[..used])
        ));
        s.push_str(&format!(
            "({} instructions of padding follow)\n",
            block.len() - used
        ));
        Ok(s)
    }
}
