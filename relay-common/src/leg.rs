//! The relay legs map: what XDP looks up for every UDP packet, and what it writes.

use crate::endpoint::Endpoint;

/// Key of the legs map: the packet's destination, i.e. the relay's own address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LegKey {
    pub relay: Endpoint,
}

/// Value of the legs map.
///
/// A packet to `LegKey` whose source equals `latched` leaves with source `new_src` (the relay's
/// address:port of the other leg) and destination `new_dst` (the other party). Anything else
/// (unlatched leg, other source) goes to the controller's socket on that port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LegValue {
    /// The source this leg accepts; `Family::None` while not latched yet.
    pub latched: Endpoint,
    /// Written as the packet's new source.
    pub new_src: Endpoint,
    /// Written as the packet's new destination.
    pub new_dst: Endpoint,
    /// Index into the per-leg stats array, assigned by the controller (no map insert in XDP).
    pub slot: u32,
    /// Reserved for per-leg options; must be zero.
    pub flags: u32,
}

/// The two legs that relay one media stream: `peer_a` talks to the relay at `relay_a`,
/// `peer_b` at `relay_b`. Each side's packets leave from the other side's relay endpoint, so
/// each peer sees only "its" relay address (seed 003: channel 1 <-> channel 2). Both legs are
/// latched to the given peers; `slots` are their stats slots (A's, then B's).
pub fn stream_legs(
    (relay_a, peer_a): (Endpoint, Endpoint),
    (relay_b, peer_b): (Endpoint, Endpoint),
    slots: [u32; 2],
) -> [(LegKey, LegValue); 2] {
    let leg = |relay, from, src, dst, slot| {
        (
            LegKey { relay },
            LegValue {
                latched: from,
                new_src: src,
                new_dst: dst,
                slot,
                flags: 0,
            },
        )
    };
    [
        leg(relay_a, peer_a, relay_b, peer_b, slots[0]),
        leg(relay_b, peer_b, relay_a, peer_a, slots[1]),
    ]
}

/// Per-leg counters, one per CPU per slot (the controller sums CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LegStats {
    /// Packets forwarded by XDP on this leg.
    pub packets: u64,
    /// UDP payload bytes of those packets.
    pub bytes: u64,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC, coarse) of the last forwarded packet.
    pub last_seen_ns: u64,
}

impl LegStats {
    /// Sum over CPUs: packets and bytes add up, last-seen is the latest.
    pub fn merge(self, other: LegStats) -> LegStats {
        LegStats {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
            last_seen_ns: if other.last_seen_ns > self.last_seen_ns {
                other.last_seen_ns
            } else {
                self.last_seen_ns
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn sizes_are_stable() {
        // Kernel memory per leg (bench target: <= 256 bytes) starts from these.
        assert_eq!(size_of::<LegKey>(), 20);
        assert_eq!(size_of::<LegValue>(), 68);
        assert_eq!(size_of::<LegStats>(), 24);
    }

    #[test]
    fn stream_legs_mirror_each_other() {
        let (ra, pa) = (
            Endpoint::v4([198, 18, 1, 1], 30000),
            Endpoint::v4([198, 18, 1, 2], 5004),
        );
        let (rb, pb) = (
            Endpoint::v4([198, 18, 2, 1], 30002),
            Endpoint::v4([198, 18, 2, 2], 6004),
        );
        let [(ka, a), (kb, b)] = stream_legs((ra, pa), (rb, pb), [4, 5]);
        assert_eq!(
            (ka.relay, a.latched, a.new_src, a.new_dst, a.slot),
            (ra, pa, rb, pb, 4)
        );
        assert_eq!(
            (kb.relay, b.latched, b.new_src, b.new_dst, b.slot),
            (rb, pb, ra, pa, 5)
        );
    }

    #[test]
    fn merge_sums_and_keeps_latest() {
        let a = LegStats {
            packets: 2,
            bytes: 100,
            last_seen_ns: 50,
        };
        let b = LegStats {
            packets: 3,
            bytes: 10,
            last_seen_ns: 70,
        };
        let m = a.merge(b);
        assert_eq!((m.packets, m.bytes, m.last_seen_ns), (5, 110, 70));
        assert_eq!(b.merge(a), m);
    }
}
