//! xcap's built-in sinks and the file source:
//!
//! - `pcap`: classic pcap with nanosecond timestamps (one link type per file);
//! - `pcapng`: one interface block per (source, hook, netns, interface, link
//!   type), direction / packet id / queue as standard options, the rest of
//!   the metadata as a machine-parsable comment, statistics at close;
//! - `stdout`: one tcpdump-like line per packet, or JSON lines;
//! - `latency`: per-packet time from the first hook to each later one;
//! - source `file`: reads pcap or pcapng back (`-r`), metadata included.
//!
//! Each registers itself with `inventory`, so linking this crate is enough.

mod comment;
mod decode;
mod file;
mod latency;
mod output;
mod pcap;
mod pcapng;
mod text;

pub use comment::{
    format_comment, format_if_description, hook_short, if_name, parse_comment, parse_if_description,
};
pub use decode::{summary, write_summary};
pub use file::FileSource;
pub use pcap::PcapSink;
pub use pcapng::PcapNgSink;
pub use text::TextSink;

inventory::submit! {
    xcap_core::SinkFactory {
        name: "pcap",
        help: "classic pcap, nanosecond timestamps; one link type per file (-w FILE, - for stdout)",
        writes_file: true,
        open: pcap::open,
    }
}

inventory::submit! {
    xcap_core::SinkFactory {
        name: "pcapng",
        help: "pcapng for Wireshark: an interface per source/hook/interface, metadata as \
               packet options and comments, statistics at close (-w FILE, - for stdout)",
        writes_file: true,
        open: pcapng::open,
    }
}

inventory::submit! {
    xcap_core::SinkFactory {
        name: "stdout",
        help: "one tcpdump-like line per packet on stdout (-v: metadata, --json: JSON lines)",
        writes_file: false,
        open: text::open,
    }
}

inventory::submit! {
    xcap_core::SinkFactory {
        name: "latency",
        help: "per packet, the time from the first hook to each later one; min/median/p99 per hop at the end (--latency)",
        writes_file: false,
        open: latency::open,
    }
}

inventory::submit! {
    xcap_core::SourceFactory {
        name: "file",
        help: "read packets and their metadata from a pcap or pcapng file (-r FILE, - for stdin)",
        args: Vec::new,
        open: |cfg, _| file::open(cfg),
        list_hooks: None,
        verify: None,
    }
}
