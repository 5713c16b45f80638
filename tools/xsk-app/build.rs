//! Compile the XDP redirect program with clang (through libbpf-cargo), as
//! sources/afxdp does; the object is embedded in the binary.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let include =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../core/bpf");
    let src = "src/bpf/redirect.bpf.c";
    libbpf_cargo::SkeletonBuilder::new()
        .source(src)
        .obj(out.join("redirect.bpf.o"))
        .clang_args([
            "-I".into(),
            include.clone().into_os_string(),
            "-mcpu=v3".into(),
            "-Wall".into(),
        ])
        .build()
        .expect("compiling the XDP redirect program (is clang installed?)");
    println!("cargo:rerun-if-changed={src}");
    println!(
        "cargo:rerun-if-changed={}",
        include.join("vmlinux.h").display()
    );
}
