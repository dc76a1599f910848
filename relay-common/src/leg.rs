//! The relay legs map: what XDP looks up for every UDP packet, and what it writes.

use crate::endpoint::Endpoint;

/// Key of the legs map: the packet's destination (the relay's own address and port) and,
/// for a shared port only, the packet's source.
///
/// Ordinary legs and the port entry of a shared port have `peer = Endpoint::NONE`
/// ([`LegKey::port`]); the channels of a shared port are keyed by their source
/// ([`LegKey::channel`]). XDP always looks up the port entry first, so a channel entry is only
/// reached through a port entry flagged [`LEG_F_SHARED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LegKey {
    /// Relay address:port the packet was sent to.
    pub relay: Endpoint,
    /// The packet's source for a channel entry; `Endpoint::NONE` otherwise.
    pub peer: Endpoint,
}

impl LegKey {
    /// The entry for packets to `relay`: an ordinary leg, or a shared port's flag entry.
    #[inline(always)]
    pub const fn port(relay: Endpoint) -> LegKey {
        LegKey {
            relay,
            peer: Endpoint::NONE,
        }
    }

    /// The entry for packets from `peer` to the shared port `relay`.
    #[inline(always)]
    pub const fn channel(relay: Endpoint, peer: Endpoint) -> LegKey {
        LegKey { relay, peer }
    }
}

#[cfg(feature = "user")]
impl core::fmt::Display for LegKey {
    /// `relay` for a port key, `relay from peer` for a shared port's channel (log lines).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.peer.is_none() {
            write!(f, "{}", self.relay)
        } else {
            write!(f, "{} from {}", self.relay, self.peer)
        }
    }
}

/// [`LegValue::flags`] bit: the port entry `LegKey::port(relay)` says the port is shared by two
/// channels (seed 003's "alternate" latching: both parties send to one relay address:port).
///
/// XDP then looks up `LegKey::channel(relay, packet source)`, whose value is an ordinary
/// forwarding entry: `latched` = that source, `new_src` = the shared relay endpoint,
/// `new_dst` = the other channel, and its own stats slot. No channel entry: the packet goes to
/// the controller's socket, which latches it. The port entry's other fields are zero (it
/// forwards nothing itself and has no stats slot).
pub const LEG_F_SHARED: u32 = 1;

/// [`LegValue::flags`] bit: the port entry `LegKey::port(relay)` says `relay` is a TURN
/// allocation's relayed address. XDP then looks up `LegKey::channel(relay, packet source)` in
/// the TURN peers map (`crate::turn`); no entry: the packet goes to the controller (a Data
/// indication, or a drop for a peer without permission). The port entry's other fields are zero.
pub const LEG_F_TURN: u32 = 2;

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
    /// `LEG_F_*` bits; zero for an ordinary leg.
    pub flags: u32,
}

/// One direction of a relayed stream: packets from `latched` to the relay's `relay` endpoint
/// leave from `new_src` (the relay endpoint the other party talks to) towards `new_dst`,
/// counted in stats slot `slot`. The one place a forwarding entry's fields are filled in:
/// the controller (`Component::desired`), the fixture table and the benchmark build theirs
/// from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direction {
    pub relay: Endpoint,
    /// The source accepted; `Endpoint::NONE` for an unlatched leg.
    pub latched: Endpoint,
    pub new_src: Endpoint,
    pub new_dst: Endpoint,
    pub slot: u32,
}

impl Direction {
    fn value(self) -> LegValue {
        LegValue {
            latched: self.latched,
            new_src: self.new_src,
            new_dst: self.new_dst,
            slot: self.slot,
            flags: 0,
        }
    }

    /// The entry of an ordinary leg: keyed by the relay endpoint alone ([`LegKey::port`]).
    pub fn port_leg(self) -> (LegKey, LegValue) {
        (LegKey::port(self.relay), self.value())
    }

    /// The entry of one channel of a shared port: keyed by the relay endpoint and the
    /// channel's source ([`LegKey::channel`]).
    pub fn channel_leg(self) -> (LegKey, LegValue) {
        (LegKey::channel(self.relay, self.latched), self.value())
    }
}

/// The port entry that marks `relay` as shared ([`LEG_F_SHARED`], every other field zero).
pub fn shared_port_flag(relay: Endpoint) -> (LegKey, LegValue) {
    (
        LegKey::port(relay),
        LegValue {
            flags: LEG_F_SHARED,
            ..LegValue::default()
        },
    )
}

/// The kernel entries of one stream component (RTP or RTCP) for the directions that can be
/// forwarded (`None`: that side stays with the controller), in install order.
///
/// Ordinary ports: one port entry per direction. A shared port (`shared`; both directions
/// then name the same `relay`, the shared port): the channel entries FIRST and the port entry
/// LAST, if there is any channel. The controller installs in this order and removes in
/// reverse, so a packet never sees the shared flag without its channels (it would pass as
/// `pass_shared_no_channel` and reach the socket, harmless but slow), and a port entry is
/// never left flagged over removed channels.
pub fn component_legs(
    shared: bool,
    dirs: [Option<Direction>; 2],
) -> impl Iterator<Item = (LegKey, LegValue)> {
    let flag = dirs
        .iter()
        .flatten()
        .next()
        .filter(|_| shared)
        .map(|d| shared_port_flag(d.relay));
    dirs.into_iter()
        .flatten()
        .map(move |d| {
            if shared {
                d.channel_leg()
            } else {
                d.port_leg()
            }
        })
        .chain(flag)
}

/// The first `N` entries of `legs` (callers ask for exactly as many as there are).
fn take<const N: usize>(
    mut legs: impl Iterator<Item = (LegKey, LegValue)>,
) -> [(LegKey, LegValue); N] {
    core::array::from_fn(|_| legs.next().unwrap_or_default())
}

/// The two legs that relay one media stream: `peer_a` talks to the relay at `relay_a`,
/// `peer_b` at `relay_b`. Each side's packets leave from the other side's relay endpoint, so
/// each peer sees only "its" relay address (seed 003: channel 1 <-> channel 2). Both legs are
/// latched to the given peers; `slots` are their stats slots (A's, then B's). Keys are port
/// keys ([`LegKey::port`]). [`component_legs`] with both directions latched.
pub fn stream_legs(
    (relay_a, peer_a): (Endpoint, Endpoint),
    (relay_b, peer_b): (Endpoint, Endpoint),
    slots: [u32; 2],
) -> [(LegKey, LegValue); 2] {
    let a = Direction {
        relay: relay_a,
        latched: peer_a,
        new_src: relay_b,
        new_dst: peer_b,
        slot: slots[0],
    };
    let b = Direction {
        relay: relay_b,
        latched: peer_b,
        new_src: relay_a,
        new_dst: peer_a,
        slot: slots[1],
    };
    take(component_legs(false, [Some(a), Some(b)]))
}

/// One stream on a shared relay port (seed 003's "alternate" latching): `ch1` and `ch2` both
/// send to `relay`; each one's packets leave from `relay` to the other. `slots` are the
/// channels' stats slots (ch1's, then ch2's). [`component_legs`] with both channels latched:
/// the two channel entries first, the port entry (flag [`LEG_F_SHARED`]) last.
pub fn shared_port_legs(
    relay: Endpoint,
    ch1: Endpoint,
    ch2: Endpoint,
    slots: [u32; 2],
) -> [(LegKey, LegValue); 3] {
    let channel = |from, to, slot| Direction {
        relay,
        latched: from,
        new_src: relay,
        new_dst: to,
        slot,
    };
    take(component_legs(
        true,
        [
            Some(channel(ch1, ch2, slots[0])),
            Some(channel(ch2, ch1, slots[1])),
        ],
    ))
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
        assert_eq!(size_of::<LegKey>(), 40);
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
        assert_eq!((ka, kb), (LegKey::port(ra), LegKey::port(rb)));
        assert_eq!((a.flags, b.flags), (0, 0));
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
    fn key_layout_has_no_padding() {
        // The kernel hashes all 40 bytes: implicit padding would make equal keys differ.
        assert_eq!(
            size_of::<LegKey>(),
            size_of::<Endpoint>() * 2,
            "relay + peer, nothing else"
        );
        assert_eq!(core::mem::offset_of!(LegKey, peer), size_of::<Endpoint>());
        assert_eq!(
            LegKey::port(Endpoint::v4([198, 18, 1, 1], 30000)).peer,
            Endpoint::NONE
        );
    }

    #[test]
    fn shared_port_legs_channels_first_port_last() {
        let relay = Endpoint::v4([198, 18, 1, 1], 30100);
        let ch1 = Endpoint::v4([198, 18, 1, 2], 5004);
        let ch2 = Endpoint::v4([198, 18, 2, 2], 6004);
        let [(k1, v1), (k2, v2), (kp, vp)] = shared_port_legs(relay, ch1, ch2, [7, 8]);

        assert_eq!(k1, LegKey::channel(relay, ch1));
        assert_eq!(
            v1,
            LegValue {
                latched: ch1,
                new_src: relay,
                new_dst: ch2,
                slot: 7,
                flags: 0,
            }
        );
        assert_eq!(k2, LegKey::channel(relay, ch2));
        assert_eq!(
            v2,
            LegValue {
                latched: ch2,
                new_src: relay,
                new_dst: ch1,
                slot: 8,
                flags: 0,
            }
        );
        // Port entry last: flag only, everything else zero.
        assert_eq!(kp, LegKey::port(relay));
        assert_eq!(
            vp,
            LegValue {
                flags: LEG_F_SHARED,
                ..LegValue::default()
            }
        );
        assert!(vp.latched.is_none() && vp.new_src.is_none() && vp.new_dst.is_none());
    }

    #[test]
    fn shared_port_keys_are_distinct() {
        // Three entries on one relay port must not overwrite each other in the hash map.
        let relay = Endpoint::v4([198, 18, 1, 1], 30100);
        let ch1 = Endpoint::v4([198, 18, 1, 2], 5004);
        let ch2 = Endpoint::v4([198, 18, 1, 2], 5006);
        let legs = shared_port_legs(relay, ch1, ch2, [0, 1]);
        for i in 0..legs.len() {
            for j in i + 1..legs.len() {
                assert_ne!(legs[i].0, legs[j].0);
            }
        }
    }

    #[test]
    fn component_legs_one_direction() {
        let d = Direction {
            relay: Endpoint::v4([198, 18, 1, 1], 30000),
            latched: Endpoint::v4([198, 18, 1, 2], 1024),
            new_src: Endpoint::v4([198, 18, 2, 1], 30002),
            new_dst: Endpoint::v4([198, 18, 2, 2], 6000),
            slot: 3,
        };
        let mut plain = component_legs(false, [None, Some(d)]);
        assert_eq!(plain.next(), Some(d.port_leg()));
        assert_eq!(plain.next(), None);
        // A shared port with one channel latched: that channel, then the flag.
        let mut shared = component_legs(true, [Some(d), None]);
        assert_eq!(shared.next(), Some(d.channel_leg()));
        assert_eq!(shared.next(), Some(shared_port_flag(d.relay)));
        assert_eq!(shared.next(), None);
        // Nothing to forward: no flag either.
        assert_eq!(component_legs(true, [None, None]).count(), 0);
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
