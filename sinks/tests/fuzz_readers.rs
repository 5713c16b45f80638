//! Fuzzing the `-r` readers: the seed corpus (sinks/tests/data/fuzz: files
//! of tcpdump, editcap and a real xcap capture, plus files the pcap and
//! pcapng sinks write here) mutated at random (bytes overwritten, ranges
//! cut out, random bytes spliced in, truncation) and read back through the
//! file source. Whatever the bytes, reading ends with packets and at most
//! one error naming where the damage starts, never a panic; a file only
//! truncated gives exactly the packets before the cut. XCAP_FUZZ_CASES
//! sets the bound; proptest keeps failing cases in
//! sinks/tests/fuzz_readers.regressions and replays them first.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use xcap_core::Error;
// The sinks and the file source register themselves; linking is enough.
use xcap_sinks as _;

/// The corpus: committed seeds and files the sinks write now.
fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    // Sorted: a saved failing case names its seed by index.
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut v: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let tmp = tmpdir("fuzz-seeds");
    // pcap holds one link type: the Ethernet packets only.
    let all = packets();
    let eth: Vec<_> = all
        .iter()
        .filter(|p| p.link == xcap_core::LinkType::Ethernet)
        .cloned()
        .collect();
    for (name, pk) in [("pcap", &eth), ("pcapng", &all)] {
        let f = tmp.join(format!("s.{name}"));
        write_with(name, &f, pk, &kernel_report(3));
        v.push(std::fs::read(&f).unwrap());
    }
    let _ = std::fs::remove_dir_all(tmp);
    assert!(v.len() >= 5);
    v
}

/// Where the whole records (pcap) or blocks (pcapng) of a valid file end,
/// its header's end first.
fn boundaries(b: &[u8]) -> Vec<usize> {
    let le = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let be = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    if b[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        let big = b[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
        let mut o = 0;
        while o + 8 <= b.len() {
            o += if big { be(o + 4) } else { le(o + 4) };
            out.push(o);
        }
    } else {
        let big = b[..4] == [0xa1, 0xb2, 0xc3, 0xd4] || b[..4] == [0xa1, 0xb2, 0x3c, 0x4d];
        let mut o = 24;
        out.push(o);
        while o + 16 <= b.len() {
            o += 16 + if big { be(o + 8) } else { le(o + 8) };
            out.push(o);
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Cut(usize, usize),
    Splice(usize, Vec<u8>),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Cut(i, n)),
            1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..32))
                .prop_map(|(i, b)| Edit::Splice(i, b)),
        ],
        0..6,
    )
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if b.is_empty() {
            break;
        }
        match e {
            Edit::Set(i, v) => {
                let n = b.len();
                b[i % n] = *v;
            }
            Edit::Cut(i, n) => {
                let at = i % b.len();
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Edit::Splice(i, s) => {
                let at = i % b.len();
                b.splice(at..at, s.iter().copied());
            }
        }
    }
    b
}

#[test]
fn readers_take_any_bytes() {
    let seeds = seeds();
    let dir = tmpdir("fuzz-readers");
    let originals: Vec<Vec<xcap_core::Packet>> = seeds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let f = dir.join(format!("orig{i}"));
            std::fs::write(&f, s).unwrap();
            let (p, _, e) = read_back_until_error(&f);
            assert!(e.is_none(), "seed {i}: {e:?}");
            p
        })
        .collect();
    let cases = std::env::var("XCAP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    });
    let f = dir.join("case");
    let strategy = (0..seeds.len(), edits(), prop::option::of(any::<usize>()));
    let r = runner.run(&strategy, |(i, ed, cut)| {
        let mut bytes = apply(seeds[i].clone(), &ed);
        if let Some(c) = cut {
            let n = bytes.len();
            bytes.truncate(c % (n + 1));
        }
        std::fs::write(&f, &bytes).unwrap();
        let (got, _, err) = read_back_until_error(&f);
        match &err {
            None => {}
            Some(Error::Input(m)) | Some(Error::Runtime(m)) => {
                prop_assert!(m.lines().count() == 1 && !m.is_empty(), "{m:?}")
            }
            Some(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        if ed.is_empty() {
            // Only cut: the packets before the cut, exactly; no error if the
            // cut is between blocks, else one that names the last whole
            // block's end.
            let want = &originals[i];
            prop_assert!(got.len() <= want.len());
            prop_assert_eq!(&got[..], &want[..got.len()]);
            let ends = boundaries(&seeds[i]);
            let n = bytes.len();
            let whole = ends.iter().rev().find(|&&e| e <= n).copied();
            match (&err, whole) {
                (None, Some(w)) => prop_assert_eq!(w, n, "a cut file read as whole"),
                (None, None) => prop_assert!(false, "a cut header read as whole"),
                (Some(Error::Input(m)), Some(w)) if w > 0 && w < n => {
                    prop_assert!(
                        m.contains(&format!("cut short at byte {w} ")),
                        "{} at {}",
                        m,
                        w
                    )
                }
                (Some(_), _) => {}
            }
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = r {
        panic!("{e}");
    }
}
