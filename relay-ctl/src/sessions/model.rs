//! The session table (seed 003's records: session id, relay resource, channel 1, channel 2),
//! as the controller keeps it and persists it for a restart.
use std::net::{IpAddr, SocketAddr};

use relay_common::{
    Endpoint, LegKey, LegValue,
    leg::{Direction, component_legs},
};
use serde::{Deserialize, Serialize};

use super::latch::Channels;
use crate::{
    api::{FrontEnd, LatchPolicy, SessionState},
    ports::PortPair,
};

/// Index of the RTP and RTCP components of a stream.
pub const RTP: usize = 0;
pub const RTCP: usize = 1;
pub const SIDE_NAMES: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub call_id: String,
    pub policy: LatchPolicy,
    pub state: SessionState,
    pub created_unix: u64,
    /// CLOCK_MONOTONIC ns (the clock XDP's last-seen uses; survives a daemon restart).
    pub created_ns: u64,
    pub answered_ns: Option<u64>,
    pub streams: Vec<Stream>,
    /// The front end that created it (`None`: restored from a state file written before
    /// ownership was recorded; any front end may change it).
    #[serde(default)]
    pub origin: Option<FrontEnd>,
    /// Last-seen times per side at the sweeper's last reading of the statistics (a lower
    /// bound of the current ones). Not persisted: a restarted daemon reads afresh.
    #[serde(skip)]
    pub seen_hint: [u64; 2],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stream {
    pub media: String,
    /// Alternate policy: one port pair shared by both sides.
    pub shared: bool,
    /// Port pairs: side A's then side B's, or the one shared pair.
    pub pairs: Vec<PortPair>,
    /// RTP and RTCP.
    pub comps: [Component; 2],
}

/// One component (RTP or RTCP) of a stream: the two latches and what each side has done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Component {
    pub latch: Channels,
    pub sides: [Side; 2],
    /// What is in the kernel leg table for this component, in install order. Not persisted:
    /// a restarted daemon reads it back from the pinned map.
    #[serde(skip)]
    pub installed: Vec<(LegKey, LegValue)>,
}

/// One side of a component: its relay endpoint, stats slot and counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Side {
    /// The relay's address:port this side's peer sends to.
    pub relay: Option<SocketAddr>,
    /// Index into the kernel's per-leg stats array for packets from this side.
    pub slot: u32,
    /// Kernel counts of entries that were replaced or removed (a new key resets the slot).
    pub retired_packets: u64,
    pub retired_bytes: u64,
    pub retired_last_ns: u64,
    /// Packets from this side forwarded by the controller itself.
    pub user_packets: u64,
    pub user_bytes: u64,
    pub user_last_ns: u64,
}

impl Side {
    pub fn relay(&self) -> SocketAddr {
        self.relay
            .unwrap_or(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0))
    }
}

impl Stream {
    /// The relay endpoint of `side` for component `comp` (RTCP is RTP + 1).
    pub fn relay_of(pairs: &[PortPair], side: usize, comp: usize) -> SocketAddr {
        let p = pairs[if pairs.len() == 1 { 0 } else { side }];
        SocketAddr::new(p.addr, p.rtp + comp as u16)
    }
}

/// The address family as the data plane sees it (an IPv4-mapped IPv6 address is IPv4).
fn family(a: SocketAddr) -> u8 {
    Endpoint::from(a).family
}

impl Component {
    /// The kernel entries this component should have now, in install order (shared port:
    /// the channels first, the port entry last). A side gets an entry once it is latched and
    /// the other side has a destination (latched, else signalled). One family end to end
    /// (IPv4 or IPv6): the XDP fast path does not translate between them, so a v4/v6 bridge
    /// stays with the controller.
    pub fn desired(&self, shared: bool) -> Vec<(LegKey, LegValue)> {
        component_legs(shared, [0, 1].map(|x| self.direction(x))).collect()
    }

    /// Side `x`'s direction, if it can be forwarded in the kernel now: `x` is latched, the
    /// other side has a destination, and all four endpoints are of one family.
    fn direction(&self, x: usize) -> Option<Direction> {
        let y = 1 - x;
        let from = self.latch.channels[x].latched?;
        let to = self.latch.channels[y].destination()?;
        let (own, other) = (self.sides[x].relay(), self.sides[y].relay());
        let f = family(from);
        if family(to) != f || family(own) != f || family(other) != f {
            return None;
        }
        Some(Direction {
            relay: Endpoint::from(own),
            latched: Endpoint::from(from),
            new_src: Endpoint::from(other),
            new_dst: Endpoint::from(to),
            slot: self.sides[x].slot,
        })
    }

    /// Which side owns kernel stats slot `slot`.
    pub fn side_of_slot(&self, slot: u32) -> Option<usize> {
        self.sides.iter().position(|s| s.slot == slot)
    }
}

#[cfg(test)]
mod tests {
    use relay_common::leg::LEG_F_SHARED;

    use super::*;
    use crate::api::LatchPolicy;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn comp(relay_a: &str, relay_b: &str) -> Component {
        Component {
            latch: Channels::default(),
            sides: [
                Side {
                    relay: Some(sa(relay_a)),
                    slot: 1,
                    ..Side::default()
                },
                Side {
                    relay: Some(sa(relay_b)),
                    slot: 2,
                    ..Side::default()
                },
            ],
            installed: vec![],
        }
    }

    #[test]
    fn one_sided_latch_uses_the_signalled_destination() {
        let mut c = comp("198.18.1.1:30000", "198.18.2.1:30002");
        assert!(c.desired(false).is_empty());
        c.latch.channels[0].on_packet(LatchPolicy::Immediate, sa("198.18.1.2:1024"), 0, 0);
        assert!(c.desired(false).is_empty(), "B has no destination yet");
        c.latch.channels[1].signalled = Some(sa("198.18.2.2:6000"));
        let d = c.desired(false);
        assert_eq!(d.len(), 1);
        let (k, v) = d[0];
        assert_eq!(k, LegKey::port(Endpoint::from(sa("198.18.1.1:30000"))));
        assert_eq!(v.latched, Endpoint::from(sa("198.18.1.2:1024")));
        assert_eq!(v.new_src, Endpoint::from(sa("198.18.2.1:30002")));
        assert_eq!(v.new_dst, Endpoint::from(sa("198.18.2.2:6000")));
        assert_eq!(v.slot, 1);
    }

    #[test]
    fn shared_port_installs_channels_then_port() {
        let mut c = comp("198.18.1.1:30000", "198.18.1.1:30000");
        c.latch.alternate(sa("198.18.1.2:1000"), 0, 0);
        c.latch.alternate(sa("198.18.2.2:2000"), 0, 0);
        let d = c.desired(true);
        assert_eq!(d.len(), 3);
        assert_eq!(d[2].1.flags, LEG_F_SHARED);
        assert_eq!(
            d[0].0,
            LegKey::channel(
                Endpoint::from(sa("198.18.1.1:30000")),
                Endpoint::from(sa("198.18.1.2:1000"))
            )
        );
        assert_eq!(d[0].1.new_dst, Endpoint::from(sa("198.18.2.2:2000")));
        assert_eq!(d[1].1.new_dst, Endpoint::from(sa("198.18.1.2:1000")));
    }

    #[test]
    fn shared_port_with_one_channel_flags_the_shared_port() {
        let mut c = comp("198.18.1.1:30000", "198.18.1.1:30000");
        c.latch.channels[1].latched = Some(sa("198.18.2.2:2000"));
        c.latch.channels[0].signalled = Some(sa("198.18.1.2:1000"));
        let d = c.desired(true);
        assert_eq!(d.len(), 2, "{d:?}");
        let relay = Endpoint::from(sa("198.18.1.1:30000"));
        assert_eq!(
            d[0].0,
            LegKey::channel(relay, Endpoint::from(sa("198.18.2.2:2000")))
        );
        assert_eq!(d[0].1.slot, 2);
        assert_eq!((d[1].0, d[1].1.flags), (LegKey::port(relay), LEG_F_SHARED));
    }

    #[test]
    fn ipv6_goes_to_the_kernel() {
        let mut c = comp("[2001:db8::1]:30000", "[2001:db8::1]:30002");
        c.latch.channels[0].latched = Some(sa("[2001:db8::2]:5000"));
        c.latch.channels[1].latched = Some(sa("[2001:db8::3]:5000"));
        let d = c.desired(false);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].0,
            LegKey::port(Endpoint::from(sa("[2001:db8::1]:30000")))
        );
        assert_eq!(d[0].1.latched, Endpoint::from(sa("[2001:db8::2]:5000")));
        assert_eq!(d[0].1.new_src, Endpoint::from(sa("[2001:db8::1]:30002")));
        assert_eq!(d[0].1.new_dst, Endpoint::from(sa("[2001:db8::3]:5000")));
    }

    #[test]
    fn v4_v6_bridge_stays_in_userspace() {
        let mut c = comp("198.18.1.1:30000", "[2001:db8::1]:30002");
        c.latch.channels[0].latched = Some(sa("198.18.1.2:5000"));
        c.latch.channels[1].latched = Some(sa("[2001:db8::3]:5000"));
        assert!(c.desired(false).is_empty());
        // An IPv4-mapped IPv6 source is IPv4.
        let mut c = comp("198.18.1.1:30000", "198.18.2.1:30002");
        c.latch.channels[0].latched = Some(sa("[::ffff:198.18.1.2]:5000"));
        c.latch.channels[1].latched = Some(sa("198.18.2.2:5000"));
        assert_eq!(c.desired(false).len(), 2);
    }
}
