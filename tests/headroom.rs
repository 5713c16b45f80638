//! Verifier headroom: every kind of BPF program xcap loads stays under a
//! quarter of the kernel's limit (1,000,000 processed instructions), with
//! the heaviest options (--drops --stack --track --pid) and every filter of
//! the test corpus plus long ones on this machine's kernel; inside VMs
//! running Debian 12's 6.1 and 6.12 (where fentry and kprobes work) the
//! same with the corpus's costliest and a sample of the rest. Needs root
//! (and, for the VM tests, what scripts/setup installs).
//!
//! The programs are loaded and verified through the sources' own `--dry-run`
//! path (`verify_with`), in this process, nothing attached. With
//! XCAP_HEADROOM_DIR set every measurement is written there as
//! `headroom-<kernel>.tsv` (bench/headroom.py makes the BENCHMARKS table).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xcap_core::filter::testset;
use xcap_core::registry::{CaptureConfig, ProgramStat};
use xcap_core::Filter;
use xcap_source_dpdk::DpdkArgs;
use xcap_source_kernel::KernelArgs;

/// A quarter of the verifier's limit.
const BUDGET: u64 = 250_000;

/// Expressions longer than any of the corpus: many alternatives, nested
/// negations, loads deep into the packet.
fn long_exprs() -> Vec<String> {
    let ports: Vec<String> = (1..=40).map(|p| format!("tcp port {p}")).collect();
    let hosts: Vec<String> = (1..=30).map(|h| format!("host 10.0.{h}.{h}")).collect();
    vec![
        ports.join(" or "),
        hosts.join(" or "),
        format!(
            "({}) and not ({}) and (udp[8:4] = 0x12345678 or tcp[20:4] = 0x47455420)",
            hosts[..10].join(" or "),
            ports[..10].join(" or ")
        ),
        "vlan and ip and (tcp[tcpflags] & (tcp-syn|tcp-fin) != 0) and not net 192.168.0.0/16 and len > 100 and ip[6:2] & 0x1fff = 0".to_string(),
        "ip6 and (ip6 net fe80::/10 or ip6 dst net ff00::/8) and (tcp or udp) and not port 22".to_string(),
    ]
}

/// The corpus's costliest expressions on this machine's kernel (6.18), pinned
/// so the VMs verify them without verifying the whole corpus: the
/// emulated CPUs are about 14 times slower, and filtered programs differ by
/// 2% (25,1xx-25,5xx instructions at the tracepoint), so the rest of the
/// corpus tells nothing more there. The test here fails when its costliest
/// five are not all listed.
const HEAVIEST: [&str; 8] = [
    "(portrange 1000-2000) and (port 80 or port 443)",
    "tcp port 443 or tcp port 8080 or udp port 123",
    "host 10.0.0.1 and not (port 22 or port 80)",
    "not (src net 192.168.0.0/16) and (portrange 1000-2000)",
    "portrange 1000-2000",
    "host 10.0.0.1 and tcp port 80",
    "not (udp[8] = 0x41) and (dst port 443)",
    "port 80 or port 443",
];

/// One corpus expression in this many is verified in the VMs besides
/// [`HEAVIEST`] and the long ones.
const VM_STRIDE: usize = 8;

/// What a program is, from its name (see the sources' BPF C).
fn kind(object: &str, program: &str) -> &'static str {
    match program {
        p if p.starts_with("xcap_tp_arg") => "tracepoint",
        "xcap_kfree_skb" => "kfree_skb (--drops)",
        p if p.starts_with("xcap_fentry_arg") && object.contains("fexit:") => "fexit (entry)",
        p if p.starts_with("xcap_fentry_arg") => "fentry",
        "xcap_fexit" => "fexit (return)",
        p if p.starts_with("xcap_kprobe_arg") && object.contains("kretprobe:") => {
            "kretprobe (entry)"
        }
        p if p.starts_with("xcap_kprobe_arg") => "kprobe",
        "xcap_kretprobe" => "kretprobe (return)",
        "xcap_kprobe_multi" => "kprobe-multi (wildcard)",
        "xcap_kprobe_each" => "kprobe (wildcard, one each)",
        "xcap_dpdk_entry" => "DPDK entry",
        "xcap_dpdk_return" => "DPDK return",
        "xcap_xsk_rx" => "AF_XDP RX",
        "xcap_xsk_drop" => "AF_XDP drops",
        "xcap_xsk_tx" => "AF_XDP TX (6.3+)",
        "xcap_xsk_seed" => "AF_XDP socket seed (6.3+)",
        p if p.starts_with("xcap_untrack") => "free tracking",
        p if p.starts_with("xcap_expand") => "buffer follower",
        _ => "other",
    }
}

/// One measurement: (kind, program, options, expression, instructions).
type Row = (String, String, String, String, u64);

/// Verify the programs of the kernel source (and the DPDK and AF_XDP
/// sources, with `others`) for `cfg` and `k`; their rows.
fn measure(cfg: &CaptureConfig, k: &KernelArgs, others: bool, opts: &str, expr: &str) -> Vec<Row> {
    let mut stats: Vec<ProgramStat> = xcap_source_kernel::verify_with(cfg, k)
        .unwrap_or_else(|e| panic!("kernel {opts} '{expr}': refused: {e}"));
    if others {
        stats.extend(
            xcap_source_dpdk::verify_with(cfg, &DpdkArgs::default())
                .unwrap_or_else(|e| panic!("dpdk '{expr}': refused: {e}")),
        );
        stats.extend(
            xcap_source_afxdp::verify(cfg)
                .unwrap_or_else(|e| panic!("afxdp '{expr}': refused: {e}")),
        );
    }
    stats
        .into_iter()
        .map(|st| {
            let insns = st.insns.unwrap_or_else(|| {
                panic!("the kernel does not report verified instructions (5.16+)")
            });
            (
                kind(&st.object, &st.program).to_string(),
                format!("{} {}", st.object, st.program),
                opts.to_string(),
                expr.to_string(),
                insns,
            )
        })
        .collect()
}

/// The capture of `expr` at `hooks`, with the heaviest options if `heavy`.
fn config(hooks: &[&str], expr: &str, heavy: bool) -> (CaptureConfig, KernelArgs) {
    let filter = (!expr.is_empty()).then(|| Arc::new(Filter::compile(expr, 0).unwrap()));
    let k = KernelArgs {
        hooks: hooks.iter().map(|h| h.to_string()).collect(),
        drops: heavy,
        stack: heavy,
        track: heavy && filter.is_some(),
        pid: heavy.then(std::process::id),
        comm: None,
    };
    let cfg = CaptureConfig {
        interfaces: vec!["lo".into()],
        snaplen: 0,
        buffer_kib: 64,
        filter,
        dry_run: true,
        ..Default::default()
    };
    (cfg, k)
}

/// Whether this kernel lets xcap hook functions (fentry or kprobe).
fn function_hooks_work() -> bool {
    let (cfg, k) = config(&["ip_rcv"], "", false);
    match xcap_source_kernel::verify_with(&cfg, &k) {
        Ok(_) => true,
        Err(e) if e.to_string().contains("unavailable on this kernel") => false,
        Err(e) => panic!("ip_rcv: {e}"),
    }
}

/// Every program kind this kernel allows, with the corpus and the options:
/// the corpus at a tracepoint and the drop tracepoint, in the DPDK probes
/// and the AF_XDP programs, each expression with and without the heavy
/// options; then every function-hook kind with the heavy options for no
/// filter, the long expressions and the corpus's heaviest. `all_kinds` (in
/// the VMs): function hooks must work here, and of the corpus only
/// [`HEAVIEST`] and one in [`VM_STRIDE`], with the heavy options.
fn run_here(all_kinds: bool) -> Vec<Row> {
    common::require_root();
    let started = std::time::Instant::now();
    let corpus = testset::all(60);
    for h in HEAVIEST {
        assert!(corpus.iter().any(|e| e == h), "not in the corpus: {h}");
    }
    let mut exprs = vec![String::new()];
    if all_kinds {
        exprs.extend(HEAVIEST.iter().map(|h| h.to_string()));
        exprs.extend(
            corpus
                .iter()
                .step_by(VM_STRIDE)
                .filter(|e| !HEAVIEST.contains(&e.as_str()))
                .cloned(),
        );
    } else {
        exprs.extend(corpus);
    }
    exprs.extend(long_exprs());
    let mut rows = Vec::new();
    // In the emulated VMs (about 14 times slower), the heavy options only.
    let sets: &[bool] = if all_kinds { &[true] } else { &[false, true] };
    for e in &exprs {
        for &heavy in sets {
            let opts = if heavy {
                "--drops --stack --track --pid"
            } else {
                ""
            };
            let (cfg, k) = config(&["tp:net:netif_receive_skb"], e, heavy);
            rows.extend(measure(&cfg, &k, true, opts, e));
        }
    }
    for k in ["DPDK entry", "DPDK return", "AF_XDP RX", "AF_XDP drops"] {
        assert!(rows.iter().any(|r| r.0 == k), "no {k} program measured");
    }
    eprintln!(
        "{} expressions at the tracepoint and in the DPDK and AF_XDP programs: {:.0} s",
        exprs.len(),
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let functions = function_hooks_work();
    assert!(
        functions || !all_kinds,
        "function hooks refused on a kernel that must allow them"
    );
    if functions {
        // The costliest expressions at the tracepoint, and the long ones.
        let mut by_cost: BTreeMap<&str, u64> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.0 == "tracepoint") {
            let v = by_cost.entry(&r.3).or_default();
            *v = (*v).max(r.4);
        }
        let mut ranked: Vec<(&str, u64)> = by_cost.into_iter().collect();
        ranked.sort_by_key(|x| std::cmp::Reverse(x.1));
        let mut pick: Vec<String> = vec![String::new()];
        pick.extend(ranked.iter().take(6).map(|x| x.0.to_string()));
        pick.extend(long_exprs());
        pick.dedup();
        let hooks = [
            "tp:net:netif_receive_skb",
            "fentry:ip_rcv",
            "fexit:tcp_v4_rcv",
            "kprobe:ip_local_deliver",
            "kretprobe:ip_rcv",
            "tcp_v4_*",
        ];
        for e in &pick {
            let (cfg, k) = config(&hooks, e, true);
            rows.extend(measure(&cfg, &k, false, "--drops --stack --track --pid", e));
        }
        eprintln!(
            "{} expressions at every function hook kind: {:.0} s",
            pick.len(),
            started.elapsed().as_secs_f64()
        );
        for k in [
            "fentry",
            "fexit (return)",
            "kprobe",
            "kretprobe (return)",
            "buffer follower",
        ] {
            assert!(rows.iter().any(|r| r.0 == k), "no {k} program measured");
        }
        assert!(
            rows.iter()
                .any(|r| r.0.starts_with("kprobe-multi") || r.0.starts_with("kprobe (wildcard")),
            "no wildcard program measured"
        );
    }
    rows
}

/// This kernel's release, e.g. 6.12.57+deb12-amd64.
fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

fn check_and_save(rows: &[Row], dir: Option<&Path>) {
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.4 > BUDGET)
        .map(|r| format!("{} {} '{}': {}", r.1, r.2, r.3, r.4))
        .collect();
    if let Some(d) = dir {
        let tsv: String = rows
            .iter()
            .map(|r| format!("{}\t{}\t{}\t{}\t{}\n", r.0, r.1, r.2, r.3, r.4))
            .collect();
        std::fs::write(d.join(format!("headroom-{}.tsv", release())), tsv).unwrap();
    }
    let max = rows.iter().map(|r| r.4).max().unwrap_or(0);
    eprintln!(
        "{}: {} programs verified, the most processed {max}",
        release(),
        rows.len()
    );
    assert!(
        over.is_empty(),
        "over {BUDGET} processed instructions:\n{}",
        over.join("\n")
    );
}

#[test]
fn every_program_within_a_quarter_of_the_verifier_limit_here() {
    let rows = run_here(false);
    // The VMs verify HEAVIEST in place of the corpus: it must hold the
    // costliest here.
    let mut by_cost: BTreeMap<&str, u64> = BTreeMap::new();
    let long = long_exprs();
    for r in rows
        .iter()
        .filter(|r| r.0 == "tracepoint" && !long.contains(&r.3))
    {
        let v = by_cost.entry(&r.3).or_default();
        *v = (*v).max(r.4);
    }
    let mut ranked: Vec<(&str, u64)> = by_cost.into_iter().collect();
    ranked.sort_by_key(|x| std::cmp::Reverse(x.1));
    let missing: Vec<String> = ranked
        .iter()
        .take(5)
        .filter(|(e, _)| !HEAVIEST.contains(e))
        .map(|(e, n)| format!("{e:?} ({n})"))
        .collect();
    assert!(
        missing.is_empty(),
        "the costliest corpus expressions here are not all in HEAVIEST, which the VMs verify: {}",
        missing.join(", ")
    );
    assert!(rows.iter().any(|r| r.0 == "tracepoint"));
    assert!(rows.iter().any(|r| r.0 == "kfree_skb (--drops)"));
    assert!(rows.iter().any(|r| r.0 == "DPDK entry"));
    assert!(rows.iter().any(|r| r.0 == "DPDK return"));
    let dir = std::env::var_os("XCAP_HEADROOM_DIR").map(PathBuf::from);
    check_and_save(&rows, dir.as_deref());
}

/// Run inside the VMs by the tests below (`--ignored --exact`): all kinds
/// must load there. Writes its rows to XCAP_HEADROOM_VM_OUT.
#[test]
#[ignore = "runs inside the stock-kernel VMs (headroom_debian_*)"]
fn headroom_inside_vm() {
    let rows = run_here(true);
    let out =
        PathBuf::from(std::env::var_os("XCAP_HEADROOM_VM_OUT").expect("XCAP_HEADROOM_VM_OUT"));
    check_and_save(&rows, Some(&out));
    std::fs::write(out.join("done"), "ok").unwrap();
}

fn in_vm(series: &str) {
    let (dir, out, _) = common::vm_self(
        &common::stock_kernel(series),
        &format!("headroom{series}"),
        "XCAP_HEADROOM_VM_OUT={dir}",
        "--ignored --exact headroom_inside_vm --nocapture --test-threads 1",
        // About 15 minutes of an emulated CPU beside the other VM: the
        // bound is for a hung guest, not for a slow machine.
        2400,
    );
    assert!(
        dir.join("done").exists(),
        "the headroom run in the VM did not finish: {out}"
    );
    if let Some(d) = std::env::var_os("XCAP_HEADROOM_DIR") {
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            if f.file_name().to_string_lossy().ends_with(".tsv") {
                std::fs::copy(f.path(), Path::new(&d).join(f.file_name())).unwrap();
            }
        }
    }
}

#[test]
fn headroom_debian_6_1() {
    in_vm("6.1.");
}

#[test]
fn headroom_debian_6_12() {
    in_vm("6.12");
}
