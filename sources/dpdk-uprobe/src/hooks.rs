//! `--dpdk-hook`: burst functions named by hand, for applications where
//! the fast-path table does not lead to them (static builds, wrappers,
//! functions of the application itself). Written as netcap wrote them:
//!
//!   [rx:|tx:]FUNC@ARG          FUNC's argument ARG is one mbuf
//!   [rx:|tx:]FUNC@ARR@CNT      argument ARR is an mbuf array, CNT its count
//!   [rx:|tx:]FUNC@ARR@ret      ... and the count is the return value
//!
//! FUNC is a symbol of the executable or a mapped library, or LIB:OFFSET
//! (a file offset in a mapped library, `librte_net_pcap.so.23:0x2f40`).
//! Arguments count from 1. Without rx:/tx:, a function whose count is its
//! return value receives, one with a count argument transmits.

use xcap_core::{Direction, Error, Result};

use crate::config::{Args, ARG_NONE, ARG_RET};
use crate::process::{basename, Process};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Func {
    Symbol(String),
    Offset { lib: String, offset: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    pub text: String,
    pub func: Func,
    pub args: Args,
    pub dir: Direction,
}

fn argno(s: &str, spec: &str) -> Result<u8> {
    match s.parse::<u8>() {
        Ok(n @ 1..=6) => Ok(n - 1),
        _ => Err(Error::input(format!(
            "--dpdk-hook '{spec}': '{s}' is not an argument number (1 to 6)"
        ))),
    }
}

pub fn parse(spec: &str) -> Result<HookSpec> {
    let bad = |m: &str| {
        Error::input(format!(
            "--dpdk-hook '{spec}': {m} (write FUNC@ARG, FUNC@ARR@CNT or FUNC@ARR@ret; FUNC may be LIB:OFFSET)"
        ))
    };
    let (dir, rest) = if let Some(r) = spec.strip_prefix("rx:") {
        (Some(Direction::In), r)
    } else if let Some(r) = spec.strip_prefix("tx:") {
        (Some(Direction::Out), r)
    } else {
        (None, spec)
    };
    let mut parts = rest.split('@');
    let func = parts.next().unwrap_or_default();
    let nums: Vec<&str> = parts.collect();
    if func.is_empty() {
        return Err(bad("no function"));
    }
    let func = match func.rsplit_once(':') {
        Some((lib, off)) => {
            let offset = off
                .strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|| off.parse())
                .map_err(|_| bad(&format!("'{off}' is not a file offset")))?;
            if lib.is_empty() {
                return Err(bad("no library before the offset"));
            }
            Func::Offset {
                lib: lib.to_string(),
                offset,
            }
        }
        None => Func::Symbol(func.to_string()),
    };
    let args = match nums.as_slice() {
        [a] => Args {
            arr: argno(a, spec)?,
            cnt: ARG_NONE,
            queue: ARG_NONE,
            single: true,
        },
        [a, c] => {
            let arr = argno(a, spec)?;
            let cnt = if *c == "ret" {
                ARG_RET
            } else {
                argno(c, spec)?
            };
            Args {
                arr,
                cnt,
                // The burst functions' first argument is their queue; the
                // queue map simply finds nothing when it is not one.
                queue: if arr == 0 { ARG_NONE } else { 0 },
                single: false,
            }
        }
        [] => return Err(bad("no argument position")),
        _ => return Err(bad("too many '@'")),
    };
    let dir = dir.unwrap_or(if args.needs_return() {
        Direction::In
    } else if args.single {
        Direction::Unknown
    } else {
        Direction::Out
    });
    Ok(HookSpec {
        text: spec.to_string(),
        func,
        args,
        dir,
    })
}

/// The file and file offset to attach a hand-named hook at.
pub fn locate(h: &HookSpec, p: &Process) -> Result<(String, u64)> {
    match &h.func {
        Func::Symbol(name) => {
            let sym = p.symbol(name, |_| true).ok_or_else(|| {
                Error::input(format!(
                    "--dpdk-hook '{}': no function {name} in pid {} or its libraries (stripped? use LIB:OFFSET)",
                    h.text, p.pid
                ))
            })?;
            p.file_offset(sym.addr).ok_or_else(|| {
                Error::input(format!(
                    "--dpdk-hook '{}': {name} is not in executable memory of pid {}",
                    h.text, p.pid
                ))
            })
        }
        Func::Offset { lib, offset } => {
            let path = p
                .files()
                .into_iter()
                .find(|f| f == lib || basename(f) == lib || basename(f).starts_with(lib.as_str()))
                .ok_or_else(|| {
                    Error::input(format!(
                        "--dpdk-hook '{}': pid {} has no library {lib} mapped",
                        h.text, p.pid
                    ))
                })?;
            Ok((path, *offset))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let h = parse("eth_pcap_rx@2@ret").unwrap();
        assert_eq!(h.func, Func::Symbol("eth_pcap_rx".into()));
        assert_eq!(h.args, Args::RX_BURST);
        assert_eq!(h.dir, Direction::In);
        let h = parse("librte_net_null.so.23:0x1f40@2@3").unwrap();
        assert_eq!(
            h.func,
            Func::Offset {
                lib: "librte_net_null.so.23".into(),
                offset: 0x1f40
            }
        );
        assert_eq!(h.args, Args::TX_BURST);
        assert_eq!(h.dir, Direction::Out);
        let h = parse("rx:/opt/app:4096@1").unwrap();
        assert!(h.args.single && h.args.arr == 0);
        assert_eq!(h.dir, Direction::In);
        for bad in [
            "", "f", "f@0", "f@7", "f@1@2@3", "@1", ":10@1", "lib:zz@1", "f@1@x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
