//! The per-packet path of the file and text sinks allocates nothing once
//! warm (issue 12): every packet of the shared set, with its stacks, drop
//! reasons and extra fields, written 300 times more after 300 rounds to
//! warm the buffers, interfaces and cached comment parts. JSON output
//! (`--json`) builds a value per packet and is not held to this.
//!
//! A global allocator counts this thread's allocations, so tests running
//! beside it on other threads do not count.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use xcap_core::registry::{ByteDump, TextFormat};
use xcap_core::{Packet, Sink, SinkConfig};
use xcap_sinks::{PcapNgSink, PcapSink, TextSink};

thread_local! {
    // Const-initialised and without a destructor: reading it allocates
    // nothing, so the allocator may use it.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed on to System unchanged; counting touches
// only a thread-local Cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(p, l, size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations while writing `packets` ROUNDS times, after as many rounds
/// to warm up: more than one output buffer's worth (256 KiB), so the list
/// of block ends has grown to what a buffer holds.
fn steady(s: &mut dyn Sink, packets: &[Packet]) -> u64 {
    const ROUNDS: usize = 300;
    let round = |s: &mut dyn Sink| {
        for p in packets {
            s.write(&p.as_ref()).unwrap();
        }
    };
    for _ in 0..ROUNDS {
        round(s);
    }
    let before = ALLOCS.with(Cell::get);
    for _ in 0..ROUNDS {
        round(s);
    }
    ALLOCS.with(Cell::get) - before
}

fn to_null() -> SinkConfig {
    SinkConfig {
        path: Some("/dev/null".into()),
        snaplen: SNAPLEN,
        ..Default::default()
    }
}

#[test]
fn pcapng_and_pcap_write_without_allocating() {
    let packets = packets();
    let mut ng = PcapNgSink::open(&to_null()).unwrap();
    assert_eq!(steady(&mut ng, &packets), 0, "pcapng");
    // pcap holds one link type: the Ethernet packets.
    let eth: Vec<Packet> = packets
        .iter()
        .filter(|p| p.link == packets[0].link)
        .cloned()
        .collect();
    let mut pcap = PcapSink::open(&to_null()).unwrap();
    assert_eq!(steady(&mut pcap, &eth), 0, "pcap");
}

#[test]
fn text_formats_without_allocating() {
    let packets = packets();
    for (verbose, bytes, link_header) in [
        (0, ByteDump::None, false),
        (1, ByteDump::None, true),
        (0, ByteDump::HexLink, false),
        (0, ByteDump::Ascii, false),
    ] {
        for time in 0..=5 {
            let cfg = SinkConfig {
                verbose,
                text: TextFormat {
                    time,
                    bytes,
                    link_header,
                    quick: false,
                },
                ..to_null()
            };
            let mut t = TextSink::new(Box::new(std::io::sink()), &cfg);
            let n = steady(&mut t, &packets);
            assert_eq!(n, 0, "-v {verbose} {bytes:?} -e {link_header} -t x{time}");
        }
    }
}
