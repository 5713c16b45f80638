//! Read a plugin's descriptor head from its ELF file, before opening it:
//! no code of a file that is not an xcap plugin (or speaks another ABI
//! major) ever runs, constructors included.

use object::{Object, ObjectKind, ObjectSection, ObjectSymbol};
use xcap_plugin_sdk::abi;

/// Bytes of the descriptor head: magic, major, minor, size.
const HEAD: u64 = 16;
/// `struct xcap_plugin` of ABI 1.0, the smallest any 1.x plugin has (it
/// stays 72 when later minors add fields).
pub const MIN_SIZE: u32 = 72;

pub fn check(path: &std::path::Path) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let file = object::File::parse(&*data)
        .map_err(|_| "not an xcap plugin (not an ELF file)".to_string())?;
    if file.kind() != ObjectKind::Dynamic {
        return Err("not an xcap plugin (not a shared library)".into());
    }
    let host = if cfg!(target_arch = "x86_64") {
        object::Architecture::X86_64
    } else if cfg!(target_arch = "aarch64") {
        object::Architecture::Aarch64
    } else {
        file.architecture()
    };
    if file.architecture() != host {
        return Err(format!(
            "built for {:?}, not for this machine ({host:?})",
            file.architecture()
        ));
    }
    let sym = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok(abi::SYMBOL) && s.is_definition())
        .ok_or_else(|| format!("not an xcap plugin (it exports no '{}')", abi::SYMBOL))?;
    let head = sym
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .and_then(|s| s.data_range(sym.address(), HEAD).ok().flatten())
        .ok_or_else(|| format!("'{}' has no data in the file", abi::SYMBOL))?;
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let magic = u64::from_le_bytes(head[0..8].try_into().unwrap());
    let (major, minor) = (u16_at(8), u16_at(10));
    let size = u32::from_le_bytes(head[12..16].try_into().unwrap());
    if magic != abi::MAGIC {
        return Err(format!(
            "not an xcap plugin ('{}' lacks the magic)",
            abi::SYMBOL
        ));
    }
    if major != abi::ABI_MAJOR {
        return Err(format!(
            "built for plugin ABI {major}.{minor}; this xcap speaks ABI {}.x",
            abi::ABI_MAJOR
        ));
    }
    if size < MIN_SIZE || sym.size() < MIN_SIZE as u64 {
        return Err(format!(
            "descriptor of {size} bytes; ABI {}.0 needs at least {MIN_SIZE}",
            abi::ABI_MAJOR
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn min_size_is_abi_1_0() {
        // Holds while abi.rs is ABI 1.0; later minors keep MIN_SIZE.
        assert_eq!(
            super::MIN_SIZE as usize,
            std::mem::size_of::<super::abi::Plugin>()
        );
    }
}
