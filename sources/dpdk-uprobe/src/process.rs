//! A running process seen from outside: its mappings, its memory, and the
//! symbols of the ELF files it has mapped.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment, ObjectSymbol};
use xcap_core::{Error, Result};

#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub exec: bool,
    /// The mapped file as the process names it; None for anonymous memory.
    pub path: Option<String>,
}

pub struct Process {
    pub pid: u32,
    /// The executable, as the process names it.
    pub exe: String,
    pub maps: Vec<Mapping>,
    mem: File,
}

/// A symbol of a mapped ELF file, at its run-time address.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub path: String,
}

impl Process {
    /// Open PID for reading; bad input (no such process) is Error::Input.
    pub fn open(pid: u32) -> Result<Process> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        if !dir.exists() {
            return Err(Error::input(format!("no process with pid {pid}")));
        }
        let exe = std::fs::read_link(dir.join("exe"))
            .map_err(|e| Error::input(format!("cannot inspect pid {pid}: {e}")))?
            .to_string_lossy()
            .into_owned();
        let mem = File::open(dir.join("mem"))
            .map_err(|e| Error::input(format!("cannot read the memory of pid {pid}: {e}")))?;
        let mut p = Process {
            pid,
            exe,
            maps: Vec::new(),
            mem,
        };
        p.reload_maps()?;
        Ok(p)
    }

    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}/exe", self.pid)).exists()
    }

    pub fn reload_maps(&mut self) -> Result<()> {
        let text = std::fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .map_err(|e| Error::runtime(format!("cannot read maps of pid {}: {e}", self.pid)))?;
        self.maps = parse_maps(&text);
        Ok(())
    }

    /// Read exactly buf.len() bytes at addr of the process's memory.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.mem.read_exact_at(buf, addr).map_err(|e| {
            Error::runtime(format!(
                "cannot read {} bytes at {addr:#x} of pid {}: {e}",
                buf.len(),
                self.pid
            ))
        })
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    /// The file the process maps at `path`, opened through its own root (it
    /// may live in another mount namespace).
    pub fn host_path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// Distinct mapped files, the executable first.
    pub fn files(&self) -> Vec<String> {
        let mut v = vec![self.exe.clone()];
        for m in &self.maps {
            if let Some(p) = &m.path {
                if !v.contains(p) {
                    v.push(p.clone());
                }
            }
        }
        v
    }

    /// Find a defined symbol in the mapped files for which `which` is true,
    /// in the order of `files()`: the executable's own definition wins (a
    /// PIE executable holds copy-relocated data, and the library's copy is
    /// then unused).
    pub fn symbol(&self, name: &str, which: impl Fn(&str) -> bool) -> Option<Symbol> {
        self.files()
            .into_iter()
            .filter(|f| which(f))
            .find_map(|f| self.symbol_in(&f, name))
    }

    /// A defined symbol of one mapped file, relocated to where it is mapped.
    pub fn symbol_in(&self, path: &str, name: &str) -> Option<Symbol> {
        let data = std::fs::read(self.host_path(path)).ok()?;
        let elf = object::File::parse(&*data).ok()?;
        let sym = elf
            .dynamic_symbols()
            .chain(elf.symbols())
            .find(|s| !s.is_undefined() && s.name() == Ok(name))?;
        let bias = self.load_bias(path, &elf)?;
        Some(Symbol {
            addr: bias.wrapping_add(sym.address()),
            size: sym.size(),
            path: path.to_string(),
        })
    }

    /// Run-time address minus link-time address for a mapped ELF file.
    fn load_bias(&self, path: &str, elf: &object::File) -> Option<u64> {
        let seg = elf
            .segments()
            .find(|s| s.file_range().0 == 0 && s.file_range().1 > 0)?;
        let map = self
            .maps
            .iter()
            .find(|m| m.path.as_deref() == Some(path) && m.offset == 0)?;
        Some(map.start.wrapping_sub(seg.address() & !0xfff))
    }

    /// The mapped file and offset in it of an executable address: what a
    /// uprobe is attached by.
    pub fn file_offset(&self, addr: u64) -> Option<(String, u64)> {
        let m = self
            .maps
            .iter()
            .find(|m| m.exec && m.start <= addr && addr < m.end)?;
        Some((m.path.clone()?, addr - m.start + m.offset))
    }

    /// The mapped file that holds `addr`, as --dpdk-hook takes it.
    pub fn describe(&self, addr: u64) -> String {
        match self.file_offset(addr) {
            Some((path, off)) => format!("{}:{off:#x}", basename(&path)),
            None => format!("{addr:#x}"),
        }
    }
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
            let (_dev, _inode) = (f.next()?, f.next()?);
            let path: Vec<&str> = f.collect();
            let path = path.join(" ");
            let (a, b) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                exec: perms.as_bytes().get(2) == Some(&b'x'),
                // "[heap]", "[stack]" and deleted files cannot be probed or read.
                path: (path.starts_with('/') && !path.ends_with(" (deleted)")).then_some(path),
            })
        })
        .collect()
}

/// Processes whose executable is `exe` (for --dpdk-pid PATH).
pub fn pids_of(exe: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.as_path() == exe)
        })
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse() {
        let m = parse_maps(
            "561ef3286000-561ef32df000 r-xp 00040000 fe:00 10199151   /usr/bin/dpdk-testpmd\n\
             7ffd1000-7ffd2000 rw-p 00000000 00:00 0                  [stack]\n\
             7f00-7f10 r-xp 00001000 fe:00 1 /tmp/a b (deleted)\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].start, 0x561ef3286000);
        assert_eq!(m[0].offset, 0x40000);
        assert!(m[0].exec);
        assert_eq!(m[0].path.as_deref(), Some("/usr/bin/dpdk-testpmd"));
        assert!(m[1].path.is_none() && !m[1].exec);
        assert!(m[2].path.is_none());
    }

    /// Our own executable: a symbol of it found through /proc/self must be
    /// at the address the linker gave it at run time.
    #[test]
    fn finds_own_symbol_at_its_runtime_address() {
        let p = Process::open(std::process::id()).unwrap();
        let libc_read = libc::read as *const () as u64;
        let sym = p
            .symbol("read", |f| f.contains("libc.so"))
            .expect("read in libc");
        assert_eq!(sym.addr, libc_read);
        let (path, off) = p.file_offset(libc_read).unwrap();
        assert!(path.contains("libc.so"));
        assert!(off > 0);
    }
}
