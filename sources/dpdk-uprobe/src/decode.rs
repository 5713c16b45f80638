//! Ring buffer records of the DPDK program to packets.

use std::collections::HashMap;
use std::sync::Arc;

use xcap_bpf_common::{runtime, Interned};
use xcap_core::event;

use crate::probe::{HookInfo, Probe};

pub struct Decoder {
    pub hooks: Vec<HookInfo>,
    /// Port id -> device name.
    pub ports: HashMap<u32, Arc<str>>,
    comms: Interned<[u8; event::COMM_LEN]>,
    source: Arc<str>,
    pub wall_offset: u64,
    pub bad: u64,
}

impl Decoder {
    pub fn new(p: &Probe, wall_offset: u64) -> Decoder {
        let mut d = Decoder::bare(p.hooks.clone(), wall_offset);
        d.set_ports(p);
        d
    }

    pub fn bare(hooks: Vec<HookInfo>, wall_offset: u64) -> Decoder {
        Decoder {
            hooks,
            ports: HashMap::new(),
            comms: Interned::default(),
            source: Arc::from("dpdk"),
            wall_offset,
            bad: 0,
        }
    }

    pub fn set_ports(&mut self, p: &Probe) {
        for port in &p.ports {
            self.ports
                .insert(port.id as u32, Arc::from(port.name.as_str()));
        }
    }

    pub fn decode(&mut self, buf: &[u8], out: &mut runtime::Slots) {
        let Some(r) = event::parse(buf) else {
            self.bad += 1;
            return;
        };
        let h = r.hdr;
        let Some(hook) = self.hooks.get(h.hook as usize) else {
            self.bad += 1;
            return;
        };
        let port = h.ifindex;
        let ifname = self
            .ports
            .entry(port)
            .or_insert_with(|| Arc::from(format!("port{port}")));
        let comm = self.comms.get(h.comm, |k| event::cstr(k).into());
        let p = out.fill(
            &h,
            r.data,
            self.wall_offset,
            runtime::Names {
                source: &self.source,
                hook: &hook.name,
                ifname,
                comm: Some(comm),
                extra: &[],
            },
        );
        p.meta.queue = h.queue();
        p.meta.netns = 0;
        // `location` carries the mbuf's segment count (no drops here).
        if h.location > 1 {
            p.meta.extra.push(("segs".into(), h.location.to_string()));
        }
    }
}
