//! Keeping the kernel leg table in step with a component's latches, and reading its
//! per-leg counters back.
use relay_common::{LegKey, LegStats, LegValue, leg::LEG_F_SHARED};

use super::model::Component;
use crate::dataplane::DataPlane;

/// Make the kernel hold `comp.desired(shared)` (or nothing, with `clear`). New and changed
/// entries are written in install order (a shared port's channels before its port entry),
/// then stale ones removed in reverse (the port entry first), so a packet never meets a
/// shared port without its channels. Each write is one map update: a packet sees the old
/// entry or the new one. An entry whose key goes away hands its slot's counts to the side
/// first (a new key resets the slot). Returns the number of failed map operations; what is
/// not in the kernel stays with the controller, which forwards it itself. `call_id` is the
/// session's, for the log.
pub fn apply(
    dp: &mut DataPlane,
    comp: &mut Component,
    shared: bool,
    clear: bool,
    call_id: &str,
) -> u64 {
    let new = if clear { vec![] } else { comp.desired(shared) };
    if new == comp.installed {
        return 0;
    }
    let old = std::mem::take(&mut comp.installed);
    let has = |set: &[(LegKey, LegValue)], k: &LegKey| set.iter().any(|(x, _)| x == k);
    for (k, v) in &old {
        if v.flags & LEG_F_SHARED == 0 && !has(&new, k) {
            retire(dp, comp, v.slot);
        }
    }
    let mut errors = 0;
    let mut now: Vec<(LegKey, LegValue)> = old.clone();
    for (k, v) in &new {
        if old.iter().any(|(ok, ov)| ok == k && ov == v) {
            continue;
        }
        match dp.install_leg(k, v) {
            Ok(()) => {
                now.retain(|(x, _)| x != k);
                now.push((*k, *v));
            }
            Err(e) => {
                log::warn!(call_id, relay:% = k.relay; "kernel leg {}: {e:#}", k.relay);
                errors += 1;
            }
        }
    }
    for (k, _) in old.iter().rev() {
        if has(&new, k) {
            continue;
        }
        match dp.remove_leg(k) {
            Ok(_) => now.retain(|(x, _)| x != k),
            Err(e) => {
                log::warn!(call_id, relay:% = k.relay; "removing kernel leg {}: {e:#}", k.relay);
                errors += 1;
            }
        }
    }
    // Keep install order for the next diff.
    now.sort_by_key(|(k, v)| {
        (
            v.flags & LEG_F_SHARED != 0,
            new.iter().position(|(n, _)| n == k).unwrap_or(usize::MAX),
        )
    });
    comp.installed = now;
    errors
}

/// Add the live counts of `slot` to the side that owns it (before its entry goes away).
fn retire(dp: &DataPlane, comp: &mut Component, slot: u32) {
    let Some(side) = comp.side_of_slot(slot) else {
        return;
    };
    if let Ok(s) = dp.leg_stats(slot) {
        let side = &mut comp.sides[side];
        side.retired_packets += s.packets;
        side.retired_bytes += s.bytes;
        side.retired_last_ns = side.retired_last_ns.max(s.last_seen_ns);
    }
}

/// Kernel counts for side `x` of a component: retired plus the live entry's slot.
pub fn side_stats(dp: &DataPlane, comp: &Component, x: usize) -> LegStats {
    let side = &comp.sides[x];
    let mut s = LegStats {
        packets: side.retired_packets,
        bytes: side.retired_bytes,
        last_seen_ns: side.retired_last_ns,
    };
    let live = comp
        .installed
        .iter()
        .any(|(_, v)| v.flags & LEG_F_SHARED == 0 && v.slot == side.slot);
    if live && let Ok(l) = dp.leg_stats(side.slot) {
        s = s.merge(l);
    }
    s
}

/// True if the side's traffic is forwarded by XDP now.
pub fn in_kernel(comp: &Component, x: usize) -> bool {
    let slot = comp.sides[x].slot;
    comp.installed
        .iter()
        .any(|(_, v)| v.flags & LEG_F_SHARED == 0 && v.slot == slot)
}
