//! Global data-plane counters: one per-CPU `u64` per entry, by verdict and by pass reason.
//!
//! Every packet increments exactly one verdict counter ([`Counter::is_verdict`]); a passed
//! packet also increments exactly one reason counter ([`Counter::is_pass_reason`]), so
//! `pass == sum(reasons)` holds (the fixture table checks it for every case). The other
//! counters (`leg_slot_invalid`, `fwd_bytes`) are neither and stay out of both sums.

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
    /// Pass: not IPv4 (ARP, IPv6 until its fast path lands, ...).
    PassNotIpv4 = 3 => "pass_not_ipv4",
    /// Pass: IPv4 but not UDP.
    PassNotUdp = 4 => "pass_not_udp",
    /// Pass: IPv4 header with options (IHL > 5).
    PassIpOptions = 5 => "pass_ip_options",
    /// Pass: IPv4 fragment (MF set or offset non-zero).
    PassFragment = 6 => "pass_fragment",
    /// Pass: frame shorter than the headers it announces.
    PassTruncated = 7 => "pass_truncated",
    /// Pass: no leg for this destination address:port.
    PassUnknownLeg = 8 => "pass_unknown_leg",
    /// Pass: leg exists but no source is latched yet (the controller latches it).
    PassUnlatched = 9 => "pass_unlatched",
    /// Pass: leg is latched to another source.
    PassSrcMismatch = 10 => "pass_src_mismatch",
    /// Pass: TTL would expire on forwarding.
    PassTtlExpired = 11 => "pass_ttl_expired",
    /// Pass: route found but no neighbour entry yet (the stack resolves it).
    PassFibNoNeigh = 12 => "pass_fib_no_neigh",
    /// Pass: no usable route (blackhole, unreachable, prohibit, MTU, ...).
    PassFibFailed = 13 => "pass_fib_failed",
    /// Pass: the egress interface is not one the relay is attached to.
    PassEgressNotAttached = 14 => "pass_egress_not_attached",
    /// Pass: leg rewrite is not IPv4-to-IPv4 (bridging is not on the fast path yet).
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
}

/// Number of entries in the counters array.
pub const NUM_COUNTERS: u32 = 21;

impl Counter {
    /// One of the three verdicts: every packet increments exactly one.
    pub const fn is_verdict(self) -> bool {
        matches!(
            self,
            Counter::VerdictPass | Counter::VerdictTx | Counter::VerdictRedirect
        )
    }

    /// A pass reason: every passed packet increments exactly one, so `verdict_pass` equals
    /// their sum. Exhaustive on purpose, so a new counter must be classified here.
    pub const fn is_pass_reason(self) -> bool {
        match self {
            Counter::PassNotIpv4
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
            | Counter::PassSharedNoChannel => true,
            Counter::VerdictPass
            | Counter::VerdictTx
            | Counter::VerdictRedirect
            | Counter::LegSlotInvalid
            | Counter::FwdBytes => false,
        }
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
        let verdicts: [Counter; 3] = [
            Counter::VerdictPass,
            Counter::VerdictTx,
            Counter::VerdictRedirect,
        ];
        for c in Counter::ALL {
            assert_eq!(c.is_verdict(), verdicts.contains(c), "{}", c.name());
            assert!(!(c.is_verdict() && c.is_pass_reason()), "{}", c.name());
            // Reasons are exactly the `pass_*` names other than the verdict.
            assert_eq!(
                c.is_pass_reason(),
                c.name().starts_with("pass_"),
                "{}",
                c.name()
            );
        }
        // Neither: they must not enter the per-packet sums.
        for c in [Counter::LegSlotInvalid, Counter::FwdBytes] {
            assert!(!c.is_verdict() && !c.is_pass_reason(), "{}", c.name());
        }
        assert!(Counter::PassSharedNoChannel.is_pass_reason());
    }
}
