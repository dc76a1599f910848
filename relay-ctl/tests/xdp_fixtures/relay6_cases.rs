//! IPv6 relay legs: the same table as cases.rs for 16-byte addresses (2001:db8::/32 on the
//! fixture namespace's links, see main.rs), plus what only IPv6 has: extension headers, the
//! mandatory UDP checksum, the hop limit and the flow label the FIB may hash on.
use etherparse::IpNumber;
use relay_common::{
    Counter, Endpoint, LegKey, LegValue,
    leg::{Direction, shared_port_legs},
};
use relay_testbed::frames::{Udp6, raw_l2};

use crate::cases::{
    CALLEE_MAC, CALLER_MAC, Case, Expect, FX0_MAC, FX1_MAC, FX2_HOST_MAC, FX2_MAC, MAX_LEGS,
    TX_PEER_MAC, plain_case,
};

const fn v6(net: u16, host: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[4] = (net >> 8) as u8;
    a[5] = net as u8;
    a[14] = (host >> 8) as u8;
    a[15] = host as u8;
    a
}

// Addresses main.rs configures: the relay's on fx0/fx1/fx2, and the neighbours.
pub const RELAY_A6: [u8; 16] = v6(1, 1);
pub const RELAY_B6: [u8; 16] = v6(2, 1);
pub const RELAY_C6: [u8; 16] = v6(3, 1);
pub const CALLER6: [u8; 16] = v6(1, 2);
pub const TX_PEER6: [u8; 16] = v6(1, 3);
pub const CALLEE6: [u8; 16] = v6(2, 2);
pub const FX2_HOST6: [u8; 16] = v6(3, 2);
const NO_NEIGH6: [u8; 16] = v6(2, 3);
const NO_ROUTE6: [u8; 16] = v6(0xff, 9);

/// (address, MAC, link) of the permanent IPv6 neighbours main.rs installs.
pub const NEIGHBOURS6: [([u8; 16], [u8; 6], &str); 4] = [
    (CALLER6, CALLER_MAC, "fx0"),
    (TX_PEER6, TX_PEER_MAC, "fx0"),
    (CALLEE6, CALLEE_MAC, "fx1"),
    (FX2_HOST6, FX2_HOST_MAC, "fx2"),
];

type Ep = ([u8; 16], u16);
const CALLER_EP: Ep = (CALLER6, 5004);
const CALLEE_EP: Ep = (CALLEE6, 6004);
const TX_PEER_EP: Ep = (TX_PEER6, 7004);
const SHARED: Ep = (RELAY_A6, 31100);
const SHARED_SLOTS: [u32; 2] = [21, 22];

fn ep((a, p): Ep) -> Endpoint {
    Endpoint::v6(a, p)
}

fn leg(
    relay: Ep,
    latched: Option<Endpoint>,
    src: Endpoint,
    dst: Endpoint,
    slot: u32,
) -> (LegKey, LegValue) {
    Direction {
        relay: ep(relay),
        latched: latched.unwrap_or(Endpoint::NONE),
        new_src: src,
        new_dst: dst,
        slot,
    }
    .port_leg()
}

/// Caller -> A:31000 relayed from B:31002 to the callee (redirect to fx1).
fn leg_redirect() -> (LegKey, LegValue) {
    leg(
        (RELAY_A6, 31000),
        Some(ep(CALLER_EP)),
        ep((RELAY_B6, 31002)),
        ep(CALLEE_EP),
        11,
    )
}

/// Caller -> A:31010 relayed from A:31012 to a host on the same link (XDP_TX).
fn leg_tx() -> (LegKey, LegValue) {
    leg(
        (RELAY_A6, 31010),
        Some(ep(CALLER_EP)),
        ep((RELAY_A6, 31012)),
        ep(TX_PEER_EP),
        12,
    )
}

/// A leg of `port` on relay A latched to the caller, forwarding from B:31002 to `dst`.
fn leg_to(port: u16, dst: Endpoint) -> (LegKey, LegValue) {
    leg(
        (RELAY_A6, port),
        Some(ep(CALLER_EP)),
        ep((RELAY_B6, 31002)),
        dst,
        13,
    )
}

fn from_caller(port: u16) -> Udp6 {
    Udp6::new(CALLER_EP, (RELAY_A6, port), CALLER_MAC, FX0_MAC)
}

/// The expected output: new MACs, addresses and ports, hop limit - 1; everything else
/// (traffic class, flow label, payload) as it came; etherparse computes the checksum.
fn relayed(input: &Udp6, smac: [u8; 6], dmac: [u8; 6], src: Ep, dst: Ep) -> Vec<u8> {
    let mut out = input.clone();
    (out.src_mac, out.dst_mac) = (smac, dmac);
    (out.src, out.sport, out.dst, out.dport) = (src.0, src.1, dst.0, dst.1);
    out.hop_limit -= 1;
    out.bytes()
}

fn to_callee(input: &Udp6) -> Vec<u8> {
    relayed(input, FX1_MAC, CALLEE_MAC, (RELAY_B6, 31002), CALLEE_EP)
}

fn forward(
    name: &str,
    legs: Vec<(LegKey, LegValue)>,
    input: &Udp6,
    expect: Expect,
    slot: u32,
) -> Case {
    Case {
        legs,
        leg_stats: Some((slot, input.payload.len() as u64)),
        ..plain_case(name, input.bytes(), expect)
    }
}

fn pass(name: &str, legs: Vec<(LegKey, LegValue)>, input: Vec<u8>, reason: Counter) -> Case {
    Case {
        legs,
        ..plain_case(name, input, Expect::Pass(reason))
    }
}

pub fn all() -> Vec<Case> {
    let std_legs = || vec![leg_redirect(), leg_tx()];
    let mut cases = vec![];
    let n = |s: &str| format!("v6: {s}");

    // --- forwarded ---
    let f = from_caller(31000);
    cases.push(forward(
        &n("redirect to other interface"),
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        11,
    ));
    let f = from_caller(31010);
    cases.push(forward(
        &n("XDP_TX same interface"),
        std_legs(),
        &f,
        Expect::Tx(relayed(
            &f,
            FX0_MAC,
            TX_PEER_MAC,
            (RELAY_A6, 31012),
            TX_PEER_EP,
        )),
        12,
    ));
    let f = Udp6 {
        vlan: Some(100),
        ..from_caller(31010)
    };
    cases.push(forward(
        &n("vlan tagged XDP_TX keeps tag"),
        std_legs(),
        &f,
        Expect::Tx(relayed(
            &f,
            FX0_MAC,
            TX_PEER_MAC,
            (RELAY_A6, 31012),
            TX_PEER_EP,
        )),
        12,
    ));
    for (what, payload) in [
        ("odd payload", (0..171u8).collect::<Vec<_>>()),
        ("empty payload", vec![]),
    ] {
        let f = Udp6 {
            payload,
            ..from_caller(31000)
        };
        cases.push(forward(
            &n(what),
            std_legs(),
            &f,
            Expect::Redirect(to_callee(&f)),
            11,
        ));
    }
    let f = Udp6 {
        hop_limit: 2,
        ..from_caller(31000)
    };
    cases.push(forward(
        &n("hop limit 2 forwards with 1"),
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        11,
    ));
    // A payload whose checksum works out so the updated one is computed as 0 must go out
    // as 0xffff; sweeping the last payload byte hits every residue, so one of these does.
    for last in [0u8, 0x55, 0xff] {
        let mut payload = vec![0u8; 20];
        payload[19] = last;
        let f = Udp6 {
            payload,
            ..from_caller(31000)
        };
        cases.push(forward(
            &n(&format!("small payload {last:#x}")),
            std_legs(),
            &f,
            Expect::Redirect(to_callee(&f)),
            11,
        ));
    }
    let f = from_caller(31070);
    let bad_slot = leg(
        (RELAY_A6, 31070),
        Some(ep(CALLER_EP)),
        ep((RELAY_B6, 31002)),
        ep(CALLEE_EP),
        MAX_LEGS + 3,
    );
    cases.push(Case {
        legs: vec![bad_slot],
        also_counts: vec![Counter::LegSlotInvalid],
        ..plain_case(
            &n("slot out of range still forwards"),
            f.bytes(),
            Expect::Redirect(to_callee(&f)),
        )
    });

    // --- shared port ---
    let shared = |a: Ep, b: Ep| shared_port_legs(ep(SHARED), ep(a), ep(b), SHARED_SLOTS).to_vec();
    let f = Udp6::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC);
    cases.push(forward(
        &n("shared port: channel 1 to channel 2"),
        shared(CALLER_EP, CALLEE_EP),
        &f,
        Expect::Redirect(relayed(&f, FX1_MAC, CALLEE_MAC, SHARED, CALLEE_EP)),
        SHARED_SLOTS[0],
    ));
    let f = Udp6::new(CALLEE_EP, SHARED, CALLEE_MAC, FX1_MAC);
    cases.push(Case {
        ingress: "fx1",
        ..forward(
            &n("shared port: channel 2 to channel 1"),
            shared(CALLER_EP, CALLEE_EP),
            &f,
            Expect::Redirect(relayed(&f, FX0_MAC, CALLER_MAC, SHARED, CALLER_EP)),
            SHARED_SLOTS[1],
        )
    });
    let f = Udp6::new(TX_PEER_EP, SHARED, TX_PEER_MAC, FX0_MAC);
    cases.push(pass(
        &n("shared port: third source"),
        shared(CALLER_EP, CALLEE_EP),
        f.bytes(),
        Counter::PassSharedNoChannel,
    ));

    // --- passed to the stack, untouched ---
    cases.push(pass(
        &n("unknown leg"),
        std_legs(),
        from_caller(31999).bytes(),
        Counter::PassUnknownLeg,
    ));
    let unlatched = leg(
        (RELAY_A6, 31000),
        None,
        ep((RELAY_B6, 31002)),
        ep(CALLEE_EP),
        11,
    );
    cases.push(pass(
        &n("unlatched"),
        vec![unlatched],
        from_caller(31000).bytes(),
        Counter::PassUnlatched,
    ));
    let f = Udp6 {
        sport: 5005,
        ..from_caller(31000)
    };
    cases.push(pass(
        &n("source port mismatch"),
        std_legs(),
        f.bytes(),
        Counter::PassSrcMismatch,
    ));
    let f = Udp6 {
        src: TX_PEER6,
        src_mac: TX_PEER_MAC,
        ..from_caller(31000)
    };
    cases.push(pass(
        &n("source address mismatch"),
        std_legs(),
        f.bytes(),
        Counter::PassSrcMismatch,
    ));
    // An IPv4 latch whose last four bytes equal the IPv6 source's is not that source.
    let v4_latched = leg(
        (RELAY_A6, 31000),
        Some(Endpoint::v4([0, 0, 0, 2], 5004)),
        ep((RELAY_B6, 31002)),
        ep(CALLEE_EP),
        11,
    );
    cases.push(pass(
        &n("latched family differs"),
        vec![v4_latched],
        from_caller(31000).bytes(),
        Counter::PassSrcMismatch,
    ));
    cases.push(pass(
        &n("v6 to v4 bridging not on the fast path"),
        vec![leg_to(31000, Endpoint::v4([198, 18, 2, 2], 6004))],
        from_caller(31000).bytes(),
        Counter::PassFamilyMismatch,
    ));
    let f = Udp6 {
        zero_udp_csum: true,
        ..from_caller(31000)
    };
    cases.push(pass(
        &n("udp checksum zero"),
        std_legs(),
        f.bytes(),
        Counter::PassUdp6ZeroChecksum,
    ));
    let f = Udp6 {
        hop_limit: 1,
        ..from_caller(31000)
    };
    cases.push(pass(
        &n("hop limit 1"),
        std_legs(),
        f.bytes(),
        Counter::PassTtlExpired,
    ));
    for (what, nh, reason) in [
        (
            "hop-by-hop options",
            IpNumber::IPV6_HEADER_HOP_BY_HOP,
            Counter::PassIpOptions,
        ),
        (
            "routing header",
            IpNumber::IPV6_ROUTE_HEADER,
            Counter::PassIpOptions,
        ),
        (
            "destination options",
            IpNumber::IPV6_DESTINATION_OPTIONS,
            Counter::PassIpOptions,
        ),
        (
            "fragment header",
            IpNumber::IPV6_FRAGMENTATION_HEADER,
            Counter::PassFragment,
        ),
        ("tcp", IpNumber::TCP, Counter::PassNotUdp),
        ("icmpv6", IpNumber::IPV6_ICMP, Counter::PassNotUdp),
    ] {
        let f = Udp6 {
            next_header: nh,
            payload: vec![17, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            ..from_caller(31000)
        };
        cases.push(pass(&n(what), std_legs(), f.bytes(), reason));
    }
    let f = Udp6 {
        payload_len_override: Some(400),
        ..from_caller(31000)
    };
    cases.push(pass(
        &n("payload length beyond the frame"),
        std_legs(),
        f.bytes(),
        Counter::PassTruncated,
    ));
    let f = Udp6 {
        payload_len_override: Some(4),
        ..from_caller(31000)
    };
    cases.push(pass(
        &n("payload length below udp header"),
        std_legs(),
        f.bytes(),
        Counter::PassTruncated,
    ));
    let whole = from_caller(31000).bytes();
    for cut in [14 + 20, 14 + 40, 14 + 44] {
        cases.push(pass(
            &n(&format!("truncated at {cut}")),
            std_legs(),
            whole[..cut].to_vec(),
            Counter::PassTruncated,
        ));
    }
    let mut wrong_version = from_caller(31000).bytes();
    wrong_version[14] = 0x45;
    cases.push(pass(
        &n("ethertype ipv6, version 4"),
        std_legs(),
        wrong_version,
        Counter::PassNotIp,
    ));
    cases.push(pass(
        &n("no neighbour"),
        vec![leg_to(31000, Endpoint::v6(NO_NEIGH6, 6004))],
        from_caller(31000).bytes(),
        Counter::PassFibNoNeigh,
    ));
    cases.push(pass(
        &n("no route"),
        vec![leg_to(31000, Endpoint::v6(NO_ROUTE6, 6004))],
        from_caller(31000).bytes(),
        Counter::PassFibFailed,
    ));
    cases.push(pass(
        &n("egress not attached"),
        vec![leg_to(31000, Endpoint::v6(FX2_HOST6, 6004))],
        from_caller(31000).bytes(),
        Counter::PassEgressNotAttached,
    ));
    let f = Udp6::new((FX2_HOST6, 5004), (RELAY_C6, 31000), FX2_HOST_MAC, FX2_MAC);
    let fx2_leg = leg(
        (RELAY_C6, 31000),
        Some(Endpoint::v6(FX2_HOST6, 5004)),
        ep((RELAY_B6, 31002)),
        ep(CALLEE_EP),
        11,
    );
    cases.push(Case {
        ingress: "fx2",
        ..pass(
            &n("forwarding disabled on ingress"),
            vec![fx2_leg],
            f.bytes(),
            Counter::PassFibFwdDisabled,
        )
    });
    cases.push(pass(
        &n("not ip"),
        std_legs(),
        raw_l2(etherparse::EtherType(0x88cc), CALLER_MAC, FX0_MAC, &[0; 40]),
        Counter::PassNotIp,
    ));
    cases
}
