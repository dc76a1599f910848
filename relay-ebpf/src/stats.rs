//! Counters and rate-limited logging.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use relay_common::{Counter, LegStats};

use crate::maps::{RELAY_COUNTERS, RELAY_LEG_STATS, RELAY_LOG_LIMIT};

/// Add one to a global per-CPU counter (no atomics needed: the slot is this CPU's).
#[inline(always)]
pub fn count(c: Counter) {
    add(c, 1);
}

/// Add `n` to a global per-CPU counter (byte counters; plain add, the slot is this CPU's).
#[inline(always)]
pub fn add(c: Counter, n: u64) {
    if let Some(p) = RELAY_COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: this CPU's slot from a successful lookup, a `u64`; XDP runs to completion
        // on its CPU, so nothing else touches the slot during the add.
        unsafe { *p += n };
    }
}

/// Account one forwarded packet to a leg's slot at `now_ns` (`coarse_ns`, read once per
/// packet). Returns false if the slot is out of range.
#[inline(always)]
pub fn count_leg(slot: u32, payload_bytes: u64, now_ns: u64) -> bool {
    match RELAY_LEG_STATS.get_ptr_mut(slot) {
        Some(p) => {
            let s: *mut LegStats = p;
            // SAFETY: an entry of an array map, valid and 8-aligned for the program's run;
            // other CPUs may update it at the same time, so the counters are only touched
            // through atomics (BPF_ATOMIC add; the result is unused, so no fetch is needed).
            // `last_seen_ns` is a plain aligned store: concurrent writers store times a few
            // ns apart, and a reader takes any of them.
            // (core's AtomicU64 has no fetch_add on this target, which lacks compare-and-swap;
            // the intrinsic lowers to the BPF atomic add the kernel has had since 3.18.)
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*s).packets, 1);
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                    &raw mut (*s).bytes,
                    payload_bytes,
                );
                (&raw mut (*s).last_seen_ns).write_volatile(now_ns);
            }
            true
        }
        None => false,
    }
}

const LOG_INTERVAL_NS: u64 = 1_000_000_000;

/// True at most once per second per CPU: rare-path logs must not turn into a per-packet cost
/// (or a log flood) when something goes wrong for every packet.
#[inline(always)]
pub fn may_log() -> bool {
    let Some(p) = RELAY_LOG_LIMIT.get_ptr_mut(0) else {
        return false;
    };
    let now = coarse_ns();
    // SAFETY: as in `add`: this CPU's slot, a `u64`, used by nothing else meanwhile.
    let last = unsafe { &mut *p };
    if *last != 0 && now.wrapping_sub(*last) < LOG_INTERVAL_NS {
        return false;
    }
    *last = now;
    true
}

/// Monotonic time, coarse (jiffies resolution): enough for last-seen, the next-hop cache's
/// age and log limits. A path reads it once per packet.
#[inline(always)]
pub fn coarse_ns() -> u64 {
    // SAFETY: a helper without arguments or preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}
