//! The fixture table: input frame, map state, expected verdict and exact output frame.
use etherparse::{EtherType, IpNumber};
use relay_common::{
    Counter, Endpoint, LegKey, LegValue,
    leg::{Direction, shared_port_legs},
    reflector::DataPlaneConfig,
    turn::{ChannelKey, TurnValue},
};
use relay_testbed::frames::{Udp4, raw_l2};

use crate::reflect_cases::CONFIG;

// The fixture namespace (see main.rs): the relay has three links, fx0 and fx1 attached to the
// egress devmap, fx2 not (and with forwarding off). Neighbours are permanent, so the FIB answers
// the same every run.
pub const FX0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xf0, 0x01];
pub const FX1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xf1, 0x01];
pub const FX2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xf2, 0x01];
pub const CALLER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa1, 0x02];
pub const TX_PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa1, 0x03];
pub const CALLEE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb2, 0x02];
pub const FX2_HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc3, 0x02];

pub const RELAY_A: [u8; 4] = [198, 18, 1, 1];
pub const RELAY_B: [u8; 4] = [198, 18, 2, 1];
pub const RELAY_C: [u8; 4] = [198, 18, 3, 1];
pub const CALLER: [u8; 4] = [198, 18, 1, 2];
pub const TX_PEER: [u8; 4] = [198, 18, 1, 3];
pub const CALLEE: [u8; 4] = [198, 18, 2, 2];
pub const NO_NEIGH_HOST: [u8; 4] = [198, 18, 2, 3];
pub const FX2_HOST: [u8; 4] = [198, 18, 3, 2];
pub const NO_ROUTE_HOST: [u8; 4] = [203, 0, 113, 9];

pub const MAX_LEGS: u32 = 1024;

pub enum Expect {
    /// XDP_PASS with this reason; the frame must come back byte for byte.
    Pass(Counter),
    /// XDP_TX with this exact frame.
    Tx(Vec<u8>),
    /// XDP_REDIRECT with this exact frame.
    Redirect(Vec<u8>),
    /// XDP_DROP with this reason.
    Drop(Counter),
}

pub struct Case {
    pub name: String,
    /// Interface the frame arrives on.
    pub ingress: &'static str,
    /// The complete legs map for this case.
    pub legs: Vec<(LegKey, LegValue)>,
    pub input: Vec<u8>,
    pub expect: Expect,
    /// Counters besides the verdict (and pass reason) that must go up by one.
    pub also_counts: Vec<Counter>,
    /// Leg slot whose stats must show this packet (slot, payload bytes).
    pub leg_stats: Option<(u32, u64)>,
    /// The data-plane config for this case (reflector and STUN ports, rate limit).
    pub config: DataPlaneConfig,
    /// Run the same frame this many times first, unchecked (e.g. to use up a burst).
    pub runs_before: u32,
    /// Expected `fwd_bytes` growth if not the output frame's UDP payload (STUN answers: 0).
    pub fwd_bytes: Option<u64>,
    /// The complete TURN channel maps for this case (ChannelData from clients, UDP from
    /// peers), written as they are (no checks: a case may need an entry of the wrong kind).
    pub turn_channels: Vec<(ChannelKey, TurnValue)>,
    pub turn_peers: Vec<(LegKey, TurnValue)>,
}

fn leg(
    relay: ([u8; 4], u16),
    latched: Option<([u8; 4], u16)>,
    src: ([u8; 4], u16),
    dst: Endpoint,
    slot: u32,
) -> (LegKey, LegValue) {
    Direction {
        relay: Endpoint::v4(relay.0, relay.1),
        latched: latched.map_or(Endpoint::NONE, |(a, p)| Endpoint::v4(a, p)),
        new_src: Endpoint::v4(src.0, src.1),
        new_dst: dst,
        slot,
    }
    .port_leg()
}

const CALLER_EP: ([u8; 4], u16) = (CALLER, 5004);

/// Caller -> relay A:30000, relayed from B:30002 to the callee (another interface: redirect).
pub fn leg_redirect() -> (LegKey, LegValue) {
    leg(
        (RELAY_A, 30000),
        Some(CALLER_EP),
        (RELAY_B, 30002),
        Endpoint::v4(CALLEE, 6004),
        1,
    )
}
/// Caller -> relay A:30010, relayed from A:30012 to a host on the same link (XDP_TX).
fn leg_tx() -> (LegKey, LegValue) {
    leg(
        (RELAY_A, 30010),
        Some(CALLER_EP),
        (RELAY_A, 30012),
        Endpoint::v4(TX_PEER, 7004),
        2,
    )
}

/// A shared relay port (seed 003 "alternate" latching): both channels send here.
const SHARED: ([u8; 4], u16) = (RELAY_A, 30100);
const CALLEE_EP: ([u8; 4], u16) = (CALLEE, 6004);
const TX_PEER_EP: ([u8; 4], u16) = (TX_PEER, 7004);
/// Stats slots of the shared port's channels (channel 1, channel 2).
const SHARED_SLOTS: [u32; 2] = [9, 10];

/// The three entries of a shared port in the order the controller installs them.
fn shared_legs(ch1: ([u8; 4], u16), ch2: ([u8; 4], u16)) -> Vec<(LegKey, LegValue)> {
    let ep = |(a, p): ([u8; 4], u16)| Endpoint::v4(a, p);
    shared_port_legs(ep(SHARED), ep(ch1), ep(ch2), SHARED_SLOTS).to_vec()
}

/// A frame from the caller to relay A on `port`.
pub fn from_caller(port: u16) -> Udp4 {
    Udp4::new(CALLER_EP, (RELAY_A, port), CALLER_MAC, FX0_MAC)
}

/// What the relay must emit for `input`: new MACs, addresses, ports, TTL - 1; etherparse
/// computes the checksums.
pub fn relayed(
    input: &Udp4,
    smac: [u8; 6],
    dmac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
) -> Vec<u8> {
    let mut out = input.clone();
    (out.src_mac, out.dst_mac) = (smac, dmac);
    (out.src, out.sport, out.dst, out.dport) = (src.0, src.1, dst.0, dst.1);
    out.ttl -= 1;
    out.bytes()
}

fn to_callee(input: &Udp4) -> Vec<u8> {
    relayed(input, FX1_MAC, CALLEE_MAC, (RELAY_B, 30002), (CALLEE, 6004))
}

fn to_tx_peer(input: &Udp4) -> Vec<u8> {
    relayed(
        input,
        FX0_MAC,
        TX_PEER_MAC,
        (RELAY_A, 30012),
        (TX_PEER, 7004),
    )
}

fn case(name: &str, legs: Vec<(LegKey, LegValue)>, input: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        ingress: "fx0",
        legs,
        input,
        expect,
        also_counts: vec![],
        leg_stats: None,
        config: CONFIG,
        runs_before: 0,
        fwd_bytes: None,
        turn_channels: vec![],
        turn_peers: vec![],
    }
}

/// A case with no legs, arriving on fx0.
pub fn plain_case(name: &str, input: Vec<u8>, expect: Expect) -> Case {
    case(name, vec![], input, expect)
}

fn forward(
    name: &str,
    legs: Vec<(LegKey, LegValue)>,
    input: &Udp4,
    expect: Expect,
    slot: u32,
) -> Case {
    Case {
        leg_stats: Some((slot, input.payload.len() as u64)),
        ..case(name, legs, input.bytes(), expect)
    }
}

fn pass(name: &str, legs: Vec<(LegKey, LegValue)>, input: Vec<u8>, reason: Counter) -> Case {
    case(name, legs, input, Expect::Pass(reason))
}

pub fn all() -> Vec<Case> {
    let std_legs = || vec![leg_redirect(), leg_tx()];
    let mut cases = vec![];

    // --- forwarded ---
    let f = from_caller(30000);
    cases.push(forward(
        "forward redirect to other interface",
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        1,
    ));
    let f = from_caller(30010);
    cases.push(forward(
        "forward XDP_TX same interface",
        std_legs(),
        &f,
        Expect::Tx(to_tx_peer(&f)),
        2,
    ));
    let f = Udp4 {
        zero_udp_csum: true,
        ..from_caller(30000)
    };
    cases.push(forward(
        "udp checksum zero stays zero",
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        1,
    ));
    let f = Udp4 {
        payload: (0..171u8).collect(),
        ..from_caller(30000)
    };
    cases.push(forward(
        "odd payload length",
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        1,
    ));
    let f = Udp4 {
        payload: vec![],
        ..from_caller(30000)
    };
    cases.push(forward(
        "empty payload",
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        1,
    ));
    let f = Udp4 {
        vlan: Some(100),
        ..from_caller(30010)
    };
    cases.push(forward(
        "vlan tagged XDP_TX keeps tag",
        std_legs(),
        &f,
        Expect::Tx(to_tx_peer(&f)),
        2,
    ));
    let f = Udp4 {
        ttl: 2,
        ..from_caller(30000)
    };
    cases.push(forward(
        "ttl 2 forwards with ttl 1",
        std_legs(),
        &f,
        Expect::Redirect(to_callee(&f)),
        1,
    ));
    // Ethernet minimum-size padding after the IP packet is allowed and kept.
    let f = Udp4 {
        payload: vec![0xab; 4],
        ..from_caller(30000)
    };
    let mut padded_in = f.bytes();
    padded_in.resize(60, 0);
    let mut padded_out = to_callee(&f);
    padded_out.resize(60, 0);
    cases.push(Case {
        leg_stats: Some((1, 4)),
        ..case(
            "ethernet padding kept",
            std_legs(),
            padded_in,
            Expect::Redirect(padded_out),
        )
    });
    let bad_slot = leg(
        (RELAY_A, 30070),
        Some(CALLER_EP),
        (RELAY_B, 30002),
        Endpoint::v4(CALLEE, 6004),
        MAX_LEGS + 7,
    );
    let f = from_caller(30070);
    cases.push(Case {
        also_counts: vec![Counter::LegSlotInvalid],
        ..case(
            "slot out of range still forwards",
            vec![bad_slot],
            f.bytes(),
            Expect::Redirect(to_callee(&f)),
        )
    });

    // --- shared port: both channels send to one relay address:port ---
    let f = Udp4::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC);
    cases.push(forward(
        "shared port: channel 1 to channel 2",
        shared_legs(CALLER_EP, CALLEE_EP),
        &f,
        Expect::Redirect(relayed(&f, FX1_MAC, CALLEE_MAC, SHARED, CALLEE_EP)),
        SHARED_SLOTS[0],
    ));
    // The callee reaches relay A through fx1 (its link), so the frame arrives there.
    let f = Udp4::new(CALLEE_EP, SHARED, CALLEE_MAC, FX1_MAC);
    cases.push(Case {
        ingress: "fx1",
        ..forward(
            "shared port: channel 2 to channel 1",
            shared_legs(CALLER_EP, CALLEE_EP),
            &f,
            Expect::Redirect(relayed(&f, FX0_MAC, CALLER_MAC, SHARED, CALLER_EP)),
            SHARED_SLOTS[1],
        )
    });
    let f = Udp4::new(TX_PEER_EP, SHARED, TX_PEER_MAC, FX0_MAC);
    cases.push(forward(
        "shared port: channels on one link, XDP_TX",
        shared_legs(CALLER_EP, TX_PEER_EP),
        &f,
        Expect::Tx(relayed(&f, FX0_MAC, CALLER_MAC, SHARED, CALLER_EP)),
        SHARED_SLOTS[1],
    ));
    // An ordinary leg next to a shared port is untouched by it.
    let f = from_caller(30000);
    cases.push(forward(
        "ordinary leg beside a shared port",
        [std_legs(), shared_legs(CALLER_EP, CALLEE_EP)].concat(),
        &f,
        Expect::Redirect(to_callee(&f)),
        1,
    ));
    let f = Udp4::new(([198, 18, 1, 9], 5004), SHARED, CALLER_MAC, FX0_MAC);
    cases.push(pass(
        "shared port: third source",
        shared_legs(CALLER_EP, CALLEE_EP),
        f.bytes(),
        Counter::PassSharedNoChannel,
    ));
    cases.push(pass(
        "shared port: channel on another port of the same ip",
        shared_legs((CALLER, 5006), CALLEE_EP),
        Udp4::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC).bytes(),
        Counter::PassSharedNoChannel,
    ));
    cases.push(pass(
        "shared port: no channels yet",
        shared_legs(CALLER_EP, CALLEE_EP)[2..].to_vec(),
        Udp4::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC).bytes(),
        Counter::PassSharedNoChannel,
    ));
    // Channel keys are only reached through the flagged port entry.
    cases.push(pass(
        "shared port: channels without port entry",
        shared_legs(CALLER_EP, CALLEE_EP)[..2].to_vec(),
        Udp4::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC).bytes(),
        Counter::PassUnknownLeg,
    ));
    // The channel entry goes through the ordinary checks: latched source, then TTL.
    let mut bad_latch = shared_legs(CALLER_EP, CALLEE_EP);
    bad_latch[0].1.latched = Endpoint::v4(CALLER, 5006);
    cases.push(pass(
        "shared port: channel latched elsewhere",
        bad_latch,
        Udp4::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC).bytes(),
        Counter::PassSrcMismatch,
    ));
    let f = Udp4 {
        ttl: 1,
        ..Udp4::new(CALLER_EP, SHARED, CALLER_MAC, FX0_MAC)
    };
    cases.push(pass(
        "shared port: ttl 1",
        shared_legs(CALLER_EP, CALLEE_EP),
        f.bytes(),
        Counter::PassTtlExpired,
    ));

    // --- leg state: the controller's socket gets these ---
    let unlatched = leg(
        (RELAY_A, 30020),
        None,
        (RELAY_B, 30002),
        Endpoint::v4(CALLEE, 6004),
        3,
    );
    cases.push(pass(
        "unlatched leg",
        vec![unlatched],
        from_caller(30020).bytes(),
        Counter::PassUnlatched,
    ));
    let f = Udp4 {
        src: [198, 18, 1, 9],
        ..from_caller(30000)
    };
    cases.push(pass(
        "source address mismatch",
        std_legs(),
        f.bytes(),
        Counter::PassSrcMismatch,
    ));
    let f = Udp4 {
        sport: 5005,
        ..from_caller(30000)
    };
    cases.push(pass(
        "source port mismatch",
        std_legs(),
        f.bytes(),
        Counter::PassSrcMismatch,
    ));
    cases.push(pass(
        "unknown port",
        std_legs(),
        from_caller(31000).bytes(),
        Counter::PassUnknownLeg,
    ));
    let f = Udp4 {
        dst: [198, 18, 1, 77],
        ..from_caller(30000)
    };
    cases.push(pass(
        "unknown relay address",
        std_legs(),
        f.bytes(),
        Counter::PassUnknownLeg,
    ));
    cases.push(pass(
        "empty leg table",
        vec![],
        from_caller(30000).bytes(),
        Counter::PassUnknownLeg,
    ));

    // --- not ours ---
    let f = Udp4 {
        protocol: IpNumber::TCP,
        payload: vec![0; 20],
        ..from_caller(30000)
    };
    cases.push(pass("tcp", std_legs(), f.bytes(), Counter::PassNotUdp));
    let f = Udp4 {
        protocol: IpNumber::ICMP,
        payload: vec![8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        ..from_caller(30000)
    };
    cases.push(pass("icmp", std_legs(), f.bytes(), Counter::PassNotUdp));
    cases.push(pass(
        "arp",
        std_legs(),
        raw_l2(EtherType::ARP, CALLER_MAC, [0xff; 6], &[0; 28]),
        Counter::PassNotIp,
    ));
    let mut v6_in_v4 = from_caller(30000).bytes();
    v6_in_v4[14] = 0x65;
    cases.push(pass(
        "ip version not 4",
        std_legs(),
        v6_in_v4,
        Counter::PassNotIp,
    ));
    let f = Udp4 {
        ip_options: vec![1, 1, 1, 0],
        ..from_caller(30000)
    };
    cases.push(pass(
        "ipv4 options",
        std_legs(),
        f.bytes(),
        Counter::PassIpOptions,
    ));
    let f = Udp4 {
        more_fragments: true,
        ..from_caller(30000)
    };
    cases.push(pass(
        "first fragment (MF)",
        std_legs(),
        f.bytes(),
        Counter::PassFragment,
    ));
    let f = Udp4 {
        frag_offset: 185,
        ..from_caller(30000)
    };
    cases.push(pass(
        "later fragment (offset)",
        std_legs(),
        f.bytes(),
        Counter::PassFragment,
    ));

    // --- forwarding decisions ---
    for ttl in [1u8, 0] {
        let f = Udp4 {
            ttl,
            ..from_caller(30000)
        };
        cases.push(pass(
            &format!("ttl {ttl}"),
            std_legs(),
            f.bytes(),
            Counter::PassTtlExpired,
        ));
    }
    let f = Udp4 {
        vlan: Some(100),
        ..from_caller(30000)
    };
    cases.push(pass(
        "vlan tagged to other interface",
        std_legs(),
        f.bytes(),
        Counter::PassVlanCrossIf,
    ));
    let no_neigh = leg(
        (RELAY_A, 30030),
        Some(CALLER_EP),
        (RELAY_B, 30002),
        Endpoint::v4(NO_NEIGH_HOST, 6004),
        4,
    );
    cases.push(pass(
        "no neighbour entry",
        vec![no_neigh],
        from_caller(30030).bytes(),
        Counter::PassFibNoNeigh,
    ));
    let no_route = leg(
        (RELAY_A, 30040),
        Some(CALLER_EP),
        (RELAY_B, 30002),
        Endpoint::v4(NO_ROUTE_HOST, 6004),
        5,
    );
    cases.push(pass(
        "no route",
        vec![no_route],
        from_caller(30040).bytes(),
        Counter::PassFibFailed,
    ));
    let to_fx2 = leg(
        (RELAY_A, 30050),
        Some(CALLER_EP),
        (RELAY_C, 30052),
        Endpoint::v4(FX2_HOST, 6004),
        6,
    );
    cases.push(pass(
        "egress not attached",
        vec![to_fx2],
        from_caller(30050).bytes(),
        Counter::PassEgressNotAttached,
    ));
    let v6 = leg(
        (RELAY_A, 30060),
        Some(CALLER_EP),
        (RELAY_B, 30002),
        Endpoint::v6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            6004,
        ),
        7,
    );
    cases.push(pass(
        "ipv4 to ipv6 leg",
        vec![v6],
        from_caller(30060).bytes(),
        Counter::PassFamilyMismatch,
    ));
    let from_fx2 = leg(
        (RELAY_C, 30080),
        Some((FX2_HOST, 5004)),
        (RELAY_B, 30002),
        Endpoint::v4(CALLEE, 6004),
        8,
    );
    let f = Udp4::new((FX2_HOST, 5004), (RELAY_C, 30080), FX2_HOST_MAC, FX2_MAC);
    cases.push(Case {
        ingress: "fx2",
        ..pass(
            "forwarding disabled on ingress",
            vec![from_fx2],
            f.bytes(),
            Counter::PassFibFwdDisabled,
        )
    });

    // --- truncated at every header boundary (and inside each header) ---
    let full = from_caller(30000).bytes();
    for len in [14usize, 15, 20, 33, 34, 37, 41, 42, 100] {
        cases.push(pass(
            &format!("truncated to {len} bytes"),
            std_legs(),
            full[..len].to_vec(),
            Counter::PassTruncated,
        ));
    }
    let tagged = Udp4 {
        vlan: Some(100),
        ..from_caller(30010)
    }
    .bytes();
    for len in [14usize, 16, 17, 18, 37, 45] {
        cases.push(pass(
            &format!("vlan frame truncated to {len} bytes"),
            std_legs(),
            tagged[..len].to_vec(),
            Counter::PassTruncated,
        ));
    }
    let f = Udp4 {
        total_len_override: Some(27),
        ..from_caller(30000)
    };
    cases.push(pass(
        "ip total length below ip+udp headers",
        std_legs(),
        f.bytes(),
        Counter::PassTruncated,
    ));
    let f = Udp4 {
        total_len_override: Some(201),
        ..from_caller(30000)
    };
    cases.push(pass(
        "ip total length beyond frame",
        std_legs(),
        f.bytes(),
        Counter::PassTruncated,
    ));

    cases
}
