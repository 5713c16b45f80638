//! Linking the crate is enough for its sinks and source to be registered.

use xcap_sinks as _;

#[test]
fn builtins_are_registered() {
    let sinks: Vec<(&str, bool)> = xcap_core::registry::sinks()
        .map(|f| (f.name, f.writes_file))
        .collect();
    for want in [("pcap", true), ("pcapng", true), ("stdout", false)] {
        assert!(sinks.contains(&want), "{want:?} not in {sinks:?}");
    }
    assert!(xcap_core::registry::source("file").is_some());
}
