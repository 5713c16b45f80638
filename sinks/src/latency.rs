//! `--latency`: the time each packet takes from the first hook that saw it
//! to every later one (netcap's "gather"), one line per sighting, and per
//! hop (first hook -> later hook) the minimum, median and 99th percentile at
//! the end. A packet is known by its packet id (the skb data buffer for the
//! kernel source); an id seen again at a hook it already passed, or more
//! than a second later, is a new packet (addresses are reused).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use xcap_core::{Error, PacketRef, Result, Sink, SinkConfig, SourceReport};

use crate::decode::write_summary;
use crate::text::local_hms;

/// Longest time one packet is followed.
const HORIZON_NS: u64 = 1_000_000_000;

pub(crate) fn open(_cfg: &SinkConfig) -> Result<Box<dyn Sink>> {
    Ok(Box::new(LatencySink::new(Box::new(std::io::stdout()))))
}

struct Journey {
    first_ts: u64,
    first_hook: Arc<str>,
    hooks: Vec<Arc<str>>,
}

/// (first hook, later hook): one hop.
type Hop = (Arc<str>, Arc<str>);

pub struct LatencySink {
    out: BufWriter<Box<dyn Write + Send>>,
    journeys: HashMap<u64, Journey>,
    /// (first hook, later hook) -> latencies in ns, in order of first use.
    hops: Vec<(Hop, Vec<u64>)>,
    line: String,
    since_prune: usize,
}

impl LatencySink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        LatencySink {
            out: BufWriter::with_capacity(64 * 1024, out),
            journeys: HashMap::new(),
            hops: Vec::new(),
            line: String::new(),
            since_prune: 0,
        }
    }

    fn hop(&mut self, from: &Arc<str>, to: &Arc<str>) -> &mut Vec<u64> {
        let i = match self
            .hops
            .iter()
            .position(|((a, b), _)| a == from && b == to)
        {
            Some(i) => i,
            None => {
                self.hops.push(((from.clone(), to.clone()), Vec::new()));
                self.hops.len() - 1
            }
        };
        &mut self.hops[i].1
    }
}

/// A duration the way people read latencies.
fn human(ns: u64) -> String {
    if ns < 10_000 {
        format!("{:.2}us", ns as f64 / 1e3)
    } else if ns < 10_000_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else {
        format!("{:.1}ms", ns as f64 / 1e6)
    }
}

/// The value below which `q` of the sorted values lie (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Sink for LatencySink {
    fn name(&self) -> &str {
        "latency"
    }

    fn write(&mut self, p: &PacketRef) -> Result<()> {
        let Some(id) = p.meta.packet_id else {
            return Ok(());
        };
        let hook = p.meta.hook.clone();
        let secs = p.ts_ns / 1_000_000_000;
        self.line.clear();
        let _ = write!(
            self.line,
            "{}.{:06} {:#x} ",
            local_hms(secs),
            (p.ts_ns % 1_000_000_000) / 1000,
            id
        );
        let fresh = match self.journeys.get(&id) {
            Some(j) => j.hooks.contains(&hook) || p.ts_ns.saturating_sub(j.first_ts) > HORIZON_NS,
            None => true,
        };
        if fresh {
            self.journeys.insert(
                id,
                Journey {
                    first_ts: p.ts_ns,
                    first_hook: hook.clone(),
                    hooks: vec![hook.clone()],
                },
            );
            let _ = write!(self.line, "{} {} ", hook, p.meta.ifname);
            write_summary(&mut self.line, p.data, p.orig_len, p.link);
        } else if let Some(j) = self.journeys.get_mut(&id) {
            let dt = p.ts_ns.saturating_sub(j.first_ts);
            j.hooks.push(hook.clone());
            let first = j.first_hook.clone();
            let _ = write!(self.line, "  +{} {} {}", human(dt), hook, p.meta.ifname);
            self.hop(&first, &hook).push(dt);
        }
        self.line.push('\n');
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| Error::from_write(e, "write stdout"))?;
        self.since_prune += 1;
        if self.since_prune > 4096 {
            self.since_prune = 0;
            let now = p.ts_ns;
            self.journeys
                .retain(|_, j| now.saturating_sub(j.first_ts) <= HORIZON_NS);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::from_write(e, "write stdout"))
    }

    fn finish(&mut self, _reports: &[SourceReport]) -> Result<()> {
        let mut s = String::from("\nlatency from the first hook (packets, min, median, p99):\n");
        if self.hops.is_empty() {
            s.push_str("  no packet was seen at more than one hook\n");
        }
        for ((from, to), v) in &mut self.hops {
            v.sort_unstable();
            let _ = writeln!(
                s,
                "  {from} -> {to}: {} packets, min {}, median {}, p99 {}",
                v.len(),
                human(v[0]),
                human(quantile(v, 0.5)),
                human(quantile(v, 0.99))
            );
        }
        self.out
            .write_all(s.as_bytes())
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::from_write(e, "write stdout"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcap_core::{LinkType, Meta};

    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn pkt(id: u64, hook: &str, ts: u64) -> xcap_core::Packet {
        xcap_core::Packet {
            ts_ns: ts,
            data: vec![],
            orig_len: 0,
            link: LinkType::RawIp,
            meta: Meta {
                hook: hook.into(),
                packet_id: Some(id),
                ..Default::default()
            },
        }
    }

    #[test]
    fn hops_from_the_first_hook_with_quantiles() {
        let buf = Shared::default();
        let mut s = LatencySink::new(Box::new(buf.clone()));
        for i in 0..100u64 {
            let t = 1_000_000_000 + i * 10_000;
            s.write(&pkt(7, "a", t).as_ref()).unwrap();
            s.write(&pkt(7, "b", t + 1000 + i).as_ref()).unwrap();
            s.write(&pkt(7, "c", t + 5000).as_ref()).unwrap();
        }
        // Another packet on the same address, a second later: new journey.
        s.write(&pkt(7, "b", 5_000_000_000).as_ref()).unwrap();
        s.finish(&[]).unwrap();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            out.contains("a -> b: 100 packets, min 1.00us, median 1.05us, p99 1.10us"),
            "{out}"
        );
        assert!(
            out.contains("a -> c: 100 packets, min 5.00us, median 5.00us, p99 5.00us"),
            "{out}"
        );
        assert_eq!(out.matches("  +").count(), 200);
    }
}
