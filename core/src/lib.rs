//! xcap's engine: the packet model, the `Source` and `Sink` traits, the
//! registry of built-in sources and sinks, and the bus that merges every
//! source into one timestamp-ordered stream and fans it out to the sinks.

pub mod bus;
pub mod error;
pub mod event;
pub mod filter;
pub mod layout;
pub mod packet;
pub mod privs;
pub mod registry;
pub mod time;

pub use bus::{run as run_bus, BusOptions, BusReport, DirectWriter};
pub use error::{Error, Result};
pub use filter::Filter;
pub use packet::{Direction, LinkType, Meta, Packet, PacketRef};
pub use registry::{
    Batch, ByteDump, CaptureConfig, Sink, SinkConfig, SinkFactory, Source, SourceCtx,
    SourceFactory, SourceReport, TextFormat,
};

/// Directory holding the BPF headers every source shares (event record, vmlinux.h).
pub const BPF_INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf");
