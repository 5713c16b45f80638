//! The event bus: merges every source into one timestamp-ordered stream and
//! fans it out to every sink.
//!
//! Each source sends batches with a watermark (a promise that nothing older
//! follows); a packet leaves the bus once every live source's watermark has
//! passed it. Queues are bounded and block, so a slow sink pushes back into
//! the sources' own buffers, where every loss is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::registry::{Batch, Link, Sink, Source, SourceCtx, SourceReport};
use crate::{Error, Packet, PacketRef, Result};

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

/// Everything after the sources: the user filter for sources that do not
/// filter, the merge by watermark, `-c`, and the sinks.
pub(crate) struct Flow {
    sinks: Vec<Box<dyn Sink>>,
    user_filter: Vec<Option<Arc<crate::Filter>>>,
    waiting: Waiting,
    watermarks: Vec<u64>,
    live: Vec<bool>,
    reports: Vec<Option<SourceReport>>,
    written: u64,
    per_source: Vec<u64>,
    count: Option<u64>,
    error: Option<Error>,
    source_error: Option<Error>,
    closed: bool,
    stop: Arc<AtomicBool>,
}

impl Flow {
    fn new(
        sources: &[Box<dyn Source>],
        sinks: Vec<Box<dyn Sink>>,
        opts: &BusOptions,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let n = sources.len();
        Flow {
            sinks,
            // Per source: the filter the bus must run for it, if any.
            user_filter: sources
                .iter()
                .map(|s| (!s.filters()).then(|| opts.filter.clone()).flatten())
                .collect(),
            waiting: Waiting::default(),
            watermarks: vec![0; n],
            live: vec![true; n],
            reports: vec![None; n],
            written: 0,
            per_source: vec![0; n],
            count: opts.count,
            error: None,
            source_error: None,
            closed: false,
            stop,
        }
    }

    fn full(&self) -> bool {
        self.closed || self.error.is_some() || self.count.is_some_and(|c| self.written >= c)
    }

    fn emit(&mut self, src: usize, p: &PacketRef<'_>) {
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

    /// One batch of source `i` (`done`: its last, with how it ended). What
    /// every live source's watermark has passed is written; runs written
    /// whole go to `back`.
    fn take(
        &mut self,
        i: usize,
        mut packets: Vec<Packet>,
        watermark: u64,
        done: Option<Result<SourceReport>>,
        back: &mut dyn FnMut(usize, Vec<Packet>),
    ) {
        if !self.full() {
            if let Some(f) = &self.user_filter[i] {
                packets.retain(|p| f.matches(p.link, &p.data, p.orig_len));
            }
            self.waiting.push(i, packets);
        }
        self.watermarks[i] = self.watermarks[i].max(watermark);
        if let Some(done) = done {
            self.live[i] = false;
            match done {
                Ok(r) => {
                    if let (Some(m), None) = (&r.failure, &self.source_error) {
                        self.source_error = Some(Error::runtime(m.clone()));
                        self.stop.store(true, Ordering::Relaxed);
                    }
                    self.reports[i] = Some(r)
                }
                Err(e) => {
                    if self.source_error.is_none() {
                        self.source_error = Some(e);
                    }
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        let limit = (0..self.live.len())
            .filter(|&j| self.live[j])
            .map(|j| self.watermarks[j])
            .min()
            .unwrap_or(u64::MAX);
        let mut waiting = std::mem::take(&mut self.waiting);
        let mut emitted = false;
        waiting.drain_until(
            limit,
            |src, p| {
                self.emit(src, &p.as_ref());
                emitted = true;
                !self.full()
            },
            back,
        );
        self.waiting = waiting;
        // Once per batch, not per packet: a live reader sees output promptly.
        if emitted {
            self.flush();
        }
        if self.full() {
            // -c reached, output closed or a sink failed: stop the sources;
            // what they still send is dropped until they have all reported.
            self.stop.store(true, Ordering::Relaxed);
            self.waiting.clear();
        }
    }

    /// A packet of the single source, written now, bypassing the merge (it
    /// has nothing to merge with): the user filter, `-c`, the sinks.
    /// Returns false once nothing more is to be written.
    fn write_now(&mut self, src: usize, p: &PacketRef<'_>) -> bool {
        if self.full() {
            return false;
        }
        if let Some(f) = &self.user_filter[src] {
            if !f.matches(p.link, p.data, p.orig_len) {
                return true;
            }
        }
        self.emit(src, p);
        !self.full()
    }

    /// After a batch of `write_now`: what `take` does after its batch.
    fn end_now(&mut self, wrote: bool) {
        if wrote {
            self.flush();
        }
        if self.full() {
            self.stop.store(true, Ordering::Relaxed);
            self.waiting.clear();
        }
    }

    /// Every source has ended: write what waits, finish the sinks.
    fn finish(mut self, names: Vec<String>) -> BusReport {
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.drain_until(
            u64::MAX,
            |src, p| {
                self.emit(src, &p.as_ref());
                !self.full()
            },
            |_, _| {},
        );
        let mut error = self.error.take().or(self.source_error.take());
        let reports: Vec<SourceReport> = std::mem::take(&mut self.reports)
            .into_iter()
            .zip(names)
            .map(|(r, name)| {
                r.unwrap_or(SourceReport {
                    name,
                    ..Default::default()
                })
            })
            .collect();
        for s in self.sinks.iter_mut() {
            match s.finish(&reports) {
                Ok(()) | Err(Error::Closed) => {}
                Err(e) => {
                    if error.is_none() {
                        error = Some(e)
                    }
                }
            }
        }
        BusReport {
            sources: reports,
            written: self.written,
            per_source: self.per_source,
            error,
        }
    }
}

/// A single source writes to the sinks on its own thread: with nothing to
/// merge, handing batches to another thread costs more than the writing
/// (wakeups, and every packet's memory read on another CPU).
pub(crate) struct Direct {
    flow: Flow,
    /// Written batches, for the source to reuse (see SourceCtx::recycled).
    recycled: Vec<Vec<Packet>>,
}

/// Written batches kept for reuse, per source.
const RECYCLED_MAX: usize = 8;

impl Direct {
    pub(crate) fn take(&mut self, i: usize, packets: Vec<Packet>, watermark: u64) {
        let recycled = &mut self.recycled;
        self.flow.take(i, packets, watermark, None, &mut |_, v| {
            if recycled.len() < RECYCLED_MAX {
                recycled.push(v);
            }
        });
    }
    pub(crate) fn recycled(&mut self) -> Option<Vec<Packet>> {
        self.recycled.pop()
    }
}

/// The sinks of a single source, held for one batch of borrowed packets
/// (see [`SourceCtx::direct`]); the batch ends when this is dropped.
pub struct DirectWriter<'a> {
    direct: std::sync::MutexGuard<'a, Direct>,
    index: usize,
    wrote: bool,
}

impl<'a> DirectWriter<'a> {
    pub(crate) fn new(direct: std::sync::MutexGuard<'a, Direct>, index: usize) -> Self {
        DirectWriter {
            direct,
            index,
            wrote: false,
        }
    }

    /// Write one packet to every sink; false once nothing more is to be
    /// written (-c reached, output closed, a sink failed).
    pub fn write(&mut self, p: &PacketRef<'_>) -> bool {
        self.wrote = true;
        self.direct.flow.write_now(self.index, p)
    }
}

impl Drop for DirectWriter<'_> {
    fn drop(&mut self) {
        let wrote = self.wrote;
        self.direct.flow.end_now(wrote);
    }
}

fn spawn_source(
    src: Box<dyn Source>,
    ctx: SourceCtx,
) -> Result<thread::JoinHandle<Result<SourceReport>>> {
    let name = src.name().to_string();
    thread::Builder::new()
        .name(format!("xcap-{name}"))
        .spawn(move || src.run(ctx))
        .map_err(|e| Error::runtime(format!("cannot start source thread: {e}")))
}

fn joined(r: thread::Result<Result<SourceReport>>) -> Result<SourceReport> {
    r.unwrap_or_else(|_| Err(Error::runtime("a source thread panicked")))
}

/// Run the sources until they end, `stop` is set, `-c` is reached or a sink
/// fails; then finish every sink. Sources are already attached.
pub fn run(
    sources: Vec<Box<dyn Source>>,
    sinks: Vec<Box<dyn Sink>>,
    opts: &BusOptions,
    stop: Arc<AtomicBool>,
) -> Result<BusReport> {
    let n = sources.len();
    let names: Vec<String> = sources.iter().map(|s| s.name().to_string()).collect();
    let mut flow = Flow::new(&sources, sinks, opts, stop.clone());

    if n == 1 && !flow.sinks.iter().any(|s| s.bound_to_its_thread()) {
        let direct = Arc::new(Mutex::new(Direct {
            flow,
            recycled: Vec::new(),
        }));
        let ctx = SourceCtx {
            index: 0,
            link: Link::Direct(direct.clone()),
            stop,
        };
        let src = sources.into_iter().next().expect("one source");
        let done = joined(spawn_source(src, ctx)?.join());
        // The thread and its context are gone: the flow is ours again.
        let Ok(direct) = Arc::try_unwrap(direct) else {
            return Err(Error::runtime("source context outlived its thread"));
        };
        let mut flow = direct.into_inner().unwrap_or_else(|e| e.into_inner()).flow;
        flow.take(0, Vec::new(), u64::MAX, Some(done), &mut |_, _| {});
        return Ok(flow.finish(names));
    }

    let (batch_tx, batch_rx) = sync_channel::<Batch>(64);
    let mut handles = Vec::with_capacity(n);
    // Written batches go back to their source (see SourceCtx::recycled);
    // when its queue is full or the source is gone they are dropped here.
    let mut back = Vec::with_capacity(n);
    for (index, src) in sources.into_iter().enumerate() {
        let (back_tx, back_rx) = sync_channel::<Vec<Packet>>(RECYCLED_MAX);
        back.push(back_tx);
        let ctx = SourceCtx {
            index,
            link: Link::Bus {
                tx: batch_tx.clone(),
                back: back_rx,
            },
            stop: stop.clone(),
        };
        let done_tx = batch_tx.clone();
        let name = src.name().to_string();
        let h = thread::Builder::new()
            .name(format!("xcap-{name}"))
            .spawn(move || {
                let r = joined(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    || src.run(ctx),
                )));
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
    drop(batch_tx);

    while flow.live.iter().any(|l| *l) {
        let batch = match batch_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        flow.take(
            batch.source,
            batch.packets,
            batch.watermark,
            batch.done,
            &mut |src, packets| {
                let _ = back[src].try_send(packets);
            },
        );
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(flow.finish(names))
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

    /// Sends its batches (times, watermark), then ends; counts the written
    /// batches it got back to reuse.
    struct FakeSource {
        name: &'static str,
        batches: Batches,
        recycled: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Source for FakeSource {
        fn name(&self) -> &str {
            self.name
        }
        fn run(self: Box<Self>, ctx: SourceCtx) -> Result<SourceReport> {
            for (times, mark) in &self.batches {
                while ctx.recycled().is_some() {
                    self.recycled.fetch_add(1, Ordering::Relaxed);
                }
                if ctx.stopped() {
                    break;
                }
                ctx.send(times.iter().map(|&t| pkt(t, 0)).collect(), *mark);
            }
            Ok(SourceReport {
                name: self.name.into(),
                ..Default::default()
            })
        }
    }

    /// Records what it is given, and on which thread; `.1`: a sink bound
    /// to its thread (a plugin's).
    struct Recorder(Arc<Mutex<Vec<(u64, String)>>>, bool);

    impl Sink for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn bound_to_its_thread(&self) -> bool {
            self.1
        }
        fn write(&mut self, p: &PacketRef) -> Result<()> {
            let t = thread::current().name().unwrap_or("").to_string();
            self.0.lock().unwrap().push((p.ts_ns, t));
            Ok(())
        }
        fn finish(&mut self, _: &[SourceReport]) -> Result<()> {
            Ok(())
        }
    }

    /// A fake source's batches: packet times and the watermark after them.
    type Batches = Vec<(Vec<u64>, u64)>;

    fn capture(
        sources: Vec<(&'static str, Batches)>,
        count: Option<u64>,
    ) -> (BusReport, Vec<(u64, String)>, usize) {
        capture_to(sources, count, false)
    }

    fn capture_to(
        sources: Vec<(&'static str, Batches)>,
        count: Option<u64>,
        bound: bool,
    ) -> (BusReport, Vec<(u64, String)>, usize) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recycled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sources: Vec<Box<dyn Source>> = sources
            .into_iter()
            .map(|(name, batches)| {
                Box::new(FakeSource {
                    name,
                    batches,
                    recycled: recycled.clone(),
                }) as Box<dyn Source>
            })
            .collect();
        let opts = BusOptions {
            count,
            filter: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let sink = Box::new(Recorder(seen.clone(), bound));
        let r = run(sources, vec![sink], &opts, stop).unwrap();
        let seen = seen.lock().unwrap().clone();
        (r, seen, recycled.load(Ordering::Relaxed))
    }

    #[test]
    fn one_source_writes_in_time_order_on_its_own_thread() {
        let batches = vec![
            (vec![10, 30, 20], 15),
            (vec![25, 40], 35),
            (vec![50], 45),
            (vec![45, 60], 55),
        ];
        let (r, seen, recycled) = capture(vec![("one", batches)], None);
        let times: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(times, [10, 20, 25, 30, 40, 45, 50, 60]);
        // No bus thread: the sink ran where the source did (what waits
        // for a watermark when the source ends is written after it).
        assert!(seen[..7].iter().all(|s| s.1 == "xcap-one"), "{seen:?}");
        // Written batches came back for reuse.
        assert!(recycled >= 1);
        assert_eq!((r.written, r.per_source.clone()), (8, vec![8]));
        assert_eq!(r.sources[0].name, "one");
    }

    #[test]
    fn a_sink_bound_to_its_thread_is_written_from_it() {
        let batches = vec![(vec![10, 20], 15), (vec![30], u64::MAX)];
        let (r, seen, _) = capture_to(vec![("one", batches)], None, true);
        assert_eq!(r.written, 3);
        assert!(seen.iter().all(|s| !s.1.starts_with("xcap-")), "{seen:?}");
    }

    #[test]
    fn several_sources_merge_on_the_bus_thread() {
        let (r, seen, _) = capture(
            vec![
                ("a", vec![(vec![10, 30], 30), (vec![50], u64::MAX)]),
                ("b", vec![(vec![20, 40], 40), (vec![45], u64::MAX)]),
            ],
            None,
        );
        let times: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(times, [10, 20, 30, 40, 45, 50]);
        assert!(seen.iter().all(|s| !s.1.starts_with("xcap-")), "{seen:?}");
        assert_eq!(r.per_source, [3, 3]);
    }

    #[test]
    fn count_ends_one_source_and_several() {
        let batches = vec![(vec![1, 2, 3], 3), (vec![4, 5, 6], 6), (vec![7], 7)];
        let (r, seen, _) = capture(vec![("one", batches.clone())], Some(4));
        assert_eq!((r.written, seen.len()), (4, 4));
        let (r, seen, _) = capture(vec![("a", batches.clone()), ("b", batches)], Some(4));
        assert_eq!((r.written, seen.len()), (4, 4));
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
