//! Needs root: loads the kernel source into the running kernel, pings
//! loopback and checks the packets arrive through the engine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xcap_core::registry::CaptureConfig;
use xcap_core::{BusOptions, Packet, PacketRef, Result, Sink, SourceReport};

struct Collect(Arc<Mutex<Vec<Packet>>>);

impl Sink for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn write(&mut self, p: &PacketRef) -> Result<()> {
        self.0.lock().unwrap().push(p.to_packet());
        Ok(())
    }
    fn finish(&mut self, _: &[SourceReport]) -> Result<()> {
        Ok(())
    }
}

#[test]
fn captures_loopback_ping() {
    let cfg = CaptureConfig {
        interfaces: vec!["lo".into()],
        snaplen: 262144,
        ..Default::default()
    };
    let src = xcap_source_kernel::open_with(&cfg, &Default::default())
        .expect("kernel source attaches (are you root?)");
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let pinger = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let st = std::process::Command::new("ping")
            .args(["-c", "3", "-i", "0.2", "-s", "3000", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(300));
        stop2.store(true, Ordering::Relaxed);
        st
    });
    let report = xcap_core::run_bus(
        vec![src],
        vec![Box::new(Collect(got.clone()))],
        &BusOptions::default(),
        stop,
    )
    .unwrap();
    assert!(pinger.join().unwrap().unwrap().success());
    let pkts = got.lock().unwrap();
    // 3 requests and 3 replies, each seen at xmit and at receive.
    let big: Vec<_> = pkts.iter().filter(|p| p.orig_len > 3000).collect();
    assert!(
        big.len() >= 12,
        "got {} large packets: {:?}",
        big.len(),
        report
    );
    for p in &big {
        assert_eq!(p.data.len() as u32, p.orig_len, "whole packet captured");
        assert_eq!(&*p.meta.ifname, "lo");
    }
    assert_eq!(report.sources[0].dropped, 0);
}
