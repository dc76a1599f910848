//! The next-hop cache: what `bpf_fib_lookup` answered for a (ingress interface, source,
//! destination) kept so the steady state of a leg does no FIB lookup.
//!
//! An entry is used only while all of these hold, else the program looks the route up again
//! and refills it:
//! - its generation equals the one in the generation map: the controller bumps it on every
//!   netlink route, address and link event and on every neighbour whose MAC or usability
//!   changed (`relay-ctl/src/nexthop.rs`), so a change is honoured from the next packet after
//!   the event is processed;
//! - it is younger than [`NEXTHOP_MAX_AGE_NS`] (a second guard if an event were missed);
//! - the packet is no longer than the one that filled it (the FIB lookup checked that length
//!   against the egress MTU; a longer one is looked up again, and raises the length).
//!
//! The entry also says whether the egress interface is one the relay may redirect to, so a
//! hit costs one hash lookup in all (this map's) instead of the FIB lookup and a devmap
//! lookup.
//!
//! The key is what the relay's lookups vary in: family, ingress interface, TOS (IPv4) and the
//! two addresses. Policy routing by port, mark or flow label is not in the key: a box that
//! routes media by those turns the cache off (`--nexthop-cache off`).

/// Entries the LRU map holds (destinations in use at once; the least recently used go).
pub const MAX_NEXTHOPS: u32 = 65_536;

/// Oldest an entry may be and still be used, whatever the generation says.
pub const NEXTHOP_MAX_AGE_NS: u64 = 10_000_000_000;

/// Generation value that turns the cache off: entries are never used, every packet does the
/// FIB lookup (and nothing is filled).
pub const NEXTHOP_GEN_OFF: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NextHopKey {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u8,
    /// IPv4 TOS as in the header (0 for IPv6).
    pub tos: u8,
    pub _pad: [u8; 2],
    pub ingress_ifindex: u32,
    /// Addresses as in the packet; IPv4 in the first four bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopValue {
    /// CLOCK_MONOTONIC (coarse) when filled.
    pub filled_ns: u64,
    /// The generation read before the FIB lookup that filled it.
    pub generation: u32,
    /// Egress interface.
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// Longest IP packet (bytes, from the IP header on) the FIB lookup allowed.
    pub max_len: u16,
    /// 1 if `ifindex` was in the egress devmap when filled (the relay is attached there), so
    /// a hit needs no devmap lookup. The devmap changes only when the controller attaches an
    /// interface (before its watcher's first bump) or the kernel removes a vanished one (a
    /// link event, which bumps).
    pub attached: u8,
    pub _pad: u8,
}

impl NextHopValue {
    /// Whether the entry may be used for a packet of `len` bytes now.
    #[inline(always)]
    pub fn usable(&self, generation: u32, now_ns: u64, len: u16) -> bool {
        generation != NEXTHOP_GEN_OFF
            && self.generation == generation
            && now_ns.wrapping_sub(self.filled_ns) < NEXTHOP_MAX_AGE_NS
            && len <= self.max_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<NextHopKey>(), 40);
        assert_eq!(core::mem::size_of::<NextHopValue>(), 32);
    }

    #[test]
    fn usable_only_in_generation_age_and_length() {
        let v = NextHopValue {
            filled_ns: 1_000,
            generation: 7,
            ifindex: 3,
            max_len: 200,
            ..Default::default()
        };
        assert!(v.usable(7, 1_000, 200));
        assert!(v.usable(7, 1_000 + NEXTHOP_MAX_AGE_NS - 1, 60));
        assert!(!v.usable(8, 1_000, 200), "another generation");
        assert!(!v.usable(7, 1_000 + NEXTHOP_MAX_AGE_NS, 200), "too old");
        assert!(!v.usable(7, 1_000, 201), "longer than the lookup allowed");
        let off = NextHopValue {
            generation: NEXTHOP_GEN_OFF,
            ..v
        };
        assert!(!off.usable(NEXTHOP_GEN_OFF, 1_000, 60), "cache off");
    }
}
