pub struct HelperSource;
impl HelperSource {
    pub fn spawn(
        _: &xcap_core::CaptureConfig,
        _: &crate::probe::Options,
        _: Option<&std::path::Path>,
    ) -> xcap_core::Result<Self> {
        Err(xcap_core::Error::input("helper not built"))
    }
}
impl xcap_core::Source for HelperSource {
    fn name(&self) -> &str {
        "dpdk"
    }
    fn run(self: Box<Self>, _: xcap_core::SourceCtx) -> xcap_core::Result<xcap_core::SourceReport> {
        unreachable!()
    }
}
pub fn main(_: Vec<String>) -> i32 {
    2
}
