//! The controller's two clocks, in one place: CLOCK_MONOTONIC for anything compared with
//! XDP's per-leg last-seen, and Unix seconds for what people and peers read.

/// CLOCK_MONOTONIC in ns: the clock of XDP's per-leg last-seen (bpf_ktime_get_coarse_ns),
/// and unlike `Instant` it means the same in a restarted daemon.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Unix seconds now (0 before 1970: the reflector's data plane then refuses every ticket).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let (a, u) = (now_ns(), unix_now());
        assert!(now_ns() >= a);
        // Any machine running this was set after 2020.
        assert!(u > 1_577_836_800);
    }
}
