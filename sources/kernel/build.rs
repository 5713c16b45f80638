//! Compile the BPF C next to this crate with clang (through libbpf-cargo),
//! CO-RE against the committed vmlinux.h in core/bpf. No compiler is needed
//! at run time: the objects are embedded in the binary.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let include =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../core/bpf");
    // kernel: the capture programs; probe: tiny programs that find out which
    // function-hook backends the running kernel allows.
    for name in ["kernel", "probe"] {
        let src = format!("src/bpf/{name}.bpf.c");
        libbpf_cargo::SkeletonBuilder::new()
            .source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args([
                "-I".into(),
                include.clone().into_os_string(),
                // v3: 32-bit subregisters, so clang's bounds checks stay on
                // the registers the verifier sees.
                "-mcpu=v3".into(),
                "-Wall".into(),
                "-Wno-unused-function".into(),
            ])
            .build()
            .expect("compiling the kernel BPF programs (is clang installed?)");
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/kernel.h");
    // The shared headers, all of them: cargo scans a directory whole.
    println!("cargo:rerun-if-changed={}", include.display());
}
