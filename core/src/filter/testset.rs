//! Test material for the filter, shared by its tests (differential test
//! against libpcap, verifier test, live test): expressions and structured
//! random packets.
//!
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

/// splitmix64: deterministic, dependency-free.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
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
                rng.next_u64() as u8
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
    ip[1] = rng.next_u64() as u8;
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
        *b = rng.next_u64() as u8;
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
pub fn packet(rng: &mut Rng) -> (Vec<u8>, Option<Vec<u8>>) {
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
