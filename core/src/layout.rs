//! Check that a Rust mirror of a C struct has the C layout: compile a tiny
//! program with the system C compiler that prints `sizeof` and `offsetof`.
//! Used by the tests of every crate that shares a struct with BPF C.

use std::path::Path;
use std::process::Command;

/// Size of `struct NAME` and the offset of each field, as the C compiler
/// lays them out. `headers` are included in order (after linux/types.h).
pub fn c_layout(
    include_dirs: &[&Path],
    headers: &[&str],
    name: &str,
    fields: &[&str],
) -> Result<(usize, Vec<usize>), String> {
    let dir = std::env::temp_dir().join(format!("xcap-layout-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n");
    for h in headers {
        c.push_str(&format!("#include \"{h}\"\n"));
    }
    c.push_str(&format!(
        "int main(void){{\nprintf(\"%zu\\n\", sizeof(struct {name}));\n"
    ));
    for f in fields {
        c.push_str(&format!(
            "printf(\"%zu\\n\", offsetof(struct {name}, {f}));\n"
        ));
    }
    c.push_str("return 0;}\n");
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c).map_err(|e| e.to_string())?;
    let mut cc = Command::new("cc");
    for d in include_dirs {
        cc.arg("-I").arg(d);
    }
    let out = cc
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
    let nums: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().map_err(|_| format!("bad output line {l:?}")))
        .collect::<Result<_, _>>()?;
    Ok((nums[0], nums[1..].to_vec()))
}

/// Values of integer macros (or enum constants) `names` as the C compiler
/// sees them after including `headers`.
pub fn c_consts(
    include_dirs: &[&Path],
    headers: &[&str],
    names: &[&str],
) -> Result<Vec<i64>, String> {
    let dir = std::env::temp_dir().join(format!(
        "xcap-consts-{}-{}",
        std::process::id(),
        names.join("-").len()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut c = String::from("#include <stdio.h>\n#include <linux/types.h>\n");
    for h in headers {
        c.push_str(&format!("#include \"{h}\"\n"));
    }
    c.push_str("int main(void){\n");
    for n in names {
        c.push_str(&format!("printf(\"%lld\\n\", (long long)({n}));\n"));
    }
    c.push_str("return 0;}\n");
    let src = dir.join("consts.c");
    let exe = dir.join("consts");
    std::fs::write(&src, c).map_err(|e| e.to_string())?;
    let mut cc = Command::new("cc");
    for d in include_dirs {
        cc.arg("-I").arg(d);
    }
    let out = cc
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
