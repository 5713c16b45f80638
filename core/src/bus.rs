//! The event bus: merges every source into one timestamp-ordered stream and
//! fans it out to every sink.
//!
//! Each source sends batches with a watermark (a promise that nothing older
//! follows); a packet leaves the bus once every live source's watermark has
//! passed it. Queues are bounded and block, so a slow sink pushes back into
//! the sources' own buffers, where every loss is counted.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
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

/// Heap key of a waiting packet: small, so sifting the heap stays cheap;
/// the packet itself waits in `Waiting`, indexed by `seq`.
#[derive(PartialEq, Eq)]
struct Key {
    ts: u64,
    seq: u64,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Key {
    // Reversed: BinaryHeap is a max-heap, we want the oldest first.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.ts, o.seq).cmp(&(self.ts, self.seq))
    }
}

/// Packets in arrival order; slot `seq - base` holds packet `seq` until it
/// leaves the bus.
#[derive(Default)]
struct Waiting {
    base: u64,
    slots: VecDeque<Option<(usize, Packet)>>,
    heap: BinaryHeap<Key>,
}

impl Waiting {
    fn push(&mut self, src: usize, p: Packet) {
        let seq = self.base + self.slots.len() as u64;
        self.heap.push(Key { ts: p.ts_ns, seq });
        self.slots.push_back(Some((src, p)));
    }
    /// The oldest packet if its time is at most `limit`.
    fn pop_until(&mut self, limit: u64) -> Option<(usize, Packet)> {
        if self.heap.peek()?.ts > limit {
            return None;
        }
        let k = self.heap.pop()?;
        let out = self.slots.get_mut((k.seq - self.base) as usize)?.take();
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        out
    }
    fn clear(&mut self) {
        self.base += self.slots.len() as u64;
        self.slots.clear();
        self.heap.clear();
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
    for (index, src) in sources.into_iter().enumerate() {
        let ctx = SourceCtx {
            index,
            tx: tx.clone(),
            stop: stop.clone(),
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
            for p in batch.packets {
                if let Some(f) = &user_filter[i] {
                    if !f.matches(p.link, &p.data, p.orig_len) {
                        continue;
                    }
                }
                waiting.push(i, p);
            }
        }
        watermarks[i] = watermarks[i].max(batch.watermark);
        if let Some(done) = batch.done {
            live[i] = false;
            match done {
                Ok(r) => reports[i] = Some(r),
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
        while let Some((src, p)) = waiting.pop_until(limit) {
            out.emit(src, &p);
            emitted = true;
        }
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
    while let Some((src, p)) = waiting.pop_until(u64::MAX) {
        out.emit(src, &p);
    }
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
