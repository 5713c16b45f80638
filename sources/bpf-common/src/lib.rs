//! What every libbpf-based xcap source shares: the capture runtime
//! (`runtime`, the Rust half of core/bpf/xcap_runtime.h), splicing the
//! translated filter into an object, keeping libbpf's log for error
//! messages, summing per-CPU counters, and interning strings that repeat on
//! every packet.

pub mod iface;
pub mod ring;
pub mod runtime;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libbpf_rs::{MapCore, MapFlags, PrintLevel};
use xcap_core::filter::ebpf::{self, Insn};
use xcap_core::{Error, Result};

static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn libbpf_log(level: PrintLevel, msg: String) {
    if debug() {
        eprint!("libbpf: {msg}");
    }
    if level != PrintLevel::Debug {
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            if log.len() > 200 {
                log.remove(0);
            }
            log.push(msg.trim_end().to_string());
        }
    }
}

/// `XCAP_DEBUG` is set: show libbpf's whole log and the verifier's statistics.
pub fn debug() -> bool {
    std::env::var_os("XCAP_DEBUG").is_some()
}

/// Route libbpf's messages through xcap: kept for error messages, printed
/// with XCAP_DEBUG=1.
pub fn capture_libbpf_log() {
    libbpf_rs::set_print(Some((PrintLevel::Debug, libbpf_log)));
}

/// A libbpf failure as one line: what failed, the error, a hint when it is
/// a permission problem, and libbpf's last message.
pub fn libbpf_error(what: &str, e: libbpf_rs::Error) -> Error {
    let detail = LIBBPF_LOG
        .lock()
        .ok()
        .and_then(|l| l.iter().rev().find(|m| !m.is_empty()).cloned())
        .unwrap_or_default();
    let hint = if matches!(e.kind(), libbpf_rs::ErrorKind::PermissionDenied) {
        " (xcap needs root, or CAP_BPF and CAP_PERFMON)"
    } else {
        ""
    };
    let mut msg = format!("cannot {what}: {e}{hint}");
    if !detail.is_empty() && !debug() {
        msg.push_str(&format!(
            " [libbpf: {detail}]; XCAP_DEBUG=1 shows the full log"
        ));
    }
    Error::runtime(msg)
}

/// Splice the filter into every placeholder of a BPF ELF object's code
/// sections, before libbpf opens it: the placeholder sits in a subprogram
/// (the global function xcap_run_filter), which libbpf only joins to its
/// programs while loading. The block holds no relocation
/// and has the placeholder's length, so nothing else in the ELF changes.
pub fn splice_filter_elf(elf: &[u8], block: &[Insn]) -> Result<Vec<u8>> {
    use object::{Object, ObjectSection, SectionFlags};
    // The ELF reader wants its headers aligned: an embedded byte string
    // may not be, a heap copy is.
    let aligned = elf.to_vec();
    let file = object::File::parse(&*aligned)
        .map_err(|e| Error::runtime(format!("BPF object is not ELF: {e}")))?;
    let mut out = elf.to_vec();
    let mut spliced = 0;
    for sec in file.sections() {
        let exec = matches!(sec.flags(), SectionFlags::Elf { sh_flags } if sh_flags & 0x4 != 0);
        let Some((off, len)) = sec.file_range() else {
            continue;
        };
        if !exec || off % 8 != 0 {
            continue;
        }
        let bytes = &mut out[off as usize..(off + len) as usize];
        let mut insns: Vec<Insn> = bytes.chunks_exact(8).map(Insn::from_bytes).collect();
        let n = ebpf::splice(&mut insns, block).map_err(Error::runtime)?;
        if n > 0 {
            for (c, i) in bytes.chunks_exact_mut(8).zip(&insns) {
                c.copy_from_slice(&i.to_bytes());
            }
            spliced += n;
        }
    }
    if spliced == 0 {
        return Err(Error::runtime("BPF object has no filter placeholder"));
    }
    Ok(out)
}

/// Write a program's read-only configuration (its `.rodata`, a `const
/// volatile` struct) before load; `what` names the C struct for errors.
pub fn write_rodata(m: &mut libbpf_rs::OpenMapMut<'_>, bytes: &[u8], what: &str) -> Result<()> {
    match m.initial_value_mut() {
        Some(v) if v.len() == bytes.len() => {
            v.copy_from_slice(bytes);
            Ok(())
        }
        _ => Err(Error::runtime(format!(
            "BPF object's .rodata does not match {what}"
        ))),
    }
}

/// Sum over CPUs of the u64 at `key` of a per-CPU array; 0 if unreadable.
pub fn percpu_sum(map: &libbpf_rs::Map<'_>, key: u32) -> u64 {
    match map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(vals)) => vals
            .iter()
            .filter_map(|v| v.get(..8)?.try_into().ok())
            .map(u64::from_ne_bytes)
            .sum(),
        _ => 0,
    }
}

/// Strings shared by many packets, by their raw key; the last one is
/// checked first since consecutive packets mostly repeat it.
pub struct Interned<K> {
    last: Option<(K, Arc<str>)>,
    map: HashMap<K, Arc<str>>,
}

impl<K> Default for Interned<K> {
    fn default() -> Self {
        Interned {
            last: None,
            map: HashMap::new(),
        }
    }
}

impl<K: Eq + std::hash::Hash + Copy> Interned<K> {
    /// The shared string of `key`, made by `text` the first time.
    pub fn get(&mut self, key: K, text: impl FnOnce(&K) -> String) -> &Arc<str> {
        if self.last.as_ref().is_none_or(|(k, _)| *k != key) {
            let v = self
                .map
                .entry(key)
                .or_insert_with(|| Arc::from(text(&key)))
                .clone();
            self.last = Some((key, v));
        }
        &self.last.as_ref().expect("set above").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_strings_are_shared() {
        let mut t: Interned<u32> = Interned::default();
        let a = t.get(1, |k| format!("x{k}")).clone();
        let b = t.get(2, |k| format!("x{k}")).clone();
        let c = t.get(1, |_| unreachable!()).clone();
        assert_eq!(&*a, "x1");
        assert_eq!(&*b, "x2");
        assert!(Arc::ptr_eq(&a, &c));
    }
}
