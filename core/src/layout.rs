//! Check Rust mirrors of C definitions: compile a tiny program with the
//! system C compiler that prints `sizeof`/`offsetof` or constant values.
//! Used by the tests of every crate that shares a struct with BPF C.

use std::path::Path;
use std::process::Command;

/// Compile `body` (statements of `main`, each printing one integer per
/// line) with `cflags`, after including linux/types.h and `headers`; run it
/// and return the numbers it printed. Also for checks against third-party
/// headers (DPDK's).
pub fn c_program(
    include_dirs: &[&Path],
    headers: &[&str],
    tag: &str,
    body: &str,
    cflags: &[&str],
) -> Result<Vec<i64>, String> {
    let dir = std::env::temp_dir().join(format!("xcap-c-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n");
    for h in headers {
        c.push_str(&format!("#include \"{h}\"\n"));
    }
    c.push_str(&format!("int main(void){{\n{body}return 0;}}\n"));
    let src = dir.join("print.c");
    let exe = dir.join("print");
    std::fs::write(&src, c).map_err(|e| e.to_string())?;
    let mut cc = Command::new("cc");
    for d in include_dirs {
        cc.arg("-I").arg(d);
    }
    let out = cc
        .args(cflags)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let out = Command::new(&exe).output().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().map_err(|_| format!("bad output line {l:?}")))
        .collect()
}

fn print_stmt(expr: &str) -> String {
    format!("printf(\"%lld\\n\", (long long)({expr}));\n")
}

/// Size of `struct NAME` and the offset of each field, as the C compiler
/// lays them out. `headers` are included in order (after linux/types.h).
pub fn c_layout(
    include_dirs: &[&Path],
    headers: &[&str],
    name: &str,
    fields: &[&str],
) -> Result<(usize, Vec<usize>), String> {
    let mut body = print_stmt(&format!("sizeof(struct {name})"));
    for f in fields {
        body.push_str(&print_stmt(&format!("offsetof(struct {name}, {f})")));
    }
    let n = c_program(include_dirs, headers, name, &body, &[])?;
    Ok((n[0] as usize, n[1..].iter().map(|v| *v as usize).collect()))
}

/// Values of integer macros (or enum constants) `names` as the C compiler
/// sees them after including `headers`.
pub fn c_consts(
    include_dirs: &[&Path],
    headers: &[&str],
    names: &[&str],
) -> Result<Vec<i64>, String> {
    let body: String = names.iter().map(|n| print_stmt(n)).collect();
    c_program(include_dirs, headers, "consts", &body, &[])
}
