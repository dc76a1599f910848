//! STUN fixture cases: Binding requests to relay A's STUN port. Expected responses are
//! written out field by field here (RFC 8489 sections 5, 14.2, 14.7), their FINGERPRINT by
//! crc32fast and their checksums by etherparse; never by the code under test.
use relay_common::{Counter, reflector::DataPlaneConfig};
use relay_testbed::frames::Udp4;

use crate::{
    cases::*,
    reflect_cases::{CONFIG, STUN_PORT},
};

const COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];
const CLIENT: ([u8; 4], u16) = (CALLER, 40_123);

fn message(msg_type: u16, attrs: &[u8]) -> Vec<u8> {
    let mut m = msg_type.to_be_bytes().to_vec();
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&COOKIE);
    m.extend_from_slice(&TXID);
    m.extend_from_slice(attrs);
    m
}

/// Append FINGERPRINT: the length field first counts it, then the CRC covers all before it.
fn with_fingerprint(mut m: Vec<u8>) -> Vec<u8> {
    let len = u16::from_be_bytes([m[2], m[3]]) + 8;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&m) ^ 0x5354_554e;
    m.extend_from_slice(&[0x80, 0x28, 0, 4]);
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

fn request(payload: Vec<u8>) -> Udp4 {
    Udp4 {
        payload,
        ..Udp4::new(CLIENT, (RELAY_A, STUN_PORT), CALLER_MAC, FX0_MAC)
    }
}

/// The success response to CLIENT: XOR-MAPPED-ADDRESS = CLIENT, back out of fx0.
fn response(fingerprint: bool) -> Vec<u8> {
    let port = CLIENT.1 ^ 0x2112;
    let a = CLIENT.0;
    let mut xma = vec![0x00, 0x20, 0, 8, 0, 0x01];
    xma.extend_from_slice(&port.to_be_bytes());
    xma.extend((0..4).map(|i| a[i] ^ COOKIE[i]));
    let mut m = message(0x0101, &xma);
    if fingerprint {
        m = with_fingerprint(m);
    }
    Udp4 {
        ttl: 64,
        payload: m,
        ..Udp4::new((RELAY_A, STUN_PORT), CLIENT, FX0_MAC, CALLER_MAC)
    }
    .bytes()
}

fn answered(name: &str, input: &Udp4, fingerprint: bool) -> Case {
    Case {
        also_counts: vec![Counter::StunAnswered],
        fwd_bytes: Some(0),
        ..plain_case(name, input.bytes(), Expect::Tx(response(fingerprint)))
    }
}

fn passed(name: &str, input: &Udp4, reason: Counter) -> Case {
    plain_case(name, input.bytes(), Expect::Pass(reason))
}

pub fn all() -> Vec<Case> {
    let mut cases = vec![];
    let binding = message(0x0001, &[]);
    cases.push(answered(
        "stun: binding request answered",
        &request(binding.clone()),
        false,
    ));
    cases.push(answered(
        "stun: binding request with FINGERPRINT answered with FINGERPRINT",
        &request(with_fingerprint(binding.clone())),
        true,
    ));
    let mut padded = request(binding.clone()).bytes();
    padded.resize(80, 0);
    cases.push(Case {
        also_counts: vec![Counter::StunAnswered],
        fwd_bytes: Some(0),
        ..plain_case(
            "stun: ethernet trailer trimmed from the answer",
            padded,
            Expect::Tx(response(false)),
        )
    });

    let mut bad_fp = with_fingerprint(binding.clone());
    bad_fp[27] ^= 0xff;
    cases.push(passed(
        "stun: wrong FINGERPRINT passed",
        &request(bad_fp),
        Counter::PassStunMalformed,
    ));
    // RFC 5780 CHANGE-REQUEST (change IP and port): the userspace server's job.
    let change = message(0x0001, &[0x00, 0x03, 0, 4, 0, 0, 0, 0x06]);
    cases.push(passed(
        "stun: CHANGE-REQUEST passed",
        &request(change.clone()),
        Counter::PassStunUnsupported,
    ));
    cases.push(passed(
        "stun: CHANGE-REQUEST with FINGERPRINT passed",
        &request(with_fingerprint(change)),
        Counter::PassStunUnsupported,
    ));
    let software = message(0x0001, &[0x80, 0x22, 0, 4, b't', b'e', b's', b't']);
    cases.push(passed(
        "stun: other attribute (SOFTWARE) passed",
        &request(software),
        Counter::PassStunUnsupported,
    ));
    cases.push(passed(
        "stun: binding indication passed",
        &request(message(0x0011, &[])),
        Counter::PassStunUnsupported,
    ));
    cases.push(passed(
        "stun: binding success response passed",
        &request(message(0x0101, &[])),
        Counter::PassStunUnsupported,
    ));
    cases.push(passed(
        "stun: allocate request passed",
        &request(message(0x0003, &[])),
        Counter::PassStunUnsupported,
    ));
    let mut no_cookie = binding.clone();
    no_cookie[4] = 0;
    cases.push(passed(
        "stun: wrong magic cookie passed",
        &request(no_cookie),
        Counter::PassStunMalformed,
    ));
    cases.push(passed(
        "stun: non-STUN (RTP) passed",
        &request((0..172u32).map(|i| (0x80 + i) as u8).collect()),
        Counter::PassStunMalformed,
    ));
    for len in [0usize, 1, 19] {
        cases.push(passed(
            &format!("stun: {len}-byte payload (truncated) passed"),
            &request(binding[..len].to_vec()),
            Counter::PassStunMalformed,
        ));
    }
    let mut long = binding.clone();
    long.extend_from_slice(&[0; 4]);
    cases.push(passed(
        "stun: length field shorter than the datagram passed",
        &request(long),
        Counter::PassStunMalformed,
    ));
    let mut lying = binding.clone();
    lying[3] = 8;
    cases.push(passed(
        "stun: length field beyond the datagram passed",
        &request(lying),
        Counter::PassStunMalformed,
    ));
    cases.push(Case {
        config: DataPlaneConfig {
            stun_port: 0,
            ..CONFIG
        },
        ..passed(
            "stun: port disabled, goes the relay way",
            &request(binding.clone()),
            Counter::PassUnknownLeg,
        )
    });
    let f = Udp4 {
        payload: binding,
        ..Udp4::new(CLIENT, (CALLEE, STUN_PORT), CALLER_MAC, FX0_MAC)
    };
    cases.push(passed(
        "stun: port on an address not ours (transit)",
        &f,
        Counter::PassUnknownLeg,
    ));
    cases
}
