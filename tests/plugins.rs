//! Plugins: the example source (Rust, plugins/examples/gen-source) and
//! sink (C, plugins/examples/c-sink) loaded into xcap, mixed with built-ins
//! in one file, and every way a plugin must be refused or contained. The
//! oracles are tshark, the pcapng reader, and what the generator is known
//! to send (its sequence numbers and the pid of the xcap that ran it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// Compile C `src` into `dir/name` as a shared library, against the
/// plugin header and nothing else of xcap's.
fn cc(src: &str, dir: &Path, name: &str, defs: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let root = env!("CARGO_MANIFEST_DIR");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"])
        .arg("-Wno-override-init")
        .arg(format!("-I{root}/plugins/include"))
        .args(defs)
        .arg(format!("{root}/{src}"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("cc");
    assert!(
        st.status.success(),
        "cc {src}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

fn hexlines_so(dir: &Path) -> PathBuf {
    cc(
        "plugins/examples/c-sink/hexlines_sink.c",
        dir,
        "libxcap_hexlines.so",
        &[],
    )
}

/// Bad input: exit 2 and exactly one line, naming the problem.
fn assert_refused(o: &Output, says: &str) {
    let err = stderr_of(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(says), "expected {says:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The gen packets' sequence numbers, from their UDP payloads.
fn seqs(pkts: &[Pkt]) -> Vec<u64> {
    pkts.iter()
        .filter(|p| p.1.len() >= 50 && p.1[23] == 17 && p.1[36..38] == 5000u16.to_be_bytes())
        .map(|p| u64::from_be_bytes(p.1[42..50].try_into().unwrap()))
        .collect()
}

/// tshark's view of `file`: one line per frame, `fields` tab-separated,
/// with contrib/wireshark/xcap.lua loaded.
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let lua = format!(
        "lua_script:{}/contrib/wireshark/xcap.lua",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = Command::new("tshark");
    c.args(["-X", &lua, "-r"])
        .arg(file)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().expect("tshark");
    assert!(out.status.success(), "tshark: {}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn gen_source_writes_count_packets_with_metadata() {
    let dir = tmpdir("plugin-gen");
    let f = dir.join("g.pcapng");
    let so = gen_so();
    let child = Command::new(XCAP)
        .args([
            "--plugin",
            so.to_str().unwrap(),
            "--source",
            "gen",
            "-c",
            "10",
        ])
        .arg("-w")
        .arg(&f)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("\n10 packets captured"),
        "{}",
        stderr_of(&o)
    );
    let pkts = read_packets(&f);
    assert_eq!(pkts.len(), 10);
    assert_eq!(seqs(&pkts), (0..10).collect::<Vec<u64>>());
    // tshark reads the file and the dissector finds the plugin's metadata:
    // the generator reports the pid of the process it runs in, xcap's.
    let rows = tshark(
        &f,
        &format!("xcap.source == \"gen\" and xcap.pid == {pid}"),
        &[
            "xcap.hook",
            "xcap.ifname",
            "xcap.dir",
            "xcap.comm",
            "ip.dst",
            "udp.dstport",
            "frame.comment",
        ],
    );
    assert_eq!(rows.len(), 10, "{rows:?}");
    for (i, r) in rows.iter().enumerate() {
        assert!(
            r.starts_with("gen:udp\tgen0\tOut\txcap-gen\t10.0.0.2\t5000\t"),
            "{r}"
        );
        assert!(r.contains(&format!("x.gen.seq={i}")), "{r}");
    }
}

#[test]
fn plugin_options_count_and_filter() {
    let so = gen_so();
    let so = so.to_str().unwrap();
    let dir = tmpdir("plugin-opts");
    let f = dir.join("g.pcap");
    // count=20 ends the source by itself; the filter keeps IP ids 0-2
    // (the generator's IP id is its sequence number).
    let o = run_xcap(&[
        "--plugin",
        so,
        "--source",
        "gen",
        "--plugin-opt",
        "gen.count=20",
        "--plugin-opt",
        "gen.rate=0",
        "-w",
        f.to_str().unwrap(),
        "ip[4:2] < 3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(seqs(&read_packets(&f)), vec![0, 1, 2]);
    // Losses a plugin reports are counted like any source's.
    let o = run_xcap(&[
        "--plugin",
        so,
        "--source",
        "gen",
        "--plugin-opt",
        "gen.count=3",
        "--plugin-opt",
        "gen.lost=7",
        "-w",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("gen: 3 packets captured, 7 packets dropped"),
        "{}",
        stderr_of(&o)
    );
    // The plugin's name also addresses its options.
    let o = run_xcap(&[
        "--plugin",
        so,
        "--source",
        "gen",
        "--plugin-opt",
        "gen-source.count=4",
        "--plugin-opt",
        "gen.rate=0",
        "-w",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(seqs(&read_packets(&f)), vec![0, 1, 2, 3]);

    for (opt, says) in [
        ("gen.bogus=1", "plugin source gen: unknown option 'bogus'"),
        (
            "gen.count=x",
            "plugin source gen: option count=x: not a number",
        ),
        (
            "nope.count=1",
            "no loaded plugin, plugin source or plugin sink is named 'nope'",
        ),
        ("gencount", "expected NAME.KEY=VALUE"),
    ] {
        assert_refused(
            &run_xcap(&["--plugin", so, "--source", "gen", "--plugin-opt", opt]),
            says,
        );
    }
}

#[test]
fn list_shows_plugins_beside_builtins_also_from_the_folder_variable() {
    let dir = tmpdir("plugin-list");
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(gen_so(), lib.join("libxcap_gen_source.so")).unwrap();
    hexlines_so(&lib);
    let o = Command::new(XCAP)
        .arg("--list")
        .env("XCAP_PLUGIN_PATH", format!("{}:", lib.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let (srcs, sinks) = out.split_once("sinks:").unwrap();
    assert!(
        srcs.contains("  kernel ") && srcs.contains("  dpdk "),
        "{out}"
    );
    assert!(
        srcs.contains("  gen ") && srcs.contains("[plugin gen-source 0.1.0"),
        "{out}"
    );
    assert!(
        sinks.contains("  pcapng ") && sinks.contains("  hexlines "),
        "{out}"
    );
    assert!(sinks.contains("[plugin hexlines 1.0"), "{out}");
    // The same plugin again under another path: its source name is taken.
    std::fs::copy(gen_so(), dir.join("again.so")).unwrap();
    let o = Command::new(XCAP)
        .args(["--list", "--plugin"])
        .arg(dir.join("again.so"))
        .env("XCAP_PLUGIN_PATH", &lib)
        .output()
        .unwrap();
    assert_refused(&o, "source 'gen' is already offered by plugin");
}

#[test]
fn c_sink_writes_what_the_source_sent() {
    let dir = tmpdir("plugin-csink");
    let hex = hexlines_so(&dir);
    let so = gen_so();
    let (txt, pcapng) = (dir.join("h.txt"), dir.join("h.pcapng"));
    let base = [
        "--plugin",
        so.to_str().unwrap(),
        "--plugin",
        hex.to_str().unwrap(),
        "--source",
        "gen",
        "--plugin-opt",
        "gen.count=6",
        "--plugin-opt",
        "gen.size=100",
    ];
    let o = run_xcap(
        &[
            &base[..],
            &["--sink", "hexlines", "-w", txt.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    let o = run_xcap(&[&base[..], &["-w", pcapng.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    // Same generator, same bytes: the C sink's hex equals the pcapng's.
    let text = std::fs::read_to_string(&txt).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let pkts = read_packets(&pcapng);
    assert_eq!(lines.len(), 6, "{text}");
    for (i, (l, p)) in lines.iter().zip(&pkts).enumerate() {
        let f: Vec<&str> = l.split('\t').collect();
        let hex: String = p.1.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            &f[1..5],
            &["gen0", "Out", &p.2.to_string(), hex.as_str()],
            "{l}"
        );
        assert_eq!(f[5], format!("source=gen;gen.seq={i}"), "{l}");
    }
    assert!(text.ends_with("# gen captured 6 dropped 0\n"), "{text}");
}

#[test]
fn a_failing_plugin_stops_itself_not_the_capture() {
    let dir = tmpdir("plugin-fail");
    let hex = hexlines_so(&dir);
    let so = gen_so();
    let (so, hex) = (so.to_str().unwrap(), hex.to_str().unwrap());
    // A sink that fails after 2 packets: stdout still gets all 6, the
    // sink's file keeps its 2 whole lines, and xcap exits 1.
    let txt = dir.join("h.txt");
    let o = run_xcap(&[
        "--plugin",
        so,
        "--plugin",
        hex,
        "--source",
        "gen",
        "--plugin-opt",
        "gen.count=6",
        "--sink",
        "hexlines,stdout",
        "-w",
        txt.to_str().unwrap(),
        "--plugin-opt",
        "hexlines.fail_after=2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 6);
    assert!(stderr_of(&o).contains("plugin sink hexlines failed: failing after 2 packets"));
    assert_eq!(std::fs::read_to_string(&txt).unwrap().lines().count(), 2);
    // A source that errors, and one that panics, after 3 packets: the
    // pcapng file is valid and holds those 3; exit 1, no abort.
    for (opt, says) in [
        (
            "gen.fail_after=3",
            "plugin source gen failed: failing after 3 packets",
        ),
        (
            "gen.panic_after=3",
            "plugin source gen failed: panicked at plugins/examples/gen-source/src/lib.rs:",
        ),
    ] {
        let f = dir.join("f.pcapng");
        let o = run_xcap(&[
            "--plugin",
            so,
            "--source",
            "gen",
            "--plugin-opt",
            opt,
            "-w",
            f.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
        assert!(stderr_of(&o).contains(says), "{}", stderr_of(&o));
        // One line when it happened, one at the end; no panic report.
        assert_eq!(
            stderr_of(&o).matches("after 3 packets, as asked").count(),
            2,
            "{}",
            stderr_of(&o)
        );
        assert_eq!(seqs(&read_packets(&f)), vec![0, 1, 2]);
        assert_eq!(tshark(&f, "udp", &["frame.number"]).len(), 3);
    }
}

#[test]
fn what_is_not_a_plugin_is_refused_before_its_code_runs() {
    let dir = tmpdir("plugin-refuse");
    let mark = dir.join("constructor-ran");
    let try_load = |lib: &Path| {
        let _ = std::fs::remove_file(&mark);
        Command::new(XCAP)
            .args(["--list", "--plugin"])
            .arg(lib)
            .env("XCAP_FIXTURE_MARK", &mark)
            .output()
            .unwrap()
    };
    let fixture = "tests/plugins/refused.c";
    for (def, says) in [
        (
            "-DWRONG_MAJOR",
            "built for plugin ABI 2.0; this xcap speaks ABI 1.x",
        ),
        (
            "-DSMALL_SIZE",
            "descriptor of 16 bytes; ABI 1.0 needs at least 72",
        ),
        (
            "-DBAD_MAGIC",
            "not an xcap plugin ('xcap_plugin' lacks the magic)",
        ),
        (
            "-DNO_DESCRIPTOR",
            "not an xcap plugin (it exports no 'xcap_plugin')",
        ),
    ] {
        let lib = cc(fixture, &dir, &format!("lib{def}.so"), &[def]);
        assert_refused(&try_load(&lib), says);
        assert!(!mark.exists(), "{def}: the library's constructor ran");
    }
    // The control: a valid descriptor that offers nothing is opened (so
    // the constructor runs and the mark works), then refused.
    let lib = cc(fixture, &dir, "libempty.so", &["-DEMPTY"]);
    assert_refused(&try_load(&lib), "it offers no source and no sink");
    assert!(mark.exists(), "the control's constructor did not run");
    let lib = cc(fixture, &dir, "libnull.so", &["-DNULL_TABLES"]);
    assert_refused(
        &try_load(&lib),
        "it declares 2 sources and 0 sinks but gives no table array",
    );

    // Not ELF, not a shared library, not there, a real library of another
    // kind (the issue's example).
    std::fs::write(dir.join("text.so"), "hello").unwrap();
    let object = dir.join("object.o");
    let st = Command::new("cc")
        .arg(format!("-I{}/plugins/include", env!("CARGO_MANIFEST_DIR")))
        .args(["-DEMPTY", "-c", "-o"])
        .arg(&object)
        .arg(format!("{}/{fixture}", env!("CARGO_MANIFEST_DIR")))
        .status()
        .unwrap();
    assert!(st.success());
    for (lib, says) in [
        (dir.join("text.so"), "not an xcap plugin (not an ELF file)"),
        (object, "not an xcap plugin (not a shared library)"),
        (PathBuf::from(XCAP), "not an xcap plugin (it exports no"),
        (dir.join("missing.so"), "cannot read: No such file"),
        (
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libpcap.so.0.8"),
            "not an xcap plugin (it exports no 'xcap_plugin')",
        ),
    ] {
        assert_refused(&try_load(&lib), says);
    }
}

/// `--source kernel,gen`: packets the kernel carried and packets the plugin
/// made, in one time-ordered file.
#[test]
fn kernel_and_plugin_in_one_file() {
    let v = VethPair::new();
    let dir = tmpdir("plugin-kernel");
    let f = dir.join("k.pcapng");
    let so = gen_so();
    let xc = xcap(&[
        "--plugin",
        so.to_str().unwrap(),
        "--source",
        "kernel,gen",
        "--plugin-opt",
        "gen.rate=50",
        "--netns",
        &v.a,
        "-i",
        &v.va,
        "-w",
        f.to_str().unwrap(),
        "icmp or udp port 5000",
    ]);
    v.exec(&v.a, &format!("ping -c 3 -i 0.1 -W 1 {}", v.ip_b));
    wait_until(20, || {
        let p = packets_so_far(&f);
        p.iter().filter(|p| is_icmp(p)).count() >= 6 && seqs(&p).len() >= 5
    });
    let (code, err) = xc.stop();
    assert_eq!(code, 0, "{err}");
    let pkts = read_packets_ts(&f);
    let icmp = pkts
        .iter()
        .filter(|p| is_icmp(&(p.0, p.1.clone(), p.2)))
        .count();
    let plain: Vec<Pkt> = pkts.iter().map(|p| (p.0, p.1.clone(), p.2)).collect();
    assert!(icmp >= 6, "{icmp} ICMP packets");
    let s = seqs(&plain);
    assert!(
        s.len() >= 5 && s.windows(2).all(|w| w[1] == w[0] + 1),
        "{s:?}"
    );
    assert!(
        pkts.windows(2).all(|w| w[0].3 <= w[1].3),
        "not in time order"
    );
    let by_source = tshark(&f, "xcap.source", &["xcap.source"]);
    assert!(by_source.iter().any(|s| s == "kernel") && by_source.iter().any(|s| s == "gen"));
    // Packets of both sources interleave in time, not one block after another.
    let first_gen = by_source.iter().position(|s| s == "gen").unwrap();
    let last_gen = by_source.iter().rposition(|s| s == "gen").unwrap();
    assert!(
        by_source[first_gen..last_gen].iter().any(|s| s == "kernel"),
        "{by_source:?}"
    );
}
