//! Frames for the measurements, built by relay-testbed's etherparse frames (checksums computed
//! independently of the code under test).
use anyhow::Result;
use relay_testbed::frames::Udp4;
pub use relay_testbed::frames::rtp_payload;

/// Ethernet/IPv4/UDP frame with `payload`; `zero_csum` sends UDP checksum 0 ("none"), which
/// lets the generator change ports without touching a checksum.
pub fn udp4(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ttl: u8,
    payload: &[u8],
    zero_csum: bool,
) -> Result<Vec<u8>> {
    Udp4 {
        ttl,
        payload: payload.to_vec(),
        zero_udp_csum: zero_csum,
        ..Udp4::new(src, dst, macs.0, macs.1)
    }
    .try_bytes()
}

/// A STUN Binding request without attributes (RFC 8489: type, length, cookie, txid).
pub fn stun_binding_request() -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);
    m
}
