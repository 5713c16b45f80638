//! The application's active ports, read from DPDK's exported fast-path
//! table `rte_eth_fp_ops[]`: per port, the burst functions the inline
//! `rte_eth_rx_burst`/`rte_eth_tx_burst` call and the queue pointers they
//! are called with. The PMD libraries are stripped, so this table is the
//! only reliable way to the functions.

use std::collections::HashMap;

use xcap_core::{Error, Result};

use crate::layout::Ethdev;
use crate::process::{Process, Symbol};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub id: u16,
    pub name: String,
    pub rx_burst: u64,
    pub tx_burst: u64,
    /// Queue pointers, by queue number.
    pub rxqs: Vec<u64>,
    pub txqs: Vec<u64>,
}

/// Where the tables are in one process.
pub struct Tables {
    pub fp_ops: Symbol,
    pub devices: Option<Symbol>,
    pub nports: usize,
    pub layout: Ethdev,
}

impl Tables {
    /// Find the tables; Ok(None) when the process has no DPDK ethdev.
    pub fn find(p: &Process, layout: Ethdev) -> Result<Option<Tables>> {
        let ethdev = |f: &str| f == p.exe || f.contains("librte_ethdev");
        let Some(fp_ops) = p.symbol("rte_eth_fp_ops", ethdev) else {
            return Ok(None);
        };
        let nports = (fp_ops.size / layout.fp_size) as usize;
        if nports == 0 || nports > 1024 {
            return Err(Error::runtime(format!(
                "rte_eth_fp_ops in {} has an unexpected size ({} bytes)",
                fp_ops.path, fp_ops.size
            )));
        }
        let devices = p.symbol("rte_eth_devices", ethdev);
        Ok(Some(Tables {
            fp_ops,
            devices,
            nports,
            layout,
        }))
    }

    /// The ports whose burst functions are live now. Unused and stopped
    /// ports all point at the same dummy functions, so the (rx, tx) pair
    /// that most entries share is the dummy one.
    pub fn ports(&self, p: &Process) -> Result<Vec<Port>> {
        let l = &self.layout;
        let mut raw = vec![0u8; self.nports * l.fp_size as usize];
        p.read(self.fp_ops.addr, &mut raw)?;
        let word = |port: usize, off: u64| {
            let i = port * l.fp_size as usize + off as usize;
            u64::from_ne_bytes(raw[i..i + 8].try_into().unwrap())
        };
        let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
        for i in 0..self.nports {
            *seen
                .entry((word(i, l.rx_burst), word(i, l.tx_burst)))
                .or_default() += 1;
        }
        let dummy = seen
            .iter()
            .max_by_key(|(_, n)| **n)
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| *k);
        let mut ports = Vec::new();
        for i in 0..self.nports {
            let (rx, tx) = (word(i, l.rx_burst), word(i, l.tx_burst));
            if Some((rx, tx)) == dummy || rx == 0 || tx == 0 {
                continue;
            }
            ports.push(Port {
                id: i as u16,
                name: self.port_name(p, i),
                rx_burst: rx,
                tx_burst: tx,
                rxqs: self.queues(p, word(i, l.rxq_data)),
                txqs: self.queues(p, word(i, l.txq_data)),
            });
        }
        Ok(ports)
    }

    /// A port's queue pointers: the array is RTE_MAX_QUEUES_PER_PORT long,
    /// configured queues first, then NULL.
    fn queues(&self, p: &Process, array: u64) -> Vec<u64> {
        let mut raw = vec![0u8; self.layout.max_queues * 8];
        if array == 0 || p.read(array, &mut raw).is_err() {
            return Vec::new();
        }
        raw.chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .take_while(|q| *q != 0)
            .collect()
    }

    /// The port's device name (`net_pcap0`), or `portN` if unreadable.
    fn port_name(&self, p: &Process, port: usize) -> String {
        let fallback = format!("port{port}");
        let Some(dev) = &self.devices else {
            return fallback;
        };
        let stride = dev.size / self.nports as u64;
        let Ok(data) = p.read_u64(dev.addr + port as u64 * stride + self.layout.dev_data) else {
            return fallback;
        };
        let mut name = vec![0u8; self.layout.name_len];
        if data == 0 || p.read(data, &mut name).is_err() {
            return fallback;
        }
        let end = name.iter().position(|&c| c == 0).unwrap_or(0);
        match std::str::from_utf8(&name[..end]) {
            Ok(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic()) => s.to_string(),
            _ => fallback,
        }
    }
}
