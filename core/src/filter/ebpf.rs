//! Classic BPF (as libpcap emits it) translated to eBPF, as one block of
//! instructions that is spliced into a BPF program in place of a placeholder
//! of the same length (so no other offset of the program moves).
//!
//! Block interface (registers on entry, set by the C code around the
//! placeholder; see `xcap_filter.h`):
//!   r1 = packet bytes (map value), r2 = bytes available there,
//!   r3 = packet length on the wire, r4 = 16 u32 of scratch memory (stack),
//!   r5 = 0 for an Ethernet packet, 1 for raw IP.
//! On exit (falling off the end of the block) r0 is one of `MISS`, `MATCH`,
//! `NEED_MORE`: a load past r2 but within r3 asks the caller to copy more of
//! the packet and run the block again. A = w5, X = w6; r7, r8 are scratch.

use super::pcap::CbpfInsn;

pub const MISS: u32 = 0;
pub const MATCH: u32 = 1;
pub const NEED_MORE: u32 = 2;

/// Length of the placeholder block in BPF programs (`XCAP_FILTER_INSNS`).
pub const BLOCK_INSNS: usize = 4096;
/// The placeholder's first instruction loads this into r0 (`XCAP_FILTER_MARKER`).
pub const MARKER: u32 = 0x7863_6170;

/// Replace every placeholder block in `prog` by `block` (which must be
/// `BLOCK_INSNS` long). Returns how many were replaced; a placeholder that is
/// not intact is an error (the object was built differently than expected).
pub fn splice(prog: &mut [Insn], block: &[Insn]) -> Result<usize, String> {
    assert_eq!(block.len(), BLOCK_INSNS);
    let mut n = 0;
    let mut i = 0;
    while i + 1 < prog.len() {
        let p = prog[i];
        if p.code == LD | DW | IMM && p.dst() == 0 && p.imm as u32 == MARKER && prog[i + 1].imm == 0
        {
            let end = i + BLOCK_INSNS;
            let pad_ok = end <= prog.len()
                && prog[i + 2..end]
                    .iter()
                    .all(|x| x.code == ALU64 | MOV | K && x.dst() == 0 && x.imm == 1);
            if !pad_ok {
                return Err(format!(
                    "filter placeholder at instruction {i} is not intact"
                ));
            }
            prog[i..end].copy_from_slice(block);
            n += 1;
            i = end;
        } else {
            i += 1;
        }
    }
    Ok(n)
}

/// Largest offset the block can read: the data area of the BPF side.
pub const MAX_DATA: u32 = crate::event::MAX_SNAPLEN;

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn dst(&self) -> u8 {
        self.regs & 0xf
    }
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Insn {
        Insn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

// eBPF opcode parts.
pub const LD: u8 = 0x00;
pub const LDX: u8 = 0x01;
pub const STX: u8 = 0x03;
pub const ALU: u8 = 0x04;
pub const JMP: u8 = 0x05;
pub const JMP32: u8 = 0x06;
pub const ALU64: u8 = 0x07;
pub const W: u8 = 0x00;
pub const H: u8 = 0x08;
pub const B: u8 = 0x10;
pub const DW: u8 = 0x18;
pub const IMM: u8 = 0x00;
pub const MEM: u8 = 0x60;
pub const K: u8 = 0x00;
pub const X: u8 = 0x08;
pub const ADD: u8 = 0x00;
pub const SUB: u8 = 0x10;
pub const MUL: u8 = 0x20;
pub const DIV: u8 = 0x30;
pub const OR: u8 = 0x40;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const NEG: u8 = 0x80;
pub const MOD: u8 = 0x90;
pub const XOR: u8 = 0xa0;
pub const MOV: u8 = 0xb0;
pub const END: u8 = 0xd0;
pub const TO_BE: u8 = 0x08;
pub const JA: u8 = 0x00;
pub const JEQ: u8 = 0x10;
pub const JGT: u8 = 0x20;
pub const JGE: u8 = 0x30;
pub const JSET: u8 = 0x40;
pub const JNE: u8 = 0x50;
pub const EXIT: u8 = 0x90;

const R0: u8 = 0;
const DATA: u8 = 1;
const BUFLEN: u8 = 2;
const WIRELEN: u8 = 3;
const MEMP: u8 = 4;
const A: u8 = 5;
const XR: u8 = 6;
const T1: u8 = 7;
const T2: u8 = 8;

/// Where a jump goes before offsets are known.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Start of classic instruction i of the current program.
    Cbpf(usize),
    /// Another label of the block.
    Label(Label),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// Code for raw-IP packets.
    L3,
    /// Decide MISS or NEED_MORE from the end offset in r8.
    NeedOrMiss,
    /// r0 = MISS, leave.
    Miss,
    /// The padding that fills the block (reachable only in the CFG).
    Pad,
    /// First instruction after the block.
    End,
}

struct Asm {
    out: Vec<Insn>,
    /// (instruction index, target, program base for Cbpf targets)
    fixups: Vec<(usize, Target, usize)>,
    labels: Vec<(Label, usize)>,
    /// eBPF index of each classic instruction, per program (L2 then L3).
    starts: Vec<Vec<usize>>,
}

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

impl Asm {
    fn emit(&mut self, i: Insn) {
        self.out.push(i);
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, t: Target) {
        let prog = self.starts.len().saturating_sub(1);
        self.fixups.push((self.out.len(), t, prog));
        self.emit(ins(code, dst, src, 0, imm));
    }
    fn ja(&mut self, t: Target) {
        self.jump(JMP | JA, 0, 0, 0, t);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.out.len()));
    }
    fn mov32_imm(&mut self, dst: u8, imm: u32) {
        self.emit(ins(ALU | MOV | K, dst, 0, 0, imm as i32));
    }
    fn set_r0_and_leave(&mut self, v: u32) {
        self.mov32_imm(R0, v);
        self.ja(Target::Label(Label::End));
    }
    /// A (or X for `into_x`) = packet bytes [r_addr + 0, size), big-endian.
    fn load(&mut self, dst: u8, size: u32, base: u8, off: i16) {
        let sz = match size {
            4 => W,
            2 => H,
            _ => B,
        };
        self.emit(ins(LDX | MEM | sz, dst, base, off, 0));
        if size > 1 {
            self.emit(ins(ALU | END | TO_BE, dst, 0, 0, (size * 8) as i32));
        }
    }
    /// Load of `size` bytes at constant offset k.
    fn load_abs(&mut self, dst: u8, size: u32, k: u32) {
        let end = k as u64 + size as u64;
        if end > MAX_DATA as u64 {
            // Past anything xcap can copy: libpcap would need the bytes too,
            // and a packet that long cannot be captured to that depth.
            self.set_r0_and_leave(MISS);
            return;
        }
        self.mov32_imm(T2, end as u32);
        self.jump(
            JMP | JGT | X,
            T2,
            BUFLEN,
            0,
            Target::Label(Label::NeedOrMiss),
        );
        if k <= i16::MAX as u32 {
            self.load(dst, size, DATA, k as i16);
        } else {
            self.emit(ins(ALU64 | MOV | X, T1, DATA, 0, 0));
            self.mov32_imm(T2, k);
            self.emit(ins(ALU64 | ADD | X, T1, T2, 0, 0));
            self.load(dst, size, T1, 0);
        }
    }
    /// Load of `size` bytes at X + k.
    fn load_ind(&mut self, size: u32, k: u32) {
        // t1 = X + k in 64 bits: no wrap-around, as in libpcap's checks.
        self.emit(ins(ALU64 | MOV | X, T1, XR, 0, 0));
        self.mov32_imm(T2, k);
        self.emit(ins(ALU64 | ADD | X, T1, T2, 0, 0));
        self.emit(ins(ALU64 | MOV | X, T2, T1, 0, 0));
        self.emit(ins(ALU64 | ADD | K, T2, 0, 0, size as i32));
        self.jump(
            JMP | JGT | X,
            T2,
            BUFLEN,
            0,
            Target::Label(Label::NeedOrMiss),
        );
        // Bound t1 for the verifier: it cannot know r2 <= MAX_DATA.
        self.jump(
            JMP | JGT | K,
            T1,
            0,
            (MAX_DATA - size) as i32,
            Target::Label(Label::NeedOrMiss),
        );
        self.emit(ins(ALU64 | ADD | X, T1, DATA, 0, 0));
        self.load(A, size, T1, 0);
    }
}

fn cbpf_size(code: u16) -> u32 {
    match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        _ => 1,
    }
}

/// Error for a classic program the translation cannot express.
#[derive(Debug, PartialEq, Eq)]
pub struct Untranslatable(pub String);

fn translate_prog(a: &mut Asm, prog: &[CbpfInsn]) -> Result<(), Untranslatable> {
    a.starts.push(Vec::with_capacity(prog.len()));
    // A = X = 0, as libpcap's interpreter starts.
    a.mov32_imm(A, 0);
    a.mov32_imm(XR, 0);
    for (i, p) in prog.iter().enumerate() {
        let idx = a.out.len();
        a.starts.last_mut().unwrap().push(idx);
        let k = p.k;
        let code = p.code;
        let class = code & 0x07;
        let next = |n: u32| Target::Cbpf(i + 1 + n as usize);
        if code & 0x07 == 0x05 {
            let far = if code & 0xf0 == 0 {
                k
            } else {
                p.jt.max(p.jf) as u32
            };
            if i as u64 + 1 + far as u64 >= prog.len() as u64 {
                return Err(Untranslatable(format!(
                    "instruction {i} jumps backward (a loop, as `protochain` generates); \
                     xcap runs no loops in the kernel"
                )));
            }
        }
        match class {
            // LD
            0x00 => match code & 0xe0 {
                0x00 => a.mov32_imm(A, k),
                0x20 => a.load_abs(A, cbpf_size(code), k),
                0x40 => a.load_ind(cbpf_size(code), k),
                0x60 if k < 16 => a.emit(ins(LDX | MEM | W, A, MEMP, (k * 4) as i16, 0)),
                0x80 => a.emit(ins(ALU | MOV | X, A, WIRELEN, 0, 0)),
                _ => return Err(Untranslatable(format!("ld {code:#x} k={k} at {i}"))),
            },
            // LDX
            0x01 => match code & 0xe0 {
                0x00 => a.mov32_imm(XR, k),
                0x60 if k < 16 => a.emit(ins(LDX | MEM | W, XR, MEMP, (k * 4) as i16, 0)),
                0x80 => a.emit(ins(ALU | MOV | X, XR, WIRELEN, 0, 0)),
                0xa0 => {
                    // X = 4 * (P[k] & 0xf): the IP header length.
                    a.load_abs(XR, 1, k);
                    a.emit(ins(ALU | AND | K, XR, 0, 0, 0xf));
                    a.emit(ins(ALU | LSH | K, XR, 0, 0, 2));
                }
                _ => return Err(Untranslatable(format!("ldx {code:#x} k={k} at {i}"))),
            },
            // ST / STX
            0x02 | 0x03 if k < 16 => {
                let src = if class == 0x02 { A } else { XR };
                a.emit(ins(STX | MEM | W, MEMP, src, (k * 4) as i16, 0));
            }
            // ALU
            0x04 => {
                let op = (code & 0xf0) as u8;
                let from_x = code & 0x08 != 0;
                match op {
                    NEG => a.emit(ins(ALU | NEG, A, 0, 0, 0)),
                    DIV | MOD if from_x => {
                        // Division by zero fails the match, as in libpcap.
                        a.jump(JMP32 | JEQ | K, XR, 0, 0, Target::Label(Label::Miss));
                        a.emit(ins(ALU | op | X, A, XR, 0, 0));
                    }
                    DIV | MOD if k == 0 => a.set_r0_and_leave(MISS),
                    LSH | RSH if from_x => {
                        // libpcap: a shift by 32 or more gives 0.
                        let skip = a.out.len();
                        a.emit(ins(JMP32 | JGE | K, XR, 0, 0, 32));
                        a.emit(ins(ALU | op | X, A, XR, 0, 0));
                        a.emit(ins(JMP | JA, 0, 0, 1, 0));
                        a.mov32_imm(A, 0);
                        a.out[skip].off = 2;
                    }
                    LSH | RSH if k >= 32 => a.mov32_imm(A, 0),
                    ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | MOD | XOR => {
                        if from_x {
                            a.emit(ins(ALU | op | X, A, XR, 0, 0));
                        } else {
                            a.emit(ins(ALU | op | K, A, 0, 0, k as i32));
                        }
                    }
                    _ => return Err(Untranslatable(format!("alu {code:#x} at {i}"))),
                }
            }
            // JMP
            0x05 => {
                let op = (code & 0xf0) as u8;
                if op == JA {
                    a.ja(next(k));
                } else if matches!(op, JEQ | JGT | JGE | JSET) {
                    let (src, imm, srcbit) = if code & 0x08 != 0 {
                        (XR, 0, X)
                    } else {
                        (0, k as i32, K)
                    };
                    a.jump(JMP32 | op | srcbit, A, src, imm, next(p.jt as u32));
                    if p.jf != 0 {
                        a.ja(next(p.jf as u32));
                    }
                } else {
                    return Err(Untranslatable(format!("jmp {code:#x} at {i}")));
                }
            }
            // RET
            0x06 => match code & 0x18 {
                0x00 => a.set_r0_and_leave(if k != 0 { MATCH } else { MISS }),
                0x10 => {
                    a.mov32_imm(R0, MATCH);
                    a.jump(JMP32 | JNE | K, A, 0, 0, Target::Label(Label::End));
                    a.set_r0_and_leave(MISS);
                }
                _ => return Err(Untranslatable(format!("ret {code:#x} at {i}"))),
            },
            // MISC
            0x07 => match code & 0xf8 {
                0x00 => a.emit(ins(ALU | MOV | X, XR, A, 0, 0)),
                0x80 => a.emit(ins(ALU | MOV | X, A, XR, 0, 0)),
                _ => return Err(Untranslatable(format!("misc {code:#x} at {i}"))),
            },
            _ => return Err(Untranslatable(format!("insn {code:#x} k={k} at {i}"))),
        }
    }
    // Control never falls off the end: libpcap programs end in a return.
    match prog.last() {
        Some(p) if p.code & 0x07 == 0x06 || p.code == 0x05 => Ok(()),
        _ => Err(Untranslatable(
            "the program does not end in a return".into(),
        )),
    }
}

/// Translate the L2 (Ethernet) and L3 (raw IP) programs into one block of
/// exactly `len` instructions.
pub fn translate(
    l2: &[CbpfInsn],
    l3: &[CbpfInsn],
    len: usize,
) -> Result<Vec<Insn>, Untranslatable> {
    let mut a = Asm {
        out: Vec::new(),
        fixups: Vec::new(),
        labels: Vec::new(),
        starts: Vec::new(),
    };
    // The shared exit reads T2 (the end of a failed load): give it a value
    // on every path (in a global function the verifier starts with r6-r9
    // unset).
    a.mov32_imm(T2, 0);
    // Never taken, but they put the shared exits and the padding in the
    // control-flow graph, which the verifier wants free of unreachable
    // instructions whatever the filter uses. The packet pointer is one the
    // verifier knows is not NULL (a stack pointer it does not), so it
    // skips them rather than walking thousands of padding instructions.
    a.jump(JMP | JEQ | K, DATA, 0, 0, Target::Label(Label::NeedOrMiss));
    a.jump(JMP | JEQ | K, DATA, 0, 0, Target::Label(Label::Pad));
    // The caller's copies of r2, r3, r5 are linked to them in the verifier:
    // what the filter's comparisons learn about r2 would flow back into the
    // caller's registers and make every path through the filter a distinct
    // state for the rest of the program. An ALU operation unlinks them.
    for r in [BUFLEN, WIRELEN, A] {
        a.emit(ins(ALU | OR | K, r, 0, 0, 0));
    }
    a.jump(JMP | JEQ | K, A, 0, 1, Target::Label(Label::L3));
    translate_prog(&mut a, l2)?;
    a.label(Label::L3);
    translate_prog(&mut a, l3)?;
    a.label(Label::NeedOrMiss);
    // r8 holds the end offset of the load that failed.
    a.mov32_imm(R0, NEED_MORE);
    a.jump(JMP | JGT | X, T2, WIRELEN, 0, Target::Label(Label::Miss));
    a.ja(Target::Label(Label::End));
    a.label(Label::Miss);
    a.set_r0_and_leave(MISS);
    if a.out.len() > len {
        return Err(Untranslatable(format!(
            "the filter needs {} eBPF instructions; xcap has room for {len}",
            a.out.len()
        )));
    }
    a.label(Label::Pad);
    while a.out.len() < len {
        a.mov32_imm(R0, MISS);
    }
    a.label(Label::End);
    let label = |l: Label| a.labels.iter().find(|(x, _)| *x == l).map(|(_, i)| *i);
    for (at, t, prog) in a.fixups.clone() {
        let dest = match t {
            Target::Label(l) => label(l),
            Target::Cbpf(j) => a.starts[prog].get(j).copied(),
        }
        .ok_or_else(|| Untranslatable(format!("jump target {t:?} out of the program")))?;
        let off = dest as i64 - at as i64 - 1;
        a.out[at].off = i16::try_from(off)
            .map_err(|_| Untranslatable(format!("jump of {off} instructions")))?;
    }
    check_cfg(&a.out).map_err(Untranslatable)?;
    Ok(a.out)
}

/// What the kernel verifier checks first: every instruction reachable, and
/// every jump inside the block or to its end.
pub fn check_cfg(block: &[Insn]) -> Result<(), String> {
    let n = block.len();
    let mut seen = vec![false; n + 1];
    let mut todo = vec![0usize];
    while let Some(i) = todo.pop() {
        if i > n {
            return Err(format!("jump past the end of the block to {i}"));
        }
        if seen[i] {
            continue;
        }
        seen[i] = true;
        if i == n {
            continue;
        }
        let x = block[i];
        let class = x.code & 0x07;
        let op = x.code & 0xf0;
        if class == JMP || class == JMP32 {
            let t = i as i64 + 1 + x.off as i64;
            if t < 0 {
                return Err(format!("jump before the block at {i}"));
            }
            todo.push(t as usize);
            if op != JA {
                todo.push(i + 1);
            }
        } else if x.code == LD | DW | IMM {
            todo.push(i + 2);
        } else {
            todo.push(i + 1);
        }
    }
    match seen[..n].iter().position(|s| !s) {
        Some(i) => Err(format!("unreachable instruction {i}")),
        None => Ok(()),
    }
}

/// Readable eBPF, one instruction per line (for `-d`).
pub fn disasm(insns: &[Insn]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let alu = |op: u8| match op {
        ADD => "+=",
        SUB => "-=",
        MUL => "*=",
        DIV => "/=",
        OR => "|=",
        AND => "&=",
        LSH => "<<=",
        RSH => ">>=",
        MOD => "%=",
        XOR => "^=",
        MOV => "=",
        _ => "?=",
    };
    let jmp = |op: u8| match op {
        JEQ => "==",
        JGT => ">",
        JGE => ">=",
        JSET => "&",
        JNE => "!=",
        _ => "?",
    };
    for (n, i) in insns.iter().enumerate() {
        let class = i.code & 0x07;
        let op = i.code & 0xf0;
        let (d, sr) = (i.dst(), i.src());
        let text = match class {
            ALU | ALU64 => {
                let r = if class == ALU { "w" } else { "r" };
                if op == NEG {
                    format!("{r}{d} = -{r}{d}")
                } else if op == END {
                    format!("r{d} = be{} r{d}", i.imm)
                } else if i.code & X != 0 {
                    format!("{r}{d} {} {r}{sr}", alu(op))
                } else {
                    format!("{r}{d} {} {}", alu(op), i.imm as u32 as i64)
                }
            }
            LDX => {
                let sz = match i.code & 0x18 {
                    W => "u32",
                    H => "u16",
                    B => "u8",
                    _ => "u64",
                };
                format!("r{d} = *({sz} *)(r{sr} {:+})", i.off)
            }
            STX => format!("*(u32 *)(r{d} {:+}) = r{sr}", i.off),
            JMP | JMP32 => {
                let target = n as i64 + 1 + i.off as i64;
                let r = if class == JMP32 { "w" } else { "r" };
                if op == JA {
                    format!("goto {target}")
                } else if op == EXIT {
                    "exit".to_string()
                } else if i.code & X != 0 {
                    format!("if {r}{d} {} {r}{sr} goto {target}", jmp(op))
                } else {
                    format!("if {r}{d} {} {:#x} goto {target}", jmp(op), i.imm as u32)
                }
            }
            _ => format!("{:02x} {:02x} {} {}", i.code, i.regs, i.off, i.imm),
        };
        let _ = writeln!(s, "({n:03}) {text}");
    }
    s
}
