//! Compile the BPF C next to this crate with clang (through libbpf-cargo),
//! CO-RE against the committed vmlinux.h in core/bpf. No compiler is needed
//! at run time: the object is embedded in the binary.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = "src/bpf/kernel.bpf.c";
    let include =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../core/bpf");
    libbpf_cargo::SkeletonBuilder::new()
        .source(src)
        .obj(out.join("kernel.bpf.o"))
        .clang_args([
            "-I".into(),
            include.clone().into_os_string(),
            "-mcpu=v3".into(),
            "-Wall".into(),
            "-Wno-unused-function".into(),
        ])
        .build()
        .expect("compiling the kernel BPF program (is clang installed?)");
    println!("cargo:rerun-if-changed={src}");
    println!(
        "cargo:rerun-if-changed={}",
        include.join("xcap_event.h").display()
    );
}
