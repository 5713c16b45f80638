//! Where DPDK keeps what xcap reads: the fast-path ops table and the mbuf
//! fields. They move between DPDK ABI versions and build options, so they
//! are keyed by the ABI version of the application's libraries, can be
//! overridden with --dpdk-mbuf, and are never guessed: an unknown version
//! is refused with the override to use.

use xcap_core::{Error, Result};

/// Offsets inside `struct rte_mbuf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mbuf {
    pub buf_addr: u32,
    pub data_off: u32,
    pub nb_segs: u32,
    pub port: u32,
    pub pkt_len: u32,
    pub data_len: u32,
    pub next: u32,
}

/// Layout of one entry of `rte_eth_fp_ops[]` and of `rte_eth_devices[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethdev {
    /// sizeof(struct rte_eth_fp_ops).
    pub fp_size: u64,
    pub rx_burst: u64,
    /// rxq.data: the array of the port's receive queue pointers.
    pub rxq_data: u64,
    pub tx_burst: u64,
    pub txq_data: u64,
    /// offsetof(struct rte_eth_dev, data); name is the first field of data.
    /// These are driver-internal headers that are not installed: the
    /// live test checks the port names read through it instead.
    pub dev_data: u64,
    /// RTE_ETH_NAME_MAX_LEN.
    pub name_len: usize,
    /// RTE_MAX_QUEUES_PER_PORT: the queue arrays' length.
    pub max_queues: usize,
}

/// DPDK 22.11 to 23.07 (ABI 23), x86-64, IOVA in the mbuf (the default).
/// Checked against the installed DPDK headers by the tests.
pub const ABI23_MBUF: Mbuf = Mbuf {
    buf_addr: 0,
    data_off: 16,
    nb_segs: 20,
    port: 22,
    pkt_len: 36,
    data_len: 40,
    next: 64,
};
pub const ABI23_ETHDEV: Ethdev = Ethdev {
    fp_size: 128,
    rx_burst: 0,
    rxq_data: 24,
    tx_burst: 64,
    txq_data: 88,
    dev_data: 48,
    name_len: 64,
    max_queues: 1024,
};

/// The layouts xcap knows, by ABI major version.
pub fn known(abi: u32) -> Option<(Mbuf, Ethdev)> {
    match abi {
        23 => Some((ABI23_MBUF, ABI23_ETHDEV)),
        _ => None,
    }
}

/// The DPDK ABI version of a mapped library path (librte_ethdev.so.23.0 ->
/// 23), None if it is not a versioned DPDK library.
pub fn abi_of(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let rest = name.strip_prefix("librte_")?;
    let (_, ver) = rest.split_once(".so.")?;
    ver.split('.').next()?.parse().ok()
}

/// Apply `--dpdk-mbuf name=offset,...` over `base` (or build it whole when
/// there is no base: then every field must be named).
pub fn mbuf_override(spec: &str, base: Option<Mbuf>) -> Result<Mbuf> {
    let bad = |m: String| Error::input(format!("--dpdk-mbuf: {m}"));
    let mut fields: [Option<u32>; 7] = match base {
        Some(b) => [
            b.buf_addr, b.data_off, b.nb_segs, b.port, b.pkt_len, b.data_len, b.next,
        ]
        .map(Some),
        None => [None; 7],
    };
    const NAMES: [(&str, u32); 7] = [
        ("buf_addr", 8),
        ("data_off", 2),
        ("nb_segs", 2),
        ("port", 2),
        ("pkt_len", 4),
        ("data_len", 2),
        ("next", 8),
    ];
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("'{item}' is not NAME=OFFSET")))?;
        let i = NAMES
            .iter()
            .position(|(n, _)| *n == k.trim())
            .ok_or_else(|| {
                bad(format!(
                    "unknown field '{k}' (fields: buf_addr, data_off, nb_segs, port, pkt_len, data_len, next)"
                ))
            })?;
        let v = v.trim();
        let off = match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16),
            None => v.parse(),
        }
        .map_err(|_| bad(format!("'{v}' is not an offset")))?;
        fields[i] = Some(off);
    }
    for (i, (name, size)) in NAMES.iter().enumerate() {
        match fields[i] {
            None => {
                return Err(bad(format!(
                    "the DPDK version is unknown, so every field must be given; {name} is missing"
                )))
            }
            // The BPF side reads the first cache line, and `next` apart.
            Some(off) if off % size != 0 || off + size > if *name == "next" { 128 } else { 64 } => {
                return Err(bad(format!(
                    "{name}={off}: must be a multiple of {size} within the first {} bytes",
                    if *name == "next" { 128 } else { 64 }
                )))
            }
            _ => {}
        }
    }
    let f = fields.map(|x| x.unwrap_or(0));
    Ok(Mbuf {
        buf_addr: f[0],
        data_off: f[1],
        nb_segs: f[2],
        port: f[3],
        pkt_len: f[4],
        data_len: f[5],
        next: f[6],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_from_library_names() {
        assert_eq!(
            abi_of("/usr/lib/x86_64-linux-gnu/librte_ethdev.so.23.0"),
            Some(23)
        );
        assert_eq!(abi_of("librte_mbuf.so.24"), Some(24));
        assert_eq!(abi_of("/usr/lib/libc.so.6"), None);
        assert_eq!(abi_of("/usr/bin/dpdk-testpmd"), None);
    }

    #[test]
    fn overrides() {
        let m = mbuf_override("next=72,pkt_len=0x28", Some(ABI23_MBUF)).unwrap();
        assert_eq!(m.next, 72);
        assert_eq!(m.pkt_len, 40);
        assert_eq!(m.buf_addr, 0);
        assert!(mbuf_override("next=72", None).is_err());
        assert!(mbuf_override("next=70", Some(ABI23_MBUF)).is_err());
        assert!(mbuf_override("nope=1", Some(ABI23_MBUF)).is_err());
        assert!(mbuf_override("next", Some(ABI23_MBUF)).is_err());
        let all = "buf_addr=0,data_off=16,nb_segs=20,port=22,pkt_len=36,data_len=40,next=64";
        assert_eq!(mbuf_override(all, None).unwrap(), ABI23_MBUF);
    }

    /// The ABI 23 table against DPDK's own headers, when they are installed
    /// (scripts/setup installs dpdk-dev, whose version is ABI 23).
    #[test]
    fn abi23_matches_dpdk_headers() {
        let inc = std::path::Path::new("/usr/include/dpdk");
        if !inc.exists() {
            eprintln!("skipped: DPDK headers are not installed");
            return;
        }
        let arch = std::path::Path::new("/usr/include/x86_64-linux-gnu/dpdk");
        let body = "\
            printf(\"%d\\n\", RTE_VER_YEAR * 100 + RTE_VER_MONTH);\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, buf_addr));\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, data_off));\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, nb_segs));\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, port));\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, pkt_len));\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, data_len));\
            printf(\"%zu\\n\", offsetof(struct rte_mbuf, next));\
            printf(\"%zu\\n\", sizeof(struct rte_eth_fp_ops));\
            printf(\"%zu\\n\", offsetof(struct rte_eth_fp_ops, rx_pkt_burst));\
            printf(\"%zu\\n\", offsetof(struct rte_eth_fp_ops, rxq.data));\
            printf(\"%zu\\n\", offsetof(struct rte_eth_fp_ops, tx_pkt_burst));\
            printf(\"%zu\\n\", offsetof(struct rte_eth_fp_ops, txq.data));\
            printf(\"%d\\n\", RTE_ETH_NAME_MAX_LEN);\
            printf(\"%d\\n\", RTE_MAX_QUEUES_PER_PORT);";
        let v = xcap_core::layout::c_program(
            &[inc, arch],
            &["rte_config.h", "rte_mbuf.h", "rte_ethdev.h"],
            "dpdk",
            body,
            &["-mssse3"],
        )
        .unwrap();
        let (m, e) = known(23).unwrap();
        assert!((2211..=2307).contains(&v[0]), "DPDK version {}", v[0]);
        assert_eq!(
            &v[1..],
            &[
                m.buf_addr as i64,
                m.data_off as i64,
                m.nb_segs as i64,
                m.port as i64,
                m.pkt_len as i64,
                m.data_len as i64,
                m.next as i64,
                e.fp_size as i64,
                e.rx_burst as i64,
                e.rxq_data as i64,
                e.tx_burst as i64,
                e.txq_data as i64,
                e.name_len as i64,
                e.max_queues as i64,
            ]
        );
    }
}
