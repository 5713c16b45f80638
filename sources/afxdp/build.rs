//! Compile the BPF C next to this crate with clang (through libbpf-cargo),
//! CO-RE against the committed vmlinux.h in core/bpf; the object is
//! embedded in the binary.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let include =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../core/bpf");
    let src = "src/bpf/afxdp.bpf.c";
    libbpf_cargo::SkeletonBuilder::new()
        .source(src)
        .obj(out.join("afxdp.bpf.o"))
        .clang_args([
            "-I".into(),
            include.clone().into_os_string(),
            // As the other sources: 32-bit subregisters keep clang's bounds
            // checks on the registers the verifier sees.
            "-mcpu=v3".into(),
            "-Wall".into(),
            "-Wno-unused-function".into(),
        ])
        .build()
        .expect("compiling the AF_XDP BPF program (is clang installed?)");
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=src/bpf/afxdp.h");
    // The shared headers, all of them: cargo scans a directory whole.
    println!("cargo:rerun-if-changed={}", include.display());
}
