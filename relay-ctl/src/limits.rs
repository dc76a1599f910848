//! The open-files limit: every relay port is a bound socket, so a carrier-sized port range
//! needs tens of thousands of descriptors, far above the usual soft limit of 1024.
use std::io;

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: valid pointer; raising the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// A warning when `sockets` (the most relay sockets the port range and addresses can open,
/// plus a margin for everything else) do not fit in `limit` descriptors.
pub fn shortfall(sockets: u64, limit: u64) -> Option<String> {
    const MARGIN: u64 = 256;
    let need = sockets + MARGIN;
    (need > limit).then(|| {
        format!(
            "the open-files limit is {limit} but the port range can need {need} descriptors: allocations will fail with 'Too many open files' before the range is used up; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn) or narrow --port-min/--port-max"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_the_range_cannot_fit() {
        assert!(shortfall(10_000, 1_048_576).is_none());
        let w = shortfall(20_002, 4_096).unwrap();
        assert!(w.contains("4096") && w.contains("20258"), "{w}");
        assert!(shortfall(768, 1024).is_none());
        assert!(shortfall(769, 1024).is_some());
    }

    #[test]
    fn raising_keeps_or_lifts_the_soft_limit() {
        let before = {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: valid out pointer.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
            l
        };
        let now = raise_nofile().unwrap();
        assert_eq!(now, before.rlim_max);
        assert!(now >= before.rlim_cur);
    }
}
