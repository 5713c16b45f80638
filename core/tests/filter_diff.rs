//! Differential test of the filter translation: the eBPF block xcap splices
//! into its kernel programs, run in a userspace eBPF VM (rbpf), against
//! libpcap's own interpreter, on the same packets: at least 200 expressions
//! over 100,000 structured random packets (truncated ones included), for
//! Ethernet and for raw IP. Zero mismatches allowed.

use xcap_core::filter::ebpf::{self, Insn, MATCH};
use xcap_core::filter::{pcap, testset, Filter};

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const MACS: [[u8; 6]; 5] = [
    [0xff; 6],
    [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
    [0x33, 0x33, 0x00, 0x00, 0x00, 0x01],
    [0x02, 0, 0, 0, 0, 0x01],
    [0x02, 0, 0, 0, 0, 0x02],
];
const V4: [[u8; 4]; 8] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [192, 168, 1, 1],
    [192, 168, 1, 77],
    [172, 16, 5, 4],
    [8, 8, 8, 8],
    [224, 0, 0, 1],
    [255, 255, 255, 255],
];
const PORTS: [u16; 10] = [80, 443, 22, 53, 8080, 123, 1500, 55, 67, 68];

fn v6(rng: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    match rng.below(6) {
        0 => a[15] = 1,
        1 => {
            a[0] = 0xfe;
            a[1] = 0x80;
            a[15] = 1;
        }
        2 | 3 => {
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[15] = 1 + rng.below(2) as u8;
        }
        4 => {
            a[0] = 0xff;
            a[1] = 0x02;
            a[15] = 1;
        }
        _ => a.copy_from_slice(&rng.bytes(16)),
    }
    a
}

fn v4(rng: &mut Rng) -> [u8; 4] {
    if rng.chance(85) {
        rng.pick(&V4)
    } else {
        let b = rng.bytes(4);
        [b[0], b[1], b[2], b[3]]
    }
}

fn port(rng: &mut Rng) -> u16 {
    if rng.chance(70) {
        rng.pick(&PORTS)
    } else {
        rng.below(65536) as u16
    }
}

/// A transport header and payload for protocol `proto` (IP numbering).
fn l4(rng: &mut Rng, proto: u8) -> Vec<u8> {
    let payload = rng.below(120) as usize;
    let mut h = match proto {
        6 => {
            let opt_words = if rng.chance(30) {
                rng.below(11) as usize
            } else {
                0
            };
            let mut t = vec![0u8; 20 + opt_words * 4];
            t[0..2].copy_from_slice(&port(rng).to_be_bytes());
            t[2..4].copy_from_slice(&port(rng).to_be_bytes());
            t[4..12].copy_from_slice(&rng.bytes(8));
            t[12] = ((5 + opt_words) as u8) << 4;
            t[13] = if rng.chance(50) {
                rng.pick(&[0x02u8, 0x12, 0x10, 0x18, 0x11, 0x04, 0x01])
            } else {
                rng.next() as u8
            };
            t[14..16].copy_from_slice(&rng.bytes(2));
            t
        }
        17 | 132 => {
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&port(rng).to_be_bytes());
            u[2..4].copy_from_slice(&port(rng).to_be_bytes());
            u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
            u
        }
        1 => vec![
            rng.pick(&[0u8, 3, 8, 11, 5, 13]),
            rng.below(4) as u8,
            0,
            0,
            0,
            1,
            0,
            1,
        ],
        58 => vec![
            rng.pick(&[128u8, 129, 133, 134, 135, 136, 1]),
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ],
        _ => Vec::new(),
    };
    if payload > 0 && rng.chance(10) {
        h.extend_from_slice(b"GET / HTTP/1.1\r\n");
    }
    h.extend(rng.bytes(payload));
    h
}

fn ipv4(rng: &mut Rng) -> Vec<u8> {
    let opt_words = if rng.chance(15) {
        1 + rng.below(10) as usize
    } else {
        0
    };
    let proto = rng.pick(&[6u8, 6, 6, 17, 17, 1, 1, 47, 132, 2, 89]);
    let body = l4(rng, proto);
    let hl = 20 + opt_words * 4;
    let mut ip = vec![0u8; hl];
    ip[0] = 0x40 | (5 + opt_words) as u8;
    ip[1] = rng.next() as u8;
    ip[2..4].copy_from_slice(&((hl + body.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&rng.bytes(2));
    let frag: u16 = match rng.below(20) {
        0 => 0x2000,
        1 => rng.below(0x2000) as u16,
        2 => 0x4000,
        _ => 0,
    };
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = rng.pick(&[64u8, 1, 128, 255, 32]);
    ip[9] = proto;
    ip[12..16].copy_from_slice(&v4(rng));
    ip[16..20].copy_from_slice(&v4(rng));
    for b in ip[20..].iter_mut() {
        *b = rng.next() as u8;
    }
    ip.extend(body);
    ip
}

fn ipv6(rng: &mut Rng) -> Vec<u8> {
    let proto = rng.pick(&[6u8, 17, 58, 58, 6, 0]);
    let mut ip = vec![0u8; 40];
    ip[0] = 0x60;
    ip[6] = proto;
    ip[7] = rng.pick(&[64u8, 255, 1]);
    ip[8..24].copy_from_slice(&v6(rng));
    ip[24..40].copy_from_slice(&v6(rng));
    let mut body = Vec::new();
    let inner = if proto == 0 {
        // hop-by-hop header then TCP or UDP
        let nh = rng.pick(&[6u8, 17]);
        body.extend_from_slice(&[nh, 0, 0, 0, 0, 0, 0, 0]);
        nh
    } else {
        proto
    };
    body.extend(l4(rng, inner));
    ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    ip.extend(body);
    ip
}

fn arp(rng: &mut Rng) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, rng.pick(&[1u8, 2, 3, 4])];
    a.extend_from_slice(&rng.pick(&MACS));
    a.extend_from_slice(&v4(rng));
    a.extend_from_slice(&rng.pick(&MACS));
    a.extend_from_slice(&v4(rng));
    a
}

/// One packet: (Ethernet frame, its L3 part if it is IP).
fn packet(rng: &mut Rng) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut f = Vec::new();
    f.extend_from_slice(&rng.pick(&MACS));
    f.extend_from_slice(&rng.pick(&MACS[3..]));
    let tags = match rng.below(10) {
        0 => 1,
        1 => 2,
        _ => 0,
    };
    for _ in 0..tags {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&rng.pick(&[1u16, 10, 100, 4095]).to_be_bytes());
    }
    let (etype, l3, is_ip): (u16, Vec<u8>, bool) = match rng.below(100) {
        0..=44 => (0x0800, ipv4(rng), true),
        45..=74 => (0x86dd, ipv6(rng), true),
        75..=84 => (0x0806, arp(rng), false),
        85..=87 => (0x8035, arp(rng), false),
        88..=90 => {
            let n = 4 + rng.below(60) as usize;
            (0x8847, rng.bytes(n), false)
        }
        _ => {
            let t = rng.below(0x10000) as u16;
            let n = rng.below(80) as usize;
            (t, rng.bytes(n), false)
        }
    };
    f.extend_from_slice(&etype.to_be_bytes());
    f.extend_from_slice(&l3);
    (f, (is_ip && tags == 0).then_some(l3))
}

/// The block wrapped for rbpf: the VM's memory is a 16-byte header
/// (buflen, wirelen, raw as u32) followed by the packet; the prologue sets
/// the registers as the kernel programs do.
fn wrap_block(block: &[Insn]) -> Vec<u8> {
    let ld = |dst: u8, off: i16| Insn {
        code: ebpf::LDX | ebpf::MEM | ebpf::W,
        regs: dst | (1 << 4),
        off,
        imm: 0,
    };
    let mut prog = vec![
        ld(2, 0),
        ld(3, 4),
        ld(5, 8),
        Insn {
            code: ebpf::ALU64 | ebpf::ADD | ebpf::K,
            regs: 1,
            off: 0,
            imm: 16,
        },
        Insn {
            code: ebpf::ALU64 | ebpf::MOV | ebpf::X,
            regs: 4 | (10 << 4),
            off: 0,
            imm: 0,
        },
        Insn {
            code: ebpf::ALU64 | ebpf::ADD | ebpf::K,
            regs: 4,
            off: 0,
            imm: -64,
        },
        Insn {
            code: ebpf::ALU64 | ebpf::MOV | ebpf::K,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    // Zero the scratch memory, as the C side does.
    for i in 0..8 {
        prog.push(Insn {
            code: ebpf::STX | ebpf::MEM | ebpf::DW,
            regs: 4,
            off: i * 8,
            imm: 0,
        });
    }
    prog.extend_from_slice(block);
    prog.push(Insn {
        code: ebpf::JMP | ebpf::EXIT,
        ..Default::default()
    });
    prog.iter().flat_map(|i| i.to_bytes()).collect()
}

fn run_block(vm: &rbpf::EbpfVmRaw, data: &[u8], wirelen: u32, raw: bool) -> u64 {
    let mut buf = Vec::with_capacity(16 + data.len());
    buf.extend_from_slice(&(data.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&wirelen.to_ne_bytes());
    buf.extend_from_slice(&(raw as u32).to_ne_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(data);
    vm.execute_program(&mut buf)
        .expect("block runs without faults")
}

/// Run each expression on every packet both ways: (runs, matches, mismatches).
fn check_exprs(exprs: &[String], packets: &[(Vec<u8>, u32, bool)]) -> (u64, u64, Vec<String>) {
    let mut checked = 0u64;
    let mut matched = 0u64;
    let mut mismatches = Vec::new();
    for e in exprs {
        let f = Filter::compile(e, 262_144).unwrap_or_else(|err| panic!("{e}: {err}"));
        let block = f
            .ebpf_block(ebpf::BLOCK_INSNS)
            .unwrap_or_else(|err| panic!("{e}: {err}"));
        let code = wrap_block(&block);
        let vm = rbpf::EbpfVmRaw::new(Some(&code)).expect("rbpf accepts the block");
        for (d, wire, raw) in packets {
            let prog = if *raw { &f.l3 } else { &f.l2 };
            let want = pcap::run(prog, d, *wire);
            // NEED_MORE means "past the captured bytes": with everything
            // captured already, that is a miss, as in libpcap.
            let got = run_block(&vm, d, *wire, *raw) == MATCH as u64;
            checked += 1;
            matched += want as u64;
            if got != want && mismatches.len() < 20 {
                mismatches.push(format!(
                    "{e:?} raw={raw} wire={wire} libpcap={want} xcap={got} packet={d:02x?}"
                ));
            }
        }
    }
    (checked, matched, mismatches)
}

#[test]
fn translation_agrees_with_libpcap() {
    let exprs = testset::all(60);
    assert!(exprs.len() >= 200, "{} expressions", exprs.len());
    let mut rng = Rng(0x7863_6170);
    let n_packets: usize = std::env::var("XCAP_DIFF_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // (bytes captured, wire length, raw?)
    let mut packets: Vec<(Vec<u8>, u32, bool)> = Vec::with_capacity(n_packets * 2);
    for _ in 0..n_packets {
        let (frame, l3) = packet(&mut rng);
        let mut push = |mut d: Vec<u8>, raw: bool, rng: &mut Rng| {
            let wire = d.len() as u32;
            if rng.chance(15) {
                d.truncate(rng.below(d.len() as u64 + 1) as usize);
            }
            packets.push((d, wire, raw));
        };
        push(frame, false, &mut rng);
        if let Some(l3) = l3 {
            push(l3, true, &mut rng);
        }
    }
    // Expressions split over the CPUs; each thread reports its counts.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = exprs.len().div_ceil(threads);
    let results: Vec<(u64, u64, Vec<String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = exprs
            .chunks(chunk)
            .map(|part| sc.spawn(|| check_exprs(part, &packets)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked: u64 = results.iter().map(|r| r.0).sum();
    let matched: u64 = results.iter().map(|r| r.1).sum();
    let mismatches: Vec<String> = results.into_iter().flat_map(|r| r.2).collect();
    eprintln!(
        "{} expressions x {} packets: {checked} runs, {matched} matches",
        exprs.len(),
        packets.len()
    );
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
    assert!(matched > checked / 50, "the packets exercise the filters");
}

#[test]
fn every_expression_translates_with_a_valid_cfg() {
    for e in testset::all(60) {
        let f = Filter::compile(&e, 0).unwrap();
        let b = f.ebpf_block(ebpf::BLOCK_INSNS).unwrap();
        ebpf::check_cfg(&b).unwrap();
    }
}

#[test]
fn bad_expression_gets_libpcap_message() {
    let e = Filter::compile("tcp port eighty", 0).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("eighty"), "{e}");
}

#[test]
fn l2_only_expressions_reject_raw_ip() {
    let f = Filter::compile("ether host 02:00:00:00:00:01", 0).unwrap();
    assert!(f.l3_rejects_all);
    let f = Filter::compile("tcp", 0).unwrap();
    assert!(!f.l3_rejects_all);
}

#[test]
fn loops_are_refused_clearly() {
    let f = Filter::compile("ip protochain 6", 0).unwrap();
    let e = f.ebpf_block(ebpf::BLOCK_INSNS).unwrap_err();
    assert!(e.to_string().contains("backward"), "{e}");
}
