//! The expressions the filter is tested with (differential test against
//! libpcap, verifier test, live test): the hand-written list in
//! tests/data/filter_exprs.txt plus boolean combinations of it.

const LIST: &str = include_str!("../../tests/data/filter_exprs.txt");

/// The hand-written expressions.
pub fn base() -> Vec<String> {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Every expression: the base list and `combos` combinations of two of them
/// with and / or / not, chosen deterministically among those libpcap
/// accepts (it refuses contradictions such as `ip and ip6`, as tcpdump does).
pub fn all(combos: usize) -> Vec<String> {
    let b = base();
    let mut out = b.clone();
    let n = b.len();
    let mut i = 0;
    while out.len() < b.len() + combos {
        let x = &b[(i * 7 + 3) % n];
        let y = &b[(i * 13 + 5) % n];
        let e = match i % 3 {
            0 => format!("({x}) and ({y})"),
            1 => format!("({x}) or not ({y})"),
            _ => format!("not ({x}) and ({y})"),
        };
        i += 1;
        if super::Filter::compile(&e, 0).is_ok() {
            out.push(e);
        }
    }
    out
}
