//! The event bus: merges every source into one timestamp-ordered stream and
//! fans it out to every sink.
//!
//! Each source sends batches with a watermark (a promise that nothing older
//! follows); a packet leaves the bus once every live source's watermark has
//! passed it. Queues are bounded and block, so a slow sink pushes back into
//! the sources' own buffers, where every loss is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::registry::{Batch, Sink, Source, SourceCtx, SourceReport};
use crate::{Error, Packet, Result};

#[derive(Clone, Debug, Default)]
pub struct BusOptions {
    /// `-c`: stop after this many packets were written.
    pub count: Option<u64>,
    /// Applied here to the packets of sources that do not filter themselves.
    pub filter: Option<Arc<crate::Filter>>,
}

#[derive(Debug, Default)]
pub struct BusReport {
    pub sources: Vec<SourceReport>,
    /// Packets handed to the sinks.
    pub written: u64,
    /// The same, per source, in the order the sources were given.
    pub per_source: Vec<u64>,
    /// First error that ended the capture, if any (a closed output is not one).
    pub error: Option<Error>,
}

/// One batch of one source, in time order, emitted from `pos` on. Packets
/// stay where the source put them until the whole run is emitted: no
/// packet is moved or compared with a heap on its way to the sinks.
struct Run {
    src: usize,
    packets: Vec<Packet>,
    pos: usize,
}

impl Run {
    fn head(&self) -> u64 {
        self.packets[self.pos].ts_ns
    }
}

/// Packets waiting for the watermarks, as runs in arrival order. A source's
/// batches are nearly sorted already (records from different CPUs may
/// interleave a little), and successive batches rarely overlap in time, so
/// merging is mostly emitting one run straight through.
#[derive(Default)]
struct Waiting {
    runs: Vec<Run>,
}

impl Waiting {
    fn push(&mut self, src: usize, mut packets: Vec<Packet>) {
        if packets.is_empty() {
            return;
        }
        // Stable and adaptive: a sorted batch costs one pass, no moves.
        if !packets.is_sorted_by_key(|p| p.ts_ns) {
            packets.sort_by_key(|p| p.ts_ns);
        }
        self.runs.push(Run {
            src,
            packets,
            pos: 0,
        });
    }

    /// Emit, oldest first, every packet whose time is at most `limit`
    /// (equal times: the earlier batch first); `emit` returns false to stop.
    /// Each run once emitted whole goes to `done`.
    fn drain_until(
        &mut self,
        limit: u64,
        mut emit: impl FnMut(usize, &Packet) -> bool,
        mut done: impl FnMut(usize, Vec<Packet>),
    ) {
        loop {
            // The run with the oldest head, and the head that comes next.
            let mut best: Option<usize> = None;
            for (i, r) in self.runs.iter().enumerate() {
                if best.is_none_or(|b| r.head() < self.runs[b].head()) {
                    best = Some(i);
                }
            }
            let Some(b) = best else { return };
            if self.runs[b].head() > limit {
                return;
            }
            // Up to where another run takes over: strictly older heads of
            // later runs, or equal heads of earlier runs, go first.
            let mut bound = limit;
            let mut inclusive = true;
            for (i, r) in self.runs.iter().enumerate() {
                if i == b {
                    continue;
                }
                let h = r.head();
                if h < bound || (h == bound && i < b && inclusive) {
                    bound = h;
                    inclusive = i > b;
                }
            }
            let run = &mut self.runs[b];
            while run.pos < run.packets.len() {
                let ts = run.packets[run.pos].ts_ns;
                if ts > bound || (ts == bound && !inclusive) {
                    break;
                }
                let go_on = emit(run.src, &run.packets[run.pos]);
                run.pos += 1;
                if !go_on {
                    return;
                }
            }
            if run.pos == run.packets.len() {
                let run = self.runs.remove(b);
                done(run.src, run.packets);
            }
        }
    }

    fn clear(&mut self) {
        self.runs.clear();
    }
}

struct Out<'a> {
    sinks: &'a mut [Box<dyn Sink>],
    written: u64,
    per_source: Vec<u64>,
    count: Option<u64>,
    error: Option<Error>,
    closed: bool,
}

impl Out<'_> {
    fn full(&self) -> bool {
        self.closed || self.error.is_some() || self.count.is_some_and(|c| self.written >= c)
    }
    fn emit(&mut self, src: usize, p: &Packet) {
        if self.full() {
            return;
        }
        for s in self.sinks.iter_mut() {
            match s.write(p) {
                Ok(()) => {}
                Err(Error::Closed) => self.closed = true,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        self.written += 1;
        self.per_source[src] += 1;
    }
    fn flush(&mut self) {
        for s in self.sinks.iter_mut() {
            match s.flush() {
                Ok(()) => {}
                Err(Error::Closed) => self.closed = true,
                Err(e) => {
                    if self.error.is_none() {
                        self.error = Some(e);
                    }
                }
            }
        }
    }
}

/// Run the sources until they end, `stop` is set, `-c` is reached or a sink
/// fails; then finish every sink. Sources are already attached.
pub fn run(
    sources: Vec<Box<dyn Source>>,
    mut sinks: Vec<Box<dyn Sink>>,
    opts: &BusOptions,
    stop: Arc<AtomicBool>,
) -> Result<BusReport> {
    let n = sources.len();
    let (tx, rx) = sync_channel::<Batch>(64);
    let mut handles = Vec::with_capacity(n);
    let names: Vec<String> = sources.iter().map(|s| s.name().to_string()).collect();
    // Per source: the filter the bus must run for it, if any.
    let user_filter: Vec<Option<Arc<crate::Filter>>> = sources
        .iter()
        .map(|s| {
            if s.filters() {
                None
            } else {
                opts.filter.clone()
            }
        })
        .collect();
    // Written batches go back to their source (see SourceCtx::recycled);
    // when its queue is full or the source is gone they are dropped here.
    let mut back = Vec::with_capacity(n);
    for (index, src) in sources.into_iter().enumerate() {
        let (back_tx, back_rx) = sync_channel::<Vec<Packet>>(8);
        back.push(back_tx);
        let ctx = SourceCtx {
            index,
            tx: tx.clone(),
            stop: stop.clone(),
            back: back_rx,
        };
        let done_tx = tx.clone();
        let name = src.name().to_string();
        let h = thread::Builder::new()
            .name(format!("xcap-{name}"))
            .spawn(move || {
                let r = src.run(ctx);
                let _ = done_tx.send(Batch {
                    source: index,
                    packets: Vec::new(),
                    watermark: u64::MAX,
                    done: Some(r),
                });
            })
            .map_err(|e| Error::runtime(format!("cannot start source thread: {e}")))?;
        handles.push(h);
    }
    drop(tx);

    let mut watermarks = vec![0u64; n];
    let mut live = vec![true; n];
    let mut reports: Vec<Option<SourceReport>> = vec![None; n];
    let mut waiting = Waiting::default();
    let mut out = Out {
        sinks: &mut sinks,
        written: 0,
        per_source: vec![0; n],
        count: opts.count,
        error: None,
        closed: false,
    };
    let mut source_error: Option<Error> = None;

    while live.iter().any(|l| *l) {
        let batch = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let i = batch.source;
        if !out.full() {
            let mut packets = batch.packets;
            if let Some(f) = &user_filter[i] {
                packets.retain(|p| f.matches(p.link, &p.data, p.orig_len));
            }
            waiting.push(i, packets);
        }
        watermarks[i] = watermarks[i].max(batch.watermark);
        if let Some(done) = batch.done {
            live[i] = false;
            match done {
                Ok(r) => {
                    if let (Some(m), None) = (&r.failure, &source_error) {
                        source_error = Some(Error::runtime(m.clone()));
                        stop.store(true, Ordering::Relaxed);
                    }
                    reports[i] = Some(r)
                }
                Err(e) => {
                    if source_error.is_none() {
                        source_error = Some(e);
                    }
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        let limit = (0..n)
            .filter(|&j| live[j])
            .map(|j| watermarks[j])
            .min()
            .unwrap_or(u64::MAX);
        let mut emitted = false;
        waiting.drain_until(
            limit,
            |src, p| {
                out.emit(src, p);
                emitted = true;
                !out.full()
            },
            |src, packets| {
                let _ = back[src].try_send(packets);
            },
        );
        // Once per batch, not per packet: a live reader sees output promptly.
        if emitted {
            out.flush();
        }
        if out.full() {
            // -c reached, output closed or a sink failed: stop the sources and
            // drain the channel until they have all reported.
            stop.store(true, Ordering::Relaxed);
            waiting.clear();
        }
    }
    waiting.drain_until(
        u64::MAX,
        |src, p| {
            out.emit(src, p);
            !out.full()
        },
        |_, _| {},
    );
    for h in handles {
        let _ = h.join();
    }
    let written = out.written;
    let per_source = std::mem::take(&mut out.per_source);
    let mut error = out.error.take().or(source_error);
    let reports: Vec<SourceReport> = reports
        .into_iter()
        .zip(names)
        .map(|(r, name)| {
            r.unwrap_or(SourceReport {
                name,
                ..Default::default()
            })
        })
        .collect();
    for s in sinks.iter_mut() {
        match s.finish(&reports) {
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => {
                if error.is_none() {
                    error = Some(e)
                }
            }
        }
    }
    Ok(BusReport {
        sources: reports,
        written,
        per_source,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LinkType, Meta};

    fn pkt(ts: u64, tag: u8) -> Packet {
        Packet {
            ts_ns: ts,
            data: vec![tag],
            orig_len: 1,
            link: LinkType::Ethernet,
            meta: Meta::default(),
        }
    }

    fn drain(w: &mut Waiting, limit: u64) -> Vec<(usize, u64, u8)> {
        let mut v = Vec::new();
        w.drain_until(
            limit,
            |s, p| {
                v.push((s, p.ts_ns, p.data[0]));
                true
            },
            |_, _| {},
        );
        v
    }

    #[test]
    fn merges_overlapping_unsorted_batches_in_time_order() {
        let mut w = Waiting::default();
        w.push(0, vec![pkt(10, 1), pkt(30, 2), pkt(20, 3), pkt(50, 4)]);
        w.push(1, vec![pkt(15, 5), pkt(30, 6), pkt(60, 7)]);
        w.push(0, vec![pkt(25, 8), pkt(70, 9)]);
        let got = drain(&mut w, 30);
        // Equal times: the earlier batch first.
        let tags: Vec<u8> = got.iter().map(|g| g.2).collect();
        assert_eq!(tags, [1, 5, 3, 8, 2, 6]);
        // Nothing newer than the limit left; the rest waits.
        let rest: Vec<u8> = drain(&mut w, u64::MAX).iter().map(|g| g.2).collect();
        assert_eq!(rest, [4, 7, 9]);
        assert!(w.runs.is_empty());
    }

    #[test]
    fn stops_when_told_and_keeps_the_rest() {
        let mut w = Waiting::default();
        w.push(0, (0..10).map(|i| pkt(i, i as u8)).collect());
        let mut n = 0;
        w.drain_until(
            u64::MAX,
            |_, _| {
                n += 1;
                n < 3
            },
            |_, _| {},
        );
        assert_eq!(n, 3);
        let rest: Vec<u8> = drain(&mut w, u64::MAX).iter().map(|g| g.2).collect();
        assert_eq!(rest, [3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn many_random_batches_come_out_sorted_and_whole() {
        // A small deterministic generator: batches of jittered times.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut w = Waiting::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for b in 0..50u64 {
            let batch: Vec<Packet> = (0..next() % 40)
                .map(|_| pkt(b * 100 + next() % 300, 0))
                .collect();
            all.extend(batch.iter().map(|p| p.ts_ns));
            w.push((next() % 3) as usize, batch);
            // Watermark: nothing older than this follows.
            out.extend(
                drain(&mut w, (b * 100).saturating_sub(1))
                    .iter()
                    .map(|g| g.1),
            );
        }
        out.extend(drain(&mut w, u64::MAX).iter().map(|g| g.1));
        assert!(out.is_sorted(), "{out:?}");
        all.sort();
        assert_eq!(out, all);
    }
}
