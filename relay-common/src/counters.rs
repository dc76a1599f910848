//! Global data-plane counters: one per-CPU `u64` per entry, by verdict and by pass reason.
//!
//! Every packet increments exactly one verdict counter ([`Counter::is_verdict`]); a passed
//! packet also increments exactly one reason counter ([`Counter::is_pass_reason`]), so
//! `pass == sum(reasons)` holds (the fixture table checks it for every case); likewise a
//! dropped packet increments exactly one drop reason ([`Counter::is_drop_reason`]). The other
//! counters (`leg_slot_invalid`, `fwd_bytes`, `reflected`, `stun_answered`, `turn_*`) are none of these
//! and stay out of the sums. New counters are appended: indices never change.

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident = $idx:literal => $label:literal, )*) => {
        /// Index into the counters array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter { $( $(#[$doc])* $name = $idx, )* }

        impl Counter {
            /// All counters in index order.
            pub const ALL: &'static [Counter] = &[ $( Counter::$name, )* ];

            /// Stable snake_case name, used in metrics and JSON.
            pub const fn name(self) -> &'static str {
                match self { $( Counter::$name => $label, )* }
            }
        }
    };
}

counters! {
    /// Verdict: handed to the kernel stack unchanged.
    VerdictPass = 0 => "verdict_pass",
    /// Verdict: rewritten and sent back out the ingress interface.
    VerdictTx = 1 => "verdict_tx",
    /// Verdict: rewritten and redirected to another interface through the devmap.
    VerdictRedirect = 2 => "verdict_redirect",
    /// Pass: neither IPv4 nor IPv6 (ARP, LLDP, ...), or an IP header whose version field
    /// disagrees with the EtherType.
    PassNotIp = 3 => "pass_not_ip",
    /// Pass: IP but not UDP (for IPv6: the first next header is not UDP nor an extension).
    PassNotUdp = 4 => "pass_not_udp",
    /// Pass: IPv4 header with options (IHL > 5), or IPv6 extension headers before UDP.
    PassIpOptions = 5 => "pass_ip_options",
    /// Pass: IPv4 fragment (MF set or offset non-zero), or an IPv6 fragment header.
    PassFragment = 6 => "pass_fragment",
    /// Pass: frame shorter than the headers it announces.
    PassTruncated = 7 => "pass_truncated",
    /// Pass: no leg for this destination address:port.
    PassUnknownLeg = 8 => "pass_unknown_leg",
    /// Pass: leg exists but no source is latched yet (the controller latches it).
    PassUnlatched = 9 => "pass_unlatched",
    /// Pass: leg is latched to another source.
    PassSrcMismatch = 10 => "pass_src_mismatch",
    /// Pass: TTL (IPv6: hop limit) would expire on forwarding.
    PassTtlExpired = 11 => "pass_ttl_expired",
    /// Pass: route found but no neighbour entry yet (the stack resolves it).
    PassFibNoNeigh = 12 => "pass_fib_no_neigh",
    /// Pass: no usable route (blackhole, unreachable, prohibit, MTU, ...).
    PassFibFailed = 13 => "pass_fib_failed",
    /// Pass: the egress interface is not one the relay is attached to.
    PassEgressNotAttached = 14 => "pass_egress_not_attached",
    /// Pass: the leg's rewrite changes the address family (v4/v6 bridging is not on the fast
    /// path yet: the controller's socket relays it).
    PassFamilyMismatch = 15 => "pass_family_mismatch",
    /// Pass: VLAN-tagged frame whose route leaves by another interface (tag would be wrong).
    PassVlanCrossIf = 16 => "pass_vlan_cross_if",
    /// Forwarded, but the leg's stats slot is out of range (controller bug; packet still goes).
    LegSlotInvalid = 17 => "leg_slot_invalid",
    /// Pass: IPv4 forwarding is disabled on the ingress interface; `bpf_fib_lookup` refuses
    /// (the daemon enables it on the interfaces it attaches to).
    PassFibFwdDisabled = 18 => "pass_fib_fwd_disabled",
    /// Pass: the port is shared by two channels and no channel entry matches this source; the
    /// controller's socket gets it and latches it.
    PassSharedNoChannel = 19 => "pass_shared_no_channel",
    /// UDP payload bytes of every packet XDP forwarded (TX or REDIRECT). Not a verdict nor a
    /// pass reason: it grows by bytes, not by one per packet.
    FwdBytes = 20 => "fwd_bytes",
    /// Verdict: dropped (reflector refusals; every drop has exactly one drop reason).
    VerdictDrop = 21 => "verdict_drop",
    /// Drop: reflector packet shorter than its header.
    DropReflectTruncated = 22 => "drop_reflect_truncated",
    /// Drop: reflector packet without the magic.
    DropReflectBadMagic = 23 => "drop_reflect_bad_magic",
    /// Drop: unknown header version or reserved flags set.
    DropReflectBadVersion = 24 => "drop_reflect_bad_version",
    /// Drop: key id not in the key map.
    DropReflectUnknownKey = 25 => "drop_reflect_unknown_key",
    /// Drop: ticket expired (or the clock was never written).
    DropReflectExpired = 26 => "drop_reflect_expired",
    /// Drop: MAC does not match the header and the outer source address:port.
    DropReflectBadMac = 27 => "drop_reflect_bad_mac",
    /// Drop: requested source is not one of this box's addresses.
    DropReflectSrcNotAllowed = 28 => "drop_reflect_src_not_allowed",
    /// Drop: destination is loopback, this-network, multicast, reserved/broadcast, one of this
    /// box's addresses, port 0, or in the operator's deny trie.
    DropReflectDstDenied = 29 => "drop_reflect_dst_denied",
    /// Drop: the outer source is over its reflect rate.
    DropReflectRateLimited = 30 => "drop_reflect_rate_limited",
    /// Drop: no route or neighbour for the destination, or the route leaves by an interface
    /// XDP cannot send on.
    DropReflectNoRoute = 31 => "drop_reflect_no_route",
    /// Packets reflected (also counted as TX or REDIRECT). Neither verdict nor reason.
    Reflected = 32 => "reflected",
    /// Pass: well-formed STUN on the STUN port that XDP does not answer (other method or
    /// class, attributes other than FINGERPRINT); the userspace server's.
    PassStunUnsupported = 33 => "pass_stun_unsupported",
    /// Pass: not STUN, truncated, or a wrong FINGERPRINT on the STUN port.
    PassStunMalformed = 34 => "pass_stun_malformed",
    /// Binding requests answered by XDP (also counted as TX). Neither verdict nor reason.
    StunAnswered = 35 => "stun_answered",
    /// Pass: IPv6 UDP with checksum 0, which RFC 8200 forbids: an incremental update of it
    /// would be wrong, so the stack decides (and drops it).
    PassUdp6ZeroChecksum = 36 => "pass_udp6_zero_checksum",
    /// Next-hop cache: a FIB lookup filled (or refilled) an entry. Neither verdict nor reason;
    /// forwarded packets minus fills is what the cache answered.
    NextHopFill = 37 => "nexthop_fill",
    /// Next-hop cache: an entry was found but not usable (generation, age or length), so the
    /// FIB was asked again. Counted as a fill too when that lookup succeeds.
    NextHopStale = 38 => "nexthop_stale",
    /// TURN ChannelData from a client relayed to its peer by XDP, header stripped (also
    /// counted as TX or REDIRECT). Neither verdict nor reason.
    TurnChannelToPeer = 39 => "turn_channel_to_peer",
    /// UDP from a TURN peer relayed to the client as ChannelData by XDP, header added (also
    /// counted as TX or REDIRECT). Neither verdict nor reason.
    TurnPeerToChannel = 40 => "turn_peer_to_channel",
    /// TURN ChannelData from a client relayed to another allocation's client on this box,
    /// channel number rewritten (also counted as TX or REDIRECT). Neither verdict nor reason.
    TurnChannelLocal = 41 => "turn_channel_local",
    /// Pass: ChannelData to the TURN port with no channel entry for (server, client source,
    /// channel number): unbound channel, wrong client source, or an entry of the wrong kind.
    PassTurnUnknownChannel = 42 => "pass_turn_unknown_channel",
    /// Pass: ChannelData shorter than its 4-byte header, a length field beyond the UDP
    /// payload or more than 3 bytes of padding after it, or a UDP length that disagrees with
    /// the IP length (TURN port, or a relayed address's peer traffic).
    PassTurnBadLength = 43 => "pass_turn_bad_length",
    /// Pass: the TURN channel or permission entry is past its `expires_ns`; the controller
    /// decides (and removes the entry).
    PassTurnExpired = 44 => "pass_turn_expired",
    /// Pass: UDP to a TURN relayed address from a peer without a bound channel (the
    /// controller sends a Data indication, or drops it without a permission).
    PassTurnNoChannel = 45 => "pass_turn_no_channel",
    /// Pass: the TURN entry's rewrite changes the address family (an IPv4 client with an
    /// IPv6 peer, or the reverse): the controller translates.
    PassTurnFamilyMismatch = 46 => "pass_turn_family_mismatch",
    /// Pass: not ChannelData on the TURN port of one of our addresses (STUN-format TURN
    /// requests and indications when the TURN port is not the STUN port, and anything else):
    /// the controller's TURN server.
    PassTurnControl = 47 => "pass_turn_control",
    /// Pass: UDP from a TURN peer with a channel, but the frame cannot grow by the
    /// ChannelData header and padding (no headroom or tailroom): the controller relays it.
    PassTurnNoRoom = 48 => "pass_turn_no_room",
}

/// Number of entries in the counters array.
pub const NUM_COUNTERS: u32 = 49;

impl Counter {
    /// One of the three verdicts: every packet increments exactly one.
    pub const fn is_verdict(self) -> bool {
        matches!(
            self,
            Counter::VerdictPass
                | Counter::VerdictTx
                | Counter::VerdictRedirect
                | Counter::VerdictDrop
        )
    }

    /// A pass reason: every passed packet increments exactly one, so `verdict_pass` equals
    /// their sum. The classification test ties it to the `pass_` names.
    pub const fn is_pass_reason(self) -> bool {
        matches!(
            self,
            Counter::PassNotIp
                | Counter::PassNotUdp
                | Counter::PassIpOptions
                | Counter::PassFragment
                | Counter::PassTruncated
                | Counter::PassUnknownLeg
                | Counter::PassUnlatched
                | Counter::PassSrcMismatch
                | Counter::PassTtlExpired
                | Counter::PassFibNoNeigh
                | Counter::PassFibFailed
                | Counter::PassEgressNotAttached
                | Counter::PassFamilyMismatch
                | Counter::PassVlanCrossIf
                | Counter::PassFibFwdDisabled
                | Counter::PassSharedNoChannel
                | Counter::PassStunUnsupported
                | Counter::PassStunMalformed
                | Counter::PassUdp6ZeroChecksum
                | Counter::PassTurnUnknownChannel
                | Counter::PassTurnBadLength
                | Counter::PassTurnExpired
                | Counter::PassTurnNoChannel
                | Counter::PassTurnFamilyMismatch
                | Counter::PassTurnControl
                | Counter::PassTurnNoRoom
        )
    }

    /// A drop reason: every dropped packet increments exactly one, so `verdict_drop` equals
    /// their sum.
    pub const fn is_drop_reason(self) -> bool {
        matches!(
            self,
            Counter::DropReflectTruncated
                | Counter::DropReflectBadMagic
                | Counter::DropReflectBadVersion
                | Counter::DropReflectUnknownKey
                | Counter::DropReflectExpired
                | Counter::DropReflectBadMac
                | Counter::DropReflectSrcNotAllowed
                | Counter::DropReflectDstDenied
                | Counter::DropReflectRateLimited
                | Counter::DropReflectNoRoute
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        assert_eq!(Counter::ALL.len() as u32, NUM_COUNTERS);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
            for d in &Counter::ALL[i + 1..] {
                assert_ne!(c.name(), d.name());
            }
        }
    }

    #[test]
    fn classification() {
        let verdicts: [Counter; 4] = [
            Counter::VerdictPass,
            Counter::VerdictTx,
            Counter::VerdictRedirect,
            Counter::VerdictDrop,
        ];
        for c in Counter::ALL {
            assert_eq!(c.is_verdict(), verdicts.contains(c), "{}", c.name());
            let kinds = [c.is_verdict(), c.is_pass_reason(), c.is_drop_reason()];
            assert!(kinds.iter().filter(|k| **k).count() <= 1, "{}", c.name());
            // Reasons are exactly the `pass_*` names other than the verdict.
            assert_eq!(
                c.is_pass_reason(),
                c.name().starts_with("pass_"),
                "{}",
                c.name()
            );
            assert_eq!(
                c.is_drop_reason(),
                c.name().starts_with("drop_"),
                "{}",
                c.name()
            );
        }
        // Neither: they must not enter the per-packet sums.
        for c in [
            Counter::LegSlotInvalid,
            Counter::FwdBytes,
            Counter::Reflected,
            Counter::StunAnswered,
            Counter::TurnChannelToPeer,
            Counter::TurnPeerToChannel,
            Counter::TurnChannelLocal,
        ] {
            let kinds = [c.is_verdict(), c.is_pass_reason(), c.is_drop_reason()];
            assert!(kinds.iter().all(|k| !k), "{}", c.name());
        }
        assert!(Counter::PassSharedNoChannel.is_pass_reason());
    }
}
