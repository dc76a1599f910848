//! Reflector fixture cases: a ticket (built by relay_common's builder) in front of a payload,
//! sent to the reflector port; the expected frame is the bare payload from the ticket's source
//! to its destination, built by etherparse. Every refusal is a drop with its own counter.
use relay_common::{
    Counter, Endpoint,
    reflector::{DataPlaneConfig, HEADER_LEN, reflector_payload},
    siphash::SipKey,
};
use relay_testbed::frames::Udp4;

use crate::cases::*;

pub const REFLECT_PORT: u16 = 4444;
pub const STUN_PORT: u16 = 3478;
pub const KEY_ID: u16 = 1;
pub const KEY: [u8; 16] = [
    0x5a, 0x11, 0x0c, 0x7e, 0x93, 0x02, 0xd4, 0x48, 0xa0, 0x6b, 0x3f, 0xe1, 0x27, 0x9c, 0x85, 0x10,
];
/// The fixture's clock (unix seconds).
pub const NOW: u64 = 1_800_000_000;
/// The operator's deny prefix: part of fx1's subnet, routable but refused.
pub const DENY_NET: ([u8; 4], u8) = ([198, 18, 2, 64], 26);
/// The relay's own addresses (allow map).
pub const OWN: [[u8; 4]; 3] = [RELAY_A, RELAY_B, RELAY_C];

/// The config every case runs with unless it says otherwise: no rate limit.
pub const CONFIG: DataPlaneConfig = DataPlaneConfig {
    reflector_port: REFLECT_PORT,
    stun_port: STUN_PORT,
    reflect_rate: 0,
    reflect_burst: 0,
    turn_port: 0,
    _pad: 0,
};

/// What the ticket asks for and who sends it.
#[derive(Clone)]
struct Ticket {
    key: [u8; 16],
    key_id: u16,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    expiry: u32,
    /// Outer source the MAC is computed for.
    signed_for: ([u8; 4], u16),
    payload: Vec<u8>,
}

const STUN_SRC: ([u8; 4], u16) = (RELAY_A, STUN_PORT);
const CALLER_EP: ([u8; 4], u16) = (CALLER, 5004);

fn ep((a, p): ([u8; 4], u16)) -> Endpoint {
    Endpoint::v4(a, p)
}

fn ticket(dst: ([u8; 4], u16)) -> Ticket {
    Ticket {
        key: KEY,
        key_id: KEY_ID,
        src: STUN_SRC,
        dst,
        expiry: (NOW + 30) as u32,
        signed_for: CALLER_EP,
        // 160 bytes: a hole-punching probe as big as a small media packet.
        payload: (0..160u32).map(|i| (i * 13 + 1) as u8).collect(),
    }
}

impl Ticket {
    fn udp_payload(&self) -> Vec<u8> {
        reflector_payload(
            &SipKey::from_bytes(self.key),
            self.key_id,
            &ep(self.src),
            &ep(self.dst),
            self.expiry,
            &ep(self.signed_for),
            &self.payload,
        )
    }

    /// The frame the sender's NAT delivers to relay A's reflector port from `outer`.
    fn frame_from(&self, outer: ([u8; 4], u16), mac: [u8; 6]) -> Udp4 {
        Udp4 {
            payload: self.udp_payload(),
            ..Udp4::new(outer, (RELAY_A, REFLECT_PORT), mac, FX0_MAC)
        }
    }

    fn frame(&self) -> Udp4 {
        self.frame_from(CALLER_EP, CALLER_MAC)
    }

    /// The reflected frame: fresh TTL, the ticket's addresses, the bare payload.
    fn reflected(&self, input: &Udp4, smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
        Udp4 {
            ttl: 64,
            payload: self.payload.clone(),
            ..Udp4::new(self.src, self.dst, smac, dmac)
        }
        .with_from(input)
        .bytes()
    }
}

trait WithFrom {
    fn with_from(self, input: &Udp4) -> Self;
}
impl WithFrom for Udp4 {
    /// Keep what the reflector keeps from the input: VLAN tag, zero checksum.
    fn with_from(self, input: &Udp4) -> Udp4 {
        Udp4 {
            vlan: input.vlan,
            zero_udp_csum: input.zero_udp_csum,
            ..self
        }
    }
}

fn reflect_case(name: &str, input: Vec<u8>, expect: Expect) -> Case {
    let forwarded = matches!(expect, Expect::Tx(_) | Expect::Redirect(_));
    Case {
        also_counts: if forwarded {
            vec![Counter::Reflected]
        } else {
            vec![]
        },
        ..plain_case(name, input, expect)
    }
}

fn refused(name: &str, input: &Udp4, reason: Counter) -> Case {
    reflect_case(name, input.bytes(), Expect::Drop(reason))
}

pub fn all() -> Vec<Case> {
    let mut cases = vec![];
    let to_callee = ticket((CALLEE, 6004));
    let to_tx_peer = ticket((TX_PEER, 7004));

    // --- reflected ---
    let f = to_callee.frame();
    cases.push(reflect_case(
        "reflect: valid ticket, redirect to other interface",
        f.bytes(),
        Expect::Redirect(to_callee.reflected(&f, FX1_MAC, CALLEE_MAC)),
    ));
    let f = to_tx_peer.frame();
    cases.push(reflect_case(
        "reflect: valid ticket, XDP_TX same interface",
        f.bytes(),
        Expect::Tx(to_tx_peer.reflected(&f, FX0_MAC, TX_PEER_MAC)),
    ));
    let f = Udp4 {
        zero_udp_csum: true,
        ..to_callee.frame()
    };
    cases.push(reflect_case(
        "reflect: udp checksum zero stays zero",
        f.bytes(),
        Expect::Redirect(to_callee.reflected(&f, FX1_MAC, CALLEE_MAC)),
    ));
    let f = Udp4 {
        vlan: Some(42),
        ..to_tx_peer.frame()
    };
    cases.push(reflect_case(
        "reflect: vlan-tagged, XDP_TX keeps the tag",
        f.bytes(),
        Expect::Tx(to_tx_peer.reflected(&f, FX0_MAC, TX_PEER_MAC)),
    ));
    let empty = Ticket {
        payload: vec![],
        ..to_callee.clone()
    };
    let f = empty.frame();
    cases.push(reflect_case(
        "reflect: empty payload after the header",
        f.bytes(),
        Expect::Redirect(empty.reflected(&f, FX1_MAC, CALLEE_MAC)),
    ));
    let odd = Ticket {
        payload: vec![0x42; 37],
        ..to_callee.clone()
    };
    let f = odd.frame();
    cases.push(reflect_case(
        "reflect: odd payload length",
        f.bytes(),
        Expect::Redirect(odd.reflected(&f, FX1_MAC, CALLEE_MAC)),
    ));

    // --- refused: the ticket ---
    let mut f = to_callee.frame();
    let last_mac_byte = HEADER_LEN - 1;
    f.payload[last_mac_byte] ^= 0x01;
    cases.push(refused("reflect: bad MAC", &f, Counter::DropReflectBadMac));
    let mut f = to_callee.frame();
    f.payload[40] ^= 0x01; // destination address, after signing
    cases.push(refused(
        "reflect: destination changed after signing",
        &f,
        Counter::DropReflectBadMac,
    ));
    let f = to_callee.frame_from((TX_PEER, 5004), TX_PEER_MAC);
    cases.push(refused(
        "reflect: ticket replayed from another address",
        &f,
        Counter::DropReflectBadMac,
    ));
    let f = to_callee.frame_from((CALLER, 5006), CALLER_MAC);
    cases.push(refused(
        "reflect: ticket replayed from another port",
        &f,
        Counter::DropReflectBadMac,
    ));
    let wrong_key = Ticket {
        key: [0x11; 16],
        ..to_callee.clone()
    };
    cases.push(refused(
        "reflect: signed with another key under a known id",
        &wrong_key.frame(),
        Counter::DropReflectBadMac,
    ));
    let expired = Ticket {
        expiry: (NOW - 1) as u32,
        ..to_callee.clone()
    };
    cases.push(refused(
        "reflect: expired",
        &expired.frame(),
        Counter::DropReflectExpired,
    ));
    let last_second = Ticket {
        expiry: NOW as u32,
        ..to_callee.clone()
    };
    let f = last_second.frame();
    cases.push(reflect_case(
        "reflect: expiry equal to the clock still valid",
        f.bytes(),
        Expect::Redirect(last_second.reflected(&f, FX1_MAC, CALLEE_MAC)),
    ));
    let unknown = Ticket {
        key_id: 9,
        ..to_callee.clone()
    };
    cases.push(refused(
        "reflect: unknown key id",
        &unknown.frame(),
        Counter::DropReflectUnknownKey,
    ));
    let mut f = to_callee.frame();
    f.payload[0] = b'X';
    cases.push(refused(
        "reflect: wrong magic",
        &f,
        Counter::DropReflectBadMagic,
    ));
    let mut f = to_callee.frame();
    f.payload[4] = 2;
    cases.push(refused(
        "reflect: wrong version",
        &f,
        Counter::DropReflectBadVersion,
    ));
    let mut f = to_callee.frame();
    f.payload[5] = 0x80;
    cases.push(refused(
        "reflect: reserved flag set",
        &f,
        Counter::DropReflectBadVersion,
    ));
    for len in [0usize, 1, 20, HEADER_LEN - 1] {
        let mut f = to_callee.frame();
        f.payload.truncate(len);
        cases.push(refused(
            &format!("reflect: {len}-byte payload (header truncated)"),
            &f,
            Counter::DropReflectTruncated,
        ));
    }

    // --- refused: what the ticket asks for ---
    let foreign = Ticket {
        src: ([203, 0, 113, 5], STUN_PORT),
        ..to_callee.clone()
    };
    cases.push(refused(
        "reflect: source not one of ours",
        &foreign.frame(),
        Counter::DropReflectSrcNotAllowed,
    ));
    for (what, dst) in [
        ("loopback", ([127, 0, 0, 1], 6004)),
        ("this network 0/8", ([0, 1, 2, 3], 6004)),
        ("multicast", ([224, 0, 0, 251], 5353)),
        ("broadcast", ([255, 255, 255, 255], 6004)),
        ("reserved 240/4", ([240, 0, 0, 1], 6004)),
        ("own address", (RELAY_B, 6004)),
        ("deny-map prefix", ([198, 18, 2, 70], 6004)),
        ("port 0", (CALLEE, 0)),
    ] {
        let t = ticket(dst);
        cases.push(refused(
            &format!("reflect: destination denied ({what})"),
            &t.frame(),
            Counter::DropReflectDstDenied,
        ));
    }
    for (what, dst) in [
        ("no route", (NO_ROUTE_HOST, 6004)),
        ("no neighbour", (NO_NEIGH_HOST, 6004)),
        ("egress not attached", (FX2_HOST, 6004)),
    ] {
        let t = ticket(dst);
        cases.push(refused(
            &format!("reflect: {what}"),
            &t.frame(),
            Counter::DropReflectNoRoute,
        ));
    }
    let f = Udp4 {
        vlan: Some(42),
        ..to_callee.frame()
    };
    cases.push(refused(
        "reflect: vlan-tagged to another interface",
        &f,
        Counter::DropReflectNoRoute,
    ));

    // --- rate limit: burst 3 at 1/s from one source; the 4th packet in a row is dropped ---
    let burst = Ticket {
        signed_for: (TX_PEER, 5004),
        ..to_callee.clone()
    };
    let f = burst.frame_from((TX_PEER, 5004), TX_PEER_MAC);
    let limited = DataPlaneConfig {
        reflect_rate: 1,
        reflect_burst: 3,
        ..CONFIG
    };
    cases.push(Case {
        config: limited,
        runs_before: 3,
        ..refused(
            "reflect: rate limited after a burst of 3",
            &f,
            Counter::DropReflectRateLimited,
        )
    });
    let other = Ticket {
        signed_for: (FX2_HOST, 5004),
        ..to_callee.clone()
    };
    let f = Udp4 {
        payload: other.udp_payload(),
        ..Udp4::new(
            (FX2_HOST, 5004),
            (RELAY_A, REFLECT_PORT),
            CALLER_MAC,
            FX0_MAC,
        )
    };
    cases.push(Case {
        config: limited,
        ..reflect_case(
            "reflect: rate limit is per source",
            f.bytes(),
            Expect::Redirect(other.reflected(&f, FX1_MAC, CALLEE_MAC)),
        )
    });

    // --- not the reflector's ---
    let f = to_callee.frame();
    cases.push(Case {
        config: DataPlaneConfig {
            reflector_port: 0,
            ..CONFIG
        },
        ..plain_case(
            "reflect: port disabled, goes the relay way",
            f.bytes(),
            Expect::Pass(Counter::PassUnknownLeg),
        )
    });
    let f = Udp4 {
        payload: to_callee.udp_payload(),
        ..Udp4::new(CALLER_EP, (CALLEE, REFLECT_PORT), CALLER_MAC, FX0_MAC)
    };
    cases.push(plain_case(
        "reflect: port on an address not ours (transit)",
        f.bytes(),
        Expect::Pass(Counter::PassUnknownLeg),
    ));
    cases
}
