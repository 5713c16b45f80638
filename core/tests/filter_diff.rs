//! Differential test of the filter translation: the eBPF block xcap splices
//! into its kernel programs, run in a userspace eBPF VM (rbpf), against
//! libpcap's own interpreter, on the same packets: at least 200 expressions
//! over 100,000 structured random packets (truncated ones included), for
//! Ethernet and for raw IP. Zero mismatches allowed.

use xcap_core::filter::ebpf::{self, Insn, MATCH};
use xcap_core::filter::testset::{self, packet, Rng};
use xcap_core::filter::{pcap, Filter};

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
