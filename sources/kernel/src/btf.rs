//! What the kernel's BTF says about tracepoints and drop reasons. Read from
//! /sys/kernel/btf/vmlinux, which is present even under `ip netns exec`,
//! where tracefs is not mounted.

use std::collections::HashMap;

use libbpf_rs::btf::types::{Enum, Func, FuncProto, MemberAttr, Struct, Typedef};
use libbpf_rs::btf::{BtfKind, BtfType};
use libbpf_rs::Btf;
use xcap_core::{Error, Result};

pub struct KernelBtf {
    btf: Btf<'static>,
}

/// A tracepoint's arguments (the context pointer excluded).
pub struct TracepointArgs {
    /// Position of the first `struct sk_buff *` argument.
    pub skb_arg: Option<usize>,
    pub nr_args: usize,
}

impl KernelBtf {
    /// The kernel's BTF, parsed once per thread (a fraction of a second,
    /// seconds in an emulated VM; --dry-run of many filters asks often).
    pub fn load() -> Result<std::rc::Rc<Self>> {
        thread_local! {
            static CACHE: std::cell::RefCell<Option<std::rc::Rc<KernelBtf>>> =
                const { std::cell::RefCell::new(None) };
        }
        if let Some(b) = CACHE.with(|c| c.borrow().clone()) {
            return Ok(b);
        }
        let btf = Btf::from_vmlinux().map_err(|e| {
            Error::runtime(format!(
                "cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}; xcap needs CONFIG_DEBUG_INFO_BTF"
            ))
        })?;
        let b = std::rc::Rc::new(KernelBtf { btf });
        CACHE.with(|c| *c.borrow_mut() = Some(b.clone()));
        Ok(b)
    }

    /// Arguments of tracepoint NAME from its `btf_trace_NAME` typedef, a
    /// pointer to `void (*)(void *, args...)`. None if there is no such
    /// tracepoint.
    pub fn tracepoint(&self, name: &str) -> Option<TracepointArgs> {
        let td: Typedef = self.btf.type_by_name(&format!("btf_trace_{name}"))?;
        let ptr = td.next_type()?;
        if ptr.kind() != BtfKind::Ptr {
            return None;
        }
        let proto: FuncProto = ptr.next_type()?.try_into().ok()?;
        let params: Vec<_> = proto.iter().skip(1).collect();
        let skb_arg = params.iter().position(|p| self.is_skb_ptr(p.ty));
        Some(TracepointArgs {
            skb_arg,
            nr_args: params.len(),
        })
    }

    fn is_skb_ptr(&self, id: libbpf_rs::btf::TypeId) -> bool {
        let Some(t) = self.btf.type_by_id::<BtfType>(id) else {
            return false;
        };
        let t = t.skip_mods_and_typedefs();
        if t.kind() != BtfKind::Ptr {
            return false;
        }
        let Some(target) = t.next_type() else {
            return false;
        };
        let target = target.skip_mods_and_typedefs();
        target.kind() == BtfKind::Struct && target.name().is_some_and(|n| n == "sk_buff")
    }

    /// Position of the first `struct sk_buff *` parameter of kernel function
    /// NAME: Some(None) when it exists but takes no skb, None when BTF does
    /// not know it (inlined, or not a function).
    pub fn function(&self, name: &str) -> Option<Option<usize>> {
        let f: Func = self.btf.type_by_name(name)?;
        let proto: FuncProto = f.next_type()?.try_into().ok()?;
        let skb = proto.iter().position(|p| self.is_skb_ptr(p.ty));
        Some(skb)
    }

    /// BTF type id of kernel function NAME (what fentry attaches to).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        let f: Func = self.btf.type_by_name(name)?;
        Some(f.type_id().into())
    }

    /// A function's parameters: for each, whether it is a struct sk_buff *.
    /// None if BTF has no such function.
    pub fn params(&self, name: &str) -> Option<Vec<bool>> {
        let f: Func = self.btf.type_by_name(name)?;
        let proto: FuncProto = f.next_type()?.try_into().ok()?;
        Some(proto.iter().map(|p| self.is_skb_ptr(p.ty)).collect())
    }

    /// A function's return type, None when it returns nothing (void).
    pub fn returns(&self, name: &str) -> Option<crate::Ret> {
        let f: Func = self.btf.type_by_name(name)?;
        let proto = f.next_type()?;
        let t = proto.next_type()?.skip_mods_and_typedefs();
        let bytes = t.alignment().ok()?.get().min(8) as u8;
        let signed = match t.kind() {
            BtfKind::Int => {
                let n = t.name().and_then(|n| n.to_str()).unwrap_or_default();
                !n.contains("unsigned") && n != "_Bool"
            }
            BtfKind::Enum | BtfKind::Enum64 => true,
            _ => false,
        };
        Some(crate::Ret { bytes, signed })
    }

    /// Layout of `skb_frag_t` for the BPF side (xcap_config.frag): byte
    /// offsets of the page (or 6.12+'s netmem), len and offset fields, bit
    /// 24 for netmem, bit 31 when known. Taken here rather than by CO-RE:
    /// a CO-RE reference to a struct this kernel lacks (6.12's skb_frag on
    /// 6.1) sends libbpf through every module's BTF, for each object loaded.
    pub fn frag_layout(&self) -> u32 {
        let Some(td) = self.btf.type_by_name::<Typedef>("skb_frag_t") else {
            return 0;
        };
        let Some(t) = td.next_type() else { return 0 };
        let Ok(st) = Struct::try_from(t.skip_mods_and_typedefs()) else {
            return 0;
        };
        let field = |names: &[&str]| {
            st.iter()
                .find_map(|m| match (m.name.and_then(|n| n.to_str()), m.attr) {
                    (Some(n), MemberAttr::Normal { offset })
                        if names.contains(&n) && offset % 8 == 0 =>
                    {
                        Some(offset / 8)
                    }
                    _ => None,
                })
        };
        let (Some(page), Some(len), Some(off)) = (
            field(&["netmem", "bv_page"]),
            field(&["len", "bv_len"]),
            field(&["offset", "bv_offset"]),
        ) else {
            return 0;
        };
        let netmem = field(&["netmem"]).is_some() as u32;
        if page.max(len).max(off) > 255 {
            return 0;
        }
        1 << 31 | netmem << 24 | off << 16 | len << 8 | page
    }

    /// Every kernel function in BTF with an skb parameter: (name, position).
    pub fn skb_functions(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for f in self.btf.type_by_kind::<Func>() {
            let Some(name) = f.name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(t) = f.next_type() else {
                continue;
            };
            let Ok(proto) = FuncProto::try_from(t) else {
                continue;
            };
            let skb = proto.iter().position(|p| self.is_skb_ptr(p.ty));
            if let Some(i) = skb {
                out.push((name.to_string(), i));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Every tracepoint that takes an skb: (name, skb argument position).
    pub fn skb_tracepoints(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for td in self.btf.type_by_kind::<Typedef>() {
            let Some(name) = td.name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(tp) = name.strip_prefix("btf_trace_") else {
                continue;
            };
            if let Some(TracepointArgs {
                skb_arg: Some(i), ..
            }) = self.tracepoint(tp)
            {
                out.push((tp.to_string(), i));
            }
        }
        out.sort();
        out
    }

    /// `enum skb_drop_reason` value -> name without the `SKB_DROP_REASON_`
    /// prefix (e.g. `NETFILTER_DROP`). Empty on kernels without it.
    pub fn drop_reasons(&self) -> HashMap<u32, String> {
        let mut map = HashMap::new();
        if let Some(e) = self.btf.type_by_name::<Enum>("skb_drop_reason") {
            for m in e.iter() {
                if let Some(name) = m.name.and_then(|n| n.to_str()) {
                    let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
                    map.insert(m.value as u32, short.to_string());
                }
            }
        }
        map
    }
}
