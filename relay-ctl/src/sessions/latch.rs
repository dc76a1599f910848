//! Latching: deciding, from the first packets that reach the controller's sockets, which
//! source address a leg belongs to. Pure logic (no sockets, no maps, time passed in), so the
//! state machine is tested exhaustively on its own.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{api::LatchPolicy, events::Event};

/// What the controller does with a packet that reached a leg's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// From the source already latched (XDP not installed yet, or passed it up): forward.
    Accept,
    /// First source of this leg: latch it, forward.
    Latch,
    /// Media handover: the leg moves to this source (the old one is returned), forward.
    Relatch(SocketAddr),
    /// Not accepted: drop and count.
    Reject(Reject),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Strict policy: the source IP is not the signalled one (or nothing was signalled).
    NotSignalled,
    /// A latch change within the hold-off period after the previous one.
    HoldOff,
}

impl Reject {
    /// The event that counts this refusal.
    pub fn event(self) -> Event {
        match self {
            Reject::NotSignalled => Event::LatchRejectedStrict,
            Reject::HoldOff => Event::LatchRejectedHoldoff,
        }
    }
}

/// The latching state of one leg (one side of an RTP or RTCP component).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latch {
    /// The address signalled for this side (SDP), if any.
    pub signalled: Option<SocketAddr>,
    /// The source this leg is latched to.
    pub latched: Option<SocketAddr>,
    /// CLOCK_MONOTONIC ns of the last latch change (rate limit for re-latching).
    pub changed_ns: Option<u64>,
    /// Latch changes after the first latch.
    pub relatches: u64,
}

impl Latch {
    /// Where packets *to* this side go: the latched source, else the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }

    fn holdoff_over(&self, now_ns: u64, holdoff_ns: u64) -> bool {
        self.changed_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= holdoff_ns)
    }

    fn set(&mut self, src: SocketAddr, now_ns: u64) -> Decision {
        let old = self.latched.replace(src);
        self.changed_ns = Some(now_ns);
        match old {
            None => Decision::Latch,
            Some(o) => {
                self.relatches += 1;
                Decision::Relatch(o)
            }
        }
    }

    /// A packet from `src` reached this leg's socket (policy `immediate` or `strict`).
    ///
    /// `immediate`: any source latches a free leg; a different source re-latches it (media
    /// handover) at most once per hold-off, so two competing sources cannot flap the leg
    /// faster than that. `strict`: the same, but only sources whose IP is the signalled one
    /// (the port is learned, since even a NAT-free host may send from another port).
    pub fn on_packet(
        &mut self,
        policy: LatchPolicy,
        src: SocketAddr,
        now_ns: u64,
        holdoff_ns: u64,
    ) -> Decision {
        if self.latched == Some(src) {
            return Decision::Accept;
        }
        if policy == LatchPolicy::Strict && self.signalled.is_none_or(|s| s.ip() != src.ip()) {
            return Decision::Reject(Reject::NotSignalled);
        }
        if self.latched.is_some() && !self.holdoff_over(now_ns, holdoff_ns) {
            return Decision::Reject(Reject::HoldOff);
        }
        self.set(src, now_ns)
    }
}

/// The two latches of one component (RTP or RTCP) of a stream: side A and side B, which
/// seed 003 calls channel 1 and channel 2.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    /// Channel 1 (side A) and channel 2 (side B).
    pub channels: [Latch; 2],
    /// Alternate policy: the channel the next unknown source is written into (0 or 1).
    pub next: u8,
}

impl Channels {
    /// Seed 003's shared-port relay: both parties send to the same relay port, and the
    /// relay tells them apart only by source address.
    ///
    /// Seed 003 (FIG. 11): "Step 80 represents extracting the source network address from the
    /// received media and comparing the extracted source network address [to] the network
    /// address of the first IP channel 52. If the two address match, then the media is
    /// forwarded on the second IP channel 54 [...] If the extracted address matches the
    /// network address of the second IP channel 54, then the media is forwarded on the first
    /// IP channel 52. If the extracted network address does not match the network address of
    /// the first media channel 52 or the second media channel 54, then the extracted network
    /// address and an extracted port number are written to the session table 46 as either the
    /// first IP channel 52 or the second IP channel 54. The session relay module 56 alternates
    /// to which of the first IP channel 52 and the second IP channel 54 it will write the
    /// extracted IP address and port number."
    ///
    /// A channel's address is the latched one, else the one signalled in SDP (the seed fills
    /// channel 1 from the invite's SDP and channel 2 from the OK's). We compare address *and*
    /// port (two phones behind one NAT share the address). Overwriting an already latched
    /// channel is rate limited like any re-latch. Returns the channel the packet came from
    /// (the caller forwards it to the other one) and the decision.
    pub fn alternate(
        &mut self,
        src: SocketAddr,
        now_ns: u64,
        holdoff_ns: u64,
    ) -> (Option<usize>, Decision) {
        for (i, ch) in self.channels.iter_mut().enumerate() {
            if ch.latched == Some(src) {
                return (Some(i), Decision::Accept);
            }
            if ch.latched.is_none() && ch.signalled == Some(src) {
                // The signalled address itself arrived (no NAT): latch it, no alternation.
                return (Some(i), ch.set(src, now_ns));
            }
        }
        let i = usize::from(self.next & 1);
        let ch = &mut self.channels[i];
        if ch.latched.is_some() && !ch.holdoff_over(now_ns, holdoff_ns) {
            return (None, Decision::Reject(Reject::HoldOff));
        }
        self.next = (self.next + 1) & 1;
        (Some(i), ch.set(src, now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }
    const MS: u64 = 1_000_000;
    const HOLD: u64 = 1000 * MS;

    #[test]
    fn immediate_latches_first_then_relatches_after_holdoff() {
        let mut l = Latch::default();
        let (x, y) = (sa("198.18.1.2:4000"), sa("198.18.1.2:4002"));
        assert_eq!(
            l.on_packet(LatchPolicy::Immediate, x, 0, HOLD),
            Decision::Latch
        );
        assert_eq!(
            l.on_packet(LatchPolicy::Immediate, x, 1, HOLD),
            Decision::Accept
        );
        // Handover within the hold-off: refused, leg stays.
        assert_eq!(
            l.on_packet(LatchPolicy::Immediate, y, 500 * MS, HOLD),
            Decision::Reject(Reject::HoldOff)
        );
        assert_eq!(l.latched, Some(x));
        assert_eq!(
            l.on_packet(LatchPolicy::Immediate, y, HOLD, HOLD),
            Decision::Relatch(x)
        );
        assert_eq!((l.latched, l.relatches), (Some(y), 1));
        // And the old source cannot take it straight back.
        assert_eq!(
            l.on_packet(LatchPolicy::Immediate, x, HOLD + 1, HOLD),
            Decision::Reject(Reject::HoldOff)
        );
    }

    #[test]
    fn strict_accepts_only_the_signalled_ip() {
        let mut l = Latch {
            signalled: Some(sa("198.51.100.2:5004")),
            ..Latch::default()
        };
        let third = sa("203.0.113.9:5004");
        assert_eq!(
            l.on_packet(LatchPolicy::Strict, third, 0, HOLD),
            Decision::Reject(Reject::NotSignalled)
        );
        assert_eq!(l.latched, None);
        // Same IP, other port: learned.
        let real = sa("198.51.100.2:6000");
        assert_eq!(
            l.on_packet(LatchPolicy::Strict, real, 1, HOLD),
            Decision::Latch
        );
        assert_eq!(
            l.on_packet(LatchPolicy::Strict, third, 2 * HOLD, HOLD),
            Decision::Reject(Reject::NotSignalled)
        );
        // Nothing signalled: strict refuses everyone.
        let mut none = Latch::default();
        assert_eq!(
            none.on_packet(LatchPolicy::Strict, real, 0, HOLD),
            Decision::Reject(Reject::NotSignalled)
        );
    }

    #[test]
    fn destination_prefers_latched() {
        let mut l = Latch {
            signalled: Some(sa("192.0.2.2:5004")),
            ..Latch::default()
        };
        assert_eq!(l.destination(), Some(sa("192.0.2.2:5004")));
        l.on_packet(LatchPolicy::Immediate, sa("198.18.1.2:1024"), 0, HOLD);
        assert_eq!(l.destination(), Some(sa("198.18.1.2:1024")));
    }

    #[test]
    fn alternate_writes_unknown_sources_alternately() {
        let mut a = Channels::default();
        let (p, q, r, s) = (
            sa("198.18.1.2:1000"),
            sa("198.18.2.2:2000"),
            sa("203.0.113.5:3000"),
            sa("203.0.113.6:4000"),
        );
        assert_eq!(a.alternate(p, 0, HOLD), (Some(0), Decision::Latch));
        assert_eq!(a.alternate(p, 1, HOLD), (Some(0), Decision::Accept));
        assert_eq!(a.alternate(q, 2, HOLD), (Some(1), Decision::Latch));
        assert_eq!(a.alternate(q, 3, HOLD), (Some(1), Decision::Accept));
        // A third source within the hold-off is refused, and the turn does not advance.
        assert_eq!(
            a.alternate(r, 4, HOLD),
            (None, Decision::Reject(Reject::HoldOff))
        );
        // After it, unknown sources overwrite channel 1, then channel 2: the seed's order.
        assert_eq!(
            a.alternate(r, 2 * HOLD, HOLD),
            (Some(0), Decision::Relatch(p))
        );
        assert_eq!(
            a.alternate(s, 2 * HOLD, HOLD),
            (Some(1), Decision::Relatch(q))
        );
        assert_eq!(a.channels[0].latched, Some(r));
        assert_eq!(a.channels[1].latched, Some(s));
    }

    #[test]
    fn alternate_latches_a_signalled_channel_without_alternating() {
        let callee = sa("198.51.100.2:6000");
        let mut a = Channels::default();
        a.channels[1].signalled = Some(callee);
        assert_eq!(a.alternate(callee, 0, HOLD), (Some(1), Decision::Latch));
        assert_eq!(a.next, 0);
        // The next unknown source still goes to channel 1.
        let caller = sa("198.18.1.2:1000");
        assert_eq!(a.alternate(caller, 1, HOLD), (Some(0), Decision::Latch));
    }

    proptest! {
        /// Whatever arrives, a leg changes its latch at most once per hold-off, strict never
        /// latches a foreign IP, and Accept only ever answers the latched source.
        #[test]
        fn latch_invariants(
            strict in any::<bool>(),
            pkts in proptest::collection::vec((0u8..4, 0u64..3_000), 1..60),
        ) {
            let policy = if strict { LatchPolicy::Strict } else { LatchPolicy::Immediate };
            let srcs = [
                sa("198.51.100.2:5004"), sa("198.51.100.2:5006"),
                sa("203.0.113.1:5004"), sa("203.0.113.2:7000"),
            ];
            let mut l = Latch { signalled: Some(srcs[0]), ..Latch::default() };
            let mut now = 0u64;
            let mut last_change: Option<u64> = None;
            for (i, dt) in pkts {
                now += dt * MS;
                let src = srcs[usize::from(i)];
                let before = l.latched;
                let d = l.on_packet(policy, src, now, HOLD);
                match d {
                    Decision::Accept => prop_assert_eq!(before, Some(src)),
                    Decision::Latch | Decision::Relatch(_) => {
                        prop_assert_eq!(l.latched, Some(src));
                        if strict { prop_assert_eq!(src.ip(), srcs[0].ip()); }
                        if let (Decision::Relatch(_), Some(t)) = (d, last_change) {
                            prop_assert!(now - t >= HOLD);
                        }
                        last_change = Some(now);
                    }
                    Decision::Reject(_) => prop_assert_eq!(l.latched, before),
                }
            }
        }

        /// The two channels never hold the same source.
        #[test]
        fn alternate_channels_stay_distinct(
            pkts in proptest::collection::vec((0u8..5, 0u64..3_000), 1..80),
        ) {
            let srcs = [
                sa("198.18.1.2:1000"), sa("198.18.2.2:2000"), sa("203.0.113.5:3000"),
                sa("203.0.113.6:4000"), sa("198.18.1.2:1002"),
            ];
            let mut a = Channels::default();
            let mut now = 0;
            for (i, dt) in pkts {
                now += dt * MS;
                let (ch, d) = a.alternate(srcs[usize::from(i)], now, HOLD);
                if let Some(c) = ch {
                    prop_assert_eq!(a.channels[c].latched, Some(srcs[usize::from(i)]));
                } else {
                    prop_assert_eq!(d, Decision::Reject(Reject::HoldOff));
                }
                if let (Some(x), Some(y)) = (a.channels[0].latched, a.channels[1].latched) {
                    prop_assert_ne!(x, y);
                }
            }
        }
    }
}
