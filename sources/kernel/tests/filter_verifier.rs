//! Needs root: every expression of the filter test set, translated and
//! spliced into the kernel source's programs, is accepted by this kernel's
//! verifier (at a generic tracepoint and at the drop tracepoint).

use xcap_core::filter::testset;
use xcap_core::registry::{self, CaptureConfig};
use xcap_core::Filter;

#[test]
fn verifier_accepts_every_test_expression() {
    use xcap_source_kernel as _;
    let f = registry::source("kernel").expect("kernel source registered");
    let exprs = testset::all(60);
    let mut failures = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        let filter = Filter::compile(e, 262_144).unwrap();
        // The drop hook too, for a share of them: its program differs.
        let mut hooks = vec!["tp:net:netif_receive_skb".to_string()];
        if i % 8 == 0 {
            hooks.push("tp:skb:kfree_skb".to_string());
        }
        let cfg = CaptureConfig {
            hooks,
            snaplen: 262_144,
            buffer_kib: 64,
            filter: Some(std::sync::Arc::new(filter)),
            ..Default::default()
        };
        if let Err(err) = (f.open)(&cfg) {
            failures.push(format!("{e}: {err}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rejected:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );
}
