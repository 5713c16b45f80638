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

/// Fuzzing: random expressions from tcpdump's grammar (primitives with
/// random addresses, ports, offsets, sizes, masks and comparisons, nested
/// with and/or/not, and the hand-written list as seeds), each compiled by
/// libpcap, translated, its CFG checked, and run on random packets against
/// libpcap's interpreter. An expression libpcap refuses must be refused
/// with its message, never a panic. XCAP_FUZZ_CASES sets the bound (cases,
/// each with 300 packets); proptest keeps failing cases in
/// core/proptest-regressions/ and replays them first.
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn prim() -> impl Strategy<Value = String> {
        let v4 = select(vec![
            "10.0.0.1",
            "10.0.0.2",
            "192.168.1.1",
            "8.8.8.8",
            "224.0.0.1",
            "255.255.255.255",
        ]);
        let v6 = select(vec!["2001:db8::1", "fe80::1", "ff02::1", "::1"]);
        let port = prop_oneof![
            select(vec![80u16, 443, 22, 53, 8080, 123, 67]),
            any::<u16>()
        ];
        let op = select(vec!["=", "!=", "<", ">", "<=", ">="]);
        // Values that packets hold often, so that comparisons meet their
        // boundaries (equal, one off), not only random far-away numbers.
        let value = prop_oneof![
            0u32..256,
            select(vec![
                0x0800u32, 0x86dd, 0x0806, 0x4500, 64, 80, 443, 53, 6, 17, 1, 58, 20, 40
            ]),
            40u32..200,
            any::<u32>(),
        ];
        let seeds = select(testset::base());
        prop_oneof![
            seeds,
            select(vec![
                "ip",
                "ip6",
                "arp",
                "rarp",
                "tcp",
                "udp",
                "icmp",
                "icmp6",
                "vlan",
                "mpls",
                "ether broadcast",
                "ether multicast",
                "ip multicast",
                "ip6 multicast",
                "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
                "icmp[icmptype] = icmp-echo",
                "ip[6:2] & 0x1fff = 0",
                "ip6 and tcp",
                "vlan and ip",
            ])
            .prop_map(String::from),
            (
                select(vec![
                    "host", "src host", "dst host", "ip host", "ip src", "ip dst"
                ]),
                v4.clone()
            )
                .prop_map(|(k, a)| format!("{k} {a}")),
            (select(vec!["host", "src host", "ip6 dst"]), v6).prop_map(|(k, a)| format!("{k} {a}")),
            (
                select(vec![
                    "port",
                    "src port",
                    "dst port",
                    "tcp port",
                    "udp dst port"
                ]),
                port.clone()
            )
                .prop_map(|(k, p)| format!("{k} {p}")),
            (port.clone(), port).prop_map(|(a, b)| format!("portrange {}-{}", a.min(b), a.max(b))),
            (v4, 0u8..=32).prop_map(|(a, m)| format!("net {a}/{m}")),
            (
                select(vec!["less", "greater", "len <=", "len >", "len ="]),
                0u32..300
            )
                .prop_map(|(k, n)| format!("{k} {n}")),
            (
                select(vec!["ip proto", "ip6 proto", "ether proto", "vlan"]),
                0u32..300
            )
                .prop_map(|(k, n)| format!("{k} {n}")),
            (
                select(vec!["ip", "tcp", "udp", "icmp", "ether", "ip6", "arp"]),
                0u32..70,
                select(vec![1u32, 2, 4]),
                prop::option::of(prop_oneof![
                    any::<u32>(),
                    select(vec![0xffu32, 0xf0, 0x0f, 0x1fff, 0x3f])
                ]),
                op,
                value,
            )
                .prop_map(|(p, off, size, mask, op, v)| {
                    let m = mask.map_or(String::new(), |m| format!(" & {m:#x}"));
                    let v = if size == 4 {
                        v
                    } else {
                        v & ((1 << (8 * size)) - 1)
                    };
                    format!("{p}[{off}:{size}]{m} {op} {v}")
                }),
            (
                0u32..40,
                select(vec!["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"]),
                prop_oneof![1u32..9, Just(0u32), 30u32..34],
                0u32..300
            )
                .prop_map(|(off, a, k, v)| format!("ip[{off}] {a} {k} > {v}")),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        prim().prop_recursive(3, 16, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| format!("not ({e})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
                (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) or ({b})")),
            ]
        })
    }

    static ACCEPTED: AtomicU64 = AtomicU64::new(0);
    static TRIED: AtomicU64 = AtomicU64::new(0);

    fn check(e: &str, seed: u64) -> Result<(), TestCaseError> {
        TRIED.fetch_add(1, Ordering::Relaxed);
        let f = match Filter::compile(e, 262_144) {
            Ok(f) => f,
            Err(err) => {
                // Refused by libpcap: a message, not a crash.
                prop_assert!(!err.to_string().is_empty());
                return Ok(());
            }
        };
        let block = match f.ebpf_block(ebpf::BLOCK_INSNS) {
            Ok(b) => b,
            // Too long for the block (said so), not wrong.
            Err(err) => {
                prop_assert!(err.to_string().contains("instructions"), "{e}: {err}");
                return Ok(());
            }
        };
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        prop_assert!(ebpf::check_cfg(&block).is_ok(), "{e}: bad CFG");
        let code = wrap_block(&block);
        let vm = rbpf::EbpfVmRaw::new(Some(&code)).expect("rbpf accepts the block");
        let mut rng = Rng(seed);
        for _ in 0..150 {
            let (frame, l3) = packet(&mut rng);
            for (mut d, raw) in [(Some(frame), false), (l3, true)]
                .into_iter()
                .filter_map(|(d, raw)| d.map(|d| (d, raw)))
            {
                let wire = d.len() as u32;
                if rng.chance(15) {
                    d.truncate(rng.below(d.len() as u64 + 1) as usize);
                }
                let want = pcap::run(if raw { &f.l3 } else { &f.l2 }, &d, wire);
                let got = run_block(&vm, &d, wire, raw) == MATCH as u64;
                prop_assert_eq!(
                    got,
                    want,
                    "{} raw={} wire={} packet={:02x?}",
                    e,
                    raw,
                    wire,
                    d
                );
            }
        }
        Ok(())
    }

    #[test]
    fn fuzzed_expressions_agree_with_libpcap() {
        let cases = std::env::var("XCAP_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4000);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            source_file: Some(file!()),
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
            )),
            ..ProptestConfig::default()
        });
        let r = runner.run(&(expr(), any::<u64>()), |(e, seed)| check(&e, seed));
        if let Err(e) = r {
            panic!("{e}");
        }
        let (ok, tried) = (
            ACCEPTED.load(Ordering::Relaxed),
            TRIED.load(Ordering::Relaxed),
        );
        eprintln!("{tried} expressions, {ok} accepted by libpcap and translated");
        // Not vacuous: most generated expressions are real filters.
        assert!(ok * 3 >= tried, "only {ok} of {tried} expressions compiled");
    }
}
