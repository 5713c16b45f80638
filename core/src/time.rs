//! Clock conversion: BPF stamps events with CLOCK_MONOTONIC; files and
//! people want wall-clock time.

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Offset to add to a CLOCK_MONOTONIC stamp to get wall-clock nanoseconds,
/// measured once at start (as tcpdump's kernel stamps are, the capture
/// keeps the offset of its start even if the wall clock is stepped later).
pub fn mono_to_wall_offset() -> u64 {
    // Take the tightest of a few samples: the one where reading both clocks
    // took the least time.
    let mut best = (u64::MAX, 0u64);
    for _ in 0..5 {
        let m1 = monotonic_ns();
        let r = realtime_ns();
        let m2 = monotonic_ns();
        if m2 - m1 < best.0 {
            best = (m2 - m1, r - (m1 + (m2 - m1) / 2));
        }
    }
    best.1
}
