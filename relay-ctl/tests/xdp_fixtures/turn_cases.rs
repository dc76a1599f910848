//! TURN ChannelData (RFC 8656 section 12) fixture cases: client -> peer (header and padding
//! stripped), peer -> client (header added, padded to 4 bytes), client -> client on this box
//! (channel renumbered), and every refusal, over IPv4 and IPv6. Expected ChannelData bytes
//! are written out here from the RFC's layout, and every expected frame's checksums are
//! computed by etherparse, never by the code under test.
use relay_common::{
    Counter, Endpoint, LegKey, LegValue,
    leg::LEG_F_TURN,
    reflector::DataPlaneConfig,
    turn::{ChannelKey, TurnAction, TurnValue},
};
use relay_ctl::{dataplane::TurnMaps, error::ErrorKind};
use relay_testbed::frames::{Udp4, Udp6};

use crate::{
    cases::*,
    reflect_cases::{CONFIG, STUN_PORT},
    relay6_cases::{CALLEE6, CALLER6, RELAY_A6, RELAY_B6, TX_PEER6},
};

/// IPv6 addresses of this box the TURN port is answered on (main.rs adds them).
pub const OWN6: [[u8; 16]; 2] = [RELAY_A6, RELAY_B6];

/// The TURN port shared with STUN (the usual 3478), and a TURN port of its own.
const TURN_PORT: u16 = STUN_PORT;
const TURN_ALT_PORT: u16 = 3479;
const TURN: DataPlaneConfig = DataPlaneConfig {
    turn_port: TURN_PORT,
    ..CONFIG
};
const TURN_ALT: DataPlaneConfig = DataPlaneConfig {
    turn_port: TURN_ALT_PORT,
    ..CONFIG
};

const CH1: u16 = 0x4001;
const CH2: u16 = 0x4ffe;
/// The relayed address of client 1's allocation, and the peer's port.
const RELAYED_PORT: u16 = 49_152;
const PEER_PORT: u16 = 6000;
const CLIENT_PORT: u16 = 40_000;
const CLIENT2_PORT: u16 = 41_000;
const SLOT_CH: u32 = 30;
const SLOT_PEER: u32 = 31;
const LIVE: u64 = u64::MAX;

/// ChannelData: channel number, length, data, then `pad` (the bytes given: any value is
/// allowed and must be ignored).
fn channel_data(channel: u16, data: &[u8], pad: &[u8]) -> Vec<u8> {
    let mut m = channel.to_be_bytes().to_vec();
    m.extend_from_slice(&(data.len() as u16).to_be_bytes());
    m.extend_from_slice(data);
    m.extend_from_slice(pad);
    m
}

/// What XDP must put in front of a peer's payload: the header and zero padding to 4 bytes.
fn padded(channel: u16, data: &[u8]) -> Vec<u8> {
    let pad = (4 - data.len() % 4) % 4;
    channel_data(channel, data, &vec![0; pad])
}

fn data(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i * 11 + 5) as u8).collect()
}

/// A Strip or Renumber entry for ChannelData from `client` to `server` on `channel`.
fn channel_entry(
    server: Endpoint,
    client: Endpoint,
    channel: u16,
    action: TurnAction,
    (new_src, new_dst, new_channel): (Endpoint, Endpoint, u16),
    expires_ns: u64,
) -> (ChannelKey, TurnValue) {
    (
        ChannelKey {
            server,
            client,
            channel_be: channel.to_be(),
            _pad: 0,
        },
        TurnValue {
            new_src,
            new_dst,
            expires_ns,
            slot: SLOT_CH,
            channel_be: new_channel.to_be(),
            action: action as u16,
        },
    )
}

/// The Add entry for UDP from `peer` to `relayed` and the relayed port's flag entry.
fn peer_entry(
    relayed: Endpoint,
    peer: Endpoint,
    (server, client, channel): (Endpoint, Endpoint, u16),
    expires_ns: u64,
) -> ((LegKey, TurnValue), (LegKey, LegValue)) {
    (
        (
            LegKey::channel(relayed, peer),
            TurnValue {
                new_src: server,
                new_dst: client,
                expires_ns,
                slot: SLOT_PEER,
                channel_be: channel.to_be(),
                action: TurnAction::Add as u16,
            },
        ),
        turn_flag(relayed),
    )
}

fn turn_flag(relayed: Endpoint) -> (LegKey, LegValue) {
    (
        LegKey::port(relayed),
        LegValue {
            flags: LEG_F_TURN,
            ..LegValue::default()
        },
    )
}

fn base(name: String, input: Vec<u8>, expect: Expect) -> Case {
    Case {
        config: TURN,
        ..plain_case(&name, input, expect)
    }
}

/// A forwarded case: its path counter, `fwd_bytes` and the entry's slot grow by the
/// relayed data (the ChannelData's data, not its header or padding).
fn fwd(base: Case, counter: Counter, slot: u32, data_len: usize) -> Case {
    Case {
        also_counts: vec![counter],
        leg_stats: Some((slot, data_len as u64)),
        fwd_bytes: Some(data_len as u64),
        ..base
    }
}

pub fn all() -> Vec<Case> {
    let mut cases = v4_cases();
    cases.extend(v6_cases());
    cases
}

fn v4_cases() -> Vec<Case> {
    let n = |s: &str| format!("turn v4: {s}");
    let ep = |a: [u8; 4], p: u16| Endpoint::v4(a, p);
    let server = ep(RELAY_A, TURN_PORT);
    let client = ep(CALLER, CLIENT_PORT);
    let relayed = ep(RELAY_B, RELAYED_PORT);
    let peer = ep(CALLEE, PEER_PORT);
    let strip = |expires| {
        channel_entry(
            server,
            client,
            CH1,
            TurnAction::Strip,
            (relayed, peer, 0),
            expires,
        )
    };
    let from_client = |port: u16, payload: Vec<u8>| Udp4 {
        payload,
        ..Udp4::new((CALLER, CLIENT_PORT), (RELAY_A, port), CALLER_MAC, FX0_MAC)
    };
    let to_peer = |input: &Udp4, payload: Vec<u8>| Udp4 {
        payload,
        ..input.clone()
    };
    let stripped = |input: &Udp4, d: Vec<u8>| {
        relayed_frame4(
            &to_peer(input, d),
            FX1_MAC,
            CALLEE_MAC,
            (RELAY_B, RELAYED_PORT),
            (CALLEE, PEER_PORT),
        )
    };
    let mut cases = vec![];

    // --- client -> peer: strip, with every amount of padding (any bytes) ---
    for (len, pad) in [
        (12, &[][..]),
        (13, &[0xaa, 0xbb, 0xcc][..]),
        (14, &[0xdd, 0xee][..]),
        (15, &[0x99][..]),
        (13, &[][..]),
        (0, &[][..]),
        (160, &[][..]),
    ] {
        let d = data(len);
        let f = from_client(TURN_PORT, channel_data(CH1, &d, pad));
        cases.push(fwd(
            Case {
                turn_channels: vec![strip(LIVE)],
                ..base(
                    n(&format!("strip {len} data bytes + {} padding", pad.len())),
                    f.bytes(),
                    Expect::Redirect(stripped(&f, d)),
                )
            },
            Counter::TurnChannelToPeer,
            SLOT_CH,
            len,
        ));
    }
    // To a peer on the client's own link: back out of fx0 (XDP_TX), behind a VLAN tag.
    let tx_peer = ep(TX_PEER, PEER_PORT);
    let d = data(21);
    let f = Udp4 {
        vlan: Some(100),
        ..from_client(TURN_PORT, channel_data(CH1, &d, &[1, 2, 3]))
    };
    let out = relayed_frame4(
        &to_peer(&f, d),
        FX0_MAC,
        TX_PEER_MAC,
        (RELAY_A, RELAYED_PORT),
        (TX_PEER, PEER_PORT),
    );
    cases.push(fwd(
        Case {
            turn_channels: vec![channel_entry(
                server,
                client,
                CH1,
                TurnAction::Strip,
                (ep(RELAY_A, RELAYED_PORT), tx_peer, 0),
                LIVE,
            )],
            ..base(
                n("strip, VLAN-tagged, to the same link"),
                f.bytes(),
                Expect::Tx(out),
            )
        },
        Counter::TurnChannelToPeer,
        SLOT_CH,
        21,
    ));
    // Its own TURN port (not STUN's): ChannelData relayed, STUN-format to the controller.
    let f = from_client(TURN_ALT_PORT, channel_data(CH1, &data(12), &[]));
    cases.push(fwd(
        Case {
            config: TURN_ALT,
            turn_channels: vec![channel_entry(
                ep(RELAY_A, TURN_ALT_PORT),
                client,
                CH1,
                TurnAction::Strip,
                (relayed, peer, 0),
                LIVE,
            )],
            ..base(
                n("strip on a TURN port of its own"),
                f.bytes(),
                Expect::Redirect(stripped(&f, data(12))),
            )
        },
        Counter::TurnChannelToPeer,
        SLOT_CH,
        12,
    ));
    let binding = {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m
    };
    cases.push(Case {
        config: TURN_ALT,
        ..base(
            n("STUN-format message on the TURN port goes to the controller"),
            from_client(TURN_ALT_PORT, binding.clone()).bytes(),
            Expect::Pass(Counter::PassTurnControl),
        )
    });
    cases.push(Case {
        config: TURN_ALT,
        ..base(
            n("empty datagram on the TURN port goes to the controller"),
            from_client(TURN_ALT_PORT, vec![]).bytes(),
            Expect::Pass(Counter::PassTurnControl),
        )
    });
    // On the shared port, a Binding request is still STUN's (answered by XDP).
    let f = from_client(TURN_PORT, binding);
    cases.push(Case {
        turn_channels: vec![strip(LIVE)],
        also_counts: vec![Counter::StunAnswered],
        fwd_bytes: Some(0),
        ..base(
            n("STUN Binding on the shared port is answered"),
            f.bytes(),
            Expect::Tx(binding_answer(&f)),
        )
    });

    // --- peer -> client: add, every padding amount ---
    let add = |expires| peer_entry(relayed, peer, (server, client, CH1), expires);
    let from_peer = |payload: Vec<u8>| Udp4 {
        payload,
        ..Udp4::new(
            (CALLEE, PEER_PORT),
            (RELAY_B, RELAYED_PORT),
            CALLEE_MAC,
            FX1_MAC,
        )
    };
    for len in [12, 13, 14, 15, 1, 0, 172] {
        let d = data(len);
        let f = from_peer(d.clone());
        let out = relayed_frame4(
            &Udp4 {
                payload: padded(CH1, &d),
                ..f.clone()
            },
            FX0_MAC,
            CALLER_MAC,
            (RELAY_A, TURN_PORT),
            (CALLER, CLIENT_PORT),
        );
        let (entry, flag) = add(LIVE);
        cases.push(fwd(
            Case {
                ingress: "fx1",
                legs: vec![flag],
                turn_peers: vec![entry],
                ..base(
                    n(&format!("add to {len} data bytes")),
                    f.bytes(),
                    Expect::Redirect(out),
                )
            },
            Counter::TurnPeerToChannel,
            SLOT_PEER,
            len,
        ));
    }
    // A peer datagram without a UDP checksum (legal over IPv4) stays without one.
    let f = Udp4 {
        zero_udp_csum: true,
        ..from_peer(data(10))
    };
    let out = relayed_frame4(
        &Udp4 {
            payload: padded(CH1, &data(10)),
            ..f.clone()
        },
        FX0_MAC,
        CALLER_MAC,
        (RELAY_A, TURN_PORT),
        (CALLER, CLIENT_PORT),
    );
    let (entry, flag) = add(LIVE);
    cases.push(fwd(
        Case {
            ingress: "fx1",
            legs: vec![flag],
            turn_peers: vec![entry],
            ..base(n("add, no UDP checksum"), f.bytes(), Expect::Redirect(out))
        },
        Counter::TurnPeerToChannel,
        SLOT_PEER,
        10,
    ));

    // --- client -> client on this box: renumber ---
    let client2 = ep(TX_PEER, CLIENT2_PORT);
    let renumber = channel_entry(
        server,
        client,
        CH1,
        TurnAction::Renumber,
        (server, client2, CH2),
        LIVE,
    );
    for (len, pad) in [(20, &[][..]), (17, &[5, 6, 7][..])] {
        let d = data(len);
        let f = from_client(TURN_PORT, channel_data(CH1, &d, pad));
        let out = relayed_frame4(
            &Udp4 {
                payload: channel_data(CH2, &d, pad),
                ..f.clone()
            },
            FX0_MAC,
            TX_PEER_MAC,
            (RELAY_A, TURN_PORT),
            (TX_PEER, CLIENT2_PORT),
        );
        cases.push(fwd(
            Case {
                turn_channels: vec![renumber],
                ..base(
                    n(&format!("renumber, {} padding", pad.len())),
                    f.bytes(),
                    Expect::Tx(out),
                )
            },
            Counter::TurnChannelLocal,
            SLOT_CH,
            len,
        ));
    }

    // --- passed to the stack, untouched ---
    let pass = |name: &str, cfg: DataPlaneConfig, entries, input: Vec<u8>, reason| Case {
        config: cfg,
        turn_channels: entries,
        ..base(n(name), input, Expect::Pass(reason))
    };
    let live = || vec![strip(LIVE)];
    for (name, payload) in [
        ("truncated: 1 byte", vec![0x40]),
        ("truncated: 3 bytes", vec![0x40, 0x01, 0x00]),
        ("length beyond the payload", {
            let mut m = channel_data(CH1, &data(8), &[]);
            m[3] = 9;
            m
        }),
        ("4 bytes of padding", channel_data(CH1, &data(8), &[0; 4])),
    ] {
        cases.push(pass(
            name,
            TURN,
            live(),
            from_client(TURN_PORT, payload).bytes(),
            Counter::PassTurnBadLength,
        ));
    }
    cases.push(pass(
        "UDP length disagrees with IP length",
        TURN,
        live(),
        {
            let mut b = from_client(TURN_PORT, channel_data(CH1, &data(12), &[])).bytes();
            // UDP length field (after 14 + 20 bytes) one short; the checksum is not looked at.
            b[14 + 20 + 5] -= 1;
            b
        },
        Counter::PassTurnBadLength,
    ));
    cases.push(pass(
        "unknown channel",
        TURN,
        live(),
        from_client(TURN_PORT, channel_data(0x4002, &data(12), &[])).bytes(),
        Counter::PassTurnUnknownChannel,
    ));
    cases.push(pass(
        "wrong client source port",
        TURN,
        live(),
        Udp4 {
            sport: CLIENT_PORT + 1,
            ..from_client(TURN_PORT, channel_data(CH1, &data(12), &[]))
        }
        .bytes(),
        Counter::PassTurnUnknownChannel,
    ));
    cases.push(pass(
        "an Add entry in the channels map is not a channel",
        TURN,
        vec![(strip(LIVE).0, add(LIVE).0.1)],
        from_client(TURN_PORT, channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassTurnUnknownChannel,
    ));
    cases.push(pass(
        "expired channel",
        TURN,
        vec![strip(1)],
        from_client(TURN_PORT, channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassTurnExpired,
    ));
    cases.push(pass(
        "family mismatch: IPv4 client, IPv6 peer",
        TURN,
        vec![channel_entry(
            server,
            client,
            CH1,
            TurnAction::Strip,
            (
                Endpoint::v6(RELAY_B6, RELAYED_PORT),
                Endpoint::v6(CALLEE6, PEER_PORT),
                0,
            ),
            LIVE,
        )],
        from_client(TURN_PORT, channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassTurnFamilyMismatch,
    ));
    cases.push(pass(
        "TTL 1",
        TURN,
        live(),
        Udp4 {
            ttl: 1,
            ..from_client(TURN_PORT, channel_data(CH1, &data(12), &[]))
        }
        .bytes(),
        Counter::PassTtlExpired,
    ));
    // TURN off: the shared port is STUN's alone (ChannelData is not STUN), a port of its
    // own is nobody's.
    cases.push(pass(
        "turn port off: ChannelData on the STUN port",
        CONFIG,
        live(),
        from_client(TURN_PORT, channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassStunMalformed,
    ));
    cases.push(pass(
        "turn port off: ChannelData on another port",
        CONFIG,
        live(),
        from_client(TURN_ALT_PORT, channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassUnknownLeg,
    ));
    // Not one of our addresses: transit traffic, not ours to answer.
    cases.push(pass(
        "ChannelData to an address not ours",
        TURN,
        vec![channel_entry(
            ep([198, 18, 1, 9], TURN_PORT),
            client,
            CH1,
            TurnAction::Strip,
            (relayed, peer, 0),
            LIVE,
        )],
        Udp4 {
            dst: [198, 18, 1, 9],
            ..from_client(TURN_PORT, channel_data(CH1, &data(12), &[]))
        }
        .bytes(),
        Counter::PassUnknownLeg,
    ));

    // Peer side refusals.
    let peer_pass = |name: &str, legs, peers, input: Udp4, reason| Case {
        ingress: "fx1",
        legs,
        turn_peers: peers,
        ..base(n(name), input.bytes(), Expect::Pass(reason))
    };
    let (entry, flag) = add(LIVE);
    cases.push(peer_pass(
        "peer without a channel",
        vec![flag],
        vec![],
        from_peer(data(12)),
        Counter::PassTurnNoChannel,
    ));
    cases.push(peer_pass(
        "another peer port has no channel",
        vec![flag],
        vec![entry],
        Udp4 {
            sport: PEER_PORT + 2,
            ..from_peer(data(12))
        },
        Counter::PassTurnNoChannel,
    ));
    let (expired, _) = add(1);
    cases.push(peer_pass(
        "expired permission",
        vec![flag],
        vec![expired],
        from_peer(data(12)),
        Counter::PassTurnExpired,
    ));
    let (mismatch, _) = peer_entry(
        relayed,
        peer,
        (
            Endpoint::v6(RELAY_A6, TURN_PORT),
            Endpoint::v6(CALLER6, CLIENT_PORT),
            CH1,
        ),
        LIVE,
    );
    cases.push(peer_pass(
        "family mismatch: IPv4 peer, IPv6 client",
        vec![flag],
        vec![mismatch],
        from_peer(data(12)),
        Counter::PassTurnFamilyMismatch,
    ));
    let strip_as_peer = (entry.0, strip(LIVE).1);
    cases.push(peer_pass(
        "a Strip entry in the peers map is not a channel",
        vec![flag],
        vec![strip_as_peer],
        from_peer(data(12)),
        Counter::PassTurnNoChannel,
    ));
    cases
}

fn v6_cases() -> Vec<Case> {
    let n = |s: &str| format!("turn v6: {s}");
    let ep = |a: [u8; 16], p: u16| Endpoint::v6(a, p);
    let server = ep(RELAY_A6, TURN_PORT);
    let client = ep(CALLER6, CLIENT_PORT);
    let relayed = ep(RELAY_B6, RELAYED_PORT);
    let peer = ep(CALLEE6, PEER_PORT);
    let strip = |expires| {
        channel_entry(
            server,
            client,
            CH1,
            TurnAction::Strip,
            (relayed, peer, 0),
            expires,
        )
    };
    let from_client = |payload: Vec<u8>| Udp6 {
        payload,
        ..Udp6::new(
            (CALLER6, CLIENT_PORT),
            (RELAY_A6, TURN_PORT),
            CALLER_MAC,
            FX0_MAC,
        )
    };
    let mut cases = vec![];
    for (len, pad) in [
        (12, &[][..]),
        (13, &[0xaa, 0xbb, 0xcc][..]),
        (14, &[0xdd, 0xee][..]),
        (15, &[0x99][..]),
        (160, &[][..]),
    ] {
        let d = data(len);
        let f = from_client(channel_data(CH1, &d, pad));
        let out = relayed_frame6(
            &Udp6 {
                payload: d,
                ..f.clone()
            },
            FX1_MAC,
            CALLEE_MAC,
            (RELAY_B6, RELAYED_PORT),
            (CALLEE6, PEER_PORT),
        );
        cases.push(fwd(
            Case {
                turn_channels: vec![strip(LIVE)],
                ..base(
                    n(&format!("strip {len} data bytes + {} padding", pad.len())),
                    f.bytes(),
                    Expect::Redirect(out),
                )
            },
            Counter::TurnChannelToPeer,
            SLOT_CH,
            len,
        ));
    }

    let (add, flag) = peer_entry(relayed, peer, (server, client, CH1), LIVE);
    let from_peer = |payload: Vec<u8>| Udp6 {
        payload,
        ..Udp6::new(
            (CALLEE6, PEER_PORT),
            (RELAY_B6, RELAYED_PORT),
            CALLEE_MAC,
            FX1_MAC,
        )
    };
    for len in [12, 13, 14, 15, 172] {
        let d = data(len);
        let f = from_peer(d.clone());
        let out = relayed_frame6(
            &Udp6 {
                payload: padded(CH1, &d),
                ..f.clone()
            },
            FX0_MAC,
            CALLER_MAC,
            (RELAY_A6, TURN_PORT),
            (CALLER6, CLIENT_PORT),
        );
        cases.push(fwd(
            Case {
                ingress: "fx1",
                legs: vec![flag],
                turn_peers: vec![add],
                ..base(
                    n(&format!("add to {len} data bytes")),
                    f.bytes(),
                    Expect::Redirect(out),
                )
            },
            Counter::TurnPeerToChannel,
            SLOT_PEER,
            len,
        ));
    }

    let client2 = ep(TX_PEER6, CLIENT2_PORT);
    let d = data(17);
    let f = from_client(channel_data(CH1, &d, &[5, 6, 7]));
    let out = relayed_frame6(
        &Udp6 {
            payload: channel_data(CH2, &d, &[5, 6, 7]),
            ..f.clone()
        },
        FX0_MAC,
        TX_PEER_MAC,
        (RELAY_A6, TURN_PORT),
        (TX_PEER6, CLIENT2_PORT),
    );
    cases.push(fwd(
        Case {
            turn_channels: vec![channel_entry(
                server,
                client,
                CH1,
                TurnAction::Renumber,
                (server, client2, CH2),
                LIVE,
            )],
            ..base(n("renumber"), f.bytes(), Expect::Tx(out))
        },
        Counter::TurnChannelLocal,
        SLOT_CH,
        17,
    ));

    let pass = |name: &str, channels, input: Vec<u8>, reason| Case {
        turn_channels: channels,
        ..base(n(name), input, Expect::Pass(reason))
    };
    let live = || vec![strip(LIVE)];
    cases.push(pass(
        "truncated: 2 bytes",
        live(),
        from_client(vec![0x40, 0x01]).bytes(),
        Counter::PassTurnBadLength,
    ));
    cases.push(pass(
        "length beyond the payload",
        live(),
        from_client({
            let mut m = channel_data(CH1, &data(8), &[]);
            m[3] = 12;
            m
        })
        .bytes(),
        Counter::PassTurnBadLength,
    ));
    cases.push(pass(
        "unknown channel",
        live(),
        from_client(channel_data(0x4100, &data(12), &[])).bytes(),
        Counter::PassTurnUnknownChannel,
    ));
    cases.push(pass(
        "wrong client source address",
        live(),
        Udp6 {
            src: TX_PEER6,
            ..from_client(channel_data(CH1, &data(12), &[]))
        }
        .bytes(),
        Counter::PassTurnUnknownChannel,
    ));
    cases.push(pass(
        "expired channel",
        vec![strip(1)],
        from_client(channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassTurnExpired,
    ));
    cases.push(pass(
        "family mismatch: IPv6 client, IPv4 peer",
        vec![channel_entry(
            server,
            client,
            CH1,
            TurnAction::Strip,
            (
                Endpoint::v4(RELAY_B, RELAYED_PORT),
                Endpoint::v4(CALLEE, PEER_PORT),
                0,
            ),
            LIVE,
        )],
        from_client(channel_data(CH1, &data(12), &[])).bytes(),
        Counter::PassTurnFamilyMismatch,
    ));
    cases.push(pass(
        "STUN-format message on the TURN port goes to the controller",
        live(),
        from_client(vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42]).bytes(),
        Counter::PassTurnControl,
    ));
    cases.push(Case {
        config: CONFIG,
        ..pass(
            "turn port off: ChannelData is a relay port's",
            live(),
            from_client(channel_data(CH1, &data(12), &[])).bytes(),
            Counter::PassUnknownLeg,
        )
    });
    cases.push(Case {
        ingress: "fx1",
        legs: vec![flag],
        ..base(
            n("peer without a channel"),
            from_peer(data(12)).bytes(),
            Expect::Pass(Counter::PassTurnNoChannel),
        )
    });
    let (expired, _) = peer_entry(relayed, peer, (server, client, CH1), 1);
    cases.push(Case {
        ingress: "fx1",
        legs: vec![flag],
        turn_peers: vec![expired],
        ..base(
            n("expired permission"),
            from_peer(data(12)).bytes(),
            Expect::Pass(Counter::PassTurnExpired),
        )
    });
    cases
}

/// `input` as relayed: new MACs, addresses and ports, TTL - 1 (etherparse's checksums).
fn relayed_frame4(
    input: &Udp4,
    smac: [u8; 6],
    dmac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
) -> Vec<u8> {
    relayed(input, smac, dmac, src, dst)
}

/// The IPv6 counterpart: hop limit - 1, traffic class and flow label kept.
fn relayed_frame6(
    input: &Udp6,
    smac: [u8; 6],
    dmac: [u8; 6],
    src: ([u8; 16], u16),
    dst: ([u8; 16], u16),
) -> Vec<u8> {
    let mut out = input.clone();
    (out.src_mac, out.dst_mac) = (smac, dmac);
    (out.src, out.sport, out.dst, out.dport) = (src.0, src.1, dst.0, dst.1);
    out.hop_limit -= 1;
    out.bytes()
}

/// XDP's Binding success response to `req` (no attributes but XOR-MAPPED-ADDRESS), as in
/// stun_cases.rs.
fn binding_answer(req: &Udp4) -> Vec<u8> {
    let cookie = [0x21, 0x12, 0xa4, 0x42];
    let mut m = vec![0x01, 0x01, 0, 12];
    m.extend_from_slice(&cookie);
    m.extend_from_slice(&req.payload[8..20]);
    m.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 0x01]);
    m.extend_from_slice(&(req.sport ^ 0x2112).to_be_bytes());
    m.extend((0..4).map(|i| req.src[i] ^ cookie[i]));
    Udp4 {
        ttl: 64,
        payload: m,
        ..Udp4::new(
            (req.dst, req.dport),
            (req.src, req.sport),
            req.dst_mac,
            req.src_mac,
        )
    }
    .bytes()
}

/// The typed API refuses what XDP could not use, lists and deletes what it wrote.
pub fn api_checks(turn: &mut TurnMaps) -> Result<(), String> {
    // From empty maps (the last case left its entries).
    clear(turn)?;
    let server = Endpoint::v4(RELAY_A, TURN_PORT);
    let client = Endpoint::v4(CALLER, CLIENT_PORT);
    let (relayed, peer) = (
        Endpoint::v4(RELAY_B, RELAYED_PORT),
        Endpoint::v4(CALLEE, PEER_PORT),
    );
    let (k, v) = channel_entry(
        server,
        client,
        CH1,
        TurnAction::Strip,
        (relayed, peer, 0),
        LIVE,
    );
    let ((pk, pv), _) = peer_entry(relayed, peer, (server, client, CH1), LIVE);
    let kind = |r: Result<(), relay_ctl::error::Error>| r.err().map(|e| e.kind);
    let bad_channel = ChannelKey {
        channel_be: 0x3fffu16.to_be(),
        ..k
    };
    if kind(turn.set_channel(&bad_channel, &v)) != Some(ErrorKind::Invalid) {
        return Err("a channel number below 0x4000 was accepted".into());
    }
    if kind(turn.set_channel(&k, &pv)) != Some(ErrorKind::Invalid) {
        return Err("an Add entry was accepted as a channel".into());
    }
    if kind(turn.set_peer(&pk, &v)) != Some(ErrorKind::Invalid) {
        return Err("a Strip entry was accepted as a peer".into());
    }
    turn.set_channel(&k, &v).map_err(|e| e.to_string())?;
    turn.set_peer(&pk, &pv).map_err(|e| e.to_string())?;
    let chans = turn.channels().map_err(|e| e.to_string())?;
    let peers = turn.peers().map_err(|e| e.to_string())?;
    if chans != vec![(k, v)] || peers != vec![(pk, pv)] {
        return Err(format!("listed {chans:?} and {peers:?}"));
    }
    let removed = (
        turn.del_channel(&k).map_err(|e| e.to_string())?,
        turn.del_channel(&k).map_err(|e| e.to_string())?,
        turn.del_peer(&pk).map_err(|e| e.to_string())?,
        turn.del_peer(&pk).map_err(|e| e.to_string())?,
    );
    if removed != (true, false, true, false) {
        return Err(format!("removals returned {removed:?}"));
    }
    Ok(())
}

/// Empty both TURN maps.
pub fn clear(turn: &mut TurnMaps) -> Result<(), String> {
    for (k, _) in turn.channels().map_err(|e| e.to_string())? {
        turn.del_channel(&k).map_err(|e| e.to_string())?;
    }
    for (k, _) in turn.peers().map_err(|e| e.to_string())? {
        turn.del_peer(&k).map_err(|e| e.to_string())?;
    }
    Ok(())
}
