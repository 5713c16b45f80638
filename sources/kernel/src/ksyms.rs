//! Kernel symbols from /proc/kallsyms: drop locations and stacks by name,
//! and the addresses of the direct-map base variables the BPF side needs to
//! turn a `struct page` into a readable address.

use std::collections::HashMap;
use std::fs;

#[derive(Default)]
pub struct Ksyms {
    /// Text symbols sorted by address.
    syms: Vec<(u64, String)>,
    cache: HashMap<u64, String>,
}

/// Addresses of `vmemmap_base` and `page_offset_base` (0 when absent, i.e.
/// the kernel does not randomize its memory layout and the defaults hold).
pub fn direct_map_vars() -> (u64, u64) {
    let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let (mut vmemmap, mut page_offset) = (0, 0);
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(_), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        match name {
            "vmemmap_base" => vmemmap = u64::from_str_radix(addr, 16).unwrap_or(0),
            "page_offset_base" => page_offset = u64::from_str_radix(addr, 16).unwrap_or(0),
            _ => continue,
        }
        if vmemmap != 0 && page_offset != 0 {
            break;
        }
    }
    (vmemmap, page_offset)
}

impl Ksyms {
    pub fn load() -> Self {
        let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                    .then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable();
        Ksyms {
            syms,
            cache: HashMap::new(),
        }
    }

    /// `name+0xoff`, or the bare address when unknown (addresses hidden by
    /// kptr_restrict read as 0 and give no symbols).
    pub fn symbolize(&mut self, addr: u64) -> String {
        if let Some(s) = self.cache.get(&addr) {
            return s.clone();
        }
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        let s = if i == 0 {
            format!("0x{addr:x}")
        } else {
            let (base, name) = &self.syms[i - 1];
            format!("{name}+0x{:x}", addr - base)
        };
        self.cache.insert(addr, s.clone());
        s
    }
}
